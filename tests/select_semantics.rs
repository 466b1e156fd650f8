//! What a configuration keeps: one behaviour per test, each checked on the compiled matcher
//! and on the reference interpreter.

#[path = "support/select_check.rs"]
mod check;

use check::{config, kept, verdict};
use serde_json::{json, Value};
use trailwatch::select::{DropReason, TrailConfig, Verdict};

fn s3_object(key_arn: &str, event_name: &str, read_only: bool) -> Value {
    json!({"eventVersion": "1.09", "eventCategory": "Data", "managementEvent": false,
           "eventSource": "s3.amazonaws.com", "eventName": event_name, "readOnly": read_only,
           "awsRegion": "us-east-1",
           "resources": [{"type": "AWS::S3::Object", "ARN": key_arn},
                         {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::amzn-s3-demo-bucket"}]})
}

fn management(source: &str, name: &str, read_only: Option<bool>) -> Value {
    let mut record = json!({"eventVersion": "1.09", "eventCategory": "Management", "managementEvent": true,
                            "eventSource": source, "eventName": name, "awsRegion": "us-east-1"});
    if let Some(read_only) = read_only {
        record["readOnly"] = json!(read_only);
    }
    record
}

#[test]
fn documented_six_operator_example_keeps_objects_1_to_3_only() {
    let trail = config(
        json!({"AdvancedEventSelectors": [{"Name": "six operators", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]},
        {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "resources.ARN",
         "Equals": ["arn:aws:s3:::amzn-s3-demo-bucket/object1"],
         "StartsWith": ["arn:aws:s3:::amzn-s3-demo-bucket/"],
         "EndsWith": ["object3"],
         "NotStartsWith": ["arn:aws:s3:::amzn-s3-demo-bucket/deselect"],
         "NotEndsWith": ["object5"],
         "NotEquals": ["arn:aws:s3:::amzn-s3-demo-bucket/object6"]}]}]}),
    );
    let bucket = "arn:aws:s3:::amzn-s3-demo-bucket/";
    for (object, expected) in [
        ("object1", true),
        ("object2", true),
        ("object3", true),
        ("deselectObject4", false),
        ("object5", false),
        ("object6", false),
    ] {
        let record = s3_object(&format!("{bucket}{object}"), "GetObject", true);
        assert_eq!(kept(&trail, &record), expected, "{object}");
    }
    let elsewhere = s3_object("arn:aws:s3:::other-bucket/object3", "GetObject", true);
    assert!(
        kept(&trail, &elsewhere),
        "EndsWith object3 selects it in any bucket"
    );
}

#[test]
fn first_matching_selector_is_reported() {
    let trail = config(json!({"AdvancedEventSelectors": [
        {"Name": "writes", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["false"]}]},
        {"Name": "all", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}));
    let write = management("ec2.amazonaws.com", "RunInstances", Some(false));
    let read = management("ec2.amazonaws.com", "DescribeInstances", Some(true));
    assert_eq!(verdict(&trail, &write), Verdict::Keep { selector: Some(0) });
    assert_eq!(verdict(&trail, &read), Verdict::Keep { selector: Some(1) });
    assert_eq!(trail.compile().selector_name(1), Some("all"));
}

#[test]
fn s3_basic_values_are_arn_prefixes() {
    let trail = config(
        json!({"EventSelectors": [{"IncludeManagementEvents": false, "DataResources": [
        {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::amzn-s3-demo-bucket/images"]}]}]}),
    );
    assert!(kept(
        &trail,
        &s3_object(
            "arn:aws:s3:::amzn-s3-demo-bucket/images/cat.png",
            "PutObject",
            false
        )
    ));
    assert!(kept(
        &trail,
        &s3_object(
            "arn:aws:s3:::amzn-s3-demo-bucket/images2",
            "PutObject",
            false
        )
    ));
    assert!(!kept(
        &trail,
        &s3_object(
            "arn:aws:s3:::amzn-s3-demo-bucket/docs/a",
            "PutObject",
            false
        )
    ));
    assert!(!kept(
        &trail,
        &management("ec2.amazonaws.com", "RunInstances", Some(false))
    ));
}

#[test]
fn arn_aws_s3_selects_every_bucket() {
    for all in ["arn:aws:s3", "arn:aws:s3:::"] {
        let trail = config(
            json!({"EventSelectors": [{"DataResources": [{"Type": "AWS::S3::Object", "Values": [all]}]}]}),
        );
        assert!(
            kept(
                &trail,
                &s3_object("arn:aws:s3:::any-bucket/k", "GetObject", true)
            ),
            "{all}"
        );
    }
}

#[test]
fn lambda_functions_match_exactly_unless_all() {
    let invoke = |arn: &str| {
        json!({"eventCategory": "Data", "eventSource": "lambda.amazonaws.com", "eventName": "Invoke",
               "readOnly": false, "awsRegion": "us-west-2",
               "resources": [{"type": "AWS::Lambda::Function", "ARN": arn}]})
    };
    let one = config(
        json!({"EventSelectors": [{"DataResources": [{"Type": "AWS::Lambda::Function",
        "Values": ["arn:aws:lambda:us-west-2:111111111111:function:helloworld"]}]}]}),
    );
    assert!(kept(
        &one,
        &invoke("arn:aws:lambda:us-west-2:111111111111:function:helloworld")
    ));
    assert!(!kept(
        &one,
        &invoke("arn:aws:lambda:us-west-2:111111111111:function:helloworld2")
    ));
    let all = config(
        json!({"EventSelectors": [{"DataResources": [{"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}]}]}),
    );
    assert!(kept(
        &all,
        &invoke("arn:aws:lambda:us-west-2:111111111111:function:helloworld2")
    ));
}

#[test]
fn dynamodb_table_selects_its_stream_events_too() {
    let trail = config(
        json!({"EventSelectors": [{"DataResources": [{"Type": "AWS::DynamoDB::Table",
        "Values": ["arn:aws:dynamodb:us-east-1:111111111111:table/Example"]}]}]}),
    );
    let stream_read = json!({"eventCategory": "Data", "eventSource": "dynamodb.amazonaws.com", "eventName": "GetRecords",
        "readOnly": true, "awsRegion": "us-east-1", "resources": [
            {"type": "AWS::DynamoDB::Stream", "ARN": "arn:aws:dynamodb:us-east-1:111111111111:table/Example/stream/2024"},
            {"type": "AWS::DynamoDB::Table", "ARN": "arn:aws:dynamodb:us-east-1:111111111111:table/Example"}]});
    assert!(kept(&trail, &stream_read));
}

#[test]
fn read_write_type_applies_to_data_events() {
    let trail = config(
        json!({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": false,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}),
    );
    assert!(kept(
        &trail,
        &s3_object("arn:aws:s3:::b/k", "PutObject", false)
    ));
    assert!(!kept(
        &trail,
        &s3_object("arn:aws:s3:::b/k", "GetObject", true)
    ));
}

#[test]
fn records_without_read_only_count_as_writes() {
    let unknown = management("signin.amazonaws.com", "ConsoleLogin", None);
    let write_only = config(json!({"EventSelectors": [{"ReadWriteType": "WriteOnly"}]}));
    let read_only = config(json!({"EventSelectors": [{"ReadWriteType": "ReadOnly"}]}));
    assert!(kept(&write_only, &unknown));
    assert!(!kept(&read_only, &unknown));
    let advanced_write = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["false"]}]}]}));
    assert!(kept(&advanced_write, &unknown));
}

#[test]
fn kms_and_rds_data_exclusions_drop_only_those_sources() {
    let basic = config(
        json!({"EventSelectors": [{"ExcludeManagementEventSources": ["kms.amazonaws.com"]}]}),
    );
    let advanced = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Management"]},
        {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}]}]}));
    for trail in [&basic, &advanced] {
        assert!(!kept(
            trail,
            &management("kms.amazonaws.com", "Decrypt", Some(true))
        ));
        assert!(kept(
            trail,
            &management("rdsdata.amazonaws.com", "ExecuteStatement", Some(false))
        ));
        assert!(kept(
            trail,
            &management("ec2.amazonaws.com", "RunInstances", Some(false))
        ));
    }
}

#[test]
fn include_management_events_false_keeps_no_management_event() {
    let trail = config(json!({"EventSelectors": [{"IncludeManagementEvents": false}]}));
    assert_eq!(
        verdict(
            &trail,
            &management("ec2.amazonaws.com", "RunInstances", Some(false))
        ),
        Verdict::Drop(DropReason::NotSelected)
    );
}

#[test]
fn missing_field_fails_positive_operators_and_passes_negative_ones() {
    let with_not = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "userIdentity.arn", "NotStartsWith": ["arn:aws:sts::123456789012:assumed-role/AWSServiceRole"]}]}]}));
    let with_equals = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "userIdentity.arn", "StartsWith": ["arn:aws:iam::"]}]}]}));
    let no_identity = s3_object("arn:aws:s3:::b/k", "GetObject", true);
    assert!(kept(&with_not, &no_identity));
    assert!(!kept(&with_equals, &no_identity));
    let mut service = no_identity.clone();
    service["userIdentity"] =
        json!({"arn": "arn:aws:sts::123456789012:assumed-role/AWSServiceRoleForX/s"});
    assert!(!kept(&with_not, &service));
}

#[test]
fn arn_is_tested_on_resources_of_the_selected_type_only() {
    let trail = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::amzn-s3-demo-bucket"]}]}]}));
    // The bucket resource matches the prefix, the object does not: the object decides.
    let record = json!({"eventCategory": "Data", "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
        "readOnly": true, "awsRegion": "us-east-1", "resources": [
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::other/k"},
            {"type": "AWS::S3::Bucket", "ARN": "arn:aws:s3:::amzn-s3-demo-bucket"}]});
    assert!(!kept(&trail, &record));
}

#[test]
fn one_passing_resource_is_enough_when_several_have_the_type() {
    let trail = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "resources.ARN", "NotStartsWith": ["arn:aws:s3:::noisy/"]}]}]}));
    let copy = json!({"eventCategory": "Data", "eventSource": "s3.amazonaws.com", "eventName": "CopyObject",
        "readOnly": false, "awsRegion": "us-east-1", "resources": [
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::noisy/k"},
            {"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::important/k"}]});
    assert!(kept(&trail, &copy));
    let only_noisy = s3_object("arn:aws:s3:::noisy/k", "PutObject", false);
    assert!(!kept(&trail, &only_noisy));
}

#[test]
fn network_activity_needs_its_own_selector() {
    let denied = json!({"eventVersion": "1.09", "eventCategory": "NetworkActivity", "eventType": "AwsVpceEvent",
        "eventSource": "cloudtrail.amazonaws.com", "eventName": "ListTrails", "awsRegion": "us-east-1",
        "errorCode": "VpceAccessDenied", "vpcEndpointId": "vpce-0123"});
    assert!(!kept(&TrailConfig::default(), &denied));
    let trail = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["NetworkActivity"]},
        {"Field": "eventSource", "Equals": ["cloudtrail.amazonaws.com"]},
        {"Field": "errorCode", "Equals": ["VpceAccessDenied"]},
        {"Field": "vpcEndpointId", "StartsWith": ["vpce-"]}]}]}));
    assert!(kept(&trail, &denied));
    let mut allowed = denied.clone();
    allowed.as_object_mut().map(|o| o.remove("errorCode"));
    assert!(!kept(&trail, &allowed));
}

#[test]
fn insights_records_are_never_selected() {
    let insight = json!({"eventVersion": "1.07", "eventType": "AwsCloudTrailInsight", "eventCategory": "Insight",
        "awsRegion": "us-east-1", "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances"});
    let everything = config(
        json!({"EventSelectors": [{"DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}),
    );
    assert_eq!(
        verdict(&everything, &insight),
        Verdict::Drop(DropReason::InsightRecord)
    );
}

#[test]
fn single_region_trail_keeps_its_region_only() {
    let trail = config(
        json!({"HomeRegion": "us-west-2", "IsMultiRegionTrail": false, "IncludeGlobalServiceEvents": true}),
    );
    let mut here = management("ec2.amazonaws.com", "RunInstances", Some(false));
    here["awsRegion"] = json!("us-west-2");
    assert!(kept(&trail, &here));
    let there = management("ec2.amazonaws.com", "RunInstances", Some(false));
    assert_eq!(
        verdict(&trail, &there),
        Verdict::Drop(DropReason::OutsideTrailRegion)
    );
    let iam = management("iam.amazonaws.com", "CreateUser", Some(false));
    assert_eq!(
        verdict(&trail, &iam),
        Verdict::Drop(DropReason::OutsideTrailRegion)
    );
}

#[test]
fn single_region_us_east_1_trail_keeps_global_events_when_included() {
    let trail = config(json!({"HomeRegion": "us-east-1", "IsMultiRegionTrail": false}));
    assert!(kept(
        &trail,
        &management("iam.amazonaws.com", "CreateUser", Some(false))
    ));
    assert!(kept(
        &trail,
        &management(
            "cloudfront.amazonaws.com",
            "CreateDistribution",
            Some(false)
        )
    ));
}

#[test]
fn multi_region_trail_keeps_every_region() {
    let trail = config(
        json!({"TrailARN": "arn:aws:cloudtrail:eu-west-1:123456789012:trail/t", "IsMultiRegionTrail": true}),
    );
    let mut far = management("ec2.amazonaws.com", "RunInstances", Some(false));
    far["awsRegion"] = json!("ap-southeast-2");
    assert!(kept(&trail, &far));
}

#[test]
fn data_events_and_unknown_categories_are_not_kept_by_the_default_trail() {
    let lake_only = json!({"eventCategory": "ConfigurationItem", "awsRegion": "us-east-1"});
    assert_eq!(
        verdict(&TrailConfig::default(), &lake_only),
        Verdict::Drop(DropReason::NotSelected)
    );
    let data = s3_object("arn:aws:s3:::b/k", "GetObject", true);
    assert_eq!(
        verdict(&TrailConfig::default(), &data),
        Verdict::Drop(DropReason::NotSelected)
    );
}

#[test]
fn old_records_without_event_category_are_classified_before_selection() {
    // eventVersion 1.05: no eventCategory, managementEvent=false marks a data event.
    let old_data = json!({"eventVersion": "1.05", "managementEvent": false, "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject", "readOnly": true, "awsRegion": "us-east-1",
        "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::b/k"}]});
    let trail = config(json!({"AdvancedEventSelectors": [{"FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]}]}));
    assert!(kept(&trail, &old_data));
    assert!(!kept(&TrailConfig::default(), &old_data));
}
