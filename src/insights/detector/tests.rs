//! Unit tests of the detector state machine and its codec.

use super::codec::STATE_VERSION;
use super::*;

const DAY: i64 = MINUTES_PER_DAY;
/// 2024-03-06 (a Wednesday) 00:00 UTC in minutes.
const T0: i64 = 28_495_680;

fn run(state: &mut KeyState, p: &DetectorParams, minutes: &[(i64, u32)]) -> Vec<Transition> {
    let ctx = StepContext::new(p, T0 / DAY);
    let mut out = Vec::new();
    for &(m, c) in minutes {
        state.step(m, c, &ctx, &mut out);
    }
    out
}

#[test]
fn glr_matches_the_design_examples() {
    let mu = 0.5 / (7.0 * 1440.0);
    assert!((8.0..10.5).contains(&glr(1.0, mu)));
    assert!(glr(2.0, 5.0 * mu) > 12.0);
    assert_eq!(glr(3.0, 4.0), 0.0);
}

#[test]
fn a_dead_api_fires_on_a_small_burst_and_ends() {
    let p = DetectorParams::default();
    let mut s = KeyState::new();
    // One call a day at noon for 3 days, then six calls within two minutes on day 3.
    let mut minutes: Vec<(i64, u32)> = (0..3).map(|d| (T0 + d * DAY + 720, 1)).collect();
    let burst = T0 + 3 * DAY + 600;
    minutes.extend([(burst, 3), (burst + 1, 3)]);
    let out = run(&mut s, &p, &minutes);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].state, InsightState::Start);
    assert_eq!(out[0].start_minute, burst);
    let mut out = Vec::new();
    let ctx = StepContext::new(&p, T0 / DAY);
    s.advance_idle(burst + 60, &ctx, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].state, InsightState::End);
    assert_eq!(out[0].event_minute, burst + 2);
    assert_eq!(out[0].insight_count, 6);
    assert!(s.open_insight().is_none());
}

#[test]
fn encode_decode_round_trips_and_rejects_garbage() {
    let p = DetectorParams::default();
    let mut s = KeyState::new();
    assert_eq!(KeyState::decode(&s.encode()).unwrap(), s);
    let mut minutes = Vec::new();
    for m in (0..4 * DAY).step_by(7) {
        minutes.push((T0 + m, (m % 5) as u32));
    }
    let burst = T0 + 4 * DAY + 30;
    minutes.extend((0..5).map(|i| (burst + i, 40)));
    let out = run(&mut s, &p, &minutes);
    assert!(out.iter().any(|t| t.state == InsightState::Start));
    assert!(s.open_insight().is_some());
    let bytes = s.encode();
    assert!(bytes.len() < 2048, "{}", bytes.len());
    assert_eq!(KeyState::decode(&bytes).unwrap(), s);
    for cut in 0..bytes.len() {
        assert!(KeyState::decode(&bytes[..cut]).is_err());
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(KeyState::decode(&extra).is_err());
    assert_eq!(
        KeyState::decode(&[9]),
        Err(StateDecodeError::UnknownVersion(9))
    );
    // A last minute of i64::MIN (zigzag u64::MAX) must be refused, not overflow.
    let mut huge = vec![STATE_VERSION, 1];
    huge.extend([0xff; 9]);
    huge.push(0x01);
    assert!(KeyState::decode(&huge).is_err());
}

#[test]
fn random_bytes_never_panic_the_decoder() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(b) = bytes.first_mut() {
            *b = STATE_VERSION;
        }
        if let Ok(s) = KeyState::decode(&bytes) {
            assert_eq!(KeyState::decode(&s.encode()), Ok(s));
        }
    }
}

/// States written by versions 1 and 2 (9 days of a busy key, then a burst that opened an
/// Insight at the minute in `testdata`), as a deployment's table holds them.
const STATE_V1: &str = include_str!("testdata/state-v1.hex");
const STATE_V2: &str = include_str!("testdata/state-v2.hex");
const FIXTURE_BURST: i64 = 28_508_670;

#[test]
fn states_of_versions_1_and_2_still_load_and_carry_on() {
    let p = DetectorParams::default();
    for (version, text) in [(1u8, STATE_V1), (2, STATE_V2)] {
        let bytes = hex::decode(text.trim()).unwrap();
        assert_eq!(bytes[0], version);
        let mut s = KeyState::decode(&bytes).unwrap();
        let open = s
            .open_insight()
            .copied()
            .expect("the open Insight survives");
        assert_eq!(open.start, FIXTURE_BURST);
        assert_eq!(s.last_minute(), Some(FIXTURE_BURST + 4));
        assert!(
            s.guard_day.iter().flatten().count() >= 8,
            "the guard days survive"
        );
        assert_eq!(s.cusum > 0.0, version == 2 && s.cusum > 0.0);
        // Re-encoded in the current version it reads back the same, and the Insight ends.
        assert_eq!(KeyState::decode(&s.encode()).unwrap(), s);
        let ctx = StepContext::new(&p, T0 / DAY);
        let mut out = Vec::new();
        s.advance_idle(FIXTURE_BURST + 60, &ctx, &mut out);
        assert_eq!(out.len(), 1, "version {version}: {out:?}");
        assert_eq!(out[0].state, InsightState::End);
        assert_eq!(out[0].start_minute, FIXTURE_BURST);
    }
}

/// A busy key (Poisson 3/min, x-orshift draws) that doubles for 40 minutes at 04:00.
fn busy_key_with_a_doubling(p: &DetectorParams) -> (Vec<Transition>, i64) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut poisson = |mean: f64| {
        let l = (-mean).exp();
        let (mut k, mut q) = (0u32, 1.0);
        loop {
            q *= uniform();
            if q <= l {
                return k;
            }
            k += 1;
        }
    };
    // From the UTC midnight of the origin day, so that the first day is a whole one.
    let midnight = T0.div_euclid(DAY) * DAY;
    let rise = midnight + 8 * DAY + 4 * 60;
    let mut s = KeyState::new();
    let minutes: Vec<(i64, u32)> = (0..9 * DAY)
        .map(|m| {
            let t = midnight + m;
            let doubled = (rise..rise + 40).contains(&t);
            (t, poisson(if doubled { 6.0 } else { 3.0 }))
        })
        .collect();
    (run(&mut s, p, &minutes), rise)
}

#[test]
fn a_sustained_doubling_on_a_busy_key_fires_through_the_cusum() {
    let p = DetectorParams::default();
    let (out, rise) = busy_key_with_a_doubling(&p);
    let starts: Vec<_> = out
        .iter()
        .filter(|t| t.state == InsightState::Start)
        .collect();
    assert_eq!(starts.len(), 1, "{out:?}");
    assert!((rise - 5..=rise + 10).contains(&starts[0].start_minute));
    assert!(starts[0].closed_minute < rise + 40);
    let no_cusum = DetectorParams {
        cusum_ratio: 0.0,
        ..DetectorParams::default()
    };
    let (out, _) = busy_key_with_a_doubling(&no_cusum);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn late_minutes_only_feed_the_baseline() {
    let p = DetectorParams::default();
    let mut s = KeyState::new();
    run(&mut s, &p, &[(T0 + 2 * DAY, 1)]);
    let before = s.clone();
    let out = run(&mut s, &p, &[(T0 + 2 * DAY - 5, 500)]);
    assert!(out.is_empty());
    assert_eq!(s.last_minute(), before.last_minute());
    assert_eq!(s.hour_count((T0 + 2 * DAY - 5).div_euclid(60)), 500);
}
