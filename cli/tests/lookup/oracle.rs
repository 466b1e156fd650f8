//! The oracle: what LookupEvents answers, computed from the records themselves by the rules
//! it documents, and the checks of the command's output against it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use trailwatch::time::parse_event_time;

pub fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub fn shared_data() -> PathBuf {
    let dir = root().join("../shared/data");
    assert!(dir.is_dir(), "shared data missing at {}", dir.display());
    dir
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-lookup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn trailwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

pub fn replay(inputs: &Path, config: Option<&Path>, out: &Path) {
    let mut args = vec![
        "replay",
        inputs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(config) = config {
        args.extend(["--config", config.to_str().unwrap()]);
    }
    let (code, stdout, stderr) = trailwatch(&args);
    assert_eq!(code, 0, "replay failed\n{stdout}\n{stderr}");
}

/// A record as read from the data: its exact text and its parsed value.
#[derive(Clone)]
pub struct Rec {
    pub raw: String,
    pub v: Value,
}

impl Rec {
    pub fn new(raw: &str) -> Rec {
        Rec {
            raw: raw.to_owned(),
            v: serde_json::from_str(raw).unwrap(),
        }
    }
    pub fn s(&self, pointer: &str) -> Option<&str> {
        self.v.pointer(pointer).and_then(Value::as_str)
    }
    pub fn time(&self) -> i64 {
        parse_event_time(self.s("/eventTime").unwrap()).unwrap()
    }
    pub fn id(&self) -> &str {
        self.s("/eventID").unwrap_or("")
    }
    /// eventCategory, or the documented rules before eventVersion 1.07 (the data used here
    /// carries it, except Insights records, which have their eventType).
    pub fn category(&self) -> &str {
        if let Some(c) = self.s("/eventCategory") {
            return c;
        }
        if self.s("/eventType") == Some("AwsCloudTrailInsight") {
            return "Insight";
        }
        match self.v.get("managementEvent") {
            Some(Value::Bool(false)) => "Data",
            _ => "Management",
        }
    }
    pub fn name(&self) -> Option<&str> {
        self.s("/eventName").or(self.s("/insightDetails/eventName"))
    }
    pub fn source(&self) -> Option<&str> {
        self.s("/eventSource")
            .or(self.s("/insightDetails/eventSource"))
    }
    /// readOnly: a JSON boolean; exports (and some of the panther test events) write it as a
    /// "true"/"false" string, which the pipeline reads too.
    pub fn read_only(&self) -> Option<String> {
        match &self.v["readOnly"] {
            Value::Bool(b) => Some(b.to_string()),
            Value::String(s)
                if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
            {
                Some(s.to_ascii_lowercase())
            }
            _ => None,
        }
    }
    pub fn access_key(&self) -> Option<&str> {
        self.s("/userIdentity/accessKeyId")
            .filter(|k| !k.is_empty())
    }
    /// Username by the documented cases: Root → "root" (User Guide example), AssumedRole →
    /// the session name (AWS CLI example), IAMUser → userName (API reference); FederatedUser
    /// → its name; AWSService → none; any other identity → its userName.
    pub fn username(&self) -> Option<String> {
        let ui = self.v.get("userIdentity")?;
        let user_name = ui["userName"].as_str().filter(|s| !s.is_empty());
        let tail = |infix: &str| {
            let arn = ui["arn"].as_str()?;
            let rest = &arn[arn.find(infix)? + infix.len()..];
            rest.rsplit('/').next().filter(|s| !s.is_empty())
        };
        let name = match ui["type"].as_str() {
            Some("Root") => Some("root"),
            Some("AssumedRole") => tail(":assumed-role/").or_else(|| {
                ui["principalId"]
                    .as_str()
                    .and_then(|p| p.split_once(':'))
                    .map(|(_, s)| s)
            }),
            Some("FederatedUser") => user_name.or_else(|| tail(":federated-user/")),
            Some("AWSService") => None,
            _ => user_name,
        };
        name.map(str::to_owned)
    }
    /// Resources this test knows must be listed: each `resources` entry (type, ARN), and the
    /// bucket of an S3 bucket call by its name (how Event history names buckets).
    pub fn resources(&self) -> Vec<(Option<String>, String)> {
        let mut out = Vec::new();
        for r in self.v["resources"].as_array().into_iter().flatten() {
            if let Some(arn) = r["ARN"].as_str() {
                out.push((r["type"].as_str().map(str::to_owned), arn.to_owned()));
            }
        }
        if self.source() == Some("s3.amazonaws.com") {
            if let Some(bucket) = self
                .s("/requestParameters/bucketName")
                .filter(|b| !b.is_empty())
            {
                out.push((Some("AWS::S3::Bucket".into()), bucket.to_owned()));
            }
        }
        out
    }
    pub fn is(&self, key: &str, value: &str) -> bool {
        match key {
            "EventId" => self.s("/eventID") == Some(value),
            "EventName" => self.name() == Some(value),
            "EventSource" => self.source() == Some(value),
            "ReadOnly" => self.read_only().as_deref() == Some(value),
            "Username" => self.username().as_deref() == Some(value),
            "AccessKeyId" => self.access_key() == Some(value),
            "ResourceName" => self.resources().iter().any(|(_, n)| n == value),
            "ResourceType" => self
                .resources()
                .iter()
                .any(|(t, _)| t.as_deref() == Some(value)),
            _ => unreachable!("{key}"),
        }
    }
}

/// The records of every `.jsonl` file directly in `dir`, as replay wrote them.
pub fn jsonl_records(dir: &Path) -> Vec<Rec> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(text.lines().filter(|l| !l.trim().is_empty()).map(Rec::new));
        }
    }
    assert!(!out.is_empty(), "no records in {}", dir.display());
    out
}

/// The expected events of a lookup: the records of the category asked for, in the range,
/// with the attribute — each distinct record once.
pub fn expect<'r>(
    records: &'r [Rec],
    attribute: Option<(&str, &str)>,
    range: (Option<i64>, Option<i64>),
    insight: bool,
    management_only: bool,
) -> BTreeMap<String, &'r Rec> {
    records
        .iter()
        .filter(|r| {
            let c = r.category();
            if insight {
                c == "Insight"
            } else {
                c != "Insight" && (!management_only || c == "Management")
            }
        })
        .filter(|r| range.0.is_none_or(|s| r.time() >= s) && range.1.is_none_or(|e| r.time() <= e))
        .filter(|r| attribute.is_none_or(|(k, v)| r.is(k, v)))
        .map(|r| (r.raw.clone(), r))
        .collect()
}

pub const EVENT_KEYS: [&str; 9] = [
    "EventId",
    "EventName",
    "ReadOnly",
    "AccessKeyId",
    "EventTime",
    "EventSource",
    "Username",
    "Resources",
    "CloudTrailEvent",
];

/// The keys of a JSON object in the order written.
pub fn keys_in_order(text: &str) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<serde::de::IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    use serde::Deserializer;
    serde_json::Deserializer::from_str(text)
        .deserialize_map(Keys)
        .unwrap()
}

/// LookupEvents' output, checked for shape: `{"Events":[…]}` plus `NextToken` when more
/// follow, each event with LookupEvents' member names in the model's order.
pub struct Output {
    pub events: Vec<Value>,
    pub next_token: Option<String>,
}

pub fn parse_output(stdout: &str) -> Output {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Response {
        #[serde(rename = "Events")]
        events: Vec<Box<serde_json::value::RawValue>>,
        #[serde(rename = "NextToken")]
        next_token: Option<String>,
    }
    let response: Response =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let top = keys_in_order(stdout);
    assert_eq!(top[0], "Events", "{top:?}");
    let mut events = Vec::new();
    for raw in &response.events {
        let keys = keys_in_order(raw.get());
        let positions: Vec<usize> = keys
            .iter()
            .map(|k| {
                EVENT_KEYS
                    .iter()
                    .position(|e| e == k)
                    .unwrap_or_else(|| panic!("unknown key {k}"))
            })
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "keys out of order: {keys:?}"
        );
        for required in ["EventTime", "Resources", "CloudTrailEvent"] {
            assert!(
                keys.iter().any(|k| k == required),
                "{required} missing: {keys:?}"
            );
        }
        events.push(serde_json::from_str(raw.get()).unwrap());
    }
    Output {
        events,
        next_token: response.next_token,
    }
}

/// Each event's fields are the record's, as LookupEvents presents them.
pub fn check_fields(event: &Value, rec: &Rec) {
    let field = |k: &str| event.get(k).map(|v| v.as_str().unwrap().to_owned());
    assert_eq!(field("EventId").as_deref(), rec.s("/eventID"));
    assert_eq!(field("EventName").as_deref(), rec.name());
    assert_eq!(field("EventSource").as_deref(), rec.source());
    assert_eq!(
        field("ReadOnly"),
        rec.read_only(),
        "ReadOnly is the string \"true\"/\"false\""
    );
    assert_eq!(field("AccessKeyId").as_deref(), rec.access_key());
    assert_eq!(field("Username"), rec.username(), "{}", rec.raw);
    // EventTime as the AWS CLI v2 prints a timestamp, in UTC: 2023-07-10T11:42:36+00:00.
    let time = rec.s("/eventTime").unwrap();
    assert_eq!(field("EventTime").unwrap(), time.replace('Z', "+00:00"));
    let listed: Vec<(Option<String>, String)> = event["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let keys = keys_in_order(&r.to_string());
            assert!(
                keys.iter()
                    .all(|k| k == "ResourceType" || k == "ResourceName"),
                "{keys:?}"
            );
            (
                r.get("ResourceType")
                    .map(|t| t.as_str().unwrap().to_owned()),
                r["ResourceName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for resource in rec.resources() {
        assert!(listed.contains(&resource), "{resource:?} not in {listed:?}");
    }
    assert_eq!(
        event["CloudTrailEvent"].as_str().unwrap(),
        rec.raw,
        "the record's exact text"
    );
}

pub fn time_of(event: &Value) -> i64 {
    parse_event_time(event["EventTime"].as_str().unwrap()).unwrap()
}

/// Runs a JSON lookup and checks it against the records: exactly the expected events, each
/// once, newest first, every field as LookupEvents gives it.
pub fn check_lookup(
    dir: &Path,
    records: &[Rec],
    args: &[&str],
    expected: &BTreeMap<String, &Rec>,
) -> Output {
    let mut all = vec!["lookup", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = trailwatch(&all);
    assert_eq!(code, 0, "{args:?}\n{stderr}");
    let out = parse_output(&stdout);
    let got: Vec<&str> = out
        .events
        .iter()
        .map(|e| e["CloudTrailEvent"].as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "an event twice: {args:?}");
    let want: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    assert!(
        distinct == want,
        "{args:?}: {} events, expected {}; unexpected {:?}, missing {:?}",
        got.len(),
        want.len(),
        distinct.difference(&want).take(3).collect::<Vec<_>>(),
        want.difference(&distinct).take(3).collect::<Vec<_>>()
    );
    assert!(
        out.events
            .windows(2)
            .all(|w| time_of(&w[0]) >= time_of(&w[1])),
        "newest first: {args:?}"
    );
    for event in &out.events {
        let raw = event["CloudTrailEvent"].as_str().unwrap();
        check_fields(
            event,
            expected
                .get(raw)
                .copied()
                .unwrap_or_else(|| records.iter().find(|r| r.raw == raw).unwrap()),
        );
    }
    out
}

pub fn attr(key: &str, value: &str) -> String {
    format!("AttributeKey={key},AttributeValue={value}")
}

/// One value per attribute key, chosen from the records: the first record with a value.
pub fn values_per_key(records: &[Rec]) -> Vec<(&'static str, String)> {
    let first = |f: &dyn Fn(&Rec) -> Option<String>| {
        records
            .iter()
            .filter(|r| r.category() != "Insight")
            .find_map(f)
            .expect("a value in the data")
    };
    let mut values = vec![
        ("EventId", first(&|r| r.s("/eventID").map(str::to_owned))),
        (
            "EventName",
            first(&|r| {
                r.name()
                    .filter(|n| n.starts_with("Delete"))
                    .map(str::to_owned)
            }),
        ),
        ("ReadOnly", "false".to_owned()),
        ("ReadOnly", "true".to_owned()),
        ("EventSource", "iam.amazonaws.com".to_owned()),
        ("AccessKeyId", first(&|r| r.access_key().map(str::to_owned))),
        (
            "Username",
            first(&|r| {
                (r.s("/userIdentity/type") == Some("IAMUser"))
                    .then(|| r.username())
                    .flatten()
            }),
        ),
        (
            "ResourceName",
            first(&|r| {
                (r.name() == Some("DeleteBucket") || r.name() == Some("GetBucketAcl"))
                    .then(|| r.s("/requestParameters/bucketName").map(str::to_owned))
                    .flatten()
            }),
        ),
        (
            "ResourceName",
            first(&|r| {
                r.resources()
                    .first()
                    .map(|(_, n)| n.clone())
                    .filter(|n| n.starts_with("arn:"))
            }),
        ),
        ("ResourceType", "AWS::S3::Bucket".to_owned()),
    ];
    if let Some(session) = records.iter().find_map(|r| {
        (r.s("/userIdentity/type") == Some("AssumedRole"))
            .then(|| r.username())
            .flatten()
    }) {
        values.push(("Username", session));
    }
    if records
        .iter()
        .any(|r| r.s("/userIdentity/type") == Some("Root"))
    {
        values.push(("Username", "root".to_owned()));
    }
    values
}

pub fn check_every_key(dir: &Path, records: &[Rec]) {
    for (key, value) in values_per_key(records) {
        let expected = expect(records, Some((key, &value)), (None, None), false, false);
        assert!(
            !expected.is_empty(),
            "{key}={value} finds nothing in the data"
        );
        check_lookup(
            dir,
            records,
            &["--lookup-attributes", &attr(key, &value)],
            &expected,
        );
    }
}
