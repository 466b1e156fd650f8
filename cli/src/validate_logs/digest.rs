//! A digest file: reading it (gzip or plain), its fields, the hashes CloudTrail computes and
//! the string it signs.

use std::io::{BufRead, BufReader, Read};

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use thiserror::Error;
use trailwatch::time::{parse_event_time, EventTimeError};

/// The only hash algorithm CloudTrail uses for log and digest files.
pub const HASH_ALGORITHM: &str = "SHA-256";
/// The only signature algorithm CloudTrail uses for digest files.
pub const SIGNATURE_ALGORITHM: &str = "SHA256withRSA";

/// The fields of a digest file that validation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub account: String,
    /// `digestStartTime`, epoch milliseconds.
    pub start: i64,
    /// `digestEndTime` exactly as written (it is part of the string to sign).
    pub end_text: String,
    /// `digestEndTime`, epoch milliseconds.
    pub end: i64,
    pub bucket: String,
    pub object: String,
    pub fingerprint: Option<String>,
    pub signature_algorithm: Option<String>,
    pub previous_bucket: Option<String>,
    pub previous_object: Option<String>,
    pub previous_hash: Option<String>,
    pub previous_hash_algorithm: Option<String>,
    pub previous_signature: Option<String>,
    pub log_files: Vec<LogEntry>,
}

/// One `logFiles[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub bucket: String,
    pub object: String,
    pub hash: String,
    pub hash_algorithm: Option<String>,
}

impl Digest {
    /// A starting digest (validation or logging just (re)started) names no previous digest.
    pub fn is_starting(&self) -> bool {
        self.previous_object.is_none()
    }

    /// What is inconsistent in the `previousDigest*` fields, if anything: a starting digest
    /// has them all null, any other has them all set.
    pub fn previous_fields_problem(&self) -> Option<String> {
        let fields = [
            ("previousDigestS3Bucket", self.previous_bucket.is_some()),
            ("previousDigestS3Object", self.previous_object.is_some()),
            ("previousDigestHashValue", self.previous_hash.is_some()),
            (
                "previousDigestHashAlgorithm",
                self.previous_hash_algorithm.is_some(),
            ),
            ("previousDigestSignature", self.previous_signature.is_some()),
        ];
        let set: Vec<&str> = fields.iter().filter(|f| f.1).map(|f| f.0).collect();
        let null: Vec<&str> = fields.iter().filter(|f| !f.1).map(|f| f.0).collect();
        if set.is_empty() || null.is_empty() {
            return None;
        }
        Some(format!(
            "inconsistent chain fields: {} set but {} null (a starting digest has them all null)",
            set.join(", "),
            null.join(", ")
        ))
    }

    /// The string CloudTrail signs (aws-cli `_create_string_to_sign`).
    pub fn string_to_sign(&self, digest_sha256_hex: &str) -> String {
        string_to_sign(
            &self.end_text,
            &self.bucket,
            &self.object,
            digest_sha256_hex,
            self.previous_signature.as_deref(),
        )
    }
}

/// `digestEndTime\ndigestS3Bucket/digestS3Object\nhex(SHA-256(uncompressed digest))\n
/// previousDigestSignature`, with the literal `null` for a starting digest.
pub fn string_to_sign(
    end_time: &str,
    bucket: &str,
    object: &str,
    digest_sha256_hex: &str,
    previous_signature: Option<&str>,
) -> String {
    format!(
        "{end_time}\n{bucket}/{object}\n{digest_sha256_hex}\n{}",
        previous_signature.unwrap_or("null")
    )
}

/// Why bytes are not a digest file.
#[derive(Debug, Error)]
pub enum DigestError {
    #[error("not a digest file: not JSON ({0})")]
    NotJson(#[source] serde_json::Error),
    #[error("not a digest file: the JSON is not an object")]
    NotAnObject,
    #[error("not a digest file: {name}: {source}")]
    BadTime {
        name: &'static str,
        #[source]
        source: EventTimeError,
    },
    #[error("not a digest file: logFiles is not an array")]
    LogFilesNotAnArray,
    #[error("not a digest file: logFiles[{index}]: {source}")]
    LogFile {
        index: usize,
        #[source]
        source: FieldError,
    },
    #[error("not a digest file: {0}")]
    Field(#[from] FieldError),
}

/// A field of a digest or of one of its `logFiles[]` entries that is wrong.
#[derive(Debug, Error)]
pub enum FieldError {
    #[error("no {0}")]
    Missing(&'static str),
    #[error("{0} is not a string")]
    NotAString(&'static str),
    #[error("{0} is not a string or null")]
    NotAStringOrNull(&'static str),
    #[error("not an object")]
    NotAnObject,
}

/// The fields validation reads, each as its raw JSON text. Whatever else a digest holds is
/// skipped without being built, so memory stays at the (bounded) bytes plus what is kept.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDigest<'a> {
    #[serde(borrow)]
    aws_account_id: Option<&'a RawValue>,
    #[serde(borrow)]
    digest_start_time: Option<&'a RawValue>,
    #[serde(borrow)]
    digest_end_time: Option<&'a RawValue>,
    #[serde(borrow, rename = "digestS3Bucket")]
    digest_s3_bucket: Option<&'a RawValue>,
    #[serde(borrow, rename = "digestS3Object")]
    digest_s3_object: Option<&'a RawValue>,
    #[serde(borrow)]
    digest_public_key_fingerprint: Option<&'a RawValue>,
    #[serde(borrow)]
    digest_signature_algorithm: Option<&'a RawValue>,
    #[serde(borrow, rename = "previousDigestS3Bucket")]
    previous_digest_s3_bucket: Option<&'a RawValue>,
    #[serde(borrow, rename = "previousDigestS3Object")]
    previous_digest_s3_object: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_digest_hash_value: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_digest_hash_algorithm: Option<&'a RawValue>,
    #[serde(borrow)]
    previous_digest_signature: Option<&'a RawValue>,
    #[serde(borrow)]
    log_files: Option<&'a RawValue>,
}

/// One `logFiles[]` entry, raw.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow, rename = "s3Bucket")]
    bucket: Option<&'a RawValue>,
    #[serde(borrow, rename = "s3Object")]
    object: Option<&'a RawValue>,
    #[serde(borrow, rename = "hashValue")]
    hash: Option<&'a RawValue>,
    #[serde(borrow, rename = "hashAlgorithm")]
    hash_algorithm: Option<&'a RawValue>,
}

/// Reads a digest file's JSON.
pub fn parse_digest(bytes: &[u8]) -> Result<Digest, DigestError> {
    let raw: &RawValue = serde_json::from_slice(bytes).map_err(DigestError::NotJson)?;
    if !raw.get().starts_with('{') {
        return Err(DigestError::NotAnObject);
    }
    let d: RawDigest = serde_json::from_str(raw.get()).map_err(DigestError::NotJson)?;
    let time = |raw, name: &'static str| -> Result<(String, i64), DigestError> {
        let text = required_str(raw, name)?;
        let ms = parse_event_time(&text).map_err(|source| DigestError::BadTime { name, source })?;
        Ok((text, ms))
    };
    let (_, start) = time(d.digest_start_time, "digestStartTime")?;
    let (end_text, end) = time(d.digest_end_time, "digestEndTime")?;
    let log_files = match d.log_files {
        Some(raw) => log_entries(raw)?,
        None => return Err(FieldError::Missing("logFiles").into()),
    };
    Ok(Digest {
        account: required_str(d.aws_account_id, "awsAccountId")?,
        start,
        end_text,
        end,
        bucket: required_str(d.digest_s3_bucket, "digestS3Bucket")?,
        object: required_str(d.digest_s3_object, "digestS3Object")?,
        fingerprint: optional_str(
            d.digest_public_key_fingerprint,
            "digestPublicKeyFingerprint",
        )?,
        signature_algorithm: optional_str(
            d.digest_signature_algorithm,
            "digestSignatureAlgorithm",
        )?,
        previous_bucket: optional_str(d.previous_digest_s3_bucket, "previousDigestS3Bucket")?,
        previous_object: optional_str(d.previous_digest_s3_object, "previousDigestS3Object")?,
        previous_hash: optional_str(d.previous_digest_hash_value, "previousDigestHashValue")?,
        previous_hash_algorithm: optional_str(
            d.previous_digest_hash_algorithm,
            "previousDigestHashAlgorithm",
        )?,
        previous_signature: optional_str(d.previous_digest_signature, "previousDigestSignature")?,
        log_files,
    })
}

fn log_entries(raw: &RawValue) -> Result<Vec<LogEntry>, DigestError> {
    let entries: Vec<&RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| DigestError::LogFilesNotAnArray)?;
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            log_entry(entry).map_err(|source| DigestError::LogFile { index, source })
        })
        .collect()
}

fn log_entry(raw: &RawValue) -> Result<LogEntry, FieldError> {
    if !raw.get().starts_with('{') {
        return Err(FieldError::NotAnObject);
    }
    let e: RawEntry = serde_json::from_str(raw.get()).map_err(|_| FieldError::NotAnObject)?;
    Ok(LogEntry {
        bucket: required_str(e.bucket, "s3Bucket")?,
        object: required_str(e.object, "s3Object")?,
        hash: required_str(e.hash, "hashValue")?,
        hash_algorithm: optional_str(e.hash_algorithm, "hashAlgorithm")?,
    })
}

/// A field's string; `Ok(None)` when it is absent or null.
fn string_of(raw: Option<&RawValue>) -> Result<Option<String>, ()> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get().starts_with('"') => serde_json::from_str(raw.get()).map_err(|_| ()),
        Some(_) => Err(()),
    }
}

fn required_str(raw: Option<&RawValue>, name: &'static str) -> Result<String, FieldError> {
    match string_of(raw) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(FieldError::Missing(name)),
        Err(()) => Err(FieldError::NotAString(name)),
    }
}

fn optional_str(raw: Option<&RawValue>, name: &'static str) -> Result<Option<String>, FieldError> {
    string_of(raw).map_err(|()| FieldError::NotAStringOrNull(name))
}

/// `reader`'s bytes, gunzipped (every gzip member) when they start with the gzip magic bytes.
pub fn uncompressed<'a>(reader: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// The most a digest file may hold, uncompressed. A digest lists one hour's log files of one
/// account and region, about 400 bytes each: 16 MiB is some 40,000 log files an hour, far
/// beyond a real trail; a larger "digest" (a decompression bomb) is refused unread.
pub const DIGEST_MAX_BYTES: u64 = 16 << 20;

/// Why a digest file's bytes could not be read.
#[derive(Debug, Error)]
pub enum DigestReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("more than {limit} bytes uncompressed: not a CloudTrail digest file (one lists an hour of log files)")]
    TooLarge { limit: u64 },
}

/// The uncompressed bytes of a (possibly gzipped) digest file, at most [`DIGEST_MAX_BYTES`].
pub fn read_uncompressed(reader: impl Read) -> Result<Vec<u8>, DigestReadError> {
    let mut bytes = Vec::new();
    uncompressed(reader)?
        .take(DIGEST_MAX_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > DIGEST_MAX_BYTES {
        return Err(DigestReadError::TooLarge {
            limit: DIGEST_MAX_BYTES,
        });
    }
    Ok(bytes)
}

/// Lowercase hex SHA-256 of the uncompressed content, read in chunks (log files can be
/// hundreds of MB uncompressed).
pub fn sha256_uncompressed(reader: impl Read) -> std::io::Result<String> {
    let mut reader = uncompressed(reader)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Whether two hex hashes are the same (CloudTrail writes lowercase; be lenient on case).
pub fn same_hash(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::Write;

    /// The shape of the documented example (cloudtrail-log-file-validation-digest-file-structure).
    const EXAMPLE: &str = r#"{
      "awsAccountId": "111122223333",
      "digestStartTime": "2015-08-17T14:01:31Z",
      "digestEndTime": "2015-08-17T15:01:31Z",
      "digestS3Bucket": "S3-bucket-name",
      "digestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_your-trail-name_us-east-2_20150817T150131Z.json.gz",
      "digestPublicKeyFingerprint": "31e8b5433410dfb61a9dc45cc65b22ff",
      "digestSignatureAlgorithm": "SHA256withRSA",
      "newestEventTime": "2015-08-17T14:52:27Z",
      "oldestEventTime": "2015-08-17T14:42:27Z",
      "previousDigestS3Bucket": "S3-bucket-name",
      "previousDigestS3Object": "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_your-trail-name_us-east-2_20150817T140131Z.json.gz",
      "previousDigestHashValue": "97fb791cf91ffc440d274f8190dbdd9aa09c34432aba82739df18b6d3c13df2d",
      "previousDigestHashAlgorithm": "SHA-256",
      "previousDigestSignature": "50887ccffad4c002b97caa37cb9ef4b2cec72df5d1fb9dd1e4fca8f0f0d7e1",
      "logFiles": [
        {
          "s3Bucket": "S3-bucket-name",
          "s3Object": "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1445Z_9nYN7gp2eWAJHIfT.json.gz",
          "hashValue": "9bb6196fc6b84d6f075a56548feca262bd99ba3c2de41b618e5b6e22c1fc71f6",
          "hashAlgorithm": "SHA-256",
          "newestEventTime": "2015-08-17T14:52:27Z",
          "oldestEventTime": "2015-08-17T14:42:27Z"
        }
      ]
    }"#;

    #[test]
    fn reads_the_documented_digest() {
        let d = parse_digest(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(d.account, "111122223333");
        assert_eq!(d.end_text, "2015-08-17T15:01:31Z");
        assert_eq!(d.end - d.start, 3_600_000);
        assert!(!d.is_starting());
        assert_eq!(d.previous_fields_problem(), None);
        assert_eq!(d.log_files.len(), 1);
        assert_eq!(
            d.log_files[0].hash_algorithm.as_deref(),
            Some(HASH_ALGORITHM)
        );
    }

    #[test]
    fn string_to_sign_is_four_lines_with_null_for_a_starting_digest() {
        let d = parse_digest(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(
            d.string_to_sign("abc"),
            format!(
                "2015-08-17T15:01:31Z\nS3-bucket-name/{}\nabc\n50887ccffad4c002b97caa37cb9ef4b2cec72df5d1fb9dd1e4fca8f0f0d7e1",
                d.object
            )
        );
        assert_eq!(string_to_sign("T", "b", "k", "h", None), "T\nb/k\nh\nnull");
    }

    #[test]
    fn a_starting_digest_has_every_previous_field_null() {
        let mut v: Value = serde_json::from_str(EXAMPLE).unwrap();
        for f in [
            "previousDigestS3Bucket",
            "previousDigestS3Object",
            "previousDigestHashValue",
            "previousDigestHashAlgorithm",
            "previousDigestSignature",
        ] {
            v[f] = Value::Null;
        }
        let d = parse_digest(v.to_string().as_bytes()).unwrap();
        assert!(d.is_starting());
        assert_eq!(d.previous_fields_problem(), None);
        v["previousDigestHashValue"] = "00".into();
        let d = parse_digest(v.to_string().as_bytes()).unwrap();
        let problem = d.previous_fields_problem().unwrap();
        assert!(problem.contains("previousDigestHashValue set"), "{problem}");
    }

    #[test]
    fn what_is_not_a_digest_says_why() {
        let err = |text: &str| parse_digest(text.as_bytes()).unwrap_err().to_string();
        assert!(err(r#"{"logFiles":[1]}"#).contains("no digestStartTime"));
        assert!(err("{\"Records\":[]}").contains("no digestStartTime"));
        assert!(err("[1]").contains("not an object"));
        assert!(err("{").contains("not JSON"));
        let mut v: Value = serde_json::from_str(EXAMPLE).unwrap();
        v["logFiles"][0]["hashValue"] = Value::Null;
        assert!(err(&v.to_string()).contains("logFiles[0]: no hashValue"));
        v["logFiles"] = 3.into();
        assert!(err(&v.to_string()).contains("logFiles is not an array"));
        v["logFiles"] = Value::Array(vec![]);
        v["digestEndTime"] = "yesterday".into();
        assert!(err(&v.to_string()).contains("digestEndTime"));
    }

    #[test]
    fn hashes_the_uncompressed_bytes_of_plain_and_multi_member_gzip() {
        let text = b"{\"Records\":[]}";
        let expected = sha256_hex(text);
        assert_eq!(sha256_uncompressed(&text[..]).unwrap(), expected);
        let mut gz = Vec::new();
        for part in [&text[..5], &text[5..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        assert_eq!(sha256_uncompressed(&gz[..]).unwrap(), expected);
        assert!(
            sha256_uncompressed(&gz[..gz.len() - 9]).is_err(),
            "truncated gzip"
        );
        assert_eq!(read_uncompressed(&gz[..]).unwrap(), text);
        assert_eq!(sha256_uncompressed(&b""[..]).unwrap(), sha256_hex(b""));
    }

    #[test]
    fn a_decompression_bomb_is_refused_unread() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b"{\"logFiles\":[").unwrap();
        let entry = b"{\"s3Bucket\":\"b\",\"s3Object\":\"o\",\"hashValue\":\"h\"},";
        for _ in 0..(DIGEST_MAX_BYTES as usize / entry.len() + 1) {
            e.write_all(entry).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        let err = read_uncompressed(&bomb[..]).unwrap_err();
        assert!(matches!(err, DigestReadError::TooLarge { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("more than 16777216 bytes uncompressed"));
    }

    #[test]
    fn hashes_compare_whatever_the_case() {
        assert!(same_hash("AB", " ab\n"));
        assert!(!same_hash("ab", "ac"));
    }
}
