//! Synthetic CloudTrail streams for the Insights function's tests (unit tests here and the
//! end-to-end tests in `tests/aws`), built only for tests or with the `fixtures` feature.

use trailwatch::time::{format_event_time, MS_PER_MINUTE};

/// 2026-03-02T00:00:00Z, a Monday.
pub const DAY0_MS: i64 = 1_772_409_600_000;

/// One write management event of IAM `name` at `ms`; `n` makes its eventID unique.
pub fn record(name: &str, ms: i64, n: usize) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/ci","accountId":"111122223333"}},"eventTime":"{}","eventSource":"iam.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","userAgent":"aws-cli/2.15","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","eventID":"{name}-{ms}-{n}"}}"#,
        format_event_time(ms)
    )
}

/// A day and a half of one `CreateAccessKey` every 20 minutes, then 25 a minute for 8
/// minutes from 36:00, then quiet. Returns the records in time order and the burst start.
pub fn burst_stream() -> (Vec<String>, i64) {
    let mut records = Vec::new();
    let burst = DAY0_MS + 36 * 60 * MS_PER_MINUTE;
    let mut t = DAY0_MS;
    while t < burst {
        records.push(record("CreateAccessKey", t + 7_000, 0));
        t += 20 * MS_PER_MINUTE;
    }
    for minute in 0..8 {
        for n in 0..25 {
            records.push(record(
                "CreateAccessKey",
                burst + minute * MS_PER_MINUTE + n as i64 * 2_000,
                n,
            ));
        }
    }
    (records, burst)
}
