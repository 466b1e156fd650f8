//! Each family generates the rhythm it names, and the detector passes each family at small
//! scale: every positive fires and no negative does (the full matrix of seeds, volumes and
//! layouts is `scripts/insights-eval.sh families`, out of CI).

use trailwatch::insights::InsightsConfig;
use trailwatch_insights_eval::family::streams;
use trailwatch_insights_eval::generate::{weekday, Layout, Zone, MINUTES_PER_DAY};
use trailwatch_insights_eval::{evaluate, Family, LabelKind, StreamSpec};

/// Minutes of `[from, to)` in which the stream's component for `name` has a positive rate.
fn active(spec: &StreamSpec, name: &str, from: i64, to: i64) -> Vec<i64> {
    let streams = streams(spec);
    let c = streams[0]
        .components
        .iter()
        .find(|c| c.api.name == name)
        .expect("component");
    (from..to).filter(|&m| (c.rate)(m) > 0.0).collect()
}

#[test]
fn weekly_jobs_run_on_one_weekday_at_one_time() {
    let spec = StreamSpec::new(Family::Weekly, 7, 1.0);
    let start = spec.start_day() * MINUTES_PER_DAY;
    let on = active(
        &spec,
        "CreateDBClusterSnapshot",
        start,
        start + 28 * MINUTES_PER_DAY,
    );
    assert_eq!(on.len(), 4 * 10, "ten minutes a week for four weeks");
    let days: Vec<i64> = on.iter().map(|m| weekday(m / MINUTES_PER_DAY)).collect();
    assert!(days.iter().all(|&d| d == days[0]));
    let times: Vec<i64> = on.iter().map(|m| m % MINUTES_PER_DAY).collect();
    assert!(times.iter().all(|&t| (22 * 60..22 * 60 + 10).contains(&t)));
}

#[test]
fn local_time_jobs_move_by_an_hour_in_utc_at_the_change() {
    for seed in 0..4 {
        let spec = StreamSpec::new(Family::Dst, seed, 1.0);
        let eval = spec.eval_start_day() * MINUTES_PER_DAY;
        let first_run = |day: i64| {
            active(
                &spec,
                "SendCommand",
                day * MINUTES_PER_DAY,
                (day + 1) * MINUTES_PER_DAY,
            )[0] % MINUTES_PER_DAY
        };
        let before = first_run(eval / MINUTES_PER_DAY - 1);
        let after = first_run(eval / MINUTES_PER_DAY + 2);
        assert_eq!(
            (before - after).abs(),
            60,
            "seed {seed}: {before} then {after}"
        );
    }
    // US Eastern: 2024-11-03 06:00 UTC is the end of daylight saving time.
    let (_, end) = Zone::UsEastern.summer(2024).unwrap();
    assert_eq!(
        trailwatch::time::format_event_time(end * 60_000),
        "2024-11-03T06:00:00Z"
    );
}

#[test]
fn mondays_surge_after_quiet_weekends() {
    let spec = StreamSpec::new(Family::Monday, 3, 1.0);
    let streams = streams(&spec);
    let c = streams[0]
        .components
        .iter()
        .find(|c| c.api.name == "ModifyInstanceAttribute")
        .unwrap();
    let day = spec.eval_start_day() + 5; // Wednesday + 5 = Monday
    assert_eq!(weekday(day), 0);
    let at = |d: i64, h: i64| (c.rate)(d * MINUTES_PER_DAY + h * 60);
    assert!(
        at(day, 9) >= 2.5 * at(day + 1, 9),
        "Monday morning above Tuesday's"
    );
    assert!(
        at(day - 1, 9) * 20.0 <= at(day + 1, 9),
        "the weekend is quiet"
    );
}

#[test]
fn ramps_rise_smoothly_through_the_morning() {
    let spec = StreamSpec::new(Family::Ramp, 5, 1.0);
    let streams = streams(&spec);
    let c = streams[0]
        .components
        .iter()
        .find(|c| c.api.name == "RunTask")
        .unwrap();
    let day = spec.eval_start_day() * MINUTES_PER_DAY;
    let rates: Vec<f64> = (5 * 60..12 * 60)
        .step_by(10)
        .map(|m| (c.rate)(day + m))
        .collect();
    assert!(rates.windows(2).all(|w| w[1] >= w[0]), "monotonic");
    assert!(
        rates.windows(2).all(|w| w[1] <= w[0] * 1.35),
        "no jump above 35% in 10 minutes"
    );
    assert!(
        rates.last().unwrap() > &(10.0 * rates[0]),
        "steep over the morning"
    );
}

#[test]
fn organization_layouts_give_one_series_per_account_and_region() {
    let spec = StreamSpec {
        layout: Layout::Organization {
            accounts: 3,
            regions: 2,
        },
        ..StreamSpec::new(Family::Weekly, 1, 1.0)
    };
    let streams = streams(&spec);
    assert_eq!(streams.len(), 6);
    let mut pairs: Vec<(&str, &str)> = streams
        .iter()
        .map(|s| (s.account.as_str(), s.region.as_str()))
        .collect();
    pairs.dedup();
    assert_eq!(pairs.len(), 6);
    for s in &streams {
        assert!(s
            .labels
            .iter()
            .all(|l| l.account == s.account && l.region == s.region));
        assert!(s.labels.iter().any(|l| l.kind == LabelKind::Positive));
        assert!(s.labels.iter().any(|l| l.kind == LabelKind::Negative));
    }
}

/// The detector at small scale: one seed, normal volume, every family.
fn detector_passes(family: Family, seed: u64) {
    let e = evaluate(
        &StreamSpec::new(family, seed, 1.0),
        &InsightsConfig::default(),
    );
    let s = &e.score;
    assert_eq!(s.detected, s.positives, "{}: {:?}", family.name(), s.notes);
    assert_eq!(s.false_starts, 0, "{}: {:?}", family.name(), s.notes);
}

#[test]
fn weekly_jobs_do_not_fire_and_the_positives_do() {
    detector_passes(Family::Weekly, 1);
}

#[test]
fn daylight_saving_shifts_do_not_fire_and_the_positives_do() {
    detector_passes(Family::Dst, 1);
}

#[test]
fn monday_surges_do_not_fire_and_the_positives_do() {
    detector_passes(Family::Monday, 1);
}

#[test]
fn daily_ramps_do_not_fire_and_the_positives_do() {
    detector_passes(Family::Ramp, 1);
}
