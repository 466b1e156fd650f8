//! Record shapes CloudTrail really writes that are easy to get wrong, each with the rule chosen
//! and its source (also in docs/selection.md, "Record shapes"). Real records from
//! `shared/data` where it has them; the select stage run as the select function runs it.

#[path = "support/select_check.rs"]
mod check;
#[path = "support/select_data.rs"]
mod support;

use check::{config, verdict_of as verdict};
use serde_json::{json, Value};
use trailwatch::deliver::DeliveryMessage;
use trailwatch::ingest::parse_object_key;
use trailwatch::record::{EventCategory, Record};
use trailwatch::select::{Destination, DropReason, Origin, SelectRun, TrailConfig, Verdict};

const LOG_KEY: &str = "AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/123837392027_CloudTrail_us-east-1_20230710T1200Z_abcdefghijklmnop.json.gz";

/// The first real record whose value satisfies `pick`.
fn real(pick: impl Fn(&Value) -> bool) -> String {
    support::real_records()
        .into_iter()
        .find(|r| pick(&r.value))
        .expect("a real record of this shape in shared/data")
        .text
}

/// Runs the select stage over `records` found in the object `key`; returns the streams and
/// records of the delivery messages, and the records sent to the Insights queue.
fn select(
    config: &TrailConfig,
    key: &str,
    records: &[String],
) -> (Vec<(String, String)>, Vec<String>) {
    let matcher = config.compile();
    let mut run = SelectRun::new(&matcher, 256 * 1024);
    let origin = Origin {
        bucket: Some("trail-bucket"),
        key,
        parsed: parse_object_key(key),
    };
    for (i, raw) in records.iter().enumerate() {
        run.record(&origin, i, raw);
    }
    run.flush();
    let (mut delivered, mut insights) = (Vec::new(), Vec::new());
    for message in run.take_outbox() {
        let parsed = DeliveryMessage::parse(&message.body).expect("a delivery message");
        for record in &parsed.records {
            match message.destination {
                Destination::Delivery => {
                    delivered.push((parsed.stream.to_string(), record.get().to_owned()))
                }
                Destination::Insights => insights.push(record.get().to_owned()),
                Destination::Detections => unreachable!("no detector in these runs"),
            }
        }
    }
    (delivered, insights)
}

/// Records before eventVersion 1.07 carry no `eventCategory`, before 1.06 no `managementEvent`,
/// and many kinds carry no `readOnly`. Rule: the category is derived as CloudTrail documents it
/// (`Record::category`: Insights by `eventType`, network activity by `AwsVpceEvent`, then
/// `managementEvent`, then the data APIs of the time by resource type); a record without
/// `readOnly` counts as a write (`select::fields::read_only_value`). Sources: fact sheet 1.2
/// (the "since" column) and 1.5.
#[test]
fn records_without_category_management_flag_or_read_only_are_classified_and_kept_as_writes() {
    let old = real(|v| {
        v.get("eventCategory").is_none()
            && v.get("managementEvent").is_none()
            && v.get("readOnly").is_none()
            && v["eventType"] == "AwsApiCall"
            && v["resources"].is_null()
    });
    assert_eq!(
        Record::parse(&old).unwrap().category(),
        EventCategory::Management
    );
    let write_only = config(json!({"EventSelectors": [{"ReadWriteType": "WriteOnly"}]}));
    let read_only = config(json!({"EventSelectors": [{"ReadWriteType": "ReadOnly"}]}));
    assert!(verdict(&write_only, &old).is_keep());
    assert_eq!(
        verdict(&read_only, &old),
        Verdict::Drop(DropReason::NotSelected)
    );
    // An old S3 object call without managementEvent is a data event by its resource.
    let old_s3 = json!({"eventVersion": "1.05", "eventTime": "2019-01-01T00:00:00Z",
        "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1",
        "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k"}]})
    .to_string();
    assert_eq!(
        Record::parse(&old_s3).unwrap().category(),
        EventCategory::Data
    );
    assert_eq!(
        verdict(&TrailConfig::default(), &old_s3),
        Verdict::Drop(DropReason::NotSelected)
    );
}

fn sts(host: Option<&str>) -> String {
    let mut record = json!({"eventVersion": "1.08", "eventTime": "2024-01-01T00:00:00Z",
        "eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity",
        "awsRegion": "us-east-1", "eventCategory": "Management", "readOnly": true,
        "recipientAccountId": "111122223333"});
    if let Some(host) = host {
        record["tlsDetails"] = json!({"tlsVersion": "TLSv1.3", "clientProvidedHostHeader": host});
    }
    record.to_string()
}

/// STS in us-east-1: calls to the global endpoint (`sts.amazonaws.com`) are global service
/// events, calls to the regional endpoint (`sts.us-east-1.amazonaws.com`) are regional. Rule:
/// `tlsDetails.clientProvidedHostHeader` tells them apart; without it (before 1.08, or called by
/// a service) the call is taken as regional, so a trail without global service events keeps
/// it. Sources: fact sheet 10 (IncludeGlobalServiceEvents, STS regional endpoints), 1.2
/// (tlsDetails).
#[test]
fn sts_at_the_global_endpoint_is_a_global_service_event_and_regional_sts_is_not() {
    let no_global = config(
        json!({"HomeRegion": "us-east-1", "IsMultiRegionTrail": false,
        "IncludeGlobalServiceEvents": false}),
    );
    let global = sts(Some("sts.amazonaws.com"));
    assert_eq!(
        verdict(&no_global, &global),
        Verdict::Drop(DropReason::GlobalServiceEventsExcluded)
    );
    assert_eq!(
        verdict(&no_global, &sts(Some("STS.AMAZONAWS.COM:443"))),
        Verdict::Drop(DropReason::GlobalServiceEventsExcluded),
        "host headers are case-insensitive and may carry a port"
    );
    let regional =
        real(|v| v["tlsDetails"]["clientProvidedHostHeader"] == "sts.us-east-1.amazonaws.com");
    let regional: Value = serde_json::from_str(&regional).unwrap();
    let mut regional_here = regional.clone();
    regional_here["awsRegion"] = json!("us-east-1");
    assert!(verdict(&no_global, &regional_here.to_string()).is_keep());
    assert!(verdict(&no_global, &sts(None)).is_keep());
    // Trails with global service events keep both.
    let with_global = TrailConfig::default();
    assert!(verdict(&with_global, &global).is_keep());
    assert!(verdict(&with_global, &regional_here.to_string()).is_keep());
}

/// `AwsServiceEvent` records (a service acting in the account: no caller, `userIdentity` of an
/// AWS service) are management events and go to the stream of their `recipientAccountId`.
/// Source: fact sheet 1.4, 1.6; a real record of invictus-ir.
#[test]
fn aws_service_events_are_management_events_of_their_recipient_account() {
    let service = real(|v| v["eventType"] == "AwsServiceEvent");
    let value: Value = serde_json::from_str(&service).unwrap();
    assert_eq!(
        Record::parse(&service).unwrap().category(),
        EventCategory::Management
    );
    let (delivered, insights) = select(
        &TrailConfig::default(),
        LOG_KEY,
        std::slice::from_ref(&service),
    );
    assert!(insights.is_empty());
    let stream = format!(
        "{}_CloudTrail_{}",
        value["recipientAccountId"].as_str().unwrap(),
        value["awsRegion"].as_str().unwrap()
    );
    assert_eq!(delivered, [(stream, service)]);
}

/// Network-activity events (`eventType` `AwsVpceEvent`, `eventCategory` `NetworkActivity`, no
/// `readOnly`, no `managementEvent`) are chosen only by an advanced selector of their category,
/// never by basic selectors or the default trail. Source: fact sheet 1.4–1.6, 4 ("network
/// activity: not expressible with basic selectors"), 5.2; a real record of panther-tests.
#[test]
fn network_activity_events_need_a_network_activity_selector() {
    let vpce = real(|v| v["eventType"] == "AwsVpceEvent");
    let value: Value = serde_json::from_str(&vpce).unwrap();
    assert_eq!(
        Record::parse(&vpce).unwrap().category(),
        EventCategory::NetworkActivity
    );
    assert_eq!(
        verdict(&TrailConfig::default(), &vpce),
        Verdict::Drop(DropReason::NotSelected)
    );
    let all_data = config(json!({"EventSelectors": [{"ReadWriteType": "All",
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}));
    assert_eq!(
        verdict(&all_data, &vpce),
        Verdict::Drop(DropReason::NotSelected)
    );
    let network = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["NetworkActivity"]},
        {"Field": "eventSource", "Equals": [value["eventSource"]]}
    ]}]}));
    assert!(verdict(&network, &vpce).is_keep());
}

/// An Insights record inside an ordinary log file (a `CloudTrail/` key, not
/// `CloudTrail-Insight/`): never selected by event selectors, never delivered to the log group,
/// forwarded to the Insights queue like those of Insights files. Rule: a record is an Insights
/// record by its own fields (`eventCategory` `Insight`, `eventType` `AwsCloudTrailInsight`, or
/// `insightDetails`), whatever file it came in. Source: fact sheet 1.4, 1.6, 2.5.
#[test]
fn insights_records_in_ordinary_log_files_go_to_the_insights_queue() {
    let example = support::data_dir()
        .join("insights-examples/awsdocs-2024-insight-start-with-attributions.json");
    let text = std::fs::read_to_string(example).expect("the Insights example");
    let insight = serde_json::from_str::<Value>(&text).unwrap().to_string();
    let management = sts(None);
    let (delivered, insights) = select(
        &TrailConfig::default(),
        LOG_KEY,
        &[insight.clone(), management.clone()],
    );
    assert_eq!(insights, [insight]);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].1, management);
}

/// A record whose `recipientAccountId` differs from the account in the object key (an
/// organization trail's file, a delegated administrator's trail): the stream is named after
/// `recipientAccountId`, the account this copy of the event was delivered to, and an
/// organization trail's streams carry the organization prefix of the key. Sources: fact sheet
/// 1.2 (recipientAccountId), 2.1 (organization keys), 6 (stream names).
#[test]
fn the_stream_is_the_recipient_account_s_not_the_key_s() {
    let key = "AWSLogs/o-exampleorgid/111111111111/CloudTrail/eu-west-1/2024/01/01/111111111111_CloudTrail_eu-west-1_20240101T0000Z_abcdefghijklmnop.json.gz";
    let record = json!({"eventVersion": "1.09", "eventTime": "2024-01-01T00:00:00Z",
        "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances", "awsRegion": "eu-west-1",
        "eventCategory": "Management", "readOnly": false, "eventID": "e1",
        "userIdentity": {"type": "AssumedRole", "accountId": "333333333333"},
        "recipientAccountId": "222222222222"})
    .to_string();
    let (delivered, _) = select(&TrailConfig::default(), key, std::slice::from_ref(&record));
    assert_eq!(
        delivered,
        [(
            "o-exampleorgid_222222222222_CloudTrail_eu-west-1".to_owned(),
            record
        )]
    );
}
