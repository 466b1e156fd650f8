//! Reading what validation needs from the files: each digest (its bytes' SHA-256, its fields,
//! its signature sidecar) and the SHA-256 of each listed log file, on a few threads (hashing
//! is CPU-bound; reading may wait on the disk).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use thiserror::Error;

use super::digest::{parse_digest, read_uncompressed, sha256_hex, sha256_uncompressed, Digest};
use super::digest::{DigestError, DigestReadError};
use super::inventory::DigestFile;

/// Where file contents come from.
pub trait Source: Sync {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>>;
}

/// The file system.
pub struct Disk;

impl Source for Disk {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(std::fs::File::open(path)?))
    }
}

/// Why a digest file gave no digest.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("unreadable: {0}")]
    Unreadable(#[source] DigestReadError),
    #[error(transparent)]
    NotADigest(#[from] DigestError),
}

/// Why a digest's signature sidecar is unusable.
#[derive(Debug, Error)]
pub enum SignatureFileError {
    #[error("signature file {} unreadable: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signature file {} does not hold hex (it holds {held:?}; expected x-amz-meta-signature)", path.display())]
    NotHex { path: PathBuf, held: String },
}

/// A digest read and parsed, with the hex SHA-256 of its uncompressed bytes.
pub struct ReadDigest {
    pub digest: Digest,
    pub sha256: String,
}

/// What reading a digest file gave.
pub struct Loaded {
    pub read: Result<ReadDigest, LoadError>,
    /// The signature sidecar: none, its bytes, or why it is unusable.
    pub signature: Option<Result<Vec<u8>, SignatureFileError>>,
}

impl Loaded {
    pub fn digest(&self) -> Option<&Digest> {
        self.read.as_ref().ok().map(|r| &r.digest)
    }
}

/// Every digest in `digests`, read in parallel, in the same order.
pub fn load_digests(source: &dyn Source, digests: &[DigestFile<'_>]) -> Vec<Loaded> {
    digests.par_iter().map(|d| load_digest(source, d)).collect()
}

fn load_digest(source: &dyn Source, d: &DigestFile<'_>) -> Loaded {
    let signature = d.signature_file.map(|f| read_signature(source, &f.path));
    let read = match source
        .open(&d.file.path)
        .map_err(DigestReadError::from)
        .and_then(read_uncompressed)
    {
        Ok(bytes) => parse_digest(&bytes)
            .map(|digest| ReadDigest {
                digest,
                sha256: sha256_hex(&bytes),
            })
            .map_err(LoadError::from),
        Err(e) => Err(LoadError::Unreadable(e)),
    };
    Loaded { read, signature }
}

/// The largest signature sidecar read: a 4096-bit RSA signature is 1,024 hex digits.
const SIGNATURE_FILE_LIMIT: u64 = 64 * 1024;

fn read_signature(source: &dyn Source, path: &Path) -> Result<Vec<u8>, SignatureFileError> {
    let mut text = String::new();
    source
        .open(path)
        .and_then(|r| r.take(SIGNATURE_FILE_LIMIT).read_to_string(&mut text))
        .map_err(|source| SignatureFileError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
    let text = text.trim();
    match hex::decode(text) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(SignatureFileError::NotHex {
            path: path.to_owned(),
            held: text.chars().take(40).collect(),
        }),
    }
}

/// The hex SHA-256 of each file's uncompressed bytes, or why it could not be read.
pub fn hash_files<'p>(
    source: &dyn Source,
    paths: &[&'p Path],
) -> HashMap<&'p Path, std::io::Result<String>> {
    let hashes: Vec<_> = paths
        .par_iter()
        .map(|path| source.open(path).and_then(sha256_uncompressed))
        .collect();
    paths.iter().copied().zip(hashes).collect()
}
