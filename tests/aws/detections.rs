//! Detections end to end on the stack deployed in moto: a log file in the trail bucket → the
//! select function (the rules on every record read) → the Insights queue → the Insights
//! function under its own role (suppression windows in the state table) → the Insights bus → a
//! user's rule → an SQS queue. Every assertion reads back from moto what the functions wrote.

use serde_json::{json, Value};
use trailwatch::detect::{Detector, RuleOptions, RuleSet, Scratch};
use trailwatch::record::Record;
use trailwatch::select::TrailConfig;
use trailwatch::time::{format_event_time, MS_PER_MINUTE};
use trailwatch_e2e::deployed::{contexts, notify_as_the_output_says};
use trailwatch_e2e::*;

/// The Stratus Red Team StopLogging record, moved to `ms` with a new eventID, in us-east-1.
fn stop_logging(ms: i64, event_id: &str, event_name: &str) -> String {
    let path = shared_data().join("stratus-red-team/aws.defense-evasion.cloudtrail-stop.json");
    let records: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut record = records[0].clone();
    record["eventTime"] = json!(format_event_time(ms));
    record["eventID"] = json!(event_id);
    record["eventName"] = json!(event_name);
    record["awsRegion"] = json!("us-east-1");
    record.to_string()
}

/// The rule ids the embedded rules find in `raw`, computed here with the library.
fn rules_matching(raw: &str) -> Vec<String> {
    let set = RuleSet::load(&RuleOptions {
        embedded: true,
        ..RuleOptions::default()
    });
    let detector = Detector::new(set.rules);
    let mut ids = Vec::new();
    let record = Record::parse(raw).unwrap();
    detector.evaluate(&record, &mut Scratch::default(), |rule, _| {
        ids.push(rule.id.clone())
    });
    ids
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_record_reaches_a_queue_through_the_bus_and_a_repeat_is_held() {
    let deployed = tokio::task::spawn_blocking(|| DeployedStack::deploy(&StackOptions::default()))
        .await
        .unwrap();
    let sdk = sdk().await;
    let s3 = s3_client(&sdk);
    notify_as_the_output_says(&deployed, &s3).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ingest = deployed.output("IngestQueueUrl").to_owned();
    let insights_queue = deployed.output("InsightsQueueUrl").to_owned();
    drain_queue(&sqs, &ingest).await;
    let select_fn = deployed.function("SelectFunction");
    assert!(select_fn.var("TRAILWATCH_DETECTIONS").as_deref() == Some("true"));
    let select = contexts::select(select_fn, &sdk, &TrailConfig::default());
    let insights_fn = deployed.function("InsightsFunction");
    let insights = contexts::insights(
        insights_fn,
        &deployed.role_sdk("InsightsFunctionRole").await,
    );
    // A user's rule on the stack's bus, as docs/detections.md shows.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let bus = deployed.output("InsightsBusName").to_owned();
    let source = insights_fn.required(trailwatch_insights_fn::EVENT_SOURCE_ENV);
    let alerts = create_queue(&sqs, &unique("detections")).await;
    route_to_queue(
        &events,
        &sqs,
        Some(&bus),
        &format!(r#"{{"source":["{source}"],"detail-type":["trailwatch Detection"]}}"#),
        &alerts,
    )
    .await;

    let t0 = now_ms() - 40 * MS_PER_MINUTE;
    let first = stop_logging(t0, "e2e-stop-1", "StopLogging");
    let repeat = stop_logging(t0 + 10 * MS_PER_MINUTE, "e2e-stop-2", "StopLogging");
    let unmatched = stop_logging(t0, "e2e-status-1", "GetTrailStatus");
    let rules = rules_matching(&first);
    assert!(!rules.is_empty(), "StopLogging matches the embedded rules");
    assert!(rules_matching(&unmatched).is_empty());

    // Runs select over the ingest queue and the Insights function over the Insights queue;
    // returns the events the user's rule routed.
    let run = |name: &'static str, records: Vec<String>| {
        let (s3, sqs, ingest, insights_queue, alerts) =
            (&s3, &sqs, &ingest, &insights_queue, &alerts);
        let (deployed, select, insights) = (&deployed, &select, &insights);
        async move {
            let key = format!(
                "{}AWSLogs/143434273843/CloudTrail/us-east-1/2024/07/31/143434273843_CloudTrail_us-east-1_{name}.json.gz",
                deployed.key_prefix()
            );
            s3.put_object()
                .bucket(&deployed.bucket)
                .key(key)
                .body(gzip_log_file(&records).into())
                .send()
                .await
                .unwrap();
            let batch = drain_queue(sqs, ingest).await;
            let invocation = trailwatch_select_fn::SelectInvocation::from_payload(
                serde_json::to_value(&batch).unwrap(),
            )
            .unwrap();
            let response = trailwatch_select_fn::handle(select, invocation)
                .await
                .unwrap();
            assert_eq!(response["batchItemFailures"], json!([]));
            let batch = drain_queue(sqs, insights_queue).await;
            let response =
                trailwatch_insights_fn::handle(insights, serde_json::to_value(&batch).unwrap())
                    .await
                    .unwrap();
            assert_eq!(
                response["batchItemFailures"],
                json!([]),
                "insights failures"
            );
            drain_queue(sqs, alerts)
                .await
                .records
                .iter()
                .map(|m| serde_json::from_str::<Value>(m.body.as_deref().unwrap()).unwrap())
                .collect::<Vec<Value>>()
        }
    };

    // The match and an unmatched record: one event per rule matched, none for the other.
    let routed = run("20240731T0000Z_a", vec![first.clone(), unmatched]).await;
    assert_eq!(routed.len(), rules.len(), "{routed:#?}");
    for event in &routed {
        assert_eq!(event["detail-type"], "trailwatch Detection");
        assert_eq!(event["source"], source.as_str());
        let detail = &event["detail"];
        assert!(rules.contains(&detail["ruleId"].as_str().unwrap().to_owned()));
        assert_eq!(detail["eventID"], "e2e-stop-1");
        assert_eq!(detail["record"]["eventID"], "e2e-stop-1");
        assert_eq!(
            detail["principal"],
            "arn:aws:iam::143434273843:user/christophe"
        );
        assert_eq!(
            detail["dedupKey"],
            format!("{}/e2e-stop-1", detail["ruleId"].as_str().unwrap())
        );
        assert_eq!(detail["suppression"]["heldInPreviousWindow"], 0);
        assert!(detail["level"].is_string() && detail["title"].is_string());
        assert!(detail["attack"]["techniques"].is_array());
    }

    // The same rules, principal and account 10 minutes later: held, not published.
    let routed = run("20240731T0010Z_b", vec![repeat]).await;
    assert!(routed.is_empty(), "{routed:#?}");
    // ...and counted in the state table's window.
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = insights_fn.required(trailwatch_insights_fn::STATE_TABLE_ENV);
    for rule in &rules {
        let key =
            format!("detect#window#{rule}|143434273843|arn:aws:iam::143434273843:user/christophe");
        let item = dynamodb
            .get_item()
            .table_name(&table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(key.clone()),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("window".into()),
            )
            .send()
            .await
            .unwrap();
        let item = item.item().unwrap_or_else(|| panic!("no window {key}"));
        assert_eq!(item["held"].as_n().unwrap(), "1");
        assert_eq!(
            item["openedBy"].as_s().unwrap(),
            &format!("{rule}/e2e-stop-1")
        );
        assert!(item.contains_key("expiresAt"));
    }
}
