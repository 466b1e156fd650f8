//! `trailwatch detect`: Sigma detection rules over CloudTrail log files — the select function's
//! detections, backtested on one machine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use trailwatch::deliver::message::RecordLocation;
use trailwatch::detect::detection::Detection;
use trailwatch::detect::rules::RULE_NOTES;
use trailwatch::detect::{
    Detector, Noise, Outcome, RuleOptions, RuleSet, RuleText, Scratch, Suppressor,
};
use trailwatch::ingest::{parse_object_key, ObjectKind};
use trailwatch::ingest::{read_log_file, LogFileLimits};
use trailwatch::local::{collect_inputs, Input};
use trailwatch::record::Record;
use trailwatch::time::parse_event_time;

use crate::exit;

/// Evaluates detection rules on CloudTrail log files: the rules the select function evaluates
/// on every record it reads (SigmaHQ's CloudTrail rules and trailwatch's own, embedded), plus
/// your own. Prints a table of rule → matches (first and last time, principals), or with
/// --json the detections as JSON lines, exactly as they would reach the EventBridge bus
/// (detail-type "trailwatch Detection").
///
/// Rules are loaded and reported on stderr first: how many, which are off and why, and every
/// rule file that could not be loaded, with the reason.
#[derive(Debug, Args)]
#[command(after_long_help = help_after())]
pub struct DetectArgs {
    /// CloudTrail log files (`.json` or `.json.gz`), folders (read recursively), or `-` for one
    /// log file on stdin.
    #[arg(required_unless_present = "list_rules", value_name = "LOGS")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Print the reported detections as JSON lines on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Print the rules (on, off, not loaded, with reasons) and exit.
    #[arg(long)]
    pub list_rules: bool,
}

/// Which rules to evaluate and the noise control of their matches (`detect` and `replay`).
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// A folder of your own Sigma rules (`.yml`/`.yaml`, read recursively), added to the
    /// embedded set; a rule with the id of an embedded one replaces it. Repeatable.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Evaluate only the rules of --rules, not the embedded set.
    #[arg(long)]
    pub no_embedded: bool,
    /// Switch a rule off, by id. Repeatable.
    #[arg(long, value_name = "ID")]
    pub disable: Vec<String>,
    /// Switch on a rule that is off by default, by id. Repeatable.
    #[arg(long, value_name = "ID")]
    pub enable: Vec<String>,
    /// Noise settings (JSON): suppression windows and exceptions, as in the select function's
    /// configuration (see below).
    #[arg(long, value_name = "FILE")]
    pub noise: Option<PathBuf>,
}

/// The rules and noise settings `args` name, and how many rule files could not be read or
/// loaded (the unreadable ones named on stderr; see [`report_rules`] for the rest).
pub fn load_rules(args: &RuleArgs) -> Result<(RuleSet, Noise, usize), String> {
    let noise = match &args.noise {
        Some(path) => Noise::from_json(
            &std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?,
        None => Noise::default(),
    };
    let (rule_files, unreadable) = read_rule_folders(&args.rules)?;
    let set = RuleSet::load(&RuleOptions {
        embedded: !args.no_embedded,
        extra: rule_files,
        disable: args.disable.iter().cloned().collect(),
        enable: args.enable.iter().cloned().collect(),
    });
    let problems = unreadable + set.not_loaded.len();
    Ok((set, noise, problems))
}

/// Shown by `--help`: the embedded rules' state is computed from the rules themselves (loading
/// them takes milliseconds), so it cannot go stale.
pub fn help_after() -> String {
    let set = RuleSet::load(&RuleOptions {
        embedded: true,
        ..RuleOptions::default()
    });
    let mut text = format!(
        "Embedded rules: {} — SigmaHQ's CloudTrail rules (Detection Rule License 1.1: every\n\
         detection carries the rule's author) and trailwatch's own. Loaded: {}; off by default: {};\n\
         not loaded: {}.\n",
        set.rules.len() + set.disabled.len() + set.not_loaded.len(),
        set.rules.len() + set.disabled.len(),
        set.disabled.len(),
        set.not_loaded.len(),
    );
    for off in &set.disabled {
        text.push_str(&format!(
            "  off: {} {} — {}\n",
            off.id, off.title, off.reason
        ));
    }
    for not_loaded in &set.not_loaded {
        text.push_str(&format!("  not loaded: {not_loaded}\n"));
    }
    text.push_str(
        "Embedded rules that load but do not do what their title says on CloudTrail records:\n",
    );
    for (id, note) in RULE_NOTES {
        let title = set
            .rules
            .iter()
            .find(|r| r.id == *id)
            .map_or("", |r| r.title.as_str());
        text.push_str(&format!("  {id} {title}: {note}\n"));
    }
    text.push_str(HELP_NOISE);
    text
}

const HELP_NOISE: &str = "
Noise settings (--noise FILE, JSON):
  {\"suppressMinutes\": 60,                      one report per rule, principal and account
   \"suppressMinutesByRule\": {\"<id>\": 0},       per rule (0: report every match)
   \"exceptions\": [{\"rules\": [\"<id>\"],          optional: every rule when absent
                   \"principalArn\": \"arn:aws:iam::*:role/Deployer*\",
                   \"sourceIp\": \"10.0.0.0/8\", \"userAgent\": \"*Terraform*\",
                   \"reason\": \"CI deploys\"}]}  all conditions given must hold
A repeat inside a window is counted, not reported; the next report for the same key says how
many were held (suppression.heldInPreviousWindow). Windows are in event time.

Exit codes: 0 all read; 1 some files, records or rule files could not be read (named on
stderr; the rest was processed); 2 could not run (arguments, noise settings, no log file).";

pub fn run(args: DetectArgs) -> ExitCode {
    match detect(&args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            say(&format!("trailwatch detect: {message}"));
            ExitCode::from(exit::USAGE)
        }
    }
}

/// Writes to stderr; a closed stderr is not worth a panic.
fn say(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

fn detect(args: &DetectArgs) -> Result<u8, String> {
    let (set, noise, mut problems) = load_rules(&args.rules)?;
    if args.list_rules {
        print(&rule_listing(&set));
        return Ok(if set.not_loaded.is_empty() {
            exit::OK
        } else {
            exit::PROBLEMS
        });
    }
    report_rules(&set);
    let sources = collect_inputs(&args.inputs).map_err(|e| e.to_string())?;
    let detector = Detector::new(set.rules);
    let mut run = Backtest::new(&detector, Suppressor::new(noise), args.json);
    for source in &sources {
        run.read(source);
    }
    if !args.json {
        print(&run.table());
    }
    for problem in &run.problems {
        say(&format!("problem: {problem}"));
    }
    problems += run.problems.len();
    Ok(if problems > 0 {
        exit::PROBLEMS
    } else {
        exit::OK
    })
}

/// Writes to stdout; a closed stdout (`| head`) ends the output, not the program.
fn print(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

/// The rule files under `folders` (`.yml`, `.yaml`, recursively) and how many could not be read
/// (each named on stderr).
fn read_rule_folders(folders: &[PathBuf]) -> Result<(Vec<RuleText>, usize), String> {
    let mut files = Vec::new();
    for folder in folders {
        let walk = walkdir::WalkDir::new(folder)
            .follow_links(true)
            .sort_by_file_name();
        for entry in walk {
            let entry = entry.map_err(|e| format!("--rules: {e}"))?;
            let name = entry.file_name().to_string_lossy();
            let rule_file = name.ends_with(".yml") || name.ends_with(".yaml");
            if entry.file_type().is_file() && rule_file && !name.starts_with('.') {
                files.push(entry.into_path());
            }
        }
    }
    let mut texts = Vec::new();
    let mut unreadable = 0;
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push(RuleText {
                origin: path.display().to_string(),
                text,
            }),
            Err(e) => {
                say(&format!(
                    "rule file {}: cannot be read: {e}",
                    path.display()
                ));
                unreadable += 1;
            }
        }
    }
    Ok((texts, unreadable))
}

/// The start-up account of the rules, on stderr: never a rule skipped without saying so.
pub fn report_rules(set: &RuleSet) {
    say(&format!(
        "rules: {} on, {} off, {} not loaded",
        set.rules.len(),
        set.disabled.len(),
        set.not_loaded.len()
    ));
    for off in &set.disabled {
        say(&format!(
            "rule off: {} {} ({})",
            off.id, off.title, off.reason
        ));
    }
    for (id, origin) in &set.replaced {
        say(&format!(
            "rule {id}: the embedded rule is replaced by {origin}"
        ));
    }
    report_rule_problems(set);
}

/// What in the rules asks for attention, on stderr: ids given that no rule has, rule files not
/// loaded (with the reason). Nothing when all is well.
pub fn report_rule_problems(set: &RuleSet) {
    for id in &set.unknown_ids {
        say(&format!(
            "rule id {id} given to --enable/--disable: no rule has it"
        ));
    }
    for not_loaded in &set.not_loaded {
        say(&format!("rule not loaded: {not_loaded}"));
    }
}

/// `--list-rules`: every rule with its state.
pub fn rule_listing(set: &RuleSet) -> String {
    let mut out = String::new();
    for rule in &set.rules {
        out.push_str(&format!(
            "on   {}  {:<13} {}  [{}]\n",
            rule.id, rule.level, rule.title, rule.origin
        ));
    }
    for off in &set.disabled {
        out.push_str(&format!("off  {}  {}: {}\n", off.id, off.title, off.reason));
    }
    for not_loaded in &set.not_loaded {
        out.push_str(&format!("not loaded  {not_loaded}\n"));
    }
    out
}

/// What one rule did over the run.
#[derive(Debug, Default)]
struct Tally {
    title: String,
    level: String,
    matches: usize,
    reported: usize,
    held: usize,
    excepted: usize,
    first: Option<(i64, String)>,
    last: Option<(i64, String)>,
    principals: BTreeSet<String>,
}

/// The rules over the log files of one run.
struct Backtest<'d> {
    detector: &'d Detector,
    suppressor: Suppressor,
    scratch: Scratch,
    json: bool,
    tallies: BTreeMap<String, Tally>,
    records: usize,
    files: usize,
    problems: Vec<String>,
}

impl<'d> Backtest<'d> {
    fn new(detector: &'d Detector, suppressor: Suppressor, json: bool) -> Self {
        Backtest {
            detector,
            suppressor,
            scratch: Scratch::default(),
            json,
            tallies: BTreeMap::new(),
            records: 0,
            files: 0,
            problems: Vec::new(),
        }
    }

    fn read(&mut self, source: &Input) {
        let name = source.name();
        if parse_object_key(&name).kind == ObjectKind::Digest {
            return;
        }
        self.files += 1;
        let reader: Box<dyn Read> = match source {
            Input::File(path) => match File::open(path) {
                Ok(file) => Box::new(BufReader::new(file)),
                Err(e) => return self.problems.push(format!("{name}: cannot open: {e}")),
            },
            Input::Stdin => Box::new(io::stdin().lock()),
        };
        let result = read_log_file(reader, LogFileLimits::default(), |item| match item.bytes {
            Ok(raw) => self.record(&name, item.index, raw),
            Err(problem) => self
                .problems
                .push(format!("{name} record {}: {problem}", item.index)),
        });
        if let Err(e) = result {
            self.problems.push(format!("{name}: {e}"));
        }
    }

    fn record(&mut self, file: &str, index: usize, raw: &str) {
        self.records += 1;
        let record = match Record::parse(raw) {
            Ok(record) => record,
            Err(e) => return self.problems.push(format!("{file} record {index}: {e}")),
        };
        let location = RecordLocation {
            bucket: None,
            key: Some(file),
            index,
        };
        for detection in self.detector.detect(&record, location, &mut self.scratch) {
            self.offer(detection);
        }
    }

    fn offer(&mut self, detection: Detection) {
        let tally = self.tallies.entry(detection.rule_id.clone()).or_default();
        tally.title.clone_from(&detection.title);
        tally.level.clone_from(&detection.level);
        tally.matches += 1;
        tally.principals.insert(detection.principal.clone());
        if let Some(time) = &detection.event_time {
            let at = parse_event_time(time).unwrap_or(i64::MIN);
            if tally.first.as_ref().is_none_or(|(t, _)| at < *t) {
                tally.first = Some((at, time.clone()));
            }
            if tally.last.as_ref().is_none_or(|(t, _)| at >= *t) {
                tally.last = Some((at, time.clone()));
            }
        }
        match self.suppressor.offer(detection) {
            Outcome::Report(detection) => {
                tally.reported += 1;
                if self.json {
                    print(&format!("{}\n", detection.to_json()));
                }
            }
            Outcome::Held | Outcome::AlreadyReported => tally.held += 1,
            Outcome::Excepted(_) => tally.excepted += 1,
        }
    }

    fn table(&self) -> String {
        let mut rows: Vec<&Tally> = self.tallies.values().collect();
        rows.sort_by(|a, b| {
            level_rank(&b.level)
                .cmp(&level_rank(&a.level))
                .then(b.matches.cmp(&a.matches))
        });
        let mut out = format!(
            "{:<56} {:<8} {:>7} {:>8} {:>5} {:>8}  {:<20} {:<20} principals\n",
            "rule", "level", "matches", "reported", "held", "excepted", "first", "last"
        );
        for t in rows {
            let time =
                |v: &Option<(i64, String)>| v.as_ref().map_or("-".to_owned(), |(_, s)| s.clone());
            let mut principals: Vec<&str> =
                t.principals.iter().map(String::as_str).take(2).collect();
            let more = t.principals.len().saturating_sub(2);
            let more = if more > 0 {
                format!(" (+{more})")
            } else {
                String::new()
            };
            if principals.is_empty() {
                principals.push("-");
            }
            out.push_str(&format!(
                "{:<56} {:<8} {:>7} {:>8} {:>5} {:>8}  {:<20} {:<20} {}{more}\n",
                truncate(&t.title, 56),
                t.level,
                t.matches,
                t.reported,
                t.held,
                t.excepted,
                time(&t.first),
                time(&t.last),
                principals.join(", ")
            ));
        }
        let matches: usize = self.tallies.values().map(|t| t.matches).sum();
        let reported: usize = self.tallies.values().map(|t| t.reported).sum();
        out.push_str(&format!(
            "\n{} files, {} records: {} matches of {} rules, {} reported ({} rules evaluated, {} on every record)\n",
            self.files,
            self.records,
            matches,
            self.tallies.len(),
            reported,
            self.detector.rules().len(),
            self.detector.unfiltered_rules()
        ));
        out
    }
}

fn level_rank(level: &str) -> u8 {
    match level {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}
