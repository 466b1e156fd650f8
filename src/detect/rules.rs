//! Loading Sigma rules: the embedded set, the user's own, and which are on.
//!
//! Every rule file given is either loaded or listed in [`RuleSet::not_loaded`] with the reason
//! (the caller reports them at start-up); rules switched off are listed in
//! [`RuleSet::disabled`]. Nothing is skipped without a trace.

use std::collections::{BTreeMap, BTreeSet};

use rsigma_eval::CompiledRule;
use rsigma_parser::SigmaRule;

use super::embedded::EMBEDDED_RULES;
use super::prefilter::Admission;

/// Rules of the embedded set that are loaded but off unless enabled by id, and why: they
/// match routine activity, so on by default they would bury the detections that matter.
pub const OFF_BY_DEFAULT: &[(&str, &str)] = &[(
    "905d389b-b853-46d0-9d3d-dea0d3a3cd49",
    "matches every call made with an assumed role, i.e. most of a normal account's activity (the rule says so under falsepositives); enable it to hunt, with exceptions",
)];

/// Embedded SigmaHQ rules that load but, on CloudTrail records, do not do what their title
/// says (kept unchanged, as shipped upstream; the docs and `--help` carry these notes).
pub const RULE_NOTES: &[(&str, &str)] = &[
    (
        "ccd6a6c8-bb4e-4a91-9d2a-07e632819374",
        "never matches: it requires a field `status: success`, which CloudTrail records do not have",
    ),
    (
        "db014773-7375-4f4e-b83b-133337c0ffee",
        "never matches until edited: a template whose policy text names `<YOUR-BUCKET-NAME>`",
    ),
    (
        "0a5177f4-6ca9-44c2-aacf-d3f3d8b6e4d2",
        "matches every CreateAccessKey: its filter compares the caller's ARN with the literal text `responseElements.accessKey.userName` (trailwatch's rule 8737e848 compares the fields)",
    ),
    (
        "055fb148-60f8-462d-ad16-26926ce050f1",
        "matches every UpdateLoginProfile: its filter asks the caller's ARN to equal the user name, which an ARN never does",
    ),
];

/// The licence of the SigmaHQ rules shipped in `rules/sigma/`.
pub const SIGMAHQ_LICENSE: &str = "DRL-1.1";

/// The text of a rule file and where it came from (`embedded:sigma/x.yml`, a path, an S3 URL).
#[derive(Debug, Clone)]
pub struct RuleText {
    pub origin: String,
    pub text: String,
}

/// One loaded rule: what detections report about it, and its compiled form.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub title: String,
    /// `informational` … `critical`; `medium` for a rule that sets none.
    pub level: &'static str,
    pub status: Option<&'static str>,
    pub description: Option<String>,
    /// The rule's authors (the DRL asks that detections carry them).
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    /// The rule's `license`, or the DRL for the embedded SigmaHQ rules.
    pub license: Option<String>,
    pub origin: String,
    /// The `eventName`s the rule can match (see [`Admission`]).
    pub admission: Admission,
    pub(crate) compiled: CompiledRule,
}

/// Why a rule (or a document of a rule file) was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("not a Sigma rule file: {0}")]
    Parse(#[source] rsigma_parser::SigmaParserError),
    #[error("a document of the file is not a Sigma rule: {0}")]
    Document(String),
    #[error("logsource is {0}; trailwatch evaluates rules of product: aws, service: cloudtrail")]
    Logsource(String),
    #[error("a correlation rule: trailwatch evaluates each record on its own, not sequences or counts across records")]
    Correlation,
    #[error("a Sigma filter document: use exceptions in the detection configuration instead")]
    Filter,
    #[error("cannot be compiled: {0}")]
    Compile(#[source] rsigma_eval::EvalError),
    #[error("its id {id} is already used by {first}")]
    DuplicateId { id: String, first: String },
}

/// A rule file (or a document of one) that was not loaded.
#[derive(Debug)]
pub struct NotLoaded {
    pub origin: String,
    pub id: Option<String>,
    pub title: Option<String>,
    pub reason: RuleError,
}

impl std::fmt::Display for NotLoaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(title) = &self.title {
            write!(f, " ({title})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A loaded rule that is off, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disabled {
    pub id: String,
    pub title: String,
    pub reason: String,
}

/// Which rules to load and which to switch on or off.
#[derive(Debug, Clone, Default)]
pub struct RuleOptions {
    /// Load the embedded set (SigmaHQ's and trailwatch's rules).
    pub embedded: bool,
    /// The user's rule files. A rule with the id of an embedded rule replaces it.
    pub extra: Vec<RuleText>,
    /// Rule ids to switch off.
    pub disable: BTreeSet<String>,
    /// Ids of rules off by default ([`OFF_BY_DEFAULT`]) to switch on.
    pub enable: BTreeSet<String>,
}

/// The rules to evaluate, and an account of every rule that is not evaluated.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub not_loaded: Vec<NotLoaded>,
    pub disabled: Vec<Disabled>,
    /// Embedded rules the user's files replaced: (id, the user's file).
    pub replaced: Vec<(String, String)>,
    /// Ids given to disable or enable that no rule has (a typo, most likely).
    pub unknown_ids: Vec<String>,
}

impl RuleText {
    pub fn embedded() -> impl Iterator<Item = RuleText> {
        EMBEDDED_RULES.iter().map(|(path, text)| RuleText {
            origin: format!("embedded:{path}"),
            text: (*text).to_owned(),
        })
    }

    fn is_embedded_sigmahq(&self) -> bool {
        self.origin.starts_with("embedded:sigma/")
    }
}

impl RuleSet {
    pub fn load(options: &RuleOptions) -> RuleSet {
        let mut set = RuleSet::default();
        let mut origin_of: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let embedded = options
            .embedded
            .then(RuleText::embedded)
            .into_iter()
            .flatten();
        for (text, user) in embedded
            .map(|t| (t, false))
            .chain(options.extra.iter().cloned().map(|t| (t, true)))
        {
            for rule in set.parse_file(&text) {
                set.admit(rule, user, &mut origin_of);
            }
        }
        set.switch(options);
        set
    }

    /// The rules of one file; what cannot be loaded goes to `not_loaded`.
    fn parse_file(&mut self, file: &RuleText) -> Vec<Rule> {
        let collection = match rsigma_parser::parse_sigma_yaml(&file.text) {
            Ok(collection) => collection,
            Err(e) => {
                self.refuse(file, None, None, RuleError::Parse(e));
                return Vec::new();
            }
        };
        for error in &collection.errors {
            self.refuse(file, None, None, RuleError::Document(error.clone()));
        }
        for c in &collection.correlations {
            self.refuse(
                file,
                c.id.clone(),
                Some(c.title.clone()),
                RuleError::Correlation,
            );
        }
        for f in &collection.filters {
            self.refuse(file, f.id.clone(), Some(f.title.clone()), RuleError::Filter);
        }
        let mut rules = Vec::new();
        let several = collection.rules.len() > 1;
        for (index, sigma) in collection.rules.iter().enumerate() {
            let origin = if several {
                format!("{} (document {})", file.origin, index + 1)
            } else {
                file.origin.clone()
            };
            match compile(sigma, &origin, file.is_embedded_sigmahq()) {
                Ok(rule) => rules.push(rule),
                Err(reason) => {
                    self.refuse(file, sigma.id.clone(), Some(sigma.title.clone()), reason)
                }
            }
        }
        rules
    }

    fn admit(&mut self, rule: Rule, user: bool, origin_of: &mut BTreeMap<String, (String, bool)>) {
        match origin_of.get(&rule.id) {
            None => {}
            Some((_, false)) if user => {
                self.replaced.push((rule.id.clone(), rule.origin.clone()));
                self.rules.retain(|r| r.id != rule.id);
            }
            Some((first, _)) => {
                let reason = RuleError::DuplicateId {
                    id: rule.id.clone(),
                    first: first.clone(),
                };
                return self.not_loaded.push(NotLoaded {
                    origin: rule.origin,
                    id: Some(rule.id),
                    title: Some(rule.title),
                    reason,
                });
            }
        }
        origin_of.insert(rule.id.clone(), (rule.origin.clone(), user));
        self.rules.push(rule);
    }

    fn switch(&mut self, options: &RuleOptions) {
        let known: BTreeSet<&str> = self.rules.iter().map(|r| r.id.as_str()).collect();
        self.unknown_ids = options
            .disable
            .iter()
            .chain(&options.enable)
            .filter(|id| !known.contains(id.as_str()))
            .cloned()
            .collect();
        let mut disabled = Vec::new();
        self.rules.retain(|rule| {
            let reason = if options.disable.contains(&rule.id) {
                "disabled in the configuration".to_owned()
            } else if let Some((_, why)) = OFF_BY_DEFAULT
                .iter()
                .find(|(id, _)| *id == rule.id && !options.enable.contains(*id))
            {
                format!("off by default: {why}")
            } else {
                return true;
            };
            disabled.push(Disabled {
                id: rule.id.clone(),
                title: rule.title.clone(),
                reason,
            });
            false
        });
        self.disabled = disabled;
    }

    fn refuse(
        &mut self,
        file: &RuleText,
        id: Option<String>,
        title: Option<String>,
        reason: RuleError,
    ) {
        self.not_loaded.push(NotLoaded {
            origin: file.origin.clone(),
            id,
            title,
            reason,
        });
    }
}

fn status_name(status: rsigma_parser::Status) -> &'static str {
    use rsigma_parser::Status;
    match status {
        Status::Stable => "stable",
        Status::Test => "test",
        Status::Experimental => "experimental",
        Status::Deprecated => "deprecated",
        Status::Unsupported => "unsupported",
    }
}

fn compile(sigma: &SigmaRule, origin: &str, sigmahq: bool) -> Result<Rule, RuleError> {
    let source = &sigma.logsource;
    let is =
        |v: &Option<String>, want: &str| v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(want));
    if !is(&source.product, "aws") || !is(&source.service, "cloudtrail") {
        return Err(RuleError::Logsource(format!(
            "product: {}, service: {}",
            source.product.as_deref().unwrap_or("(none)"),
            source.service.as_deref().unwrap_or("(none)")
        )));
    }
    let compiled = rsigma_eval::compile_rule(sigma).map_err(RuleError::Compile)?;
    Ok(Rule {
        // Sigma makes `id` optional; the origin then names the rule (to disable it, say).
        id: sigma.id.clone().unwrap_or_else(|| origin.to_owned()),
        title: sigma.title.clone(),
        level: sigma.level.map_or("medium", |l| l.as_str()),
        status: sigma.status.map(status_name),
        description: sigma.description.clone(),
        author: sigma.author.clone(),
        tags: sigma.tags.clone(),
        references: sigma.references.clone(),
        license: sigma
            .license
            .clone()
            .or_else(|| sigmahq.then(|| SIGMAHQ_LICENSE.to_owned())),
        origin: origin.to_owned(),
        admission: Admission::of_rule(sigma),
        compiled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(origin: &str, text: &str) -> RuleText {
        RuleText {
            origin: origin.into(),
            text: text.into(),
        }
    }

    const STOP: &str = "title: Stop\nid: r-stop\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    selection:\n        eventName: StopLogging\n    condition: selection\nlevel: high\n";

    #[test]
    fn every_embedded_rule_loads_and_only_the_listed_ones_are_off() {
        let set = RuleSet::load(&RuleOptions {
            embedded: true,
            ..RuleOptions::default()
        });
        let reasons: Vec<String> = set.not_loaded.iter().map(ToString::to_string).collect();
        assert!(reasons.is_empty(), "{reasons:#?}");
        let off: Vec<&str> = set.disabled.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            off,
            OFF_BY_DEFAULT.iter().map(|(id, _)| *id).collect::<Vec<_>>()
        );
        assert_eq!(set.rules.len() + set.disabled.len(), EMBEDDED_RULES.len());
        let sigma = set
            .rules
            .iter()
            .find(|r| r.origin.starts_with("embedded:sigma/"))
            .unwrap();
        assert_eq!(sigma.license.as_deref(), Some(SIGMAHQ_LICENSE));
        assert!(sigma.author.is_some());
    }

    #[test]
    fn every_rule_file_of_the_rules_folder_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut on_disk = Vec::new();
        for folder in ["sigma", "trailwatch"] {
            for entry in std::fs::read_dir(root.join(folder)).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(".yml") {
                    on_disk.push(format!("{folder}/{name}"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED_RULES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn rules_that_cannot_be_evaluated_are_reported_with_the_reason() {
        let set = RuleSet::load(&RuleOptions {
            extra: vec![
                text("bad.yml", "title: [unclosed"),
                text(
                    "windows.yml",
                    "title: W\nlogsource:\n    product: windows\ndetection:\n    s:\n        a: b\n    condition: s\n",
                ),
                text(
                    "regex.yml",
                    "title: R\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    s:\n        userAgent|re: '(unclosed'\n    condition: s\n",
                ),
                text(
                    "correlation.yml",
                    "title: C\nid: c-1\ncorrelation:\n    type: event_count\n    rules:\n        - r-stop\n    group-by:\n        - recipientAccountId\n    timespan: 5m\n    condition:\n        gte: 3\n",
                ),
                text("stop.yml", STOP),
                text("stop-again.yml", STOP),
            ],
            ..RuleOptions::default()
        });
        assert_eq!(set.rules.len(), 1);
        let got: Vec<(String, String)> = set
            .not_loaded
            .iter()
            .map(|n| (n.origin.clone(), n.reason.to_string()))
            .collect();
        let reason = |origin: &str| {
            got.iter()
                .find(|(o, _)| o == origin)
                .map(|(_, r)| r.as_str())
                .unwrap_or_else(|| panic!("{origin} not reported: {got:#?}"))
        };
        assert!(reason("bad.yml").contains("not a Sigma rule"));
        assert!(reason("windows.yml").contains("product: windows"));
        assert!(reason("regex.yml").contains("cannot be compiled"));
        assert!(reason("correlation.yml").contains("correlation rule"));
        assert!(reason("stop-again.yml").contains("already used by stop.yml"));
    }

    #[test]
    fn a_user_rule_with_an_embedded_id_replaces_it_and_ids_switch_rules() {
        let assume_role = OFF_BY_DEFAULT[0].0;
        let own = STOP.replace("r-stop", "4db60cc0-36fb-42b7-9b58-a5b53019fb74");
        let set = RuleSet::load(&RuleOptions {
            embedded: true,
            extra: vec![text("mine/trail.yml", &own)],
            disable: [
                "aws-nope".to_owned(),
                "c803b2ce-c4a2-4836-beae-b112010390b1".to_owned(),
            ]
            .into(),
            enable: [assume_role.to_owned()].into(),
        });
        let trail: Vec<&Rule> = set
            .rules
            .iter()
            .filter(|r| r.id == "4db60cc0-36fb-42b7-9b58-a5b53019fb74")
            .collect();
        assert_eq!(trail.len(), 1);
        assert_eq!(trail[0].origin, "mine/trail.yml");
        assert_eq!(set.replaced.len(), 1);
        assert!(set.rules.iter().any(|r| r.id == assume_role));
        assert_eq!(set.unknown_ids, vec!["aws-nope".to_owned()]);
        assert!(set
            .disabled
            .iter()
            .all(|d| d.reason == "disabled in the configuration"));
    }
}
