//! `--dry-run`: what a dead-letter queue holds, with counts and ages, and by when it must be
//! redriven.

use std::collections::BTreeMap;
use std::io::Write;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use trailwatch::time::{format_event_time, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};

use super::sqs::{system_number, Queue};

/// How long CloudWatch Logs accepts an event after its timestamp (PutLogEvents: "events
/// older than 14 days" are rejected).
const LOGS_MAX_AGE_MS: i64 = 14 * MS_PER_DAY;

/// `3d 4h`, `5h 12m`, `7m`.
fn span(ms: i64) -> String {
    let ms = ms.max(0);
    let (d, h, m) = (
        ms / MS_PER_DAY,
        ms % MS_PER_DAY / MS_PER_HOUR,
        ms % MS_PER_HOUR / MS_PER_MINUTE,
    );
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// The listing: a summary, then one line per message.
pub fn write(
    out: &mut dyn Write,
    queue: &Queue,
    messages: &[Message],
    now: i64,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{}{}: {} messages listed (the queue reports about {} visible and {} in flight); it keeps a message {}",
        queue.name,
        if queue.fifo { " (FIFO)" } else { "" },
        messages.len(),
        queue.visible,
        queue.in_flight,
        span(queue.retention_seconds * 1000),
    )?;
    let sent: Vec<i64> = messages
        .iter()
        .filter_map(|m| system_number(m, MessageSystemAttributeName::SentTimestamp))
        .collect();
    if let (Some(&oldest), Some(&newest)) = (sent.iter().min(), sent.iter().max()) {
        let expires = oldest + queue.retention_seconds * 1000;
        writeln!(
            out,
            "sent {} to {}: the oldest is {} old and leaves the queue in {} ({}); CloudWatch Logs refuses records more than 14 days old, those of the oldest message from {} at the latest",
            format_event_time(oldest),
            format_event_time(newest),
            span(now - oldest),
            span(expires - now),
            format_event_time(expires),
            format_event_time(oldest + LOGS_MAX_AGE_MS),
        )?;
    }
    if queue.fifo && (messages.len() as i64) < queue.visible {
        writeln!(
            out,
            "a FIFO queue shows the next message of a group only once the one before it is deleted: the rest are not listed"
        )?;
    }
    if queue.fifo {
        let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
        for m in messages {
            *groups.entry(group_of(m)).or_default() += 1;
        }
        let groups: Vec<String> = groups.iter().map(|(g, n)| format!("{g} {n}")).collect();
        writeln!(out, "by message group: {}", groups.join(", "))?;
    }
    writeln!(out, "MessageId\tSent\tAge\tReceives\tGroup\tBytes")?;
    for m in messages {
        let sent = system_number(m, MessageSystemAttributeName::SentTimestamp);
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}",
            m.message_id().unwrap_or("?"),
            sent.map_or_else(|| "?".to_owned(), format_event_time),
            sent.map_or_else(|| "?".to_owned(), |t| span(now - t)),
            system_number(m, MessageSystemAttributeName::ApproximateReceiveCount)
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            if queue.fifo { group_of(m) } else { "-" },
            m.body().map_or(0, str::len),
        )?;
    }
    Ok(())
}

fn group_of(m: &Message) -> &str {
    m.attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .map_or("?", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(7 * MS_PER_MINUTE + 59_000), "7m");
        assert_eq!(span(5 * MS_PER_HOUR + 12 * MS_PER_MINUTE), "5h 12m");
        assert_eq!(span(14 * MS_PER_DAY), "14d 0h");
        assert_eq!(span(-5), "0m");
    }
}
