//! The trail under test, written to disk once per test binary the way CloudTrail writes it,
//! and each test's own copy of it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const ACCOUNT: &str = "218007301253"; // the account of the invictus-ir records
pub const BUCKET: &str = "trailwatch-test-trail";
/// The trail's S3 key prefix: in the digests, not in the local copy (synced from AWSLogs/ on).
pub const PREFIX: &str = "org-logs";
pub const TRAIL: &str = "management_trail";
pub const HOME: &str = "us-east-1";

/// One digest of the generated trail.
#[derive(Debug, Clone)]
pub struct DigestSpec {
    pub region: &'static str,
    /// Key from `AWSLogs/` on.
    pub tail: String,
    /// Keys (from `AWSLogs/` on) of the log files it lists.
    pub logs: Vec<String>,
}

/// The generated trail: digests in chain order per region.
#[derive(Debug, Clone)]
pub struct Trail {
    pub digests: Vec<DigestSpec>,
}

impl Trail {
    pub fn digest(&self, region: &str, index: usize) -> &DigestSpec {
        self.digests
            .iter()
            .filter(|d| d.region == region)
            .nth(index)
            .unwrap()
    }

    pub fn log_count(&self) -> usize {
        self.digests.iter().map(|d| d.logs.len()).sum()
    }
}

/// Each region's digests: (end time, delivery minutes of the log files it lists).
/// us-east-1: starting digest, two with logs, an empty one. eu-west-1: starting, empty, logs.
/// A digest's end time and the delivery minutes of the log files it lists.
pub type DigestSchedule = (&'static str, &'static [&'static str]);

pub const SCHEDULE: &[(&str, &[DigestSchedule])] = &[
    (
        "us-east-1",
        &[
            ("2023-07-10T12:31:07Z", &["11:50", "12:05", "12:20"]),
            ("2023-07-10T13:31:07Z", &["12:40", "13:00", "13:20"]),
            ("2023-07-10T14:31:07Z", &["13:45", "14:05"]),
            ("2023-07-10T15:31:07Z", &[]),
        ],
    ),
    (
        "eu-west-1",
        &[
            ("2023-07-10T12:31:40Z", &["11:55", "12:25"]),
            ("2023-07-10T13:31:40Z", &[]),
            ("2023-07-10T14:31:40Z", &["13:50", "14:10", "14:25"]),
        ],
    ),
];

pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/validate_logs"
    ))
}

pub fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

pub fn invictus_files() -> Vec<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/invictus-ir"
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "expected the invictus-ir log files");
    files
}

/// The records of a `{"Records":[...]}` file, as exact JSON text.
pub fn records_of(path: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct F<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a serde_json::value::RawValue>,
    }
    let text = std::fs::read_to_string(path).unwrap();
    let f: F = serde_json::from_str(&text).unwrap();
    f.records.iter().map(|r| r.get().to_owned()).collect()
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// `YYYYMMDDTHHmmssZ` of `2023-07-10T12:31:07Z`.
pub fn compact(iso: &str) -> String {
    iso.replace(['-', ':'], "")
}

pub fn private_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(fixture("test-key.pem")).unwrap())
        .unwrap()
}

/// CloudTrail's string to sign, written out here independently of the command's code.
pub fn sign(key: &RsaPrivateKey, digest: &Value, uncompressed: &[u8]) -> String {
    let previous = digest["previousDigestSignature"].as_str().unwrap_or("null");
    let message = format!(
        "{}\n{}/{}\n{}\n{previous}",
        digest["digestEndTime"].as_str().unwrap(),
        digest["digestS3Bucket"].as_str().unwrap(),
        digest["digestS3Object"].as_str().unwrap(),
        sha256_hex(uncompressed)
    );
    let signature = key
        .sign(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(message.as_bytes()),
        )
        .unwrap();
    signature.iter().map(|b| format!("{b:02x}")).collect()
}

/// Long by design: the trail's files and digests, in the order CloudTrail writes them.
/// Writes the whole trail under `root` (which then holds `AWSLogs/`).
pub fn write_trail(root: &Path) -> Trail {
    let key = private_key();
    let fingerprint = serde_json::from_str::<Value>(
        &std::fs::read_to_string(fixture("test-key.list-public-keys.json")).unwrap(),
    )
    .unwrap()["PublicKeyList"][0]["Fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let sources = invictus_files();
    let log_total: usize = SCHEDULE
        .iter()
        .flat_map(|(_, ds)| ds.iter())
        .map(|(_, logs)| logs.len())
        .sum();
    let per_log = sources.len() / log_total;
    let mut next_source = 0;
    let mut digests = Vec::new();
    for (region, schedule) in SCHEDULE {
        let mut previous: Option<(String, String, String)> = None; // object, sha, signature
        for (digest_index, (end, minutes)) in schedule.iter().enumerate() {
            let mut entries = Vec::new();
            let mut tails = Vec::new();
            let (mut newest, mut oldest): (Option<String>, Option<String>) = (None, None);
            for (i, minute) in minutes.iter().enumerate() {
                let records: Vec<String> = sources[next_source..next_source + per_log]
                    .iter()
                    .flat_map(|p| records_of(p))
                    .collect();
                next_source += per_log;
                let times: Vec<String> = records
                    .iter()
                    .map(|r| {
                        serde_json::from_str::<Value>(r).unwrap()["eventTime"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    })
                    .collect();
                let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
                let body = format!("{{\"Records\":[{}]}}", records.join(","));
                let stamp = format!("20230710T{}Z", minute.replace(':', ""));
                let tail = format!(
                    "AWSLogs/{ACCOUNT}/CloudTrail/{region}/2023/07/10/{ACCOUNT}_CloudTrail_{region}_{stamp}_TwTest{digest_index}{i}{:08}.json.gz",
                    next_source
                );
                write(&root.join(&tail), &gzip(body.as_bytes()));
                entries.push(json!({
                    "s3Bucket": BUCKET,
                    "s3Object": format!("{PREFIX}/{tail}"),
                    "hashValue": sha256_hex(body.as_bytes()),
                    "hashAlgorithm": "SHA-256",
                    "newestEventTime": last,
                    "oldestEventTime": first,
                }));
                newest = newest.max(Some(last.clone()));
                oldest = Some(oldest.map_or(first.clone(), |o| o.min(first.clone())));
                tails.push(tail);
            }
            let folder = &end[..10].replace('-', "/");
            let tail = format!(
                "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{region}/{folder}/{ACCOUNT}_CloudTrail-Digest_{region}_{TRAIL}_{HOME}_{}.json.gz",
                compact(end)
            );
            let start = format!(
                "2023-07-10T{:02}{}",
                end[11..13].parse::<u32>().unwrap() - 1,
                &end[13..]
            );
            let digest = json!({
                "awsAccountId": ACCOUNT,
                "digestStartTime": start,
                "digestEndTime": end,
                "digestS3Bucket": BUCKET,
                "digestS3Object": format!("{PREFIX}/{tail}"),
                "digestPublicKeyFingerprint": fingerprint,
                "digestSignatureAlgorithm": "SHA256withRSA",
                "newestEventTime": newest,
                "oldestEventTime": oldest,
                "previousDigestS3Bucket": previous.as_ref().map(|_| BUCKET),
                "previousDigestS3Object": previous.as_ref().map(|p| p.0.clone()),
                "previousDigestHashValue": previous.as_ref().map(|p| p.1.clone()),
                "previousDigestHashAlgorithm": previous.as_ref().map(|_| "SHA-256"),
                "previousDigestSignature": previous.as_ref().map(|p| p.2.clone()),
                "logFiles": entries,
            });
            let bytes = serde_json::to_vec(&digest).unwrap();
            let signature = sign(&key, &digest, &bytes);
            write(&root.join(&tail), &gzip(&bytes));
            // As `aws s3api head-object --query Metadata.signature --output text` prints it.
            write(
                &root.join(format!("{tail}.sig")),
                format!("{signature}\n").as_bytes(),
            );
            previous = Some((format!("{PREFIX}/{tail}"), sha256_hex(&bytes), signature));
            digests.push(DigestSpec {
                region,
                tail,
                logs: tails,
            });
        }
    }
    Trail { digests }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The trail is written and signed once per test run (RSA signing is slow in a debug build),
/// under cargo's temporary folder for integration tests, then copied for each test.
pub fn template() -> &'static (PathBuf, Trail) {
    static TEMPLATE: OnceLock<(PathBuf, Trail)> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("validate-logs-template-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        remove_stale_copies();
        let trail = write_trail(&dir);
        (dir, trail)
    })
}

/// Copies left by earlier runs whose process is gone (on Linux).
pub fn remove_stale_copies() {
    let Ok(entries) = std::fs::read_dir(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("validate-logs-")
            .and_then(|rest| rest.rsplit('-').next())
        else {
            continue;
        };
        if pid != std::process::id().to_string()
            && Path::new("/proc/self").exists()
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A test's own copy of the trail, removed when the test passes (kept to look at if it fails).
pub struct TrailCopy {
    pub dir: PathBuf,
}

impl std::ops::Deref for TrailCopy {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TrailCopy {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh copy of the trail for one test: (folder holding AWSLogs/, the trail).
pub fn trail_copy(name: &str) -> (TrailCopy, Trail) {
    let (template, trail) = template();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("validate-logs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(template, &dir);
    (TrailCopy { dir }, trail.clone())
}
