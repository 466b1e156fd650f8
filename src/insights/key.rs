//! Series keys: what one Insights time series counts, and a stable hash for it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The two Insight types CloudTrail offers (`put-insight-selectors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InsightType {
    /// Write API calls per minute (`readOnly == false`) against their baseline.
    ApiCallRateInsight,
    /// API calls per minute that returned one error code, read and write.
    ApiErrorRateInsight,
}

impl InsightType {
    pub fn as_str(self) -> &'static str {
        match self {
            InsightType::ApiCallRateInsight => "ApiCallRateInsight",
            InsightType::ApiErrorRateInsight => "ApiErrorRateInsight",
        }
    }

    /// Parses the name used in `InsightSelectors[].InsightType`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ApiCallRateInsight" => Some(InsightType::ApiCallRateInsight),
            "ApiErrorRateInsight" => Some(InsightType::ApiErrorRateInsight),
            _ => None,
        }
    }
}

impl fmt::Display for InsightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One series: per account and Region (Insights are regional), per API, per Insight type, and
/// for error-rate series per error code (one Insight per API and error code, as AWS does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesKey {
    pub account: String,
    pub region: String,
    pub event_source: String,
    pub event_name: String,
    pub insight_type: InsightType,
    /// Present exactly for [`InsightType::ApiErrorRateInsight`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

impl SeriesKey {
    /// The borrowed form, for hashing and comparing without allocating.
    pub fn as_ref(&self) -> SeriesKeyRef<'_> {
        SeriesKeyRef {
            account: &self.account,
            region: &self.region,
            event_source: &self.event_source,
            event_name: &self.event_name,
            insight_type: self.insight_type,
            error_code: self.error_code.as_deref(),
        }
    }

    /// `eventSource:eventName`, the name used by per-API sensitivity overrides.
    pub fn api(&self) -> String {
        format!("{}:{}", self.event_source, self.event_name)
    }

    /// A stable 64-bit hash (independent of the Rust version; used for shard routing and ids).
    pub fn stable_hash(&self) -> u64 {
        self.as_ref().stable_hash()
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.account, self.region, self.insight_type, self.event_source, self.event_name
        )?;
        if let Some(code) = &self.error_code {
            write!(f, "/{code}")?;
        }
        Ok(())
    }
}

/// A series key borrowed from a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesKeyRef<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub event_source: &'a str,
    pub event_name: &'a str,
    pub insight_type: InsightType,
    pub error_code: Option<&'a str>,
}

impl SeriesKeyRef<'_> {
    pub fn to_owned_key(&self) -> SeriesKey {
        SeriesKey {
            account: self.account.to_owned(),
            region: self.region.to_owned(),
            event_source: self.event_source.to_owned(),
            event_name: self.event_name.to_owned(),
            insight_type: self.insight_type,
            error_code: self.error_code.map(str::to_owned),
        }
    }

    pub fn stable_hash(&self) -> u64 {
        let mut h = StableHasher::new();
        h.write_str(self.account);
        h.write_str(self.region);
        h.write_str(self.event_source);
        h.write_str(self.event_name);
        h.write_u64(self.insight_type as u64);
        match self.error_code {
            Some(code) => h.write_str(code),
            None => h.write_u64(u64::MAX),
        }
        h.finish()
    }
}

/// The pinned hash of everything persisted or compared across versions: batch ids, Insight
/// ids, shard routing. Kept by hand because its output must never change (FxHash-style
/// mixing with a SplitMix64 finaliser; `rustc-hash` changed its algorithm between major
/// versions). Not collision resistant against adversaries; in-memory maps use `rustc-hash`.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher {
    state: u64,
}

const MIX: u64 = 0x517c_c1b7_2722_0a95;

impl StableHasher {
    pub fn new() -> Self {
        StableHasher {
            state: 0x243f_6a88_85a3_08d3,
        }
    }

    pub fn with_seed(seed: u64) -> Self {
        StableHasher {
            state: 0x243f_6a88_85a3_08d3 ^ seed.wrapping_mul(MIX),
        }
    }

    #[inline]
    pub fn write_u64(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(MIX);
    }

    /// Hashes the bytes and the length, so that ("ab","c") and ("a","bc") differ.
    #[inline]
    pub fn write_str(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(word));
        self.write_u64(bytes.len() as u64);
    }

    #[inline]
    pub fn finish(&self) -> u64 {
        let mut z = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Default for StableHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: Option<&str>) -> SeriesKey {
        SeriesKey {
            account: "111122223333".into(),
            region: "us-east-1".into(),
            event_source: "iam.amazonaws.com".into(),
            event_name: "CreateUser".into(),
            insight_type: if code.is_some() {
                InsightType::ApiErrorRateInsight
            } else {
                InsightType::ApiCallRateInsight
            },
            error_code: code.map(str::to_owned),
        }
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Shard routing depends on it: a change must be a conscious one.
        let k = SeriesKey {
            event_source: "ec2.amazonaws.com".into(),
            event_name: "RunInstances".into(),
            ..key(None)
        };
        assert_eq!(k.stable_hash(), 0x0b5a_8c41_8fce_e273);
        assert_ne!(
            key(None).stable_hash(),
            key(Some("AccessDenied")).stable_hash()
        );
        let text = |t: &str| {
            let mut h = StableHasher::new();
            h.write_str(t);
            h.finish()
        };
        assert_ne!(text("ab"), text("ab\0"));
    }

    #[test]
    fn borrowed_and_owned_keys_agree() {
        let k = key(Some("Throttling"));
        assert_eq!(k.as_ref().to_owned_key(), k);
        assert_eq!(k.as_ref().stable_hash(), k.stable_hash());
        assert_eq!(k.api(), "iam.amazonaws.com:CreateUser");
    }
}
