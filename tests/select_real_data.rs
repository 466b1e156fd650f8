//! Every real record of `../shared/data` under realistic trail configurations. The expected
//! decision of each record is computed here by plain code over the JSON (an oracle written
//! from the fact sheet, not from the matcher), and compared record by record with the compiled
//! matcher and with the interpreter.

#[path = "support/select_data.rs"]
mod support;

use serde_json::{json, Value};
use support::{real_records, RealRecord};
use trailwatch::record::Record;
use trailwatch::select::{interpret, TrailConfig, Verdict};

fn text<'v>(record: &'v Value, key: &str) -> Option<&'v str> {
    record.get(key)?.as_str()
}

/// `true`/`false` as booleans or as the strings some exports write.
fn flag(record: &Value, key: &str) -> Option<bool> {
    match record.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn resources(record: &Value) -> Vec<(&str, &str)> {
    record
        .get("resources")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| Some((r.get("type")?.as_str()?, r.get("ARN")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Resource types, whether or not the entry has an `ARN` (hand-written records spell it `arn`).
fn resource_types(record: &Value) -> Vec<&str> {
    record
        .get("resources")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| r.get("type")?.as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The category as CloudTrail's documentation defines it (section 1 of the fact sheet).
fn category(record: &Value) -> &str {
    if let Some(c) = text(record, "eventCategory") {
        return c;
    }
    match text(record, "eventType") {
        Some("AwsCloudTrailInsight") => return "Insight",
        Some("AwsVpceEvent") => return "NetworkActivity",
        _ => {}
    }
    if record.get("insightDetails").is_some() {
        return "Insight";
    }
    match flag(record, "managementEvent") {
        Some(true) => "Management",
        Some(false) => "Data",
        None => {
            let name = text(record, "eventName").unwrap_or("");
            let item_api = [
                "GetItem",
                "PutItem",
                "UpdateItem",
                "DeleteItem",
                "Query",
                "Scan",
                "BatchGetItem",
                "BatchWriteItem",
                "TransactGetItems",
                "TransactWriteItems",
            ]
            .contains(&name);
            let data = resource_types(record).iter().any(|t| {
                *t == "AWS::S3::Object"
                    || (*t == "AWS::Lambda::Function" && name == "Invoke")
                    || (*t == "AWS::DynamoDB::Table" && item_api)
            });
            if data {
                "Data"
            } else {
                "Management"
            }
        }
    }
}

fn management(r: &Value) -> bool {
    category(r) == "Management"
}

/// Unknown readOnly counts as a write (documented choice in `select::fields`).
fn read(r: &Value) -> bool {
    flag(r, "readOnly") == Some(true)
}

fn source(r: &Value) -> &str {
    text(r, "eventSource").unwrap_or("")
}

fn region_is(r: &Value, home: &str) -> bool {
    text(r, "awsRegion").is_none_or(|region| region == home)
}

/// IAM and CloudFront, and STS called at its global endpoint (fact sheet 10).
fn global_service_event(r: &Value) -> bool {
    let host = r
        .get("tlsDetails")
        .and_then(|t| text(t, "clientProvidedHostHeader"))
        .map(str::to_ascii_lowercase);
    ["iam.amazonaws.com", "cloudfront.amazonaws.com"].contains(&source(r))
        || (source(r) == "sts.amazonaws.com" && host.as_deref() == Some("sts.amazonaws.com"))
}

struct Case {
    name: &'static str,
    config: Value,
    expect: fn(&Value) -> bool,
}

/// Long by design: a table with one case per configuration tried on the real records.
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "default trail",
            config: json!({}),
            expect: management,
        },
        Case {
            name: "basic ReadOnly management",
            config: json!({"EventSelectors": [{"ReadWriteType": "ReadOnly"}]}),
            expect: |r| management(r) && read(r),
        },
        Case {
            name: "basic WriteOnly management",
            config: json!({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": true}]}),
            expect: |r| management(r) && !read(r),
        },
        Case {
            name: "basic, KMS and RDS Data excluded",
            config: json!({"EventSelectors": [{"ExcludeManagementEventSources": ["kms.amazonaws.com", "rdsdata.amazonaws.com"]}]}),
            expect: |r| {
                management(r)
                    && !["kms.amazonaws.com", "rdsdata.amazonaws.com"].contains(&source(r))
            },
        },
        Case {
            name: "advanced write-only management without KMS",
            config: json!({"AdvancedEventSelectors": [{"Name": "writes", "FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Management"]},
                {"Field": "readOnly", "Equals": ["false"]},
                {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}]}]}),
            expect: |r| management(r) && !read(r) && source(r) != "kms.amazonaws.com",
        },
        Case {
            name: "single-Region us-east-1 trail without global service events",
            config: json!({"HomeRegion": "us-east-1", "IsMultiRegionTrail": false, "IncludeGlobalServiceEvents": false}),
            expect: |r| management(r) && region_is(r, "us-east-1") && !global_service_event(r),
        },
        Case {
            name: "single-Region us-west-2 trail",
            config: json!({"TrailARN": "arn:aws:cloudtrail:us-west-2:123456789012:trail/west", "IsMultiRegionTrail": false}),
            expect: |r| management(r) && region_is(r, "us-west-2"),
        },
        Case {
            name: "all S3 data events, no management events",
            config: json!({"EventSelectors": [{"IncludeManagementEvents": false,
                "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]}),
            expect: |r| {
                category(r) == "Data"
                    && resources(r)
                        .iter()
                        .any(|(t, a)| *t == "AWS::S3::Object" && a.starts_with("arn:aws:s3"))
            },
        },
        Case {
            name: "S3 objects outside example-bucket, plus read-only management",
            config: json!({"AdvancedEventSelectors": [
                {"Name": "objects", "FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["Data"]},
                    {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                    {"Field": "resources.ARN", "NotStartsWith": ["arn:aws:s3:::example-bucket/"]}]},
                {"Name": "reads", "FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["Management"]},
                    {"Field": "readOnly", "Equals": ["true"]}]}]}),
            expect: |r| {
                // A missing field passes a selector that only has negative operators.
                let object_arns: Vec<&str> = resources(r)
                    .into_iter()
                    .filter(|(t, _)| *t == "AWS::S3::Object")
                    .map(|(_, a)| a)
                    .collect();
                (category(r) == "Data"
                    && resource_types(r).contains(&"AWS::S3::Object")
                    && (object_arns.is_empty()
                        || object_arns
                            .iter()
                            .any(|a| !a.starts_with("arn:aws:s3:::example-bucket/"))))
                    || (management(r) && read(r))
            },
        },
        Case {
            name: "VPC endpoint policy denials for S3",
            config: json!({"AdvancedEventSelectors": [{"FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["NetworkActivity"]},
                {"Field": "eventSource", "Equals": ["s3.amazonaws.com"]},
                {"Field": "errorCode", "Equals": ["VpceAccessDenied"]}]}]}),
            expect: |r| {
                category(r) == "NetworkActivity"
                    && source(r) == "s3.amazonaws.com"
                    && text(r, "errorCode") == Some("VpceAccessDenied")
            },
        },
        Case {
            name: "network activity through example endpoints, S3 and CloudTrail",
            config: json!({"AdvancedEventSelectors": [
                {"FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["NetworkActivity"]},
                    {"Field": "eventSource", "Equals": ["s3.amazonaws.com"]},
                    {"Field": "vpcEndpointId", "StartsWith": ["vpce-EXAMPLE"]}]},
                {"FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["NetworkActivity"]},
                    {"Field": "eventSource", "Equals": ["cloudtrail.amazonaws.com"]}]}]}),
            expect: |r| {
                category(r) == "NetworkActivity"
                    && ((source(r) == "s3.amazonaws.com"
                        && text(r, "vpcEndpointId").is_some_and(|v| v.starts_with("vpce-EXAMPLE")))
                        || source(r) == "cloudtrail.amazonaws.com")
            },
        },
        Case {
            name: "two basic selectors: all reads, and writes except KMS",
            config: json!({"EventSelectors": [
                {"ReadWriteType": "ReadOnly"},
                {"ReadWriteType": "WriteOnly", "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]}),
            expect: |r| management(r) && (read(r) || source(r) != "kms.amazonaws.com"),
        },
        Case {
            name: "S3 object writes by non-attacker principals",
            config: json!({"AdvancedEventSelectors": [{"FieldSelectors": [
                {"Field": "eventCategory", "Equals": ["Data"]},
                {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                {"Field": "eventName", "StartsWith": ["Put", "Copy"], "EndsWith": ["Objects"]},
                {"Field": "userIdentity.arn", "NotEndsWith": ["/attacker"]}]}]}),
            expect: |r| {
                let name = text(r, "eventName").unwrap_or("");
                let principal = r
                    .get("userIdentity")
                    .and_then(|u| u.get("arn"))
                    .and_then(Value::as_str);
                category(r) == "Data"
                    && resource_types(r).contains(&"AWS::S3::Object")
                    && (name.starts_with("Put")
                        || name.starts_with("Copy")
                        || name.ends_with("Objects"))
                    && !principal.is_some_and(|p| p.ends_with("/attacker"))
            },
        },
        Case {
            name: "organization trail, everything explicit",
            config: json!({"TrailARN": "arn:aws:cloudtrail:us-east-1:123456789012:trail/org", "IsOrganizationTrail": true,
                "IsMultiRegionTrail": true, "IncludeGlobalServiceEvents": true,
                "AdvancedEventSelectors": [{"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]}]}),
            expect: management,
        },
    ]
}

#[test]
fn every_real_record_is_decided_as_the_oracle_says() {
    let records = real_records();
    let parsed: Vec<(&RealRecord, Record<'_>)> = records
        .iter()
        .filter_map(|r| Record::parse(&r.text).ok().map(|p| (r, p)))
        .collect();
    assert!(
        parsed.len() + 5 >= records.len(),
        "{} of {} real records did not parse",
        records.len() - parsed.len(),
        records.len()
    );
    let cases = cases();
    assert!(cases.len() >= 12);
    let mut report = Vec::new();
    for case in &cases {
        let config = TrailConfig::from_value(&case.config)
            .unwrap_or_else(|e| panic!("{}: configuration refused: {e}", case.name));
        let matcher = config.compile();
        let mut expected_kept = 0;
        let mut kept = 0;
        for (real, record) in &parsed {
            let expected = (case.expect)(&real.value);
            let verdict = matcher.evaluate(record);
            assert_eq!(
                verdict,
                interpret(&config, record),
                "{}: interpreter disagrees on {}",
                case.name,
                real.origin
            );
            assert_eq!(
                verdict.is_keep(),
                expected,
                "{}: {} was {:?}, the oracle says keep={expected}",
                case.name,
                real.origin,
                verdict
            );
            expected_kept += usize::from(expected);
            kept += usize::from(matches!(verdict, Verdict::Keep { .. }));
        }
        assert_eq!(kept, expected_kept, "{}", case.name);
        report.push(format!("{:<70} {kept:>5} of {}", case.name, parsed.len()));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn configurations_cut_the_real_records_in_meaningful_places() {
    // Guards against an oracle and a matcher that agree because both keep all or nothing.
    let records = real_records();
    for case in cases() {
        let kept = records.iter().filter(|r| (case.expect)(&r.value)).count();
        assert!(
            kept > 0,
            "{}: the data has nothing this configuration keeps",
            case.name
        );
        if !case.name.starts_with("default") && !case.name.starts_with("organization") {
            assert!(kept < records.len(), "{}: keeps every record", case.name);
        }
    }
}
