//! `selectors explain`'s monthly estimate: what was kept, scaled from the stretch of time the
//! input covers to 30 days. The stretch comes from the files' delivery stamps when every file
//! has one (CloudTrail writes a file about every five minutes, so the stamps say which
//! minutes the files hold), else from the central 98% of the records' event times, so that a
//! few old or future records do not stretch a day of logs into years.

use std::collections::BTreeMap;

use trailwatch::time::{format_event_time, MS_PER_MINUTE};

use super::{Count, Prices};

/// CloudWatch Logs counts each event as its message bytes plus this overhead (PutLogEvents).
pub const CWL_EVENT_OVERHEAD_BYTES: u64 = 26;
const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;
/// Below this observed stretch an extrapolation to a month is noise; none is given.
pub const MIN_SPAN_FOR_ESTIMATE_SECONDS: f64 = 60.0;
/// "CloudTrail publishes log files multiple times an hour, about every five minutes"
/// (CloudTrail User Guide, "How CloudTrail works"): the activity a file holds before its stamp.
const FILE_INTERVAL_MS: i64 = 5 * MS_PER_MINUTE;
/// The share of event times the fallback basis keeps: from the 1st to the 99th percentile.
const CENTRAL_SHARE: f64 = 0.98;

/// When the records read happened: the files' delivery stamps and the records' event times.
#[derive(Debug, Default)]
pub struct Timeline {
    stamped_files: u64,
    unstamped_files: u64,
    stamps: Option<(i64, i64)>,
    /// Records per minute of eventTime (bounded by the minutes the input covers, not by its
    /// records).
    minutes: BTreeMap<i64, u64>,
    records: u64,
}

/// The stretch of time an estimate scales from, and how it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub seconds: f64,
    /// The share of what was read that falls in the stretch.
    pub share: f64,
    /// The basis, in words, for the report.
    pub basis: String,
}

impl Timeline {
    /// A file read, with the delivery stamp of its name, if any.
    pub fn file(&mut self, delivered_ms: Option<i64>) {
        match delivered_ms {
            Some(t) => {
                self.stamped_files += 1;
                self.stamps = Some(self.stamps.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
            }
            None => self.unstamped_files += 1,
        }
    }

    /// A record read, with its eventTime.
    pub fn event(&mut self, event_ms: i64) {
        *self
            .minutes
            .entry(event_ms.div_euclid(MS_PER_MINUTE))
            .or_default() += 1;
        self.records += 1;
    }

    /// The stretch to scale from: by delivery stamps when every file read has one, else by
    /// the central 98% of event times; `None` when nothing dated was read.
    pub fn period(&self) -> Option<Period> {
        if self.stamped_files > 0 && self.unstamped_files == 0 {
            let (first, last) = self.stamps?;
            let covered = last - first + FILE_INTERVAL_MS;
            return Some(Period {
                seconds: covered as f64 / 1000.0,
                share: 1.0,
                basis: format!(
                    "from the files' delivery stamps: {} file(s) delivered from {} to {}; CloudTrail writes a file about every 5 minutes, so they hold about {} of activity",
                    self.stamped_files,
                    format_event_time(first),
                    format_event_time(last),
                    duration(covered)
                ),
            });
        }
        let (low, high) = self.central_minutes()?;
        let inside: u64 = self.minutes.range(low..=high).map(|(_, n)| n).sum();
        // Minutes apart: a single instant covers nothing and gives no estimate.
        let covered = (high - low) * MS_PER_MINUTE;
        let share = inside as f64 / self.records as f64;
        Some(Period {
            seconds: covered as f64 / 1000.0,
            share,
            basis: format!(
                "from event times (not every file has a CloudTrail delivery stamp): the central 98% of eventTime, {} to {}, spans {}; {:.1}% of the records read fall in it, and what was kept is taken in that proportion",
                format_event_time(low * MS_PER_MINUTE),
                format_event_time(high * MS_PER_MINUTE),
                duration(covered),
                share * 100.0
            ),
        })
    }

    /// The minutes of the 1st and the 99th percentile of event times.
    fn central_minutes(&self) -> Option<(i64, i64)> {
        if self.records == 0 {
            return None;
        }
        let tail = ((1.0 - CENTRAL_SHARE) / 2.0 * self.records as f64).floor() as u64;
        let nth = |rank: u64| {
            let mut seen = 0;
            self.minutes.iter().find_map(|(minute, n)| {
                seen += n;
                (seen > rank).then_some(*minute)
            })
        };
        Some((nth(tail)?, nth(self.records - 1 - tail)?))
    }
}

/// `90061000` ms as `1 d 1 h 1 min`.
fn duration(ms: i64) -> String {
    let minutes = ms / MS_PER_MINUTE;
    let (days, hours, minutes) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(days, "d"), (hours, "h"), (minutes, "min")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n} {unit}"))
        .collect();
    if parts.is_empty() {
        format!("{} s", ms / 1000)
    } else {
        parts.join(" ")
    }
}

/// Monthly figures extrapolated linearly from the observed stretch.
#[derive(Debug)]
pub struct Estimate {
    pub factor: f64,
    pub cwl_gb: f64,
    pub cwl_usd: f64,
    pub data_events: f64,
    pub network_events: f64,
    pub cloudtrail_usd: f64,
    pub basis: String,
}

/// What was kept, for the estimate.
pub struct Kept {
    pub total: Count,
    pub data_events: u64,
    pub network_events: u64,
}

pub fn estimate(kept: &Kept, period: Option<Period>, prices: &Prices) -> Option<Estimate> {
    let period = period.filter(|p| p.seconds >= MIN_SPAN_FOR_ESTIMATE_SECONDS)?;
    let factor = SECONDS_PER_MONTH / period.seconds * period.share;
    let total = kept.total;
    let cwl_bytes = (total.bytes + total.records * CWL_EVENT_OVERHEAD_BYTES) as f64 * factor;
    let data_events = kept.data_events as f64 * factor;
    let network_events = kept.network_events as f64 * factor;
    Some(Estimate {
        factor,
        cwl_gb: cwl_bytes / 1e9,
        cwl_usd: prices.cloudwatch_logs_ingestion_usd(cwl_bytes),
        data_events,
        network_events,
        cloudtrail_usd: data_events / 100_000.0 * prices.cloudtrail_data_events_per_100k
            + network_events / 100_000.0 * prices.cloudtrail_network_activity_events_per_100k,
        basis: format!(
            "linear, {}; scaled to 30 days; CloudWatch Logs bytes are record bytes + {CWL_EVENT_OVERHEAD_BYTES} per event; management events assumed to be the trail's free first copy",
            period.basis
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::super::PRICES;
    use super::*;
    use trailwatch::time::{parse_event_time, MS_PER_HOUR};

    fn at(text: &str) -> i64 {
        parse_event_time(text).unwrap()
    }

    fn kept(records: u64, bytes: u64, data_events: u64) -> Kept {
        Kept {
            total: Count { records, bytes },
            data_events,
            network_events: 0,
        }
    }

    #[test]
    fn an_hour_of_kept_bytes_and_data_events_scales_to_thirty_days() {
        let period = Period {
            seconds: 3600.0,
            share: 1.0,
            basis: "an hour".into(),
        };
        let e = estimate(&kept(10, 974, 10), Some(period), &PRICES).expect("an hour is enough");
        assert!((e.factor - 720.0).abs() < 1e-9);
        assert!((e.cwl_gb - 1234.0 * 720.0 / 1e9).abs() < 1e-12);
        assert!((e.data_events - 7200.0).abs() < 1e-9);
        assert!((e.cloudtrail_usd - 0.0072).abs() < 1e-12);
        assert!(e.basis.starts_with("linear, an hour"));
    }

    #[test]
    fn stamped_files_give_the_stretch_they_were_delivered_over() {
        let mut timeline = Timeline::default();
        for stamp in [
            "2023-07-10T11:45:00Z",
            "2023-07-10T12:35:00Z",
            "2023-07-10T12:00:00Z",
        ] {
            timeline.file(Some(at(stamp)));
        }
        // An Insights record years older does not matter: the stamps decide.
        timeline.event(at("2019-10-15T21:13:00Z"));
        timeline.event(at("2023-07-10T12:30:00Z"));
        let period = timeline.period().unwrap();
        assert_eq!(period.seconds, 55.0 * 60.0);
        assert_eq!(period.share, 1.0);
        assert!(period.basis.contains("3 file(s)"), "{}", period.basis);
        assert!(period.basis.contains("55 min"), "{}", period.basis);
    }

    #[test]
    fn without_stamps_the_central_98_percent_of_event_times_ignores_outliers() {
        let mut timeline = Timeline::default();
        timeline.file(None);
        let start = at("2024-01-01T00:00:00Z");
        for i in 0..200 {
            timeline.event(start + i * 18_000); // one hour, evenly
        }
        timeline.event(start - 3 * 365 * 24 * MS_PER_HOUR);
        timeline.event(start + 400 * 24 * MS_PER_HOUR);
        let period = timeline.period().unwrap();
        assert!(
            (3480.0..=3600.0).contains(&period.seconds),
            "about an hour: {period:?}"
        );
        assert!(period.share > 0.97 && period.share < 1.0, "{period:?}");
        assert!(period.basis.contains("central 98%"), "{}", period.basis);
        assert!(Timeline::default().period().is_none());
    }

    #[test]
    fn no_estimate_from_a_single_instant() {
        let mut timeline = Timeline::default();
        timeline.file(None);
        timeline.event(0);
        assert!(estimate(&kept(1, 100, 0), timeline.period(), &PRICES).is_none());
    }

    #[test]
    fn durations_read_as_days_hours_and_minutes() {
        assert_eq!(duration(55 * MS_PER_MINUTE), "55 min");
        assert_eq!(duration(25 * MS_PER_HOUR + MS_PER_MINUTE), "1 d 1 h 1 min");
        assert_eq!(duration(30_000), "30 s");
    }
}
