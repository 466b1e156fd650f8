//! Chains and coverage on an in-memory copy, unsigned (signatures are covered by the
//! integration tests in `cli/tests/validate_logs.rs`).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use trailwatch::time::{format_event_time, parse_event_time, MS_PER_HOUR};

use super::*;
use crate::validate_logs::digest::{read_uncompressed, sha256_hex};
use crate::validate_logs::layout::{without_gz, LocalFile};

const ACCOUNT: &str = "218007301253";
const REGION: &str = "us-east-1";

struct Memory(HashMap<PathBuf, Vec<u8>>);

impl Source for Memory {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
        match self.0.get(path) {
            Some(bytes) => Ok(Box::new(&bytes[..])),
            None => Err(std::io::ErrorKind::NotFound.into()),
        }
    }
}

fn at(text: &str) -> i64 {
    parse_event_time(text).unwrap()
}

fn compact(ms: i64) -> String {
    format_event_time(ms).replace(['-', ':'], "")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A bucket copy being written: log files and an hourly digest chain.
#[derive(Default)]
struct Bucket {
    files: BTreeMap<String, Vec<u8>>,
    /// Key and uncompressed SHA-256 of the last digest written.
    last: Option<(String, String)>,
}

impl Bucket {
    fn log(&mut self, minute: &str, n: u32) -> (String, String) {
        let t = at(minute);
        let key = format!(
            "AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2023/07/10/{ACCOUNT}_CloudTrail_{REGION}_{}Z_{n:016}.json.gz",
            &compact(t)[..13]
        );
        let body = format!("{{\"Records\":[{{\"eventID\":\"{n}\"}}]}}");
        self.files.insert(key.clone(), gzip(body.as_bytes()));
        (key, sha256_hex(body.as_bytes()))
    }

    /// A digest ending at `end`, an hour long, chained to the previous one unless
    /// `starting`.
    fn digest(&mut self, end: &str, logs: &[(String, String)], starting: bool) -> String {
        let end = at(end);
        let key = format!(
            "AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/2023/07/10/{ACCOUNT}_CloudTrail-Digest_{REGION}_my_trail_{REGION}_{}.json.gz",
            compact(end)
        );
        let previous = if starting { None } else { self.last.clone() };
        let body = serde_json::json!({
            "awsAccountId": ACCOUNT,
            "digestStartTime": format_event_time(end - MS_PER_HOUR),
            "digestEndTime": format_event_time(end),
            "digestS3Bucket": "bucket",
            "digestS3Object": format!("prefix/{key}"),
            "digestSignatureAlgorithm": "SHA256withRSA",
            "previousDigestS3Bucket": previous.as_ref().map(|_| "bucket"),
            "previousDigestS3Object": previous.as_ref().map(|p| format!("prefix/{}", p.0)),
            "previousDigestHashValue": previous.as_ref().map(|p| p.1.clone()),
            "previousDigestHashAlgorithm": previous.as_ref().map(|_| "SHA-256"),
            "previousDigestSignature": previous.as_ref().map(|_| "00"),
            "logFiles": logs.iter().map(|(k, h)| serde_json::json!({
                "s3Bucket": "bucket", "s3Object": format!("prefix/{k}"),
                "hashValue": h, "hashAlgorithm": "SHA-256",
            })).collect::<Vec<_>>(),
        })
        .to_string();
        self.files.insert(key.clone(), gzip(body.as_bytes()));
        self.last = Some((key.clone(), sha256_hex(body.as_bytes())));
        key
    }

    /// Three hours: 11:31:07–12:31:07 (starting, 2 logs), –13:31:07 (1 log), –14:31:07
    /// (empty). Returns the digest keys and the log keys.
    fn three_hours() -> (Self, Vec<String>, Vec<String>) {
        let mut b = Bucket::default();
        let l1 = b.log("2023-07-10T11:45:00Z", 1);
        let l2 = b.log("2023-07-10T12:05:00Z", 2);
        let d1 = b.digest("2023-07-10T12:31:07Z", &[l1.clone(), l2.clone()], true);
        let l3 = b.log("2023-07-10T13:00:00Z", 3);
        let d2 = b.digest("2023-07-10T13:31:07Z", std::slice::from_ref(&l3), false);
        let d3 = b.digest("2023-07-10T14:31:07Z", &[], false);
        (b, vec![d1, d2, d3], vec![l1.0, l2.0, l3.0])
    }

    fn check(&self, options: &Options) -> Report {
        let files: Vec<LocalFile> = self
            .files
            .keys()
            .map(|tail| LocalFile {
                path: Path::new("/copy").join(tail),
                tail: tail.clone(),
            })
            .collect();
        let memory = Memory(
            files
                .iter()
                .map(|f| (f.path.clone(), self.files[&f.tail].clone()))
                .collect(),
        );
        validate(&files, options, &memory)
    }
}

fn status_of<'a>(report: &'a Report, key: &str) -> &'a FileResult {
    report
        .files
        .iter()
        .find(|f| f.key == key)
        .unwrap_or_else(|| panic!("{key} not in {report:#?}"))
}

#[test]
fn an_intact_chain_is_valid_in_time_order() {
    let (b, digests, logs) = Bucket::three_hours();
    let r = b.check(&Options::default());
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.digest_counts().valid, 3);
    assert_eq!(r.log_counts().valid, 3);
    let order: Vec<&str> = r.files.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(
        order,
        [
            &digests[0],
            &logs[0],
            &logs[1],
            &digests[1],
            &logs[2],
            &digests[2]
        ]
    );
    assert_eq!(
        r.found,
        Some((at("2023-07-10T11:31:07Z"), at("2023-07-10T14:31:07Z")))
    );
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[test]
fn a_changed_digest_breaks_the_hash_chain_and_its_logs_are_unverified() {
    let (mut b, digests, logs) = Bucket::three_hours();
    let text = String::from_utf8(read_uncompressed(&b.files[&digests[0]][..]).unwrap()).unwrap();
    let changed = text.replace("11:31:07Z", "11:31:08Z");
    b.files.insert(digests[0].clone(), gzip(changed.as_bytes()));
    let r = b.check(&Options::default());
    assert!(!r.ok());
    let d = status_of(&r, &digests[0]);
    assert_eq!(d.status, Status::Invalid);
    assert!(
        d.problems[0].starts_with("chain broken: hash expected"),
        "{:?}",
        d.problems
    );
    assert!(d.problems[0].contains(digests[1].rsplit('/').next().unwrap()));
    assert_eq!(status_of(&r, &logs[0]).status, Status::Unverified);
    assert_eq!(status_of(&r, &digests[1]).status, Status::Valid);
    assert_eq!(r.digest_counts().valid, 2);
    assert_eq!(r.log_counts().valid, 1);
}

#[test]
fn a_deleted_digest_is_missing_and_its_log_files_unlisted() {
    let (mut b, digests, logs) = Bucket::three_hours();
    b.files.remove(&digests[1]);
    let r = b.check(&Options::default());
    let d = status_of(&r, &digests[1]);
    assert_eq!(d.status, Status::Missing);
    assert_eq!(
        d.s3.as_deref(),
        Some(format!("s3://bucket/prefix/{}", digests[1]).as_str())
    );
    assert!(d.problems[0].contains("chain broken: previous digest of"));
    let l = status_of(&r, &logs[2]);
    assert_eq!(l.status, Status::Extra);
    assert!(l.problems[0].starts_with("not listed in any digest (delivered 2023-07-10T13:00"));
    assert_eq!(r.digest_counts().total, 3);
    assert_eq!(r.digest_counts().missing, 1);
    assert!(!r.ok());
}

#[test]
fn the_oldest_digest_gone_is_a_note_unless_start_time_asks_for_it() {
    let (mut b, digests, logs) = Bucket::three_hours();
    b.files.remove(&digests[0]);
    b.files.remove(&logs[0]);
    b.files.remove(&logs[1]);
    let r = b.check(&Options::default());
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.digest_counts().total, 2);
    assert!(r.notes[0].contains("not in the folder"), "{:?}", r.notes);
    let r = b.check(&Options {
        start: Some(at("2023-07-10T12:00:00Z")),
        ..Options::default()
    });
    assert_eq!(status_of(&r, &digests[0]).status, Status::Missing);
    assert!(!r.ok());
    let r = b.check(&Options {
        start: Some(at("2023-07-10T13:00:00Z")),
        ..Options::default()
    });
    assert!(r.ok(), "{r:#?}");
    assert!(r.notes[0].contains("before --start-time"), "{:?}", r.notes);
}

#[test]
fn a_digest_the_chain_skips_is_reported_and_a_restart_is_a_note() {
    let mut b = Bucket::default();
    let d1 = b.digest("2023-07-10T12:31:07Z", &[], true);
    let after_d1 = b.last.clone();
    // A digest inserted after the 1st, which the next one does not name.
    let intruder = b.digest("2023-07-10T13:00:00Z", &[], false);
    b.last = after_d1;
    let d2 = b.digest("2023-07-10T13:31:07Z", &[], false);
    let r = b.check(&Options::default());
    let i = status_of(&r, &intruder);
    assert_eq!(i.status, Status::Invalid);
    assert!(
        i.problems
            .iter()
            .any(|p| p.starts_with("not in the chain: the next digest")),
        "{:?}",
        i.problems
    );
    assert_eq!(status_of(&r, &d2).status, Status::Valid);
    // Both name the 1st as previous.
    let d = status_of(&r, &d1);
    assert!(
        d.problems.iter().any(|p| p.starts_with("chain forked")),
        "{:?}",
        d.problems
    );

    let (mut b, _, _) = Bucket::three_hours();
    b.digest("2023-07-10T18:31:07Z", &[], true);
    let r = b.check(&Options::default());
    assert!(r.ok(), "{r:#?}");
    assert!(r.notes[0].contains("chain restarts at"), "{:?}", r.notes);
}

#[test]
fn a_digest_under_another_name_has_moved() {
    let (mut b, digests, _) = Bucket::three_hours();
    let bytes = b.files[&digests[2]].clone();
    let copy = digests[2].replace("T143107Z", "T153107Z");
    b.files.insert(copy.clone(), bytes);
    let r = b.check(&Options::default());
    let c = status_of(&r, &copy);
    assert_eq!(c.status, Status::Invalid);
    assert!(
        c.problems
            .iter()
            .any(|p| p.starts_with("moved: it says it is s3://bucket/prefix/")),
        "{:?}",
        c.problems
    );
}

#[test]
fn decompressed_copies_validate_and_unreadable_ones_say_why() {
    let (mut b, digests, logs) = Bucket::three_hours();
    for key in [&digests[1], &logs[2]] {
        let plain = read_uncompressed(&b.files.remove(key.as_str()).unwrap()[..]).unwrap();
        b.files.insert(without_gz(key).to_owned(), plain);
    }
    let r = b.check(&Options::default());
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.log_counts().valid, 3);

    let bytes = b.files[&logs[0]].clone();
    b.files
        .insert(logs[0].clone(), bytes[..bytes.len() / 2].to_vec());
    b.files
        .insert(digests[2].clone(), b"{\"Records\":[]}".to_vec());
    let r = b.check(&Options::default());
    let l = status_of(&r, &logs[0]);
    assert_eq!(l.status, Status::Unreadable);
    assert!(l.problems[0].contains("deflate"), "{:?}", l.problems);
    let d = status_of(&r, &digests[2]);
    assert_eq!(d.problems, ["not a digest file: no digestStartTime"]);
    assert_eq!(status_of(&r, without_gz(&digests[1])).status, Status::Valid);
}

#[test]
fn unlisted_log_files_count_only_inside_the_covered_range() {
    let (mut b, _, _) = Bucket::three_hours();
    let inside = b.log("2023-07-10T12:40:00Z", 10).0;
    // The minute of 11:31 is not all inside 11:31:07..: may belong to the digest before.
    let edge = b.log("2023-07-10T11:31:00Z", 11).0;
    let after = b.log("2023-07-10T14:31:00Z", 12).0;
    let r = b.check(&Options::default());
    assert_eq!(status_of(&r, &inside).status, Status::Extra);
    assert!(r.files.iter().all(|f| f.key != edge && f.key != after));
    assert_eq!(r.extra(), 1);
    assert!(!r.ok());
    // Narrowed to the last hour, 12:40 is outside what is checked.
    let r = b.check(&Options {
        start: Some(at("2023-07-10T14:00:00Z")),
        ..Options::default()
    });
    assert_eq!(r.extra(), 0, "{r:#?}");
    assert_eq!(r.digest_counts().total, 1);
}
