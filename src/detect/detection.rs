//! A detection: one rule matching one record, as it travels to the bus.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::event::RecordEvent;
use super::rules::Rule;
use crate::deliver::message::{stub, RecordLocation};

/// Records larger than this travel as the deliver stage's stub (identifying fields and where
/// the full record is): a detection must fit one EventBridge entry (256 KB with its other
/// fields) and one SQS message on its way there.
pub const DETECTION_MAX_RECORD_BYTES: usize = 200 * 1024;

/// The EventBridge `detail-type` of detections.
pub const DETECTION_DETAIL_TYPE: &str = "trailwatch Detection";

/// A rule's match on a record: the EventBridge event's `detail`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    pub rule_id: String,
    pub title: String,
    pub level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The rule's authors, as its licence (DRL 1.1) asks of every match message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_license: Option<String>,
    pub rule_origin: String,
    pub tags: Vec<String>,
    pub attack: Attack,
    #[serde(default, rename = "eventID")]
    pub event_id: Option<String>,
    #[serde(default)]
    pub event_time: Option<String>,
    #[serde(default)]
    pub event_source: Option<String>,
    #[serde(default)]
    pub event_name: Option<String>,
    #[serde(default)]
    pub aws_region: Option<String>,
    /// The account the record belongs to (`recipientAccountId`, else the caller's account).
    #[serde(default)]
    pub account_id: Option<String>,
    /// Who made the call: the identity's ARN, else its principalId, invokedBy or type.
    pub principal: String,
    #[serde(default, rename = "sourceIPAddress")]
    pub source_ip_address: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Equal for every delivery of the same match (rule id and eventID): consumers drop repeats.
    pub dedup_key: String,
    /// Set by suppression (see [`super::noise`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppression: Option<SuppressionNote>,
    /// The matched record exactly as received, or its stub when larger than
    /// [`DETECTION_MAX_RECORD_BYTES`].
    pub record: Box<RawValue>,
}

/// What suppression (see `noise`) notes on a reported detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionNote {
    /// Rule, account and principal: the matches one window covers.
    pub key: String,
    pub window_minutes: u32,
    /// Matches of the key held back in its previous window.
    pub held_in_previous_window: u64,
}

/// Equal when they serialise alike (`RawValue` has no equality of its own).
impl PartialEq for Detection {
    fn eq(&self, other: &Self) -> bool {
        self.to_json() == other.to_json()
    }
}

/// MITRE ATT&CK from the rule's `attack.*` tags.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attack {
    pub tactics: Vec<String>,
    pub techniques: Vec<String>,
}

impl Attack {
    /// `attack.t1562.008` → technique `T1562.008`; other `attack.x` tags are tactics.
    pub fn from_tags(tags: &[String]) -> Attack {
        let mut attack = Attack::default();
        for tag in tags {
            let Some(name) = tag.strip_prefix("attack.") else {
                continue;
            };
            let is_technique = name.len() > 1
                && name.as_bytes()[0].eq_ignore_ascii_case(&b't')
                && name.as_bytes()[1].is_ascii_digit();
            if is_technique {
                attack.techniques.push(name.to_ascii_uppercase());
            } else {
                attack.tactics.push(name.to_owned());
            }
        }
        attack
    }
}

impl Detection {
    /// The detection of `rule` on the record of `event`, found at `location`.
    pub fn new(rule: &Rule, event: &RecordEvent<'_, '_>, location: RecordLocation<'_>) -> Self {
        let record = event.record();
        let f = &record.fields;
        let text = |path: &str| event.text(path).map(|s| s.into_owned());
        let identity = f.user_identity.as_ref();
        let principal = record
            .user_identity_arn()
            .map(str::to_owned)
            .or_else(|| text("userIdentity.principalId"))
            .or_else(|| identity.and_then(|u| u.invoked_by.as_deref().map(str::to_owned)))
            .or_else(|| identity.and_then(|u| u.identity_type.as_deref().map(str::to_owned)))
            .unwrap_or_else(|| "unknown".to_owned());
        let account_id = record
            .recipient_account_id()
            .or_else(|| identity.and_then(|u| u.account_id.as_deref()))
            .map(str::to_owned);
        let dedup_key = match record.event_id() {
            Some(id) => format!("{}/{id}", rule.id),
            None => format!(
                "{}/{}/{}/{principal}",
                rule.id,
                f.event_time.as_deref().unwrap_or(""),
                record.event_name().unwrap_or("")
            ),
        };
        let raw = if record.raw().len() <= DETECTION_MAX_RECORD_BYTES {
            record.raw().to_owned()
        } else {
            stub(record, location)
        };
        Detection {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            level: rule.level.to_owned(),
            status: rule.status.map(str::to_owned),
            author: rule.author.clone(),
            rule_license: rule.license.clone(),
            rule_origin: rule.origin.clone(),
            tags: rule.tags.clone(),
            attack: Attack::from_tags(&rule.tags),
            event_id: record.event_id().map(str::to_owned),
            event_time: f.event_time.as_deref().map(str::to_owned),
            event_source: record.event_source().map(str::to_owned),
            event_name: record.event_name().map(str::to_owned),
            aws_region: record.aws_region().map(str::to_owned),
            account_id,
            principal,
            source_ip_address: text("sourceIPAddress"),
            user_agent: f.user_agent.as_deref().map(str::to_owned),
            dedup_key,
            suppression: None,
            // Both are JSON objects (the record parsed as one, the stub is built as one): the
            // `null` of the fallback cannot occur.
            record: RawValue::from_string(raw).unwrap_or_default(),
        }
    }

    /// The detection as the EventBridge `detail` (JSON text).
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_tags_split_into_tactics_and_techniques() {
        let tags: Vec<String> = [
            "attack.defense-evasion",
            "attack.t1562.008",
            "cve.2020-1",
            "attack.T1078",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let attack = Attack::from_tags(&tags);
        assert_eq!(attack.tactics, vec!["defense-evasion"]);
        assert_eq!(attack.techniques, vec!["T1562.008", "T1078"]);
    }
}
