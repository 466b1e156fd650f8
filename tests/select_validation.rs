//! Validation as PutEventSelectors does it: each invalid configuration is refused with a
//! message naming the selector, the field and the value; the examples of the AWS documentation
//! are accepted.

use serde_json::{json, Value};
use trailwatch::select::{ConfigError, ConfigProblem, TrailConfig};

/// One advanced selector named "s" with these field selectors.
fn adv(field_selectors: Value) -> Value {
    json!({"AdvancedEventSelectors": [{"Name": "s", "FieldSelectors": field_selectors}]})
}

fn basic(selectors: Value) -> Value {
    json!({ "EventSelectors": selectors })
}

fn problems(config: &Value) -> Vec<ConfigProblem> {
    match TrailConfig::from_value(config) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(problems)) => problems,
        Err(other) => panic!("expected validation problems, got {other}"),
    }
}

fn s3_values(bucket_prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("arn:aws:s3:::{bucket_prefix}{i}/"))
        .collect()
}

/// Long by design: a table with one row per PutEventSelectors rule.
/// (case, configuration, one of the problems it must produce, exactly as displayed)
fn invalid_cases() -> Vec<(&'static str, Value, String)> {
    let s = "AdvancedEventSelectors[0] (s)";
    let long_value = "a".repeat(2049);
    let many_values: Vec<String> = (0..501).map(|i| format!("Api{i}")).collect();
    vec![
        (
            "more than five basic selectors",
            basic(json!([{}, {}, {}, {}, {}, {}])),
            "EventSelectors: a trail can have at most 5 event selectors; found 6.".into(),
        ),
        (
            "an empty basic selector list",
            basic(json!([])),
            "EventSelectors: a trail with EventSelectors needs 1 to 5 of them; found 0.".into(),
        ),
        (
            "ReadWriteType spelled as in the console",
            basic(json!([{"ReadWriteType": "read-only"}])),
            "EventSelectors[0].ReadWriteType: Value read-only for ReadWriteType is invalid (expected ReadOnly, WriteOnly or All).".into(),
        ),
        (
            "S3 wildcard",
            basic(json!([{"DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::*"]}]}])),
            "EventSelectors[0].DataResources[0].Values: Value arn:aws:s3:::* for DataResources.Values is invalid.".into(),
        ),
        (
            "Lambda wildcard",
            basic(json!([{"DataResources": [{"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda:*"]}]}])),
            "EventSelectors[0].DataResources[0].Values: Value arn:aws:lambda:* for DataResources.Values is invalid.".into(),
        ),
        (
            "unknown DataResources.Type",
            basic(json!([{"DataResources": [{"Type": "AWS::S3::Bucket", "Values": ["arn:aws:s3:::b/"]}]}])),
            "EventSelectors[0].DataResources[0].Type: Value AWS::S3::Bucket for DataResources.Type is invalid.".into(),
        ),
        (
            "advanced-only type in a basic selector",
            basic(json!([{"DataResources": [{"Type": "AWS::SNS::Topic", "Values": ["arn:aws:sns:us-east-1:123456789012:t"]}]}])),
            "EventSelectors[0].DataResources[0].Type: Value AWS::SNS::Topic for DataResources.Type is invalid: basic event selectors accept only AWS::S3::Object, AWS::Lambda::Function and AWS::DynamoDB::Table; use advanced event selectors for it.".into(),
        ),
        (
            "excluding a source that cannot be excluded",
            basic(json!([{"ExcludeManagementEventSources": ["ec2.amazonaws.com"]}])),
            "EventSelectors[0].ExcludeManagementEventSources: Value ec2.amazonaws.com for ExcludeManagementEventSources is invalid (only kms.amazonaws.com and rdsdata.amazonaws.com can be excluded).".into(),
        ),
        (
            "more than 250 data resources across selectors",
            basic(json!([
                {"DataResources": [{"Type": "AWS::S3::Object", "Values": s3_values("a", 51)}]},
                {"DataResources": [{"Type": "AWS::S3::Object", "Values": s3_values("b", 51)}]},
                {"DataResources": [{"Type": "AWS::S3::Object", "Values": s3_values("c", 51)}]},
                {"DataResources": [{"Type": "AWS::S3::Object", "Values": s3_values("d", 51)}]},
                {"DataResources": [{"Type": "AWS::S3::Object", "Values": s3_values("e", 51)}]}
            ])),
            "EventSelectors: a trail can have at most 250 data resources across all event selectors; found 255.".into(),
        ),
        (
            "S3 bucket without the trailing slash",
            basic(json!([{"DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::bucket"]}]}])),
            "EventSelectors[0].DataResources[0].Values: Value arn:aws:s3:::bucket for DataResources.Values is invalid.".into(),
        ),
        (
            "Lambda ARN with a short account id",
            basic(json!([{"DataResources": [{"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda:us-east-1:123:function:f"]}]}])),
            "EventSelectors[0].DataResources[0].Values: Value arn:aws:lambda:us-east-1:123:function:f for DataResources.Values is invalid.".into(),
        ),
        (
            "S3 value under the DynamoDB type",
            basic(json!([{"DataResources": [{"Type": "AWS::DynamoDB::Table", "Values": ["arn:aws:s3:::b/"]}]}])),
            "EventSelectors[0].DataResources[0].Values: Value arn:aws:s3:::b/ for DataResources.Values is invalid.".into(),
        ),
        (
            "DataResources without values",
            basic(json!([{"DataResources": [{"Type": "AWS::S3::Object", "Values": []}]}])),
            "EventSelectors[0].DataResources[0].Values: DataResources.Values for AWS::S3::Object must list at least one value.".into(),
        ),
        (
            "IncludeManagementEvents as a string",
            basic(json!([{"IncludeManagementEvents": "yes"}])),
            "EventSelectors[0].IncludeManagementEvents: must be true or false, found a string".into(),
        ),
        (
            "misspelled basic selector key",
            basic(json!([{"ReadWrite": "All"}])),
            "EventSelectors[0]: unknown key ReadWrite (expected one of ReadWriteType, IncludeManagementEvents, DataResources, ExcludeManagementEventSources)".into(),
        ),
        (
            "basic and advanced selectors together",
            json!({"EventSelectors": [{}], "AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}),
            "EventSelectors: EventSelectors and AdvancedEventSelectors cannot be used together; a trail has one kind or the other.".into(),
        ),
        (
            "advanced selector without eventCategory",
            adv(json!([{"Field": "readOnly", "Equals": ["true"]}])),
            format!("{s}: eventCategory is required: every advanced event selector needs a field selector eventCategory Equals Management, Data or NetworkActivity."),
        ),
        (
            "eventCategory with NotEquals",
            adv(json!([{"Field": "eventCategory", "NotEquals": ["Data"]}])),
            format!("{s}.FieldSelectors[0]: Operator NotEquals is not supported for field eventCategory; use Equals."),
        ),
        (
            "Lake-only category on a trail",
            adv(json!([{"Field": "eventCategory", "Equals": ["Insight"]}])),
            format!("{s}.FieldSelectors[0]: Value Insight for eventCategory is only supported by CloudTrail Lake event data stores, not by trails."),
        ),
        (
            "unknown category",
            adv(json!([{"Field": "eventCategory", "Equals": ["Mgmt"]}])),
            format!("{s}.FieldSelectors[0]: Value Mgmt for eventCategory is invalid (expected Management, Data or NetworkActivity)."),
        ),
        (
            "two categories in one selector",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management", "Data"]}])),
            format!("{s}.FieldSelectors[0]: eventCategory Equals takes exactly one value; found 2."),
        ),
        (
            "two eventCategory field selectors",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "eventCategory", "Equals": ["Management"]}])),
            format!("{s}.FieldSelectors[0]: only one eventCategory field selector is allowed per advanced event selector."),
        ),
        (
            "the Sentinel column name eventTypeName",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventTypeName", "Equals": ["x"]}])),
            format!("{s}.FieldSelectors[2]: Field eventTypeName is not a valid field for advanced event selectors of trails."),
        ),
        (
            "Field with characters outside the pattern",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "event Name!", "Equals": ["x"]}])),
            format!("{s}.FieldSelectors[1]: Value event Name! for Field is invalid: fields are 1 to 1000 letters, digits, '.' and '_'."),
        ),
        (
            "eventName on management events (Lake only)",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "eventName", "Equals": ["RunInstances"]}])),
            format!("{s}.FieldSelectors[1]: Field eventName is not supported for eventCategory Management on trails (allowed: eventCategory, readOnly, eventSource)."),
        ),
        (
            "userIdentity.arn on management events (Lake only)",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "userIdentity.arn", "StartsWith": ["arn:aws:iam::"]}])),
            format!("{s}.FieldSelectors[1]: Field userIdentity.arn is not supported for eventCategory Management on trails (allowed: eventCategory, readOnly, eventSource)."),
        ),
        (
            "errorCode on data events",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "errorCode", "Equals": ["VpceAccessDenied"]}])),
            format!("{s}.FieldSelectors[2]: Field errorCode is not supported for eventCategory Data on trails (allowed: eventCategory, resources.type, resources.ARN, readOnly, eventName, eventSource, eventType, sessionCredentialFromConsole, userIdentity.arn)."),
        ),
        (
            "data selector without resources.type",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "eventName", "Equals": ["PutObject"]}])),
            format!("{s}: resources.type is required when eventCategory is Data."),
        ),
        (
            "two resources.type field selectors",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "resources.type", "Equals": ["AWS::Lambda::Function"]}])),
            format!("{s}.FieldSelectors[2]: only one resources.type field selector is allowed per advanced event selector."),
        ),
        (
            "resources.type with StartsWith",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "StartsWith": ["AWS::S3::"]}])),
            format!("{s}.FieldSelectors[1]: Operator StartsWith is not supported for field resources.type; use Equals."),
        ),
        (
            "unknown resources.type",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Bucket"]}])),
            format!("{s}.FieldSelectors[1].Equals: Value AWS::S3::Bucket for resources.type is invalid."),
        ),
        (
            "two resource types in one selector",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object", "AWS::Lambda::Function"]}])),
            format!("{s}.FieldSelectors[1]: resources.type Equals takes exactly one value (one resource type per selector); found 2."),
        ),
        (
            "readOnly with NotEquals",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "NotEquals": ["true"]}])),
            format!("{s}.FieldSelectors[1]: Operator NotEquals is not supported for field readOnly; use Equals."),
        ),
        (
            "readOnly with a non-boolean value",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["yes"]}])),
            format!("{s}.FieldSelectors[1].Equals: Value yes for readOnly is invalid (allowed: true, false)."),
        ),
        (
            "sessionCredentialFromConsole false",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "sessionCredentialFromConsole", "Equals": ["false"]}])),
            format!("{s}.FieldSelectors[2].Equals: Value false for sessionCredentialFromConsole is invalid (allowed: true)."),
        ),
        (
            "sessionCredentialFromConsole with StartsWith",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "sessionCredentialFromConsole", "StartsWith": ["t"]}])),
            format!("{s}.FieldSelectors[2]: Operator StartsWith is not supported for field sessionCredentialFromConsole; use Equals or NotEquals."),
        ),
        (
            "errorCode other than VpceAccessDenied",
            adv(json!([{"Field": "eventCategory", "Equals": ["NetworkActivity"]}, {"Field": "eventSource", "Equals": ["s3.amazonaws.com"]}, {"Field": "errorCode", "Equals": ["AccessDenied"]}])),
            format!("{s}.FieldSelectors[2].Equals: Value AccessDenied for errorCode is invalid (allowed: VpceAccessDenied)."),
        ),
        (
            "errorCode with NotEquals",
            adv(json!([{"Field": "eventCategory", "Equals": ["NetworkActivity"]}, {"Field": "eventSource", "Equals": ["s3.amazonaws.com"]}, {"Field": "errorCode", "NotEquals": ["VpceAccessDenied"]}])),
            format!("{s}.FieldSelectors[2]: Operator NotEquals is not supported for field errorCode; use Equals."),
        ),
        (
            "network activity without eventSource",
            adv(json!([{"Field": "eventCategory", "Equals": ["NetworkActivity"]}, {"Field": "errorCode", "Equals": ["VpceAccessDenied"]}])),
            format!("{s}: eventSource is required when eventCategory is NetworkActivity."),
        ),
        (
            "network activity eventSource with NotEquals",
            adv(json!([{"Field": "eventCategory", "Equals": ["NetworkActivity"]}, {"Field": "eventSource", "NotEquals": ["s3.amazonaws.com"]}])),
            format!("{s}.FieldSelectors[1]: Operator NotEquals is not supported for field eventSource; use Equals."),
        ),
        (
            "network activity with two event sources",
            adv(json!([{"Field": "eventCategory", "Equals": ["NetworkActivity"]}, {"Field": "eventSource", "Equals": ["s3.amazonaws.com", "kms.amazonaws.com"]}])),
            format!("{s}.FieldSelectors[1]: eventSource for eventCategory NetworkActivity takes exactly one value (one event source per selector)."),
        ),
        (
            "management eventSource with Equals",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "eventSource", "Equals": ["kms.amazonaws.com"]}])),
            format!("{s}.FieldSelectors[1]: Operator Equals is not supported for field eventSource; use NotEquals."),
        ),
        (
            "management eventSource NotEquals another service",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "eventSource", "NotEquals": ["ec2.amazonaws.com"]}])),
            format!("{s}.FieldSelectors[1].NotEquals: Value ec2.amazonaws.com for eventSource is invalid (allowed: kms.amazonaws.com, rdsdata.amazonaws.com)."),
        ),
        (
            "empty value",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventName", "Equals": [""]}])),
            format!("{s}.FieldSelectors[2].Equals: a value of 0 characters for eventName is invalid: values are 1 to 2048 characters."),
        ),
        (
            "value longer than 2048 characters",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventName", "StartsWith": [long_value]}])),
            format!("{s}.FieldSelectors[2].StartsWith: a value of 2049 characters for eventName is invalid: values are 1 to 2048 characters."),
        ),
        (
            "more than 500 values",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventName", "Equals": many_values}])),
            "AdvancedEventSelectors: a trail's advanced event selectors can have at most 500 values in total; found 503.".into(),
        ),
        (
            "bucket ARN where an object ARN is needed",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "resources.ARN", "Equals": ["arn:aws:s3:::bucket"]}])),
            format!("{s}.FieldSelectors[2].Equals: Value arn:aws:s3:::bucket for resources.ARN is invalid: Equals needs a full ARN of resource type AWS::S3::Object (arn:<partition>:s3:::<bucket_name>/ or arn:<partition>:s3:::<bucket_name>/<object_path>/)."),
        ),
        (
            "Lambda ARN for a DynamoDB table",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::DynamoDB::Table"]}, {"Field": "resources.ARN", "NotEquals": ["arn:aws:lambda:us-east-1:123456789012:function:f"]}])),
            format!("{s}.FieldSelectors[2].NotEquals: Value arn:aws:lambda:us-east-1:123456789012:function:f for resources.ARN is invalid: NotEquals needs a full ARN of resource type AWS::DynamoDB::Table (arn:<partition>:dynamodb:<region>:<account_ID>:table/<table_name>)."),
        ),
        (
            "not an ARN for a type the template file does not list",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::XRay::Trace"]}, {"Field": "resources.ARN", "Equals": ["trace-1"]}])),
            format!("{s}.FieldSelectors[2].Equals: Value trace-1 for resources.ARN is invalid: Equals needs a full ARN of resource type AWS::XRay::Trace (arn:<partition>:<service>:<region>:<account_ID>:<resource>)."),
        ),
        (
            "empty operator list",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventName", "Equals": []}])),
            format!("{s}.FieldSelectors[2].Equals: Invalid length for parameter Equals, value: 0, valid min length: 1."),
        ),
        (
            "field selector without any operator",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventName"}])),
            format!("{s}.FieldSelectors[2]: field selector for eventName has no operator; give at least one of Equals, StartsWith, EndsWith, NotEquals, NotStartsWith, NotEndsWith."),
        ),
        (
            "selector without field selectors",
            adv(json!([])),
            format!("{s}.FieldSelectors: FieldSelectors must contain at least 1 field selector."),
        ),
        (
            "wildcard in eventName",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "eventName", "Equals": ["Get*"]}])),
            format!("{s}.FieldSelectors[2].Equals: Value Get* for eventName is invalid: wildcards (*) are not supported; use StartsWith or EndsWith."),
        ),
        (
            "trailing wildcard in an ARN prefix",
            adv(json!([{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}, {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::bucket/*"]}])),
            format!("{s}.FieldSelectors[2].StartsWith: Value arn:aws:s3:::bucket/* for resources.ARN is invalid: wildcards (*) are not supported; use StartsWith or EndsWith."),
        ),
        (
            "misspelled operator",
            adv(json!([{"Field": "eventCategory", "Equal": ["Data"]}])),
            "AdvancedEventSelectors[0].FieldSelectors[0]: unknown key Equal (expected one of Field, Equals, StartsWith, EndsWith, NotEquals, NotStartsWith, NotEndsWith)".into(),
        ),
        (
            "field selector without Field",
            adv(json!([{"Field": "eventCategory", "Equals": ["Management"]}, {"Equals": ["x"]}])),
            "AdvancedEventSelectors[0].FieldSelectors[1].Field: Field is required".into(),
        ),
        (
            "selector name over 1000 characters",
            json!({"AdvancedEventSelectors": [{"Name": "n".repeat(1001), "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}),
            format!("AdvancedEventSelectors[0] ({}): Name is longer than 1000 characters.", "n".repeat(1001)),
        ),
        (
            "operator values not a list",
            adv(json!([{"Field": "eventCategory", "Equals": "Management"}])),
            "AdvancedEventSelectors[0].FieldSelectors[0].Equals: must be a list of strings, found a string".into(),
        ),
        (
            "multi-Region trail without global service events",
            json!({"IsMultiRegionTrail": true, "IncludeGlobalServiceEvents": false}),
            "IncludeGlobalServiceEvents: InvalidParameterCombinationException: Multi-Region trail must include global service events.".into(),
        ),
        (
            "single-Region trail without a Region",
            json!({"IsMultiRegionTrail": false}),
            "HomeRegion: a single-Region trail needs HomeRegion or TrailARN to know which Region it logs.".into(),
        ),
        (
            "TrailARN that is not a trail ARN",
            json!({"TrailARN": "arn:aws:s3:::bucket"}),
            "TrailARN: CloudTrailARNInvalidException: arn:aws:s3:::bucket is not a trail ARN (arn:<partition>:cloudtrail:<region>:<account>:trail/<name>).".into(),
        ),
        (
            "HomeRegion disagreeing with TrailARN",
            json!({"TrailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/t", "HomeRegion": "eu-west-1"}),
            "HomeRegion: HomeRegion eu-west-1 does not match the Region us-east-1 of TrailARN.".into(),
        ),
        (
            "unknown top-level key",
            json!({"EventSelector": [{}]}),
            "EventSelector: unknown configuration key EventSelector".into(),
        ),
        (
            "unknown InsightType",
            json!({"InsightSelectors": [{"InsightType": "ApiLatencyInsight"}]}),
            "InsightSelectors[0].InsightType: InvalidInsightSelectorsException: Value ApiLatencyInsight for InsightType is invalid (expected ApiCallRateInsight or ApiErrorRateInsight).".into(),
        ),
        (
            "unknown Insights event category",
            json!({"InsightSelectors": [{"InsightType": "ApiCallRateInsight", "EventCategories": ["NetworkActivity"]}]}),
            "InsightSelectors[0].EventCategories: InvalidInsightSelectorsException: Value NetworkActivity for EventCategories is invalid (expected Management or Data).".into(),
        ),
        (
            "the same InsightType twice",
            json!({"InsightSelectors": [{"InsightType": "ApiCallRateInsight"}, {"InsightType": "ApiCallRateInsight"}]}),
            "InsightSelectors[1]: InvalidInsightSelectorsException: InsightType ApiCallRateInsight is listed twice.".into(),
        ),
        (
            "IsMultiRegionTrail as a string",
            json!({"IsMultiRegionTrail": "true"}),
            "IsMultiRegionTrail: must be true or false, found a string".into(),
        ),
    ]
}

#[test]
fn every_invalid_configuration_is_refused_with_its_message() {
    let cases = invalid_cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (name, config, expected) in &cases {
        let found = problems(config);
        if !found.iter().any(|p| p.to_string() == *expected) {
            let got: Vec<String> = found.iter().map(ToString::to_string).collect();
            failures.push(format!(
                "{name}:\n  expected: {expected}\n  got:      {got:#?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_error_text_carries_every_problem() {
    let config = json!({"EventSelectors": [
        {"ReadWriteType": "Both"},
        {"DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::*"]}]}
    ]});
    let err = TrailConfig::from_value(&config).expect_err("two problems");
    let text = err.to_string();
    assert!(
        text.starts_with("InvalidEventSelectorsException: 2 problem(s): "),
        "{text}"
    );
    assert!(
        text.contains("Value Both for ReadWriteType is invalid"),
        "{text}"
    );
    assert!(
        text.contains("Value arn:aws:s3:::* for DataResources.Values is invalid."),
        "{text}"
    );
}

#[test]
fn malformed_json_is_a_json_error() {
    assert!(matches!(
        TrailConfig::from_json("{\"EventSelectors\": ["),
        Err(ConfigError::Json(_))
    ));
}

/// Configurations from the CloudTrail User Guide and the PutEventSelectors / CLI examples.
#[test]
fn documented_examples_are_accepted() {
    let examples = [
        // get-event-selectors output of a default trail
        json!({"TrailARN": "arn:aws:cloudtrail:us-east-2:123456789012:trail/TrailName",
               "EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true,
                                   "DataResources": [], "ExcludeManagementEventSources": []}]}),
        // one bucket, all management events
        json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true,
               "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::amzn-s3-demo-bucket/"]}]}]}),
        // all S3 and all Lambda, write-only, KMS and RDS Data excluded
        json!({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": true,
               "ExcludeManagementEventSources": ["kms.amazonaws.com", "rdsdata.amazonaws.com"],
               "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]},
                                 {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}]}]}),
        // a prefix, a function and a table
        json!({"EventSelectors": [{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": false,
               "DataResources": [
                   {"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::amzn-s3-demo-bucket/images", "arn:aws:s3:::"]},
                   {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda:us-west-2:111111111111:function:helloworld"]},
                   {"Type": "AWS::DynamoDB::Table", "Values": ["arn:aws:dynamodb:us-east-1:111111111111:table/Example", "arn:aws:dynamodb"]}]}]}),
        // management events plus PutObject/DeleteObject for two prefixes
        json!({"AdvancedEventSelectors": [
            {"Name": "Log all management events", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
            {"Name": "Log PutObject and DeleteObject events for two S3 prefixes", "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "eventName", "Equals": ["PutObject", "DeleteObject"]},
                {"Field": "resources.ARN", "StartsWith": ["arn:aws:s3:::amzn-s3-demo-bucket1/prefix", "arn:aws:s3:::amzn-s3-demo-bucket2/prefix2"]}]}]}),
        // write-only management events without KMS
        json!({"AdvancedEventSelectors": [{"Name": "Management write events, no KMS", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]},
            {"Field": "readOnly", "Equals": ["false"]},
            {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}]}]}),
        // network activity: VPC endpoint policy denials for CloudTrail
        json!({"AdvancedEventSelectors": [{"Name": "Audit AccessDenied for CloudTrail over VPC endpoints", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["NetworkActivity"]},
            {"Field": "eventSource", "Equals": ["cloudtrail.amazonaws.com"]},
            {"Field": "errorCode", "Equals": ["VpceAccessDenied"]}]}]}),
        // all DynamoDB data events, and one Lambda function by ARN
        json!({"AdvancedEventSelectors": [
            {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::DynamoDB::Table"]}]},
            {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::Lambda::Function"]},
                                {"Field": "resources.ARN", "Equals": ["arn:aws:lambda:us-east-1:111122223333:function:MyFunction"]}]}]}),
        // S3 data events without AWS service-linked roles, console sessions only
        json!({"AdvancedEventSelectors": [{"Name": "S3 by people", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "userIdentity.arn", "NotStartsWith": ["arn:aws:sts::123456789012:assumed-role/AWSServiceRole"]},
            {"Field": "sessionCredentialFromConsole", "Equals": ["true"]}]}]}),
        // the six-operator example of "How CloudTrail evaluates multiple conditions for a field"
        worked_example_config(),
        // SNS topics, a type only advanced selectors can log
        json!({"AdvancedEventSelectors": [{"FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::SNS::Topic"]},
            {"Field": "resources.ARN", "NotEquals": ["arn:aws:sns:us-east-1:123456789012:noisy-topic"]}]}]}),
        // Insights selectors next to the default trail
        json!({"TrailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/t", "InsightSelectors": [
            {"InsightType": "ApiCallRateInsight"}, {"InsightType": "ApiErrorRateInsight", "EventCategories": ["Management", "Data"]}]}),
        // describe-trails properties riding along
        json!({"Name": "t", "S3BucketName": "logs", "HomeRegion": "us-east-1", "IsMultiRegionTrail": false,
               "IncludeGlobalServiceEvents": true, "IsOrganizationTrail": true, "HasCustomEventSelectors": false}),
    ];
    for (i, example) in examples.iter().enumerate() {
        if let Err(err) = TrailConfig::from_value(example) {
            panic!("example {i} refused: {err}\n{example:#}");
        }
    }
}

fn worked_example_config() -> Value {
    json!({"AdvancedEventSelectors": [{"Name": "six operators", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]},
        {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
        {"Field": "resources.ARN",
         "Equals": ["arn:aws:s3:::amzn-s3-demo-bucket/object1"],
         "StartsWith": ["arn:aws:s3:::amzn-s3-demo-bucket/"],
         "EndsWith": ["object3"],
         "NotStartsWith": ["arn:aws:s3:::amzn-s3-demo-bucket/deselect"],
         "NotEndsWith": ["object5"],
         "NotEquals": ["arn:aws:s3:::amzn-s3-demo-bucket/object6"]}]}]})
}

#[test]
fn insight_selectors_are_exposed_with_their_categories() {
    let config = TrailConfig::from_value(&json!({"InsightSelectors": [
        {"InsightType": "ApiCallRateInsight"},
        {"InsightType": "ApiErrorRateInsight", "EventCategories": ["Data"]}]}))
    .expect("valid");
    use trailwatch::select::{InsightEventCategory, InsightType};
    let insights = config.insight_selectors();
    assert_eq!(insights.len(), 2);
    assert_eq!(insights[0].insight_type, InsightType::ApiCallRateInsight);
    assert_eq!(
        insights[0].categories(),
        &[InsightEventCategory::Management]
    );
    assert_eq!(insights[1].categories(), &[InsightEventCategory::Data]);
    assert!(TrailConfig::default().insight_selectors().is_empty());
}

#[test]
fn all_of_a_type_values_do_not_count_toward_250() {
    let mut values = s3_values("a", 250);
    values.push("arn:aws:s3".to_string());
    let config = basic(json!([{"DataResources": [
        {"Type": "AWS::S3::Object", "Values": values},
        {"Type": "AWS::Lambda::Function", "Values": ["arn:aws:lambda"]}]}]));
    assert!(problems(&config).is_empty(), "{:#?}", problems(&config));
}
