//! Detections on real records: trailwatch's rules on the Stratus Red Team detonations they are
//! written for, SigmaHQ's rules on the CloudTrail shapes the evaluator must read (null, arrays,
//! objects, booleans, field references), the prefilter against evaluating every rule, and the
//! coverage table of docs/detections.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use trailwatch::deliver::message::RecordLocation;
use trailwatch::detect::{Detection, Detector, RuleOptions, RuleSet, Scratch};
use trailwatch::record::Record;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// The records of a Stratus Red Team technique, as JSON texts.
fn stratus(technique: &str) -> Vec<String> {
    let path = data().join(format!("stratus-red-team/aws.{technique}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    records.iter().map(|r| r.to_string()).collect()
}

fn techniques() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data().join("stratus-red-team"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let technique = name.strip_prefix("aws.")?.strip_suffix(".json")?;
            Some(technique.to_owned())
        })
        .collect();
    names.sort();
    names
}

/// Every record of invictus-ir (log files), Stratus Red Team and panther-tests.
fn all_records() -> Vec<String> {
    let mut records = Vec::new();
    for technique in techniques() {
        records.extend(stratus(&technique));
    }
    for entry in std::fs::read_dir(data().join("invictus-ir")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let file: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            records.extend(
                file["Records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.to_string()),
            );
        }
    }
    let panther =
        std::fs::read_to_string(data().join("panther-tests/panther-test-events.jsonl")).unwrap();
    records.extend(
        panther
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned),
    );
    records
}

fn detector(enable_all: bool) -> Detector {
    let mut options = RuleOptions {
        embedded: true,
        ..RuleOptions::default()
    };
    if enable_all {
        options.enable = trailwatch::detect::rules::OFF_BY_DEFAULT
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
    }
    let set = RuleSet::load(&options);
    assert!(set.not_loaded.is_empty(), "{:?}", set.not_loaded);
    Detector::new(set.rules)
}

fn detections(detector: &Detector, raw: &str) -> Vec<Detection> {
    let record = Record::parse(raw).unwrap();
    let location = RecordLocation {
        bucket: None,
        key: Some("test"),
        index: 0,
    };
    detector.detect(&record, location, &mut Scratch::default())
}

/// The ids of the rules that fire on any of `records`.
fn fired(detector: &Detector, records: &[String]) -> BTreeSet<String> {
    records
        .iter()
        .flat_map(|raw| detections(detector, raw))
        .map(|d| d.rule_id)
        .collect()
}

#[test]
fn each_trailwatch_rule_detects_the_technique_it_is_written_for() {
    let detector = detector(false);
    let cases = [
        (
            "defense-evasion.cloudtrail-event-selectors",
            "1ac05842-6349-405e-86e7-091cb45c2be7",
        ),
        (
            "defense-evasion.cloudtrail-event-selectors",
            "fc250151-3999-425e-9b6e-44da742b0a32",
        ),
        (
            "defense-evasion.dns-delete-logs",
            "6e18e71c-01a3-463c-9e18-f4d4b1c6b732",
        ),
        (
            "defense-evasion.organizations-leave",
            "c57ca000-1fd8-460f-9b1d-c7badf6ee8be",
        ),
        (
            "credential-access.ec2-get-password-data",
            "c4de624c-6f1f-4b51-905e-244a383e639b",
        ),
        (
            "discovery.ec2-download-user-data",
            "b6b2d051-a851-450f-a1f6-c7ba7791493f",
        ),
        (
            "execution.ec2-user-data",
            "ca8c5b66-5275-4cfa-9dcc-0695e99f838c",
        ),
        (
            "exfiltration.ec2-share-ami",
            "0111a532-cd25-4f22-b899-cd5309a9c1ee",
        ),
        (
            "exfiltration.rds-share-snapshot",
            "ce87fa3c-50e2-4767-abb8-185248f11bbd",
        ),
        (
            "persistence.iam-create-admin-user",
            "b385ea41-317e-41c4-a6b7-9dfeee68cb65",
        ),
        (
            "persistence.iam-create-backdoor-role",
            "b385ea41-317e-41c4-a6b7-9dfeee68cb65",
        ),
        (
            "persistence.iam-backdoor-role",
            "fd9147b2-6362-4a37-bb4a-d305078df4a6",
        ),
        (
            "persistence.iam-create-user-login-profile",
            "99ae960e-31af-44d9-a8fb-ef93c9e0d4db",
        ),
        (
            "persistence.iam-backdoor-user",
            "8737e848-a384-4e98-86d2-335952ff4d1b",
        ),
        (
            "persistence.iam-create-admin-user",
            "8737e848-a384-4e98-86d2-335952ff4d1b",
        ),
        (
            "persistence.lambda-backdoor-function",
            "e8fa3619-1073-422c-9f95-3a9d15ca10f9",
        ),
        (
            "persistence.lambda-overwrite-code",
            "9cfb3e75-552e-446e-af75-700c306c0fd9",
        ),
        (
            "lateral-movement.ec2-serial-console-send-ssh-public-key",
            "0da181fd-7cdd-4123-88c8-2a43c44c6ad9",
        ),
        (
            "lateral-movement.ec2-instance-connect",
            "12337e35-2edc-4380-8564-a84a5a7e2eed",
        ),
        (
            "persistence.rolesanywhere-create-trust-anchor",
            "fa287496-0034-4a7c-8efd-8900af817eec",
        ),
        (
            "persistence.sts-federation-token",
            "9f5e5947-b48c-45ce-8bbd-561f4f33230c",
        ),
        (
            "credential-access.secretsmanager-batch-retrieve-secrets",
            "5aa8333a-0843-486d-b4d8-afe9b504f711",
        ),
    ];
    for (technique, rule) in cases {
        let fired = fired(&detector, &stratus(technique));
        assert!(
            fired.contains(rule),
            "{rule} did not fire on {technique}: {fired:?}"
        );
    }
}

/// A real record of the technique, changed into the variant a rule is for.
fn variant(
    technique: &str,
    event_name: &str,
    change: impl FnOnce(&mut serde_json::Value),
) -> String {
    let mut record: serde_json::Value = serde_json::from_str(&stratus(technique)[0]).unwrap();
    record["eventName"] = event_name.into();
    change(&mut record);
    record.to_string()
}

#[test]
fn variants_without_a_detonation_record_are_detected_too() {
    let detector = detector(false);
    let lake = variant(
        "defense-evasion.cloudtrail-delete",
        "StopEventDataStoreIngestion",
        |r| {
            r["requestParameters"] = serde_json::json!({"eventDataStore": "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE"});
        },
    );
    assert!(fired(&detector, &[lake]).contains("9b68b017-0618-43f9-907f-4972ac66b7f9"));
    // Advanced selectors that exclude events (here: KMS and the RDS Data API).
    let advanced = variant(
        "defense-evasion.cloudtrail-event-selectors",
        "PutEventSelectors",
        |r| {
            r["requestParameters"] = serde_json::json!({
                "trailName": "org-trail",
                "advancedEventSelectors": [{
                    "name": "management, no KMS",
                    "fieldSelectors": [
                        {"field": "eventCategory", "equals": ["Management"]},
                        {"field": "eventSource", "notEquals": ["kms.amazonaws.com", "rdsdata.amazonaws.com"]}
                    ]
                }]
            });
        },
    );
    let fired_on = fired(&detector, &[advanced]);
    assert!(
        fired_on.contains("fc250151-3999-425e-9b6e-44da742b0a32"),
        "{fired_on:?}"
    );
    // Selectors that keep everything: a change, not an exclusion.
    let complete = variant(
        "defense-evasion.cloudtrail-event-selectors",
        "PutEventSelectors",
        |r| {
            r["requestParameters"] = serde_json::json!({
                "trailName": "org-trail",
                "eventSelectors": [{"readWriteType": "All", "includeManagementEvents": true,
                                    "excludeManagementEventSources": [], "dataResources": []}]
            });
        },
    );
    let fired_on = fired(&detector, &[complete]);
    assert!(fired_on.contains("1ac05842-6349-405e-86e7-091cb45c2be7"));
    assert!(
        !fired_on.contains("fc250151-3999-425e-9b6e-44da742b0a32"),
        "{fired_on:?}"
    );
}

#[test]
fn an_access_key_a_user_creates_for_themself_is_not_reported_as_for_another_user() {
    let detector = detector(false);
    let own = variant("persistence.iam-backdoor-user", "CreateAccessKey", |r| {
        let me = r["userIdentity"]["userName"].clone();
        r["responseElements"]["accessKey"]["userName"] = me.clone();
        r["requestParameters"]["userName"] = me;
    });
    let fired_on = fired(&detector, &[own]);
    assert!(
        !fired_on.contains("8737e848-a384-4e98-86d2-335952ff4d1b"),
        "{fired_on:?}"
    );
    // SigmaHQ's rule compares with a literal and reports it anyway (see docs/detections.md).
    assert!(fired_on.contains("0a5177f4-6ca9-44c2-aacf-d3f3d8b6e4d2"));
}

#[test]
fn sigmahq_rules_read_the_shapes_cloudtrail_writes() {
    let detector = detector(false);
    let records = all_records();
    let count = |rule: &str, event_name: &str| {
        records
            .iter()
            .filter(|raw| raw.contains(event_name))
            .filter(|raw| detections(&detector, raw).iter().any(|d| d.rule_id == rule))
            .count()
    };
    // `errorCode: null` matches records without an errorCode (the five DeleteBucket of invictus-ir).
    assert_eq!(
        count("39c9f26d-6e3b-4dbb-9c7a-4154b0281112", "\"DeleteBucket\""),
        5
    );
    // A path through an array: requestParameters.layers is a list.
    assert!(
        count(
            "97fbabf8-8e1b-47a2-b7d5-a418d2b95e3d",
            "UpdateFunctionConfiguration"
        ) >= 1
    );
    // `requestParameters|contains`: the object read as its JSON text, as SigmaHQ writes these
    // rules; only the four Suspended of the seventeen PutBucketVersioning records.
    assert_eq!(
        count(
            "a136ac98-b2bc-4189-a14d-f0d0388e57a7",
            "PutBucketVersioning"
        ),
        4
    );
    // `publiclyAccessible: 'true'` matches a JSON boolean.
    assert_eq!(
        count(
            "c3f265c7-ff03-4056-8ab2-d486227b4599",
            "RestoreDBInstanceFromDBSnapshot"
        ),
        1
    );
    // `fieldref`: a filter comparing two fields of the record.
    assert!(count("055fb148-60f8-462d-ad16-26926ce050f1", "UpdateLoginProfile") >= 1);
}

#[test]
fn the_imds_rule_matches_instance_credentials_by_regular_expression() {
    let detector = detector(false);
    let ec2 = variant(
        "credential-access.ec2-get-password-data",
        "ListBuckets",
        |r| {
            r["eventSource"] = "s3.amazonaws.com".into();
            r["sourceIPAddress"] = "203.0.113.7".into();
            r["userIdentity"]["arn"] =
                "arn:aws:sts::123456789012:assumed-role/aws:ec2-instance/i-0123456789abcdef0"
                    .into();
        },
    );
    assert!(fired(&detector, &[ec2]).contains("352a918a-34d8-4882-8470-44830c507aa3"));
}

#[test]
fn a_record_no_rule_names_produces_nothing() {
    let detector = detector(false);
    let describe = stratus("execution.ec2-user-data")
        .into_iter()
        .filter(|r| r.contains("\"DescribeInstances\""))
        .collect::<Vec<_>>();
    assert!(!describe.is_empty());
    assert_eq!(fired(&detector, &describe), BTreeSet::new());
}

#[test]
fn the_prefilter_never_hides_a_match_on_real_records() {
    let detector = detector(true);
    let mut scratch = Scratch::default();
    let mut compared = 0;
    for raw in all_records() {
        let Ok(record) = Record::parse(&raw) else {
            continue;
        };
        let mut filtered = Vec::new();
        detector.evaluate(&record, &mut scratch, |rule, _| {
            filtered.push(rule.id.clone())
        });
        let mut every = Vec::new();
        detector.evaluate_every_rule(&record, |rule, _| every.push(rule.id.clone()));
        assert_eq!(filtered, every, "{raw}");
        compared += 1;
    }
    assert!(compared > 3000, "{compared}");
}

/// The coverage table: which Stratus Red Team techniques the embedded rules detect.
fn coverage_table() -> String {
    let detector = detector(false);
    let titles: BTreeMap<&str, &str> = detector
        .rules()
        .iter()
        .map(|r| (r.id.as_str(), r.title.as_str()))
        .collect();
    let sigmahq: BTreeSet<&str> = detector
        .rules()
        .iter()
        .filter(|r| r.origin.starts_with("embedded:sigma/"))
        .map(|r| r.id.as_str())
        .collect();
    let mut table = String::from(
        "| Stratus Red Team technique | SigmaHQ rules | trailwatch rules |\n|---|---|---|\n",
    );
    let (mut by_sigmahq, mut by_any, mut total) = (0, 0, 0);
    for technique in techniques() {
        total += 1;
        let fired = fired(&detector, &stratus(&technique));
        let names = |ours: bool| {
            let list: Vec<&str> = fired
                .iter()
                .filter(|id| sigmahq.contains(id.as_str()) != ours)
                .map(|id| titles[id.as_str()])
                .collect();
            if list.is_empty() {
                "—".to_owned()
            } else {
                list.join("; ")
            }
        };
        let (theirs, ours) = (names(false), names(true));
        by_sigmahq += usize::from(theirs != "—");
        by_any += usize::from(!fired.is_empty());
        table.push_str(&format!("| `{technique}` | {theirs} | {ours} |\n"));
    }
    table.push_str(&format!(
        "\nDetected: {by_sigmahq} of {total} techniques by SigmaHQ's rules alone, {by_any} of {total} with trailwatch's.\n"
    ));
    table
}

#[test]
fn the_coverage_table_of_the_docs_is_current() {
    let table = coverage_table();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/detections.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (begin, end) = ("<!-- coverage:begin -->\n", "<!-- coverage:end -->");
    let start = doc
        .find(begin)
        .expect("coverage markers in docs/detections.md")
        + begin.len();
    let stop = doc.find(end).unwrap();
    if std::env::var_os("TRAILWATCH_BLESS").is_some() {
        let updated = format!("{}{table}{}", &doc[..start], &doc[stop..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        doc[start..stop],
        table,
        "docs/detections.md is stale: run TRAILWATCH_BLESS=1 cargo test -p trailwatch --test detect_rules"
    );
}
