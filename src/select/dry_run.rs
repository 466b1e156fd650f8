//! Dry run: decide a handful of records under a proposed configuration, for the select
//! function's "what would this trail keep?" request.

use serde_json::{json, Value};

use crate::record::Record;

use super::{ConfigError, TrailConfig, Verdict};

/// Takes `{"selectors": <configuration>, "events": [record, ...]}` and returns
/// `{"kept": n, "dropped": n, "unreadable": n, "decisions": [...]}` with, per event, its
/// index, eventID, eventSource, eventName, decision (`keep`/`drop`/`unreadable`), the
/// matching selector's index and name, or the drop reason.
pub fn dry_run(request: &Value) -> Result<Value, ConfigError> {
    let request = request
        .as_object()
        .ok_or(ConfigError::Request("the request must be a JSON object"))?;
    let selectors = request.get("selectors").ok_or(ConfigError::Request(
        "the request needs \"selectors\": the trail configuration (get-event-selectors output)",
    ))?;
    let events = request
        .get("events")
        .and_then(Value::as_array)
        .ok_or(ConfigError::Request(
            "the request needs \"events\": a list of CloudTrail records",
        ))?;
    let config = TrailConfig::from_value(selectors)?;
    let matcher = config.compile();
    let (mut kept, mut dropped, mut unreadable) = (0usize, 0usize, 0usize);
    let decisions: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            // Records arrive as parsed JSON; the matcher reads the record model, which borrows
            // from text, so each one is written back out first.
            let text = event.to_string();
            let record = match Record::parse(&text) {
                Ok(record) => record,
                Err(err) => {
                    unreadable += 1;
                    return json!({"index": index, "decision": "unreadable", "error": err.to_string()});
                }
            };
            let mut decision = json!({
                "index": index,
                "eventID": record.event_id(),
                "eventSource": record.event_source(),
                "eventName": record.event_name(),
            });
            match matcher.evaluate(&record) {
                Verdict::Keep { selector } => {
                    kept += 1;
                    decision["decision"] = json!("keep");
                    decision["selector"] = json!(selector);
                    decision["selectorName"] = json!(selector.and_then(|i| matcher.selector_name(i)));
                    decision["selectorLabel"] = json!(matcher.selector_label(selector));
                }
                Verdict::Drop(reason) => {
                    dropped += 1;
                    decision["decision"] = json!("drop");
                    decision["reason"] = json!(reason.as_str());
                }
            }
            decision
        })
        .collect();
    Ok(json!({
        "kept": kept,
        "dropped": dropped,
        "unreadable": unreadable,
        "decisions": decisions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_names_the_matching_selector_and_the_drop_reason() {
        let request = json!({
            "selectors": {"AdvancedEventSelectors": [
                {"Name": "writes", "FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["Management"]},
                    {"Field": "readOnly", "Equals": ["false"]}
                ]}
            ]},
            "events": [
                {"eventCategory": "Management", "readOnly": false, "eventName": "RunInstances"},
                {"eventCategory": "Management", "readOnly": true, "eventName": "DescribeInstances"},
                {"eventCategory": 7}
            ]
        });
        let out = dry_run(&request).expect("valid request");
        assert_eq!(out["kept"], 1);
        assert_eq!(out["dropped"], 1);
        assert_eq!(out["unreadable"], 1);
        assert_eq!(out["decisions"][0]["selector"], 0);
        assert_eq!(out["decisions"][0]["selectorName"], "writes");
        assert_eq!(out["decisions"][1]["reason"], "not_selected");
        assert_eq!(out["decisions"][2]["decision"], "unreadable");
    }

    #[test]
    fn dry_run_reports_configuration_problems() {
        let request = json!({"selectors": {"EventSelectors": [{"ReadWriteType": "Sometimes"}]}, "events": []});
        let err = dry_run(&request).expect_err("invalid selectors");
        assert!(
            err.to_string()
                .contains("Value Sometimes for ReadWriteType is invalid"),
            "{err}"
        );
    }
}
