//! Insights throughput and state size.
//!
//! `cargo bench -p trailwatch --bench insights`. Reports:
//! * events/s/core counted into per-(key, minute) aggregates (records already parsed, and
//!   parse + count together for reference);
//! * detector step cost per key-minute (dense: a busy key stepped every minute for 10 days,
//!   daily baseline recompute included);
//! * encoded per-key state bytes (mean, max) after a 10-day synthetic workload;
//! * evaluator capacity: one scheduled run as the Insights function does it (decode each
//!   key's warm state, add its minute's cell, close the minute, encode the state), keys and
//!   events per second per core, and the same run split into 2 shards side by side.

use std::hint::black_box;
use std::time::Instant;

use trailwatch::insights::shard::ShardedEngine;
use trailwatch::insights::{
    DetectorParams, InsightType, InsightsConfig, InsightsEngine, KeyState, MinuteAggregate,
    MinuteAggregator, MinuteCell, SeriesKey, StepContext,
};
use trailwatch::record::Record;
use trailwatch::time::{format_event_time, MS_PER_MINUTE};

const T0: i64 = 1_709_683_200_000; // 2024-03-06T00:00:00Z

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn f64(&mut self) -> f64 {
        self.next() as f64 / (1u64 << 31) as f64
    }
    fn poisson(&mut self, mean: f64) -> u32 {
        let l = (-mean).exp();
        let (mut k, mut p) = (0, 1.0);
        loop {
            p *= self.f64();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

const APIS: [(&str, &str, bool); 12] = [
    ("ec2.amazonaws.com", "RunInstances", false),
    ("ec2.amazonaws.com", "DescribeInstances", true),
    ("ec2.amazonaws.com", "CreateTags", false),
    ("iam.amazonaws.com", "AttachRolePolicy", false),
    ("iam.amazonaws.com", "GetRole", true),
    ("kms.amazonaws.com", "Decrypt", true),
    ("kms.amazonaws.com", "CreateGrant", false),
    ("logs.amazonaws.com", "CreateLogStream", false),
    ("ssm.amazonaws.com", "UpdateInstanceInformation", false),
    ("ssm.amazonaws.com", "GetParameter", true),
    ("sts.amazonaws.com", "AssumeRole", true),
    ("s3.amazonaws.com", "GetBucketPolicy", true),
];

fn record_text(rng: &mut Lcg, ms: i64) -> String {
    let (source, name, read_only) = APIS[rng.next() as usize % APIS.len()];
    let who = rng.next() % 40;
    let error = if rng.next().is_multiple_of(20) {
        r#","errorCode":"AccessDenied","errorMessage":"denied""#
    } else {
        ""
    };
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:s{who}","arn":"arn:aws:sts::111122223333:assumed-role/role-{who}/session","accountId":"111122223333"}},"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.{who}","userAgent":"aws-sdk-go-v2/1.30.{who} os/linux lang/go#1.22","requestParameters":{{"x":1}},"responseElements":null,"requestID":"r","eventID":"e","readOnly":{read_only},"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"{error}}}"#,
        format_event_time(ms)
    )
}

fn bench_counting() {
    let mut rng = Lcg(1);
    let n = 400_000;
    // ~30 minutes of a busy account, out of order within a few minutes like real files.
    let texts: Vec<String> = (0..n)
        .map(|i| {
            let jitter = (rng.next() % 300_000) as i64;
            record_text(&mut rng, T0 + i as i64 * 4 + jitter)
        })
        .collect();
    let records: Vec<Record<'_>> = texts.iter().map(|t| Record::parse(t).unwrap()).collect();
    let config = InsightsConfig::default();
    let mut best = f64::MAX;
    let mut counted = 0;
    for _ in 0..5 {
        let mut agg = MinuteAggregator::new(&config);
        let start = Instant::now();
        for r in &records {
            agg.observe(black_box(r));
        }
        best = best.min(start.elapsed().as_secs_f64());
        counted = agg.stats().counted;
        black_box(agg.cell_count());
    }
    println!(
        "count   : {:>6.2} M events/s/core into (key, minute) aggregates ({} records, {} increments, {:.0} ns/event)",
        n as f64 / best / 1e6,
        n,
        counted,
        best * 1e9 / n as f64
    );
    let start = Instant::now();
    let mut agg = MinuteAggregator::new(&config);
    for t in &texts {
        if let Ok(r) = Record::parse(t) {
            agg.observe(&r);
        }
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "parse+count: {:>6.2} M events/s/core (JSON field parse dominates; {} B/record)",
        n as f64 / el / 1e6,
        texts.iter().map(String::len).sum::<usize>() / n
    );
}

fn bench_step() {
    let params = DetectorParams::default();
    let ctx = StepContext::new(&params, T0 / MS_PER_MINUTE / 1440);
    let minutes = 10 * 1440i64;
    let mut rng = Lcg(2);
    let counts: Vec<u32> = (0..minutes).map(|_| rng.poisson(3.0)).collect();
    let mut out = Vec::new();
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..5 {
        let mut state = KeyState::new();
        let start = Instant::now();
        for (i, &c) in counts.iter().enumerate() {
            state.step(T0 / MS_PER_MINUTE + i as i64, black_box(c), &ctx, &mut out);
            out.clear();
        }
        best = best.min(start.elapsed().as_secs_f64());
        bytes = state.encode().len();
    }
    println!(
        "step    : {:>6.0} ns per key-minute (dense busy key, 10 days, daily recompute included); its state {} B",
        best * 1e9 / minutes as f64,
        bytes
    );
    let state = {
        let mut s = KeyState::new();
        for (i, &c) in counts.iter().enumerate() {
            s.step(T0 / MS_PER_MINUTE + i as i64, c, &ctx, &mut out);
        }
        s
    };
    let encoded = state.encode();
    let start = Instant::now();
    let reps = 20_000;
    for _ in 0..reps {
        black_box(KeyState::decode(black_box(&encoded)).ok());
        black_box(state.encode());
    }
    println!(
        "codec   : {:>6.0} ns per encode+decode of that state",
        start.elapsed().as_secs_f64() * 1e9 / reps as f64
    );
}

fn bench_state_size() {
    // 10 days, 12 APIs with rates from sparse to busy, errors, diurnal shape.
    let mut rng = Lcg(3);
    let rates = [
        0.002, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 0.001, 0.3, 8.0, 0.02,
    ];
    let mut engine = InsightsEngine::new(InsightsConfig::default());
    let mut texts = Vec::new();
    for m in 0..10 * 1440i64 {
        let hour = (m / 60) % 24;
        let diurnal = if (13..22).contains(&hour) { 2.0 } else { 0.5 };
        for (api, rate) in rates.iter().enumerate() {
            for _ in 0..rng.poisson(rate * diurnal) {
                let (source, name, _) = APIS[api];
                let err = if rng.next().is_multiple_of(10) {
                    r#","errorCode":"ThrottlingException""#
                } else {
                    ""
                };
                texts.push(format!(
                    r#"{{"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","readOnly":false,"eventCategory":"Management","recipientAccountId":"111122223333","userIdentity":{{"arn":"arn:aws:iam::111122223333:user/u{}"}}{err}}}"#,
                    format_event_time(T0 + m * MS_PER_MINUTE),
                    rng.next() % 5
                ));
            }
        }
    }
    for t in &texts {
        engine.observe(&Record::parse(t).unwrap());
    }
    let start = Instant::now();
    let out = engine.finish();
    let el = start.elapsed().as_secs_f64();
    let sizes = engine.state_sizes();
    let stats = engine.stats();
    println!(
        "engine  : {} events, {} keys, {} key-minutes evaluated in {:.1} ms ({:.0} ns each incl. attributions), {} records",
        texts.len(),
        sizes.keys,
        stats.minutes_evaluated,
        el * 1e3,
        el * 1e9 / stats.minutes_evaluated.max(1) as f64,
        out.len()
    );
    println!(
        "state   : mean {:.0} B, max {} B per key (binary hot state; target <= 2048)",
        sizes.mean_bytes, sizes.max_bytes
    );
}

/// One evaluator run over `keys` keys with a warm 8-day state each and one cell each in the
/// minute closed; returns its seconds.
fn evaluator_run(keys: &[SeriesKey], warm: &[u8], cells: &[MinuteCell], shards: usize) -> f64 {
    let minute = cells[0].minute;
    let start = Instant::now();
    let mut engine = ShardedEngine::new(InsightsConfig::default(), shards);
    engine.set_origin_minute(Some(T0 / MS_PER_MINUTE));
    engine.set_closed_through(Some(minute - 1));
    for key in keys {
        engine.import_key_state(key, warm).unwrap();
    }
    for cell in cells {
        engine.observe_cell(cell);
    }
    black_box(engine.close_minutes_through(minute));
    let saved: usize = keys
        .iter()
        .filter_map(|k| engine.export_key_state(k))
        .map(|s| s.len())
        .sum();
    black_box(saved);
    start.elapsed().as_secs_f64()
}

fn bench_evaluator_capacity() {
    const KEYS: usize = 20_000;
    let params = DetectorParams::default();
    let ctx = StepContext::new(&params, T0 / MS_PER_MINUTE / 1440);
    let mut rng = Lcg(4);
    let mut warm = KeyState::new();
    let days = 8 * 1440i64;
    let mut out = Vec::new();
    for i in 0..days {
        warm.step(T0 / MS_PER_MINUTE + i, rng.poisson(3.0), &ctx, &mut out);
    }
    let warm = warm.encode();
    let minute = T0 / MS_PER_MINUTE + days;
    // An organisation's keys: 100 accounts x 200 APIs in one region.
    let keys: Vec<SeriesKey> = (0..KEYS)
        .map(|n| SeriesKey {
            account: format!("{:012}", 100_000_000_000 + n / 200),
            region: "us-east-1".into(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: format!("Api{}", n % 200),
            insight_type: InsightType::ApiCallRateInsight,
            error_code: None,
        })
        .collect();
    let cells: Vec<MinuteCell> = keys
        .iter()
        .map(|key| MinuteCell {
            key: key.clone(),
            minute,
            aggregate: MinuteAggregate {
                count: u64::from(rng.poisson(3.0)),
                ..MinuteAggregate::default()
            },
        })
        .collect();
    let events: u64 = cells.iter().map(|c| c.aggregate.count).sum();
    // Side by side, alternating, best of 5: the machine is shared.
    let (mut one, mut two) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        one = one.min(evaluator_run(&keys, &warm, &cells, 1));
        two = two.min(evaluator_run(&keys, &warm, &cells, 2));
    }
    println!(
        "evaluate: {KEYS} keys (warm 8-day state {} B), {events} events in one minute: 1 shard {:.1} ms = {:.0} key-minutes/s/core = {:.0} events/s/core; 2 shards {:.1} ms ({:.2}x)",
        warm.len(),
        one * 1e3,
        KEYS as f64 / one,
        events as f64 / one,
        two * 1e3,
        one / two
    );
}

fn main() {
    bench_counting();
    bench_step();
    bench_state_size();
    bench_evaluator_capacity();
}
