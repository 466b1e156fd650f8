//! Every sample payload under events/ deserializes as the function it is for expects, so the
//! samples users invoke with (`cargo lambda invoke --data-file`, `sam local invoke -e`) never
//! go stale.

use std::path::PathBuf;

use serde_json::Value;
use trailwatch::deliver::message::open_held;
use trailwatch::deliver::DeliveryMessage;
use trailwatch::ingest::{parse_message, WorkItem};
use trailwatch_deliver_fn::DeliverPayload;
use trailwatch_e2e::repo_root;
use trailwatch_insights_fn::InsightsInvocation;
use trailwatch_select_fn::SelectInvocation;

fn samples(function: &str) -> Vec<(PathBuf, Value)> {
    let dir = repo_root().join("events").join(function);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, value)
        })
        .collect()
}

#[test]
fn select_samples_are_invocations_the_select_function_understands() {
    let mut kinds = Vec::new();
    for (path, payload) in samples("select") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match SelectInvocation::from_payload(payload).unwrap_or_else(|e| panic!("{name}: {e}")) {
            SelectInvocation::Queue(event) => {
                for message in &event.records {
                    let items = parse_message(message.body.as_deref().unwrap())
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(!items.is_empty(), "{name}");
                    kinds.extend(items.iter().map(|i| match i {
                        WorkItem::Object { .. } => "object",
                        WorkItem::Record(_) => "record",
                        WorkItem::Ignored(_) => "ignored",
                    }));
                }
            }
            SelectInvocation::DryRun(request) => {
                let answer =
                    trailwatch::select::dry_run(&request).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(answer.is_object() || answer.is_array(), "{name}: {answer}");
                kinds.push("dry-run");
            }
            SelectInvocation::Direct(body) => {
                assert!(parse_message(&body).is_ok(), "{name}");
                kinds.push("direct");
            }
        }
    }
    for kind in ["object", "record", "ignored", "dry-run", "direct"] {
        assert!(kinds.contains(&kind), "no select sample of kind {kind}");
    }
}

#[test]
fn deliver_samples_carry_delivery_messages_fresh_held_and_direct() {
    let mut kinds = Vec::new();
    for (path, payload) in samples("deliver") {
        let text = payload.to_string();
        let bodies: Vec<String> = match serde_json::from_str::<DeliverPayload>(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        {
            DeliverPayload::Queue(event) => {
                event.records.into_iter().map(|m| m.body.unwrap()).collect()
            }
            DeliverPayload::Message(raw) => {
                kinds.push("direct");
                vec![raw.get().to_owned()]
            }
        };
        for body in &bodies {
            let opened = open_held(body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for inner in &opened {
                let parsed = DeliveryMessage::parse(inner)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!parsed.records.is_empty());
                kinds.push(if parsed.since.is_some() {
                    "held"
                } else {
                    "fresh"
                });
            }
        }
    }
    for kind in ["fresh", "held", "direct"] {
        assert!(
            kinds.contains(&kind),
            "no deliver sample of a {kind} message"
        );
    }
}

#[test]
fn insights_samples_cover_every_invocation_the_function_takes() {
    let mut kinds = Vec::new();
    for (path, payload) in samples("insights") {
        let name = path.display().to_string();
        match InsightsInvocation::from_payload(payload).unwrap_or_else(|e| panic!("{name}: {e}")) {
            InsightsInvocation::Queue(event) => {
                for m in &event.records {
                    DeliveryMessage::parse(m.body.as_deref().unwrap()).unwrap();
                }
                kinds.push("queue");
            }
            InsightsInvocation::Logs(event) => {
                let events = &event.aws_logs.data.log_events;
                assert!(!events.is_empty(), "{name}");
                for e in events {
                    trailwatch::record::Record::parse(&e.message).unwrap();
                }
                kinds.push("logs");
            }
            InsightsInvocation::Schedule(event) => {
                assert_eq!(event.detail_type, "Scheduled Event");
                kinds.push("schedule");
            }
        }
    }
    for kind in ["queue", "logs", "schedule"] {
        assert!(kinds.contains(&kind), "no insights sample of kind {kind}");
    }
}
