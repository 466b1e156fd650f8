//! Bucket-level S3 data events (`ListObjects`, `HeadBucket`, `DeleteObjects`, …): their
//! `AWS::S3::Object` entry carries `ARNPrefix` instead of `ARN`. The rule (the prefix is
//! compared as an object ARN would be) and the choices AWS leaves open are documented in
//! `trailwatch::select::fields::resource_arn`; every test runs on the compiled matcher and on
//! the reference interpreter.

#[path = "support/select_check.rs"]
mod check;

use check::{config, kept};
use serde_json::{json, Value};
use trailwatch::select::TrailConfig;

const BUCKET: &str = "databackup-123456789010";

/// A bucket-level data event of exactly the shape CloudTrail writes (the `ListObjects` record of
/// a published CloudTrail log, cut to the fields that matter), listing `prefix` in `bucket`.
fn bucket_level(event_name: &str, bucket: &str, prefix: &str, read_only: bool) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": {"type": "Root", "principalId": "123456789010",
                         "arn": "arn:aws:iam::123456789010:root", "accountId": "123456789010"},
        "eventTime": "2023-03-19T10:57:19Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "44.202.147.98",
        "requestParameters": {"list-type": "2", "bucketName": bucket, "prefix": prefix,
                              "delimiter": "/", "Host": format!("{bucket}.s3.us-east-1.amazonaws.com")},
        "responseElements": null,
        "requestID": "5WDT0JW454734NF5",
        "eventID": "da646419-bad0-4d64-bd4a-1e2b44276299",
        "readOnly": read_only,
        "resources": [
            {"type": "AWS::S3::Object", "ARNPrefix": format!("arn:aws:s3:::{bucket}/{prefix}")},
            {"accountId": "123456789010", "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}
        ],
        "eventType": "AwsApiCall",
        "managementEvent": false,
        "recipientAccountId": "123456789010",
        "eventCategory": "Data"
    })
}

fn basic(values: &[&str]) -> TrailConfig {
    config(
        json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": false,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": values}]}]}),
    )
}

fn advanced(arn_condition: Value) -> TrailConfig {
    let mut arn = json!({"Field": "resources.ARN"});
    for (op, values) in arn_condition.as_object().expect("operators") {
        arn[op] = values.clone();
    }
    config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]},
        {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        arn
    ]}]}))
}

#[test]
fn every_bucket_level_api_is_selected_by_an_all_buckets_selector() {
    for values in [["arn:aws:s3"], ["arn:aws:s3:::"]] {
        let trail = basic(&values);
        for api in [
            "HeadBucket",
            "ListObjects",
            "ListObjectsV2",
            "ListObjectVersions",
            "ListMultipartUploads",
        ] {
            assert!(kept(&trail, &bucket_level(api, BUCKET, "", true)), "{api}");
        }
        let delete = bucket_level("DeleteObjects", BUCKET, "", false);
        assert!(kept(&trail, &delete), "DeleteObjects under {values:?}");
    }
}

#[test]
fn a_bucket_selector_selects_its_bucket_level_events_and_no_other_bucket() {
    let trail = basic(&[&format!("arn:aws:s3:::{BUCKET}/")]);
    assert!(kept(&trail, &bucket_level("HeadBucket", BUCKET, "", true)));
    assert!(kept(
        &trail,
        &bucket_level("ListObjects", BUCKET, "logs/", true)
    ));
    assert!(!kept(
        &trail,
        &bucket_level("ListObjects", "other", "", true)
    ));
    // A bucket whose name starts like the selected one is another bucket.
    let longer = format!("{BUCKET}-copy");
    assert!(!kept(
        &trail,
        &bucket_level("ListObjects", &longer, "", true)
    ));
}

#[test]
fn a_key_prefix_selector_selects_listings_inside_its_prefix_only() {
    let trail = basic(&[&format!("arn:aws:s3:::{BUCKET}/images/")]);
    assert!(kept(
        &trail,
        &bucket_level("ListObjects", BUCKET, "images/2024/", true)
    ));
    assert!(kept(
        &trail,
        &bucket_level("ListObjects", BUCKET, "images/", true)
    ));
    // Our choice where AWS is silent: the whole bucket's listing is not inside the selection.
    assert!(!kept(
        &trail,
        &bucket_level("ListObjects", BUCKET, "", true)
    ));
    assert!(!kept(&trail, &bucket_level("HeadBucket", BUCKET, "", true)));
}

#[test]
fn read_write_type_applies_to_bucket_level_events() {
    let trail = config(json!({"EventSelectors": [{"ReadWriteType": "WriteOnly",
        "IncludeManagementEvents": false,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}));
    assert!(!kept(
        &trail,
        &bucket_level("ListObjects", BUCKET, "", true)
    ));
    assert!(kept(
        &trail,
        &bucket_level("DeleteObjects", BUCKET, "", false)
    ));
}

#[test]
fn each_advanced_operator_compares_the_prefix_as_an_arn() {
    let whole = format!("arn:aws:s3:::{BUCKET}/");
    let record = bucket_level("ListObjects", BUCKET, "", true);
    let cases = [
        (json!({"StartsWith": ["arn:aws:s3:::"]}), true),
        (json!({"StartsWith": [whole.clone()]}), true),
        (json!({"StartsWith": [format!("{whole}images/")]}), false),
        (json!({"StartsWith": ["arn:aws:s3:::other/"]}), false),
        // Equals compares whole values: a prefix equals no object ARN.
        (json!({"Equals": [format!("{whole}key")]}), false),
        (json!({"EndsWith": ["/"]}), true),
        (json!({"EndsWith": [".json"]}), false),
        (json!({"NotStartsWith": [whole.clone()]}), false),
        (json!({"NotStartsWith": ["arn:aws:s3:::other/"]}), true),
        (json!({"NotEquals": [format!("{whole}key")]}), true),
        (json!({"NotEndsWith": ["/"]}), false),
        (json!({"NotEndsWith": [".json"]}), true),
        (
            json!({"StartsWith": ["arn:aws:s3:::"], "NotStartsWith": [whole.clone()]}),
            false,
        ),
    ];
    for (condition, expected) in cases {
        assert_eq!(
            kept(&advanced(condition.clone()), &record),
            expected,
            "{condition}"
        );
    }
}

#[test]
fn the_object_type_alone_selects_bucket_level_events() {
    let trail = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]},
        {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}
    ]}]}));
    assert!(kept(&trail, &bucket_level("HeadBucket", BUCKET, "", true)));
    assert!(kept(
        &trail,
        &bucket_level("DeleteObjects", BUCKET, "", false)
    ));
}

#[test]
fn an_object_entry_with_neither_arn_nor_prefix_has_no_arn_to_match() {
    let mut record = bucket_level("ListObjects", BUCKET, "", true);
    record["resources"][0] = json!({"type": "AWS::S3::Object"});
    assert!(!kept(&basic(&["arn:aws:s3"]), &record));
    assert!(kept(
        &advanced(json!({"NotStartsWith": ["arn:aws:s3:::other/"]})),
        &record
    ));
}
