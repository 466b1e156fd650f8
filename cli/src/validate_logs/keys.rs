//! CloudTrail's public keys and digest signatures (RSA PKCS#1 v1.5 with SHA-256).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::input::{read_input, InputError};

/// A public key given with `--public-key`.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Where it came from: the file, and which key in it when it holds several.
    pub label: String,
    pub key: RsaPublicKey,
}

/// Why a file gave no public key.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error(transparent)]
    Unreadable(#[from] InputError),
    #[error("{}: {source}", path.display())]
    NotAKey {
        path: PathBuf,
        #[source]
        source: KeyFormatError,
    },
}

/// Why bytes are not a public key in one of the accepted forms.
#[derive(Debug, Error)]
pub enum KeyFormatError {
    #[error("neither DER nor text (PEM, base64 or list-public-keys JSON)")]
    NotText,
    #[error("not an RSA public key in DER (PKCS#1 or SPKI): {0}")]
    NotRsaDer(#[source] rsa::pkcs8::spki::Error),
    #[error("PEM: unterminated BEGIN line")]
    UnterminatedBegin,
    #[error("PEM: no {0}")]
    NoEnd(String),
    #[error(
        "PEM {0}: a PEM {0}, not a public key (expected BEGIN RSA PUBLIC KEY or BEGIN PUBLIC KEY)"
    )]
    NotPublicPem(String),
    #[error("PEM {label}: {source}")]
    BadPem {
        label: String,
        /// `rsa`'s PKCS#1 or SPKI error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("no PEM block")]
    NoPem,
    #[error("not a public key: expected PEM, DER, base64 DER or list-public-keys JSON")]
    Unrecognised,
    #[error("not a public key: base64 text, but not an RSA public key in DER ({0})")]
    Base64NotRsa(#[source] Box<KeyFormatError>),
    #[error("JSON, but not readable: {0}")]
    Json(#[source] serde_json::Error),
    #[error("JSON without PublicKeyList (expected aws cloudtrail list-public-keys output)")]
    NoPublicKeyList,
    #[error("PublicKeyList is empty (try list-public-keys with an earlier --start-time)")]
    EmptyPublicKeyList,
    #[error("PublicKeyList[{0}] has no Value")]
    NoValue(usize),
    #[error("PublicKeyList[{index}].Value: {source}")]
    BadValue {
        index: usize,
        #[source]
        source: Box<KeyFormatError>,
    },
}

/// The largest key file read: list-public-keys output holds a few keys of ~400 bytes each.
const KEY_FILE_MAX_BYTES: u64 = 1 << 20;

/// Reads every public key in a file: PEM (`RSA PUBLIC KEY` = PKCS#1, `PUBLIC KEY` = SPKI, one
/// or more blocks), DER (PKCS#1 or SPKI), the base64 of such a DER (a `Value` of
/// `ListPublicKeys`), or the JSON that `aws cloudtrail list-public-keys` prints.
pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let bytes = read_input(path, KEY_FILE_MAX_BYTES, "a public key file")?;
    let keys = parse_public_keys(&bytes).map_err(|source| KeyError::NotAKey {
        path: path.to_owned(),
        source,
    })?;
    let count = keys.len();
    Ok(keys
        .into_iter()
        .enumerate()
        .map(|(i, key)| PublicKey {
            label: if count == 1 {
                path.display().to_string()
            } else {
                format!("{} (key {} of {count})", path.display(), i + 1)
            },
            key,
        })
        .collect())
}

pub fn parse_public_keys(bytes: &[u8]) -> Result<Vec<RsaPublicKey>, KeyFormatError> {
    if bytes.first() == Some(&0x30) {
        return der_key(bytes).map(|k| vec![k]);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| KeyFormatError::NotText)?
        .trim();
    if text.contains("-----BEGIN ") {
        return pem_keys(text);
    }
    if text.starts_with('{') {
        return list_public_keys_json(text);
    }
    base64_key(text).map(|k| vec![k])
}

/// PKCS#1 first, as ListPublicKeys returns it, then SPKI (what openssl writes).
fn der_key(der: &[u8]) -> Result<RsaPublicKey, KeyFormatError> {
    RsaPublicKey::from_pkcs1_der(der)
        .or_else(|_| RsaPublicKey::from_public_key_der(der))
        .map_err(KeyFormatError::NotRsaDer)
}

fn pem_keys(text: &str) -> Result<Vec<RsaPublicKey>, KeyFormatError> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN ") {
        let block = &rest[begin..];
        let label_end = block["-----BEGIN ".len()..]
            .find("-----")
            .ok_or(KeyFormatError::UnterminatedBegin)?;
        let label = &block["-----BEGIN ".len().."-----BEGIN ".len() + label_end];
        let end_line = format!("-----END {label}-----");
        let end = block
            .find(&end_line)
            .ok_or_else(|| KeyFormatError::NoEnd(end_line.clone()))?;
        let pem = &block[..end + end_line.len()];
        let key = match label {
            "RSA PUBLIC KEY" => RsaPublicKey::from_pkcs1_pem(pem).map_err(|e| e.into()),
            "PUBLIC KEY" => RsaPublicKey::from_public_key_pem(pem).map_err(|e| e.into()),
            other => return Err(KeyFormatError::NotPublicPem(other.to_owned())),
        }
        .map_err(|source| KeyFormatError::BadPem {
            label: label.to_owned(),
            source,
        })?;
        keys.push(key);
        rest = &block[end + end_line.len()..];
    }
    if keys.is_empty() {
        return Err(KeyFormatError::NoPem);
    }
    Ok(keys)
}

/// The base64 text of a DER key, as `ListPublicKeys` returns it.
fn base64_key(text: &str) -> Result<RsaPublicKey, KeyFormatError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let der = match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(der) if !der.is_empty() => der,
        _ => return Err(KeyFormatError::Unrecognised),
    };
    der_key(&der).map_err(|e| KeyFormatError::Base64NotRsa(Box::new(e)))
}

/// `aws cloudtrail list-public-keys` output: `{"PublicKeyList": [{"Value": base64 DER, ...}]}`.
fn list_public_keys_json(text: &str) -> Result<Vec<RsaPublicKey>, KeyFormatError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(KeyFormatError::Json)?;
    let list = value
        .get("PublicKeyList")
        .and_then(|l| l.as_array())
        .ok_or(KeyFormatError::NoPublicKeyList)?;
    if list.is_empty() {
        return Err(KeyFormatError::EmptyPublicKeyList);
    }
    list.iter()
        .enumerate()
        .map(|(index, entry)| {
            let value = entry
                .get("Value")
                .and_then(|v| v.as_str())
                .ok_or(KeyFormatError::NoValue(index))?;
            base64_key(value).map_err(|e| KeyFormatError::BadValue {
                index,
                source: Box::new(e),
            })
        })
        .collect()
}

/// Whether `signature` is `key`'s RSA PKCS#1 v1.5 SHA-256 signature of `message`.
pub fn verifies(key: &RsaPublicKey, message: &[u8], signature: &[u8]) -> bool {
    let hashed = Sha256::digest(message);
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/validate_logs/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn every_shape_of_the_same_key_reads_the_same() {
        let spki_pem = parse_public_keys(&fixture("test-key.pub.pem")).unwrap();
        assert_eq!(spki_pem.len(), 1);
        for name in [
            "test-key.rsa-pub.pem",
            "test-key.rsa-pub.der",
            "test-key.pub.der",
            "test-key.list-public-keys.json",
        ] {
            assert_eq!(
                parse_public_keys(&fixture(name)).unwrap(),
                spki_pem,
                "{name}"
            );
        }
        let json: serde_json::Value =
            serde_json::from_slice(&fixture("test-key.list-public-keys.json")).unwrap();
        let b64 = json["PublicKeyList"][0]["Value"].as_str().unwrap();
        assert_eq!(parse_public_keys(b64.as_bytes()).unwrap(), spki_pem);
        let mut two = fixture("test-key.pub.pem");
        two.extend(fixture("other-key.pub.pem"));
        let both = parse_public_keys(&two).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], spki_pem[0]);
        assert_ne!(both[1], spki_pem[0]);
    }

    #[test]
    fn what_is_not_a_public_key_says_why() {
        let err = parse_public_keys(&fixture("test-key.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PRIVATE KEY, not a public key"), "{err}");
        assert!(parse_public_keys(b"hello world")
            .unwrap_err()
            .to_string()
            .contains("not a public key"));
        assert!(parse_public_keys(b"{\"a\":1}")
            .unwrap_err()
            .to_string()
            .contains("PublicKeyList"));
        assert!(parse_public_keys(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
        assert!(parse_public_keys(&[0xff, 0xfe]).is_err());
        assert!(parse_public_keys(b"-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
    }

    #[test]
    fn a_signature_by_openssl_verifies_only_with_its_key_and_message() {
        // Made with: printf 'hello' | openssl dgst -sha256 -sign test-key.pem | xxd -p
        let Ok(out) = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(format!(
                "{}/tests/fixtures/validate_logs/test-key.pem",
                env!("CARGO_MANIFEST_DIR")
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"hello")?;
                child.wait_with_output()
            })
        else {
            eprintln!("openssl not available: skipped");
            return;
        };
        let signature = out.stdout;
        assert_eq!(signature.len(), 256);
        let key = &parse_public_keys(&fixture("test-key.pub.pem")).unwrap()[0];
        let other = &parse_public_keys(&fixture("other-key.pub.pem")).unwrap()[0];
        assert!(verifies(key, b"hello", &signature));
        assert!(!verifies(key, b"hello!", &signature));
        assert!(!verifies(other, b"hello", &signature));
        assert!(!verifies(key, b"hello", &signature[1..]));
    }
}
