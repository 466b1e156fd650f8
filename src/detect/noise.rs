//! Noise control: exceptions (matches by known principals, from known addresses or with known
//! user agents are not reported) and suppression windows (the same rule matching the same
//! principal in the same account again within N minutes is counted, not reported again).
//!
//! Suppression is decided by [`judge`] over the key's current window, wherever the window is
//! kept: in memory in the CLI ([`Suppressor`]), in the state table (with a TTL) in Lambda. The
//! first match of a window is reported at once; the repeats inside it are counted, and the next
//! report for the key says how many were held back ([`SuppressionNote`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use globset::{GlobBuilder, GlobMatcher};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::detection::{Detection, SuppressionNote};
use crate::time::{parse_event_time, MS_PER_MINUTE};

/// Suppression window of a rule unless configured: one report per rule, principal and account
/// an hour.
pub const DEFAULT_SUPPRESS_MINUTES: u32 = 60;

/// Noise settings as written (JSON: the Lambda's configuration, the CLI's `--noise` file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NoiseSettings {
    #[serde(default = "default_minutes")]
    pub suppress_minutes: u32,
    /// Per rule id; 0 reports every match.
    #[serde(default)]
    pub suppress_minutes_by_rule: BTreeMap<String, u32>,
    #[serde(default)]
    pub exceptions: Vec<ExceptionSettings>,
}

fn default_minutes() -> u32 {
    DEFAULT_SUPPRESS_MINUTES
}

impl Default for NoiseSettings {
    fn default() -> Self {
        NoiseSettings {
            suppress_minutes: DEFAULT_SUPPRESS_MINUTES,
            suppress_minutes_by_rule: BTreeMap::new(),
            exceptions: Vec::new(),
        }
    }
}

/// One exception: matches meeting every condition given are not reported.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExceptionSettings {
    /// Rule ids it applies to; every rule when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// The caller's ARN; `*` matches any characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// `sourceIPAddress`: an address or a CIDR block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// `userAgent`; `*` matches any characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Why, for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why noise settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    #[error("noise settings are not valid JSON of the documented shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("exception {index} has no condition (principalArn, sourceIp or userAgent): it would silence every match")]
    NoCondition { index: usize },
    #[error("exception {index}: '{value}' is not an IP address or CIDR block")]
    SourceIp { index: usize, value: String },
    #[error("exception {index}: pattern '{value}': {source}")]
    Pattern {
        index: usize,
        value: String,
        #[source]
        source: globset::Error,
    },
}

/// Compiled noise settings.
#[derive(Debug, Clone)]
pub struct Noise {
    suppress_minutes: u32,
    by_rule: BTreeMap<String, u32>,
    exceptions: Vec<Exception>,
}

#[derive(Debug, Clone)]
struct Exception {
    rules: Vec<String>,
    principal: Option<GlobMatcher>,
    source: Option<IpNet>,
    agent: Option<GlobMatcher>,
    label: String,
}

/// The default window for every rule, no exceptions.
impl Default for Noise {
    fn default() -> Self {
        Noise {
            suppress_minutes: DEFAULT_SUPPRESS_MINUTES,
            by_rule: BTreeMap::new(),
            exceptions: Vec::new(),
        }
    }
}

impl Noise {
    pub fn from_json(text: &str) -> Result<Noise, NoiseError> {
        Noise::new(&serde_json::from_str(text)?)
    }

    pub fn new(settings: &NoiseSettings) -> Result<Noise, NoiseError> {
        let exceptions = settings
            .exceptions
            .iter()
            .enumerate()
            .map(|(index, e)| Exception::new(index, e))
            .collect::<Result<_, _>>()?;
        Ok(Noise {
            suppress_minutes: settings.suppress_minutes,
            by_rule: settings.suppress_minutes_by_rule.clone(),
            exceptions,
        })
    }

    /// The exception that covers `detection`, described for the logs.
    pub fn exception_for(&self, detection: &Detection) -> Option<&str> {
        self.exceptions
            .iter()
            .find(|e| e.covers(detection))
            .map(|e| e.label.as_str())
    }

    /// The suppression window of a rule, in minutes (0: none).
    pub fn window_minutes(&self, rule_id: &str) -> u32 {
        self.by_rule
            .get(rule_id)
            .copied()
            .unwrap_or(self.suppress_minutes)
    }
}

impl Exception {
    fn new(index: usize, e: &ExceptionSettings) -> Result<Exception, NoiseError> {
        if e.principal_arn.is_none() && e.source_ip.is_none() && e.user_agent.is_none() {
            return Err(NoiseError::NoCondition { index });
        }
        let glob = |value: &Option<String>| -> Result<Option<GlobMatcher>, NoiseError> {
            value
                .as_deref()
                .map(|value| {
                    GlobBuilder::new(value)
                        .literal_separator(false)
                        .build()
                        .map(|g| g.compile_matcher())
                        .map_err(|source| NoiseError::Pattern {
                            index,
                            value: value.to_owned(),
                            source,
                        })
                })
                .transpose()
        };
        let source = e
            .source_ip
            .as_deref()
            .map(|value| {
                value
                    .parse::<IpNet>()
                    .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| NoiseError::SourceIp {
                        index,
                        value: value.to_owned(),
                    })
            })
            .transpose()?;
        Ok(Exception {
            rules: e.rules.clone(),
            principal: glob(&e.principal_arn)?,
            source,
            agent: glob(&e.user_agent)?,
            label: e
                .reason
                .clone()
                .unwrap_or_else(|| format!("exception {index}")),
        })
    }

    fn covers(&self, d: &Detection) -> bool {
        let rule = self.rules.is_empty() || self.rules.contains(&d.rule_id);
        let principal = self
            .principal
            .as_ref()
            .is_none_or(|g| g.is_match(&d.principal));
        let agent = self
            .agent
            .as_ref()
            .is_none_or(|g| d.user_agent.as_deref().is_some_and(|ua| g.is_match(ua)));
        let source = self.source.as_ref().is_none_or(|net| {
            d.source_ip_address
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| net.contains(&ip))
        });
        rule && principal && agent && source
    }
}

/// The suppression key of a detection.
pub fn suppression_key(d: &Detection) -> String {
    format!(
        "{}|{}|{}",
        d.rule_id,
        d.account_id.as_deref().unwrap_or("-"),
        d.principal
    )
}

/// A key's current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// eventTime of the match that opened it, epoch milliseconds.
    pub start_ms: i64,
    /// The dedup key of that match (a repeated delivery of it is not a repeat match).
    pub opened_by: String,
    /// Matches held back in it.
    pub held: u64,
}

/// What to do with a match, given its key's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Report it; it opens a new window (after `previous`, if any).
    Report { previous_held: u64 },
    /// Inside the window: count it in the window, do not report it.
    Hold,
    /// The match that opened the window, delivered again: already reported.
    AlreadyReported,
}

/// The verdict on a match at `at_ms` with `dedup_key`, given the key's window (if any).
/// Windows are in event time, so a replay of old logs suppresses as the live pipeline did; a
/// match earlier than its window's start (a late delivery) is inside it when within the width.
pub fn judge(window: Option<&Window>, at_ms: i64, dedup_key: &str, minutes: u32) -> Verdict {
    let width = i64::from(minutes) * MS_PER_MINUTE;
    match window {
        Some(w) if w.opened_by == dedup_key => Verdict::AlreadyReported,
        Some(w) if (at_ms - w.start_ms).abs() < width => Verdict::Hold,
        Some(w) => Verdict::Report {
            previous_held: w.held,
        },
        None => Verdict::Report { previous_held: 0 },
    }
}

/// What became of a detection offered to noise control.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Report(Box<Detection>),
    Held,
    AlreadyReported,
    /// Covered by an exception (its reason).
    Excepted(String),
}

/// Noise control with windows in memory (the CLI, one run).
#[derive(Debug, Default)]
pub struct Suppressor {
    noise: Noise,
    windows: HashMap<String, Window>,
}

impl Suppressor {
    pub fn new(noise: Noise) -> Self {
        Suppressor {
            noise,
            windows: HashMap::new(),
        }
    }

    pub fn offer(&mut self, mut detection: Detection) -> Outcome {
        if let Some(reason) = self.noise.exception_for(&detection) {
            return Outcome::Excepted(reason.to_owned());
        }
        let minutes = self.noise.window_minutes(&detection.rule_id);
        let at = detection
            .event_time
            .as_deref()
            .and_then(|t| parse_event_time(t).ok());
        let (Some(at), true) = (at, minutes > 0) else {
            return Outcome::Report(Box::new(detection));
        };
        let key = suppression_key(&detection);
        match judge(self.windows.get(&key), at, &detection.dedup_key, minutes) {
            Verdict::Hold => {
                if let Some(w) = self.windows.get_mut(&key) {
                    w.held += 1;
                }
                Outcome::Held
            }
            Verdict::AlreadyReported => Outcome::AlreadyReported,
            Verdict::Report { previous_held } => {
                let window = Window {
                    start_ms: at,
                    opened_by: detection.dedup_key.clone(),
                    held: 0,
                };
                self.windows.insert(key.clone(), window);
                detection.suppression = Some(SuppressionNote {
                    key,
                    window_minutes: minutes,
                    held_in_previous_window: previous_held,
                });
                Outcome::Report(Box::new(detection))
            }
        }
    }

    /// Matches held back in the windows still open (to report at the end of a run).
    pub fn held_in_open_windows(&self) -> u64 {
        self.windows.values().map(|w| w.held).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::detection::Attack;

    fn detection(rule: &str, principal: &str, time: &str, event_id: &str) -> Detection {
        Detection {
            rule_id: rule.into(),
            title: "t".into(),
            level: "high".into(),
            status: None,
            author: None,
            rule_license: None,
            rule_origin: "test".into(),
            tags: Vec::new(),
            attack: Attack::default(),
            event_id: Some(event_id.into()),
            event_time: Some(time.into()),
            event_source: None,
            event_name: None,
            aws_region: None,
            account_id: Some("111122223333".into()),
            principal: principal.into(),
            source_ip_address: Some("10.1.2.3".into()),
            user_agent: Some("aws-cli/2.15 Python/3.11".into()),
            dedup_key: format!("{rule}/{event_id}"),
            suppression: None,
            record: Default::default(),
        }
    }

    #[test]
    fn a_repeat_within_the_window_is_held_and_counted_in_the_next_report() {
        let mut s = Suppressor::new(Noise::default());
        let first = s.offer(detection("r", "arn:u", "2024-01-01T00:00:00Z", "e1"));
        assert!(
            matches!(first, Outcome::Report(ref d) if d.suppression.as_ref().unwrap().held_in_previous_window == 0)
        );
        assert_eq!(
            s.offer(detection("r", "arn:u", "2024-01-01T00:30:00Z", "e2")),
            Outcome::Held
        );
        assert_eq!(
            s.offer(detection("r", "arn:u", "2024-01-01T00:59:00Z", "e3")),
            Outcome::Held
        );
        assert_eq!(
            s.offer(detection("r", "arn:u", "2024-01-01T00:00:00Z", "e1")),
            Outcome::AlreadyReported
        );
        // Another principal, another rule: their own windows.
        assert!(matches!(
            s.offer(detection("r", "arn:v", "2024-01-01T00:31:00Z", "e4")),
            Outcome::Report(_)
        ));
        assert!(matches!(
            s.offer(detection("q", "arn:u", "2024-01-01T00:31:00Z", "e5")),
            Outcome::Report(_)
        ));
        assert_eq!(s.held_in_open_windows(), 2);
        let later = s.offer(detection("r", "arn:u", "2024-01-01T01:00:00Z", "e6"));
        let Outcome::Report(later) = later else {
            panic!("{later:?}")
        };
        assert_eq!(later.suppression.unwrap().held_in_previous_window, 2);
    }

    #[test]
    fn rules_can_have_their_own_window_or_none() {
        let noise =
            Noise::from_json(r#"{"suppressMinutes": 10, "suppressMinutesByRule": {"q": 0}}"#)
                .unwrap();
        let mut s = Suppressor::new(noise);
        assert!(matches!(
            s.offer(detection("r", "a", "2024-01-01T00:00:00Z", "1")),
            Outcome::Report(_)
        ));
        assert!(matches!(
            s.offer(detection("r", "a", "2024-01-01T00:10:00Z", "2")),
            Outcome::Report(_)
        ));
        for id in ["3", "4"] {
            assert!(matches!(
                s.offer(detection("q", "a", "2024-01-01T00:00:00Z", id)),
                Outcome::Report(_)
            ));
        }
    }

    #[test]
    fn exceptions_need_every_condition_they_name() {
        let noise = Noise::from_json(
            r#"{"exceptions": [
                {"principalArn": "arn:aws:iam::*:role/Deployer*", "sourceIp": "10.0.0.0/8", "reason": "CI"},
                {"rules": ["q"], "userAgent": "*Terraform*"}
            ]}"#,
        )
        .unwrap();
        let ok = detection(
            "r",
            "arn:aws:iam::1:role/DeployerProd",
            "2024-01-01T00:00:00Z",
            "1",
        );
        assert_eq!(noise.exception_for(&ok), Some("CI"));
        let outside = Detection {
            source_ip_address: Some("192.0.2.1".into()),
            ..ok.clone()
        };
        assert_eq!(noise.exception_for(&outside), None);
        let tf = Detection {
            user_agent: Some("APN/1.0 HashiCorp/1.0 Terraform/1.5.7".into()),
            ..detection("q", "arn:x", "2024-01-01T00:00:00Z", "2")
        };
        assert_eq!(noise.exception_for(&tf), Some("exception 1"));
        assert_eq!(
            noise.exception_for(&Detection {
                rule_id: "r".into(),
                ..tf
            }),
            None
        );
    }

    #[test]
    fn bad_exceptions_are_refused_with_their_index() {
        let e = Noise::from_json(r#"{"exceptions": [{"reason": "all"}]}"#).unwrap_err();
        assert!(
            e.to_string().contains("exception 0 has no condition"),
            "{e}"
        );
        let e = Noise::from_json(r#"{"exceptions": [{"sourceIp": "10.0.0.300"}]}"#).unwrap_err();
        assert!(e.to_string().contains("'10.0.0.300'"), "{e}");
        let e = Noise::from_json(r#"{"suppresMinutes": 5}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
