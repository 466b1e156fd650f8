//! Shared by `tests/select_memory.rs` and `benches/hostile.rs`: hostile log files, an outbox
//! that discards, and a process's peak RSS.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use trailwatch::select::{Outbox, Outgoing};

/// `{"Records":[e,e,…]}` with `count` copies of `element`, gzip at the best ratio (the hostile
/// case: a few kilobytes for millions of elements).
pub fn write_gzip(path: &Path, element: &str, count: usize) {
    let block = format!("{element},").repeat(10_000);
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).expect("writable"),
        flate2::Compression::best(),
    );
    gz.write_all(b"{\"Records\":[").unwrap();
    for _ in 0..(count - 1) / 10_000 {
        gz.write_all(block.as_bytes()).unwrap();
    }
    for _ in 0..(count - 1) % 10_000 {
        gz.write_all(format!("{element},").as_bytes()).unwrap();
    }
    gz.write_all(format!("{element}]}}").as_bytes()).unwrap();
    gz.finish().unwrap();
}

/// A record whose `readOnly` is a 1000-character string: refused, its value quoted.
pub fn long_value_record() -> String {
    format!(
        r#"{{"eventTime":"2024-01-01T00:00:00Z","readOnly":"{}"}}"#,
        "x".repeat(1000)
    )
}

/// A valid management record without an eventID (so never a duplicate): every copy is kept
/// and packed, and a file of a million of them is a few hundred KB of gzip.
pub const VALID_RECORD: &str = r#"{"eventTime":"2024-01-01T00:00:00Z","awsRegion":"us-east-1","recipientAccountId":"111122223333","eventCategory":"Management"}"#;

/// Discards what is sent, counting the messages.
#[derive(Default)]
pub struct Discard {
    pub messages: usize,
}

impl Outbox for Discard {
    type Error = std::convert::Infallible;

    async fn send(&mut self, messages: Vec<Outgoing>) -> Result<(), Self::Error> {
        self.messages += messages.len();
        Ok(())
    }
}

/// VmHWM (the peak resident set) of a process, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
