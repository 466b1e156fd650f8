//! `trailwatch lookup` as a user runs it, over what `trailwatch replay` writes (the sample
//! trail, the invictus-ir trail, a generated multi-account trail) and over CloudTrail log
//! files directly. Every expectation is computed here from the records themselves (as
//! `serde_json::Value`), by the rules LookupEvents documents, never by the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use trailwatch::time::parse_event_time;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn shared_data() -> PathBuf {
    let dir = root().join("../shared/data");
    assert!(dir.is_dir(), "shared data missing at {}", dir.display());
    dir
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-lookup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn trailwatch(args: &[&str]) -> (i32, String, String) {
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

fn replay(inputs: &Path, config: Option<&Path>, out: &Path) {
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
struct Rec {
    raw: String,
    v: Value,
}

impl Rec {
    fn new(raw: &str) -> Rec {
        Rec {
            raw: raw.to_owned(),
            v: serde_json::from_str(raw).unwrap(),
        }
    }
    fn s(&self, pointer: &str) -> Option<&str> {
        self.v.pointer(pointer).and_then(Value::as_str)
    }
    fn time(&self) -> i64 {
        parse_event_time(self.s("/eventTime").unwrap()).unwrap()
    }
    fn id(&self) -> &str {
        self.s("/eventID").unwrap_or("")
    }
    /// eventCategory, or the documented rules before eventVersion 1.07 (the data used here
    /// carries it, except Insights records, which have their eventType).
    fn category(&self) -> &str {
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
    fn name(&self) -> Option<&str> {
        self.s("/eventName").or(self.s("/insightDetails/eventName"))
    }
    fn source(&self) -> Option<&str> {
        self.s("/eventSource")
            .or(self.s("/insightDetails/eventSource"))
    }
    /// readOnly: a JSON boolean; exports (and some of the panther test events) write it as a
    /// "true"/"false" string, which the pipeline reads too.
    fn read_only(&self) -> Option<String> {
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
    fn access_key(&self) -> Option<&str> {
        self.s("/userIdentity/accessKeyId")
            .filter(|k| !k.is_empty())
    }
    /// Username by the documented cases: Root → "root" (User Guide example), AssumedRole →
    /// the session name (AWS CLI example), IAMUser → userName (API reference); FederatedUser
    /// → its name; AWSService → none; any other identity → its userName.
    fn username(&self) -> Option<String> {
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
    fn resources(&self) -> Vec<(Option<String>, String)> {
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
    fn is(&self, key: &str, value: &str) -> bool {
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
fn jsonl_records(dir: &Path) -> Vec<Rec> {
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
fn expect<'r>(
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

const EVENT_KEYS: [&str; 9] = [
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
fn keys_in_order(text: &str) -> Vec<String> {
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
struct Output {
    events: Vec<Value>,
    next_token: Option<String>,
}

fn parse_output(stdout: &str) -> Output {
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
fn check_fields(event: &Value, rec: &Rec) {
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

fn time_of(event: &Value) -> i64 {
    parse_event_time(event["EventTime"].as_str().unwrap()).unwrap()
}

/// Runs a JSON lookup and checks it against the records: exactly the expected events, each
/// once, newest first, every field as LookupEvents gives it.
fn check_lookup(
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

fn attr(key: &str, value: &str) -> String {
    format!("AttributeKey={key},AttributeValue={value}")
}

/// One value per attribute key, chosen from the records: the first record with a value.
fn values_per_key(records: &[Rec]) -> Vec<(&'static str, String)> {
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

fn check_every_key(dir: &Path, records: &[Rec]) {
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

// ---------------------------------------------------------------------------------------
// The data: replayed once per test binary.

fn sample() -> &'static (PathBuf, Vec<Rec>) {
    static SAMPLE: OnceLock<(PathBuf, Vec<Rec>)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let out = temp_dir("sample");
        replay(
            &root().join("events/sample-trail"),
            Some(&root().join("events/trail-config.json")),
            &out,
        );
        let records = jsonl_records(&out);
        (out, records)
    })
}

fn invictus() -> &'static (PathBuf, Vec<Rec>) {
    static INVICTUS: OnceLock<(PathBuf, Vec<Rec>)> = OnceLock::new();
    INVICTUS.get_or_init(|| {
        let out = temp_dir("invictus");
        replay(&shared_data().join("invictus-ir"), None, &out);
        let records = jsonl_records(&out);
        (out, records)
    })
}

/// A generated trail in CloudTrail's S3 layout (two accounts, two Regions, 5-minute gzip
/// files) from real records — invictus-ir, stratus-red-team and the panther test events that
/// carry an eventCategory (among them data and network-activity events) or a Root identity —
/// each with a fresh
/// eventID and a time inside its file's window, and a few duplicate deliveries. Built here
/// (scripts/gen-corpus.py always adds two large memory-test files, ~9 s and 50 MB).
struct Generated {
    logs: PathBuf,
    records: Vec<Rec>,
    replayed: PathBuf,
}

fn generated() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let dir = temp_dir("generated");
        let logs = dir.join("AWSLogs");
        let records = write_generated_trail(&logs);
        let replayed = dir.join("out");
        replay(&logs, None, &replayed);
        Generated {
            logs,
            records,
            replayed,
        }
    })
}

fn minify(text: &str) -> String {
    let (mut out, mut in_string, mut escaped) = (String::with_capacity(text.len()), false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

/// Replaces the string value of the first `"key":"…"` (keys at the top level of a record).
fn set_field(raw: &str, key: &str, value: &str) -> Option<String> {
    let from = format!("\"{key}\":\"");
    let start = raw.find(&from)? + from.len();
    let end = start + raw[start..].find('"')?;
    Some(format!("{}{value}{}", &raw[..start], &raw[end..]))
}

fn write_generated_trail(logs: &Path) -> Vec<Rec> {
    let data = shared_data();
    let mut pool: Vec<String> = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(data.join("invictus-ir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    for (i, path) in names.iter().enumerate() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Every third file: about a thousand records.
        if i % 3 == 0 {
            pool.extend(
                v["Records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(Value::to_string),
            );
        }
    }
    let mut stratus: Vec<PathBuf> = std::fs::read_dir(data.join("stratus-red-team"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    stratus.sort();
    for path in stratus {
        let text = std::fs::read_to_string(&path).unwrap();
        #[derive(serde::Deserialize)]
        struct File<'a> {
            #[serde(rename = "Records", borrow)]
            records: Vec<&'a serde_json::value::RawValue>,
        }
        let records: Vec<&serde_json::value::RawValue> = serde_json::from_str(&text)
            .or_else(|_| serde_json::from_str::<File>(&text).map(|f| f.records))
            .unwrap();
        pool.extend(records.iter().map(|r| minify(r.get())));
    }
    let panther =
        std::fs::read_to_string(data.join("panther-tests/panther-test-events.jsonl")).unwrap();
    for line in panther.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let object = v.as_object_mut().unwrap();
        // Panther adds p_* fields of its own; CloudTrail never writes them.
        object.retain(|k, _| !k.starts_with("p_"));
        let category = object.get("eventCategory").and_then(Value::as_str);
        let root = object
            .get("userIdentity")
            .is_some_and(|u| u["type"] == "Root");
        if category.is_some_and(|c| c != "Insight") || (root && category.is_none()) {
            pool.push(v.to_string());
        }
    }
    pool.retain(|r| r.contains("\"eventID\":\"") && r.contains("\"eventTime\":\""));

    let accounts = ["111122223333", "444455556666"];
    let regions = ["us-east-1", "eu-west-1"];
    let base = parse_event_time("2026-01-15T00:00:00Z").unwrap();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed >> 33
    };
    let mut written = Vec::new();
    let mut previous: Option<String> = None;
    for (file, chunk) in pool.chunks(31).enumerate() {
        let account = accounts[file % 2];
        let region = regions[(file / 2) % 2];
        let window = base + (file as i64) * 300_000;
        let mut records = Vec::new();
        for (i, template) in chunk.iter().enumerate() {
            if i > 0 && next() % 100 == 0 {
                if let Some(p) = &previous {
                    records.push(p.clone()); // a duplicate delivery
                }
            }
            let id = format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                next(),
                file,
                i,
                next() % 4096,
                next()
            );
            let time = trailwatch::time::format_event_time(window + (next() % 300) as i64 * 1000);
            let mut raw = set_field(template, "eventID", &id).unwrap();
            raw = set_field(&raw, "eventTime", &time).unwrap();
            raw = set_field(&raw, "recipientAccountId", account).unwrap_or(raw);
            raw = set_field(&raw, "awsRegion", region).unwrap_or(raw);
            previous = Some(raw.clone());
            records.push(raw);
        }
        let (y, m, d) = ("2026", "01", "15");
        let folder = logs.join(format!("{account}/CloudTrail/{region}/{y}/{m}/{d}"));
        std::fs::create_dir_all(&folder).unwrap();
        let stamp = &trailwatch::time::format_event_time(window).replace(['-', ':'], "")[..13];
        let path = folder.join(format!(
            "{account}_CloudTrail_{region}_{stamp}Z_f{file:04}.json.gz"
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(format!("{{\"Records\":[{}]}}", records.join(",")).as_bytes())
            .unwrap();
        std::fs::write(path, gz.finish().unwrap()).unwrap();
        written.extend(records.iter().map(|r| Rec::new(r)));
    }
    written
}

// ---------------------------------------------------------------------------------------

#[test]
fn each_attribute_key_finds_exactly_the_matching_records() {
    let (dir, records) = sample();
    check_every_key(dir, records);
    let (dir, records) = invictus();
    check_every_key(dir, records);
    let g = generated();
    check_every_key(&g.logs, &g.records);
}

#[test]
fn a_deleted_bucket_and_who_deleted_it_is_one_command() {
    let (dir, records) = invictus();
    let deletes: Vec<&Rec> = records
        .iter()
        .filter(|r| r.name() == Some("DeleteBucket"))
        .collect();
    assert!(!deletes.is_empty());
    let bucket = deletes[0].s("/requestParameters/bucketName").unwrap();
    let key_and_value = attr("ResourceName", bucket);
    let (code, stdout, stderr) = trailwatch(&[
        "lookup",
        dir.to_str().unwrap(),
        "--lookup-attributes",
        &key_and_value,
        "--output",
        "table",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let expected = expect(
        records,
        Some(("ResourceName", bucket)),
        (None, None),
        false,
        false,
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        expected.len() + 1,
        "a header and one line per event:\n{stdout}"
    );
    for column in [
        "EVENT TIME",
        "EVENT NAME",
        "USER NAME",
        "SOURCE IP",
        "EVENT ID",
        "RESOURCES",
    ] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    // The delete's line names the event, who, from where, and the bucket.
    for delete in expected
        .values()
        .filter(|r| r.name() == Some("DeleteBucket"))
    {
        let line = lines
            .iter()
            .find(|l| l.contains(delete.id()))
            .unwrap_or_else(|| panic!("{} not in\n{stdout}", delete.id()));
        assert!(line.contains("DeleteBucket"), "{line}");
        assert!(line.contains(&delete.username().unwrap()), "{line}");
        assert!(
            line.contains(delete.s("/sourceIPAddress").unwrap()),
            "{line}"
        );
        assert!(line.contains(bucket), "{line}");
    }
    // Table rows are newest first and aligned (every row's event ID starts in one column).
    let id_column = lines[0].find("EVENT ID").unwrap();
    let mut times = Vec::new();
    for line in &lines[1..] {
        let rec = expected
            .values()
            .find(|r| line[id_column..].starts_with(r.id()))
            .unwrap();
        times.push(rec.time());
    }
    assert!(times.windows(2).all(|w| w[0] >= w[1]));

    // By event name, the same answer.
    let out = check_lookup(
        dir,
        records,
        &[
            "--lookup-attributes",
            "AttributeKey=EventName,AttributeValue=DeleteBucket",
        ],
        &expect(
            records,
            Some(("EventName", "DeleteBucket")),
            (None, None),
            false,
            false,
        ),
    );
    assert!(out.events.iter().all(|e| e["Username"].is_string()));
}

#[test]
fn time_ranges_are_inclusive_and_combine_with_an_attribute() {
    let (dir, records) = invictus();
    let mut times: Vec<i64> = records.iter().map(Rec::time).collect();
    times.sort();
    let (start, end) = (times[times.len() / 4], times[times.len() / 2]);
    let start_text = trailwatch::time::format_event_time(start);
    let end_text = trailwatch::time::format_event_time(end);
    let expected = expect(records, None, (Some(start), Some(end)), false, false);
    assert!(
        expected.values().any(|r| r.time() == start) && expected.values().any(|r| r.time() == end)
    );
    check_lookup(
        dir,
        records,
        &["--start-time", &start_text, "--end-time", &end_text],
        &expected,
    );
    // UNIX seconds, as LookupEvents takes them, mean the same.
    let (s, e) = ((start / 1000).to_string(), (end / 1000).to_string());
    check_lookup(
        dir,
        records,
        &["--start-time", &s, "--end-time", &e],
        &expected,
    );
    // An offset is converted to UTC.
    let shifted = trailwatch::time::format_event_time(start + 2 * 3_600_000).replace('Z', "+02:00");
    check_lookup(
        dir,
        records,
        &["--start-time", &shifted, "--end-time", &end_text],
        &expected,
    );
    // Open-ended ranges and a range with an attribute.
    check_lookup(
        dir,
        records,
        &["--start-time", &end_text],
        &expect(records, None, (Some(end), None), false, false),
    );
    check_lookup(
        dir,
        records,
        &["--end-time", &start_text],
        &expect(records, None, (None, Some(start)), false, false),
    );
    check_lookup(
        dir,
        records,
        &[
            "--start-time",
            &start_text,
            "--end-time",
            &end_text,
            "--lookup-attributes",
            &attr("ReadOnly", "false"),
        ],
        &expect(
            records,
            Some(("ReadOnly", "false")),
            (Some(start), Some(end)),
            false,
            false,
        ),
    );
    // A date alone is its midnight UTC: the whole of the data's day.
    let day = &start_text[..10];
    let midnight = parse_event_time(&format!("{day}T00:00:00Z")).unwrap();
    check_lookup(
        dir,
        records,
        &["--start-time", day],
        &expect(records, None, (Some(midnight), None), false, false),
    );
}

#[test]
fn max_results_gives_the_newest_page_and_next_token_walks_the_rest() {
    let (dir, records) = invictus();
    let d = dir.to_str().unwrap();
    let a = attr("EventSource", "s3.amazonaws.com");
    let expected = expect(
        records,
        Some(("EventSource", "s3.amazonaws.com")),
        (None, None),
        false,
        false,
    );
    assert!(expected.len() > 100);
    let all_times: Vec<i64> = expected.values().map(|r| r.time()).collect();

    let mut seen: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec![
            "lookup",
            d,
            "--lookup-attributes",
            &a,
            "--max-results",
            "50",
        ];
        if let Some(t) = &token {
            args.extend(["--next-token", t]);
        }
        let (code, stdout, stderr) = trailwatch(&args);
        assert_eq!(code, 0, "{stderr}");
        let out = parse_output(&stdout);
        pages += 1;
        assert!(out.events.len() <= 50);
        if out.next_token.is_some() {
            assert_eq!(out.events.len(), 50, "a full page before a NextToken");
        }
        if pages == 1 {
            // The first page holds the 50 newest: nothing left out is newer than its oldest.
            let oldest = out.events.iter().map(time_of).min().unwrap();
            let newer_elsewhere = all_times.iter().filter(|&&t| t > oldest).count();
            assert!(
                newer_elsewhere <= 50,
                "{newer_elsewhere} events are newer than the page's oldest"
            );
        }
        seen.extend(out.events);
        match out.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, expected.len().div_ceil(50));
    let got: Vec<&str> = seen
        .iter()
        .map(|e| e["CloudTrailEvent"].as_str().unwrap())
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "each event once across the pages"
    );
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        expected.keys().map(String::as_str).collect()
    );
    assert!(
        seen.windows(2).all(|w| time_of(&w[0]) >= time_of(&w[1])),
        "newest first across pages"
    );

    // The AWS CLI's own flags: --max-items / --starting-token page the same way, and a page
    // of the whole listing is a prefix of it.
    let (_, full, _) = trailwatch(&["lookup", d, "--lookup-attributes", &a]);
    let full = parse_output(&full);
    assert!(
        full.next_token.is_none(),
        "without a limit, every event and no NextToken"
    );
    assert_eq!(full.events, seen, "pages concatenated = the whole listing");
    let (_, first, _) = trailwatch(&[
        "lookup",
        d,
        "--lookup-attributes",
        &a,
        "--max-items",
        "7",
        "--page-size",
        "5",
    ]);
    let first = parse_output(&first);
    assert_eq!(first.events, full.events[..7]);
    let t = first.next_token.unwrap();
    let (_, second, _) = trailwatch(&[
        "lookup",
        d,
        "--lookup-attributes",
        &a,
        "--max-items",
        "7",
        "--starting-token",
        &t,
    ]);
    assert_eq!(parse_output(&second).events, full.events[7..14]);
    let (_, one, _) = trailwatch(&["lookup", d, "--lookup-attributes", &a, "--no-paginate"]);
    assert_eq!(
        parse_output(&one).events,
        full.events[..50],
        "--no-paginate: one page of 50"
    );

    // A token is bound to its query's parameters.
    let (code, _, stderr) = trailwatch(&["lookup", d, "--max-results", "5", "--next-token", &t]);
    assert_eq!(code, 2);
    assert!(stderr.contains("InvalidNextTokenException"), "{stderr}");
    let (code, _, stderr) = trailwatch(&["lookup", d, "--next-token", "not-a-token"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("InvalidNextTokenException"), "{stderr}");
}

#[test]
fn without_an_attribute_every_event_is_listed_with_lookup_events_fields() {
    // Every field of every event checked against its record (check_fields), on all three.
    let (dir, records) = sample();
    check_lookup(
        dir,
        records,
        &[],
        &expect(records, None, (None, None), false, false),
    );
    let (dir, records) = invictus();
    check_lookup(
        dir,
        records,
        &[],
        &expect(records, None, (None, None), false, false),
    );
    let g = generated();
    check_lookup(
        &g.logs,
        &g.records,
        &[],
        &expect(&g.records, None, (None, None), false, false),
    );
}

#[test]
fn insights_events_only_with_event_category_insight() {
    let (dir, records) = sample();
    let insights = expect(records, None, (None, None), true, false);
    assert_eq!(insights.len(), 5, "the sample trail's Insights records");
    check_lookup(dir, records, &["--event-category", "insight"], &insights);
    let some = insights.values().next().unwrap();
    let name = some.name().unwrap();
    check_lookup(
        dir,
        records,
        &[
            "--event-category",
            "insight",
            "--lookup-attributes",
            &attr("EventName", name),
        ],
        &expect(
            records,
            Some(("EventName", name)),
            (None, None),
            true,
            false,
        ),
    );
    // Without the category the Insights records are not listed (checked by check_lookup's
    // exact set), and keys other than EventId/EventName/EventSource are refused for them.
    check_lookup(
        dir,
        records,
        &[],
        &expect(records, None, (None, None), false, false),
    );
    let (code, _, stderr) = trailwatch(&[
        "lookup",
        dir.to_str().unwrap(),
        "--event-category",
        "insight",
        "--lookup-attributes",
        &attr("Username", "x"),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("InvalidLookupAttributesException"),
        "{stderr}"
    );
}

#[test]
fn data_and_network_events_unless_management_only() {
    let g = generated();
    let all = expect(&g.records, None, (None, None), false, false);
    let management = expect(&g.records, None, (None, None), false, true);
    assert!(
        all.len() > management.len(),
        "the generated trail has data/network-activity events"
    );
    check_lookup(&g.logs, &g.records, &["--management-only"], &management);
    let a = attr("ReadOnly", "false");
    check_lookup(
        &g.logs,
        &g.records,
        &["--management-only", "--lookup-attributes", &a],
        &expect(
            &g.records,
            Some(("ReadOnly", "false")),
            (None, None),
            false,
            true,
        ),
    );
}

#[test]
fn log_files_and_their_replay_give_the_same_answers() {
    let g = generated();
    let replayed = jsonl_records(&g.replayed);
    assert!(jsonl_records(&g.replayed).len() > 1000);
    let streams = std::fs::read_dir(&g.replayed)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("_CloudTrail_")
        })
        .count();
    assert_eq!(streams, 4, "two accounts × two Regions");
    let kept: BTreeSet<&str> = replayed.iter().map(|r| r.raw.as_str()).collect();
    for args in [
        vec!["--management-only"],
        vec![
            "--management-only",
            "--lookup-attributes",
            "AttributeKey=EventSource,AttributeValue=ec2.amazonaws.com",
        ],
        vec![
            "--lookup-attributes",
            "AttributeKey=ReadOnly,AttributeValue=false",
        ],
    ] {
        let run = |dir: &Path| {
            let mut all = vec!["lookup", dir.to_str().unwrap()];
            all.extend_from_slice(&args);
            let (code, stdout, stderr) = trailwatch(&all);
            assert_eq!(code, 0, "{stderr}");
            parse_output(&stdout).events
        };
        let from_logs: Vec<Value> = run(&g.logs)
            .into_iter()
            .filter(|e| kept.contains(e["CloudTrailEvent"].as_str().unwrap()))
            .collect();
        let from_replay = run(&g.replayed);
        assert!(!from_replay.is_empty());
        assert!(
            from_logs == from_replay,
            "{args:?}: the same events, fields and order"
        );
    }
    // Duplicate deliveries in the log files are listed once.
    let duplicated = g.records.len()
        - g.records
            .iter()
            .map(|r| &r.raw)
            .collect::<BTreeSet<_>>()
            .len();
    assert!(
        duplicated > 0,
        "the generated trail has duplicate deliveries"
    );
}

#[test]
fn an_unreadable_line_is_reported_by_file_and_line_and_the_rest_is_searched() {
    let (dir, records) = invictus();
    let copy = temp_dir("broken");
    let mut broken_file = None;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        if broken_file.is_none() && name.to_string_lossy().contains("_CloudTrail_") {
            // Line 3 is not JSON, line 6 is a record without eventTime, line 9 is blank.
            let mut lines: Vec<&str> = text.lines().collect();
            lines.insert(2, "{\"eventVersion\":\"1.08\",\"eventName\":");
            lines.insert(
                5,
                "{\"eventName\":\"DeleteBucket\",\"eventID\":\"no-time\"}",
            );
            lines.insert(8, "");
            std::fs::write(copy.join(&name), lines.join("\n") + "\n").unwrap();
            broken_file = Some(name);
        } else {
            std::fs::write(copy.join(&name), text).unwrap();
        }
    }
    let name = broken_file.unwrap().to_string_lossy().into_owned();
    let (code, stdout, stderr) = trailwatch(&[
        "lookup",
        copy.to_str().unwrap(),
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=DeleteBucket",
    ]);
    assert_eq!(code, 1, "problems make the exit code 1\n{stderr}");
    assert!(stderr.contains(&format!("{name}:3:")), "{stderr}");
    assert!(
        stderr.contains(&format!("{name}:6:")) && stderr.contains("eventTime"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("{name}:9:")),
        "a blank line is no problem: {stderr}"
    );
    let got: BTreeSet<String> = parse_output(&stdout)
        .events
        .iter()
        .map(|e| e["CloudTrailEvent"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = expect(
        records,
        Some(("EventName", "DeleteBucket")),
        (None, None),
        false,
        false,
    )
    .into_keys()
    .collect();
    assert_eq!(got, want, "every good record is still searched");
}

#[test]
fn wrong_arguments_and_missing_input_exit_2_with_lookup_events_errors() {
    let (dir, _) = sample();
    let d = dir.to_str().unwrap();
    let empty = temp_dir("empty");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["lookup", "/nonexistent/trailwatch-folder"],
            "no such file or folder",
        ),
        (vec!["lookup", empty.to_str().unwrap()], "no stream files"),
        (vec!["lookup"], "--log-group"),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=a",
                "AttributeKey=Username,AttributeValue=b",
            ],
            "InvalidLookupAttributesException",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=Bucket,AttributeValue=a",
            ],
            "InvalidLookupAttributesException",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=eventName,AttributeValue=a",
            ],
            "did you mean EventName",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=EventName,AttributeValue=",
            ],
            "1 to 2000",
        ),
        (
            vec![
                "lookup",
                d,
                "--lookup-attributes",
                "AttributeKey=ReadOnly,AttributeValue=yes",
            ],
            "true or false",
        ),
        (
            vec![
                "lookup",
                d,
                "--start-time",
                "2024-03-02",
                "--end-time",
                "2024-03-01",
            ],
            "InvalidTimeRangeException",
        ),
        (
            vec!["lookup", d, "--start-time", "last tuesday"],
            "not a time",
        ),
        (vec!["lookup", d, "--max-results", "0"], "1..=50"),
        (vec!["lookup", d, "--max-results", "51"], "1..=50"),
        (vec!["lookup", d, "--event-category", "data"], "insight"),
        (
            vec!["lookup", d, "--region", "us-east-1"],
            "--log-group only",
        ),
        (vec!["lookup", d, "--log-group", "g"], "cannot be used"),
        (vec!["lookup", d, "--output", "text"], "table"),
    ];
    let long = format!(
        "AttributeKey=EventName,AttributeValue={}",
        "a b".repeat(501)
    );
    let mut cases = cases;
    cases.push((vec!["lookup", d, "--lookup-attributes", &long], "1 to 2000"));
    for (args, message) in cases {
        let (code, stdout, stderr) = trailwatch(&args);
        assert_eq!(code, 2, "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    // The folder may follow the attribute (clap hands it to the attribute's values).
    let (code, stdout, stderr) = trailwatch(&[
        "lookup",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=ListBuckets",
        d,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!parse_output(&stdout).events.is_empty());
    // JSON, as the AWS CLI also takes it.
    let (code, stdout, _) = trailwatch(&[
        "lookup",
        d,
        "--lookup-attributes",
        r#"[{"AttributeKey":"EventName","AttributeValue":"ListBuckets"}]"#,
    ]);
    assert_eq!(code, 0);
    assert!(!parse_output(&stdout).events.is_empty());
}
