//! What the Insights function costs per million events analysed, next to CloudTrail Insights'
//! price for the same events. A model over what a backtest or a replay measured: events, the
//! (key, minute) cells counted and evaluated, the Insights records, the compute time.
//!
//! Prices: us-east-1 list prices, on-demand (see each constant). The function's work per unit:
//! * counting: one `TransactWriteItems` per part, cells written as JSON (2 write units per KB
//!   in a transaction, with the part's marker);
//! * evaluation, per key-minute with events: the key's item read (`BatchGetItem`, strongly
//!   consistent: 1 read unit per 4 KB) and written back (`PutItem`: 1 write unit per KB), and
//!   its cells read back (`Query`, strongly consistent);
//! * one EventBridge event per Insights record; Lambda duration at the measured speed.

/// CloudTrail Insights: USD 0.35 per 100,000 management events analysed, per Insights type
/// (docs.aws.amazon.com/awscloudtrail/latest/userguide/insights-events-costs.html: write events
/// are analysed twice with both types, read events once; price: aws.amazon.com/cloudtrail/pricing).
pub const CLOUDTRAIL_INSIGHTS_USD_PER_EVENT: f64 = 0.35 / 100_000.0;
/// Lambda, arm64: USD 0.0000133334 per GB-second (aws.amazon.com/lambda/pricing).
pub const LAMBDA_USD_PER_GB_SECOND: f64 = 0.000_013_333_4;
/// Lambda: USD 0.20 per million requests.
pub const LAMBDA_USD_PER_REQUEST: f64 = 0.20 / 1e6;
/// DynamoDB on demand: USD 0.625 per million write request units, 0.125 per million read
/// request units (aws.amazon.com/dynamodb/pricing/on-demand, since November 2024).
pub const DYNAMODB_USD_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
pub const DYNAMODB_USD_PER_READ_UNIT: f64 = 0.125 / 1e6;
/// EventBridge: USD 1.00 per million custom events (aws.amazon.com/eventbridge/pricing).
pub const EVENTBRIDGE_USD_PER_EVENT: f64 = 1.0 / 1e6;

/// The function's memory (the template's default) and the vCPU share Lambda gives it: 1,769 MB
/// is one vCPU, so the measured single-core time is divided by memory / 1,769.
pub const LAMBDA_MEMORY_GB: f64 = 1.0;
const MB_PER_VCPU: f64 = 1769.0;
/// Log events per CloudWatch Logs subscription invocation (a counting request), assumed.
pub const EVENTS_PER_COUNTING_INVOCATION: f64 = 500.0;
/// A cell as the state table holds it (JSON with its key and sketches), measured mean.
pub const CELL_BYTES: f64 = 330.0;
/// A key item (hot state and gzipped attributions), measured mean for a busy key.
pub const KEY_ITEM_BYTES: f64 = 2_500.0;

/// What was measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Workload {
    /// Events CloudTrail Insights would bill (both types: see `ObserveStats`).
    pub analysed_call_rate: u64,
    pub analysed_error_rate: u64,
    /// Records read (the function counts every record of the log group).
    pub records: u64,
    /// (key, minute) cells counted and evaluated.
    pub key_minutes: u64,
    /// Insights records emitted.
    pub insight_records: u64,
    /// Single-core seconds the work took.
    pub cpu_seconds: f64,
}

/// USD, per part and in total.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub lambda: f64,
    pub dynamodb_writes: f64,
    pub dynamodb_reads: f64,
    pub eventbridge: f64,
    pub cloudtrail_insights: f64,
}

impl Cost {
    pub fn trailwatch(&self) -> f64 {
        self.lambda + self.dynamodb_writes + self.dynamodb_reads + self.eventbridge
    }

    /// Per million analysed events (CloudTrail's unit: both types' events).
    pub fn per_million(&self, w: &Workload) -> (f64, f64) {
        let analysed = (w.analysed_call_rate + w.analysed_error_rate).max(1) as f64;
        (
            self.trailwatch() / analysed * 1e6,
            self.cloudtrail_insights / analysed * 1e6,
        )
    }
}

/// The cost of a workload.
pub fn cost(w: &Workload) -> Cost {
    let vcpu = LAMBDA_MEMORY_GB * 1024.0 / MB_PER_VCPU;
    let requests = w.records as f64 / EVENTS_PER_COUNTING_INVOCATION;
    let key_minutes = w.key_minutes as f64;
    // Counting: 2 units per KB of cells in a transaction, plus the part's marker.
    let count_writes = 2.0 * (key_minutes * CELL_BYTES / 1024.0 + requests);
    // Evaluation: each key-minute's key item written back, read, and its cells read.
    let eval_writes = key_minutes * (KEY_ITEM_BYTES / 1024.0).ceil();
    let reads = key_minutes * ((KEY_ITEM_BYTES / 4096.0).ceil() + CELL_BYTES / 4096.0);
    Cost {
        lambda: w.cpu_seconds / vcpu * LAMBDA_MEMORY_GB * LAMBDA_USD_PER_GB_SECOND
            + requests * LAMBDA_USD_PER_REQUEST,
        dynamodb_writes: (count_writes + eval_writes) * DYNAMODB_USD_PER_WRITE_UNIT,
        dynamodb_reads: reads * DYNAMODB_USD_PER_READ_UNIT,
        eventbridge: w.insight_records as f64 * EVENTBRIDGE_USD_PER_EVENT,
        cloudtrail_insights: (w.analysed_call_rate + w.analysed_error_rate) as f64
            * CLOUDTRAIL_INSIGHTS_USD_PER_EVENT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtrail_bills_write_events_twice_with_both_types() {
        // The documentation's example: 30,000 writes and 270,000 reads → 330,000 analysed.
        let w = Workload {
            analysed_call_rate: 30_000,
            analysed_error_rate: 300_000,
            ..Workload::default()
        };
        assert!((cost(&w).cloudtrail_insights - 330_000.0 * 0.35 / 100_000.0).abs() < 1e-9);
    }

    #[test]
    fn the_cost_grows_with_key_minutes_not_with_events_per_key() {
        let busy = Workload {
            analysed_call_rate: 1_000_000,
            analysed_error_rate: 1_000_000,
            records: 1_000_000,
            key_minutes: 10_000,
            ..Workload::default()
        };
        let sparse = Workload {
            key_minutes: 100_000,
            ..busy
        };
        assert!(cost(&sparse).trailwatch() > 5.0 * cost(&busy).dynamodb_writes);
        let (ours, theirs) = cost(&busy).per_million(&busy);
        assert!(ours < theirs / 10.0, "{ours} vs {theirs}");
    }
}
