//! Shared by the `select_*` tests: a configuration from JSON, and the verdict on a record after
//! checking that the compiled matcher and the reference interpreter agree on it.
#![allow(dead_code)]

use serde_json::Value;
use trailwatch::record::Record;
use trailwatch::select::{interpret, TrailConfig, Verdict};

pub fn config(value: Value) -> TrailConfig {
    TrailConfig::from_value(&value).unwrap_or_else(|e| panic!("valid config expected: {e}"))
}

/// The verdict on `text`, after checking that matcher and interpreter agree on it.
pub fn verdict_of(config: &TrailConfig, text: &str) -> Verdict {
    let parsed = Record::parse(text).expect("record parses");
    let compiled = config.compile().evaluate(&parsed);
    assert_eq!(
        compiled,
        interpret(config, &parsed),
        "matcher and interpreter disagree on {text}"
    );
    compiled
}

pub fn verdict(config: &TrailConfig, record: &Value) -> Verdict {
    verdict_of(config, &record.to_string())
}

pub fn kept(config: &TrailConfig, record: &Value) -> bool {
    verdict(config, record).is_keep()
}
