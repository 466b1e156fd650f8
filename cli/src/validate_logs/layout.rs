//! Where a file sits in a trail bucket: the part of its key from `AWSLogs/` on (its *tail*),
//! the account and region it belongs to, and what it is (digest file, log file, signature
//! sidecar). The same parsing serves S3 keys named inside digests and local paths, so a local
//! copy matches its digests whatever bucket prefix it was synced from.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use trailwatch::time::{parse_compact_time, parse_event_time};

/// The folder of digest files under `AWSLogs/[o-orgid/]<account>/`.
pub const DIGEST_AREA: &str = "CloudTrail-Digest";
/// The folder of log files under `AWSLogs/[o-orgid/]<account>/`.
pub const LOG_AREA: &str = "CloudTrail";
/// What a digest's signature sidecar file name adds to the digest file name.
pub const SIGNATURE_SUFFIX: &str = ".sig";

/// The account and region folders a file sits in (plus the organization folder of an
/// organization trail).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub org: Option<String>,
    pub account: String,
    pub region: String,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(org) = &self.org {
            write!(f, "{org}/")?;
        }
        write!(f, "{} {}", self.account, self.region)
    }
}

/// A tail `AWSLogs/[o-orgid/]<account>/<area>/<region>/<rest...>` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed<'a> {
    pub scope: Scope,
    /// `CloudTrail`, `CloudTrail-Digest`, `CloudTrail-Insight`, ...
    pub area: &'a str,
    /// The folders after the region (`YYYY/MM/DD` as CloudTrail writes them) and the file name
    /// (last, never empty).
    pub rest: Vec<&'a str>,
}

impl Placed<'_> {
    pub fn file_name(&self) -> &str {
        self.rest.last().copied().unwrap_or_default()
    }
}

/// Parses a tail that starts with `AWSLogs/`.
pub fn place(tail: &str) -> Option<Placed<'_>> {
    let mut parts = tail.split('/');
    if parts.next()? != "AWSLogs" {
        return None;
    }
    let mut next = parts.next()?;
    let org = if next.starts_with("o-") && next.len() > 2 {
        let org = next.to_owned();
        next = parts.next()?;
        Some(org)
    } else {
        None
    };
    if next.len() != 12 || !next.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let account = next.to_owned();
    let area = parts.next().filter(|a| !a.is_empty())?;
    let region = parts.next().filter(|r| !r.is_empty())?.to_owned();
    let rest: Vec<&str> = parts.collect();
    if rest.last().is_none_or(|name| name.is_empty()) {
        return None;
    }
    Some(Placed {
        scope: Scope {
            org,
            account,
            region,
        },
        area,
        rest,
    })
}

/// The part of an S3 key or a `/`-separated path from its `AWSLogs/` folder on, when what
/// follows is the CloudTrail layout. The last such folder wins: a bucket prefix may itself
/// contain `AWSLogs`.
pub fn key_tail(key: &str) -> Option<&str> {
    let mut starts = std::iter::once(0).chain(key.match_indices('/').map(|(i, _)| i + 1));
    starts
        .rfind(|&i| key[i..].starts_with("AWSLogs/") && place(&key[i..]).is_some())
        .map(|i| &key[i..])
}

/// `tail` without a final `.gz`, so that a log or digest file decompressed after download
/// (`x.json`) still matches the key CloudTrail named (`x.json.gz`).
pub fn without_gz(tail: &str) -> &str {
    tail.strip_suffix(".gz").unwrap_or(tail)
}

/// What a digest file name says:
/// `<account>_CloudTrail-Digest_<region>_<trail>_<homeRegion>_<YYYYMMDDTHHmmssZ>.json.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestName {
    pub trail: String,
    pub home_region: String,
    /// The time in the name (the digest's end time), epoch milliseconds.
    pub time: i64,
}

/// Parses a digest file name in `scope` (its account and region must be the folders'). Also
/// accepted: a decompressed copy (`.json`) and the `_backfill` variant aws-cli recognises.
pub fn parse_digest_name(name: &str, scope: &Scope) -> Option<DigestName> {
    let stem = without_gz(name).strip_suffix(".json")?;
    let stem = stem.strip_suffix("_backfill").unwrap_or(stem);
    let prefix = format!("{}_{DIGEST_AREA}_{}_", scope.account, scope.region);
    let middle_and_time = stem.strip_prefix(&prefix)?;
    let (middle, time) = middle_and_time.rsplit_once('_')?;
    let time = parse_compact_time(time).filter(|_| time.len() == 16)?;
    // Trail names may contain `_`; region names never do.
    let (trail, home_region) = middle.rsplit_once('_')?;
    if trail.is_empty() || home_region.is_empty() {
        return None;
    }
    Some(DigestName {
        trail: trail.to_owned(),
        home_region: home_region.to_owned(),
        time,
    })
}

/// The delivery time in a log file name,
/// `<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<random>.json.gz` (minute precision).
pub fn parse_log_name_time(name: &str, scope: &Scope) -> Option<i64> {
    let prefix = format!("{}_{LOG_AREA}_{}_", scope.account, scope.region);
    let rest = name.strip_prefix(&prefix)?;
    let (time, _random) = rest.split_once('_')?;
    parse_compact_time(time).filter(|_| time.len() == 14)
}

/// The start of the day of the `YYYY/MM/DD` folders CloudTrail puts files in.
pub fn parse_day_folders(rest: &[&str]) -> Option<i64> {
    match rest {
        [y, m, d, _name] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
            parse_event_time(&format!("{y}-{m}-{d}T00:00:00Z")).ok()
        }
        _ => None,
    }
}

/// Whether a file name is one of the JSON files CloudTrail writes: the rule every command
/// shares (`trailwatch::local::files`).
pub fn is_json_name(name: &str) -> bool {
    trailwatch::local::is_log_file_name(name)
}

/// A file found under the folder, in the CloudTrail layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// The path to show: the folder as given, joined with the path below it.
    pub path: PathBuf,
    /// The part of its path from `AWSLogs/` on, `/`-separated.
    pub tail: String,
}

/// What walking the folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files in the CloudTrail layout, sorted by tail.
    pub files: Vec<LocalFile>,
    /// Files outside any `AWSLogs/<account>/<area>/<region>/` folder (not read).
    pub unplaced: usize,
    /// Folders or files that could not be read, with why.
    pub errors: Vec<(PathBuf, String)>,
}

/// Walks `folder` (following symbolic links, once per real folder) and places every file by
/// its path, including the folder's own path: `./AWSLogs` or `./copy` holding `AWSLogs/` both
/// work.
pub fn scan(folder: &Path) -> std::io::Result<Scan> {
    let real = folder.canonicalize()?;
    if !real.is_dir() {
        return Err(std::io::Error::other("not a folder"));
    }
    let mut scan = Scan::default();
    let mut seen = HashSet::new();
    let mut stack = vec![(folder.to_path_buf(), real)];
    while let Some((shown, real)) = stack.pop() {
        if !seen.insert(real.clone()) {
            continue;
        }
        let entries = match std::fs::read_dir(&real) {
            Ok(entries) => entries,
            Err(e) => {
                scan.errors.push((shown, e.to_string()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    scan.errors.push((shown.clone(), e.to_string()));
                    continue;
                }
            };
            let name = entry.file_name();
            let shown_child = shown.join(&name);
            let real_child = real.join(&name);
            // Follows symbolic links: a folder copied with links still counts.
            let meta = match std::fs::metadata(&real_child) {
                Ok(meta) => meta,
                Err(e) => {
                    scan.errors.push((shown_child, e.to_string()));
                    continue;
                }
            };
            if meta.is_dir() {
                match real_child.canonicalize() {
                    Ok(target) => stack.push((shown_child, target)),
                    Err(e) => scan.errors.push((shown_child, e.to_string())),
                }
            } else if meta.is_file() {
                let slashed = real_child.to_string_lossy().replace('\\', "/");
                match key_tail(&slashed) {
                    Some(tail) => scan.files.push(LocalFile {
                        path: shown_child,
                        tail: tail.to_owned(),
                    }),
                    None => scan.unplaced += 1,
                }
            }
        }
    }
    scan.files
        .sort_by(|a, b| a.tail.cmp(&b.tail).then(a.path.cmp(&b.path)));
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_my_trail_us-east-1_20150817T150131Z.json.gz";

    #[test]
    fn tail_skips_the_bucket_prefix_even_one_with_awslogs_in_it() {
        assert_eq!(key_tail(DIGEST), Some(DIGEST));
        assert_eq!(key_tail(&format!("logs/prod/{DIGEST}")), Some(DIGEST));
        assert_eq!(key_tail(&format!("AWSLogs/{DIGEST}")), Some(DIGEST));
        assert_eq!(
            key_tail(&format!("/home/me/copy/{DIGEST}")),
            Some(DIGEST),
            "a local path"
        );
        assert_eq!(
            key_tail("AWSLogs/1111/CloudTrail/us-east-1/x.json.gz"),
            None
        );
        assert_eq!(
            key_tail("xAWSLogs/111122223333/CloudTrail/us-east-1/x"),
            None
        );
        assert_eq!(key_tail("AWSLogs/111122223333/CloudTrail/us-east-1/"), None);
    }

    #[test]
    fn places_account_region_and_organization() {
        let p = place(DIGEST).unwrap();
        assert_eq!(p.scope.account, "111122223333");
        assert_eq!(p.scope.region, "us-east-2");
        assert_eq!(p.scope.org, None);
        assert_eq!(p.area, DIGEST_AREA);
        assert_eq!(p.rest.len(), 4);
        let org =
            place("AWSLogs/o-exampleorgid/111122223333/CloudTrail/eu-west-1/2024/01/02/f.json.gz")
                .unwrap();
        assert_eq!(org.scope.org.as_deref(), Some("o-exampleorgid"));
        assert_eq!(org.scope.account, "111122223333");
        assert_eq!(org.area, LOG_AREA);
        assert_eq!(org.file_name(), "f.json.gz");
    }

    #[test]
    fn digest_names_with_underscores_in_the_trail_name() {
        let p = place(DIGEST).unwrap();
        let name = parse_digest_name(p.file_name(), &p.scope).unwrap();
        assert_eq!(name.trail, "my_trail");
        assert_eq!(name.home_region, "us-east-1");
        assert_eq!(name.time, parse_event_time("2015-08-17T15:01:31Z").unwrap());
        let plain = "111122223333_CloudTrail-Digest_us-east-2_t_us-east-1_20150817T150131Z.json";
        assert!(parse_digest_name(plain, &p.scope).is_some());
        let other_region =
            "111122223333_CloudTrail-Digest_eu-west-1_t_us-east-1_20150817T150131Z.json.gz";
        assert_eq!(parse_digest_name(other_region, &p.scope), None);
        let minutes_only =
            "111122223333_CloudTrail-Digest_us-east-2_t_us-east-1_20150817T1501Z.json.gz";
        assert_eq!(parse_digest_name(minutes_only, &p.scope), None);
    }

    #[test]
    fn log_names_give_the_delivery_minute() {
        let scope = Scope {
            org: None,
            account: "111122223333".into(),
            region: "us-east-2".into(),
        };
        assert_eq!(
            parse_log_name_time(
                "111122223333_CloudTrail_us-east-2_20150801T0210Z_Mu0KsOhtH1ar15ZZ.json.gz",
                &scope
            ),
            Some(parse_event_time("2015-08-01T02:10:00Z").unwrap())
        );
        assert_eq!(parse_log_name_time("notes.json.gz", &scope), None);
        assert_eq!(
            parse_day_folders(&["2015", "08", "01", "x.json.gz"]),
            Some(parse_event_time("2015-08-01T00:00:00Z").unwrap())
        );
        assert_eq!(parse_compact_time("20151301T0000Z"), None);
    }
}
