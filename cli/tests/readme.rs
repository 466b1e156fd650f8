//! The README's quick start, run as a new user runs it: the first of the two commands
//! (`cargo run --release -- replay ...`, here the binary cargo built for this test), then every
//! line of the "Quick start" section's shell blocks, in a scratch folder where
//! `target/release/trailwatch` is that binary and `events/` is the repository's. And the
//! documentation as a whole (the README and `docs/`): every `trailwatch` command its shell
//! blocks show has `--help`, and every relative link resolves to a file and heading.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The shell blocks of the section headed `heading` (up to the next `## `).
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no '{heading}' section"));
    let section = &readme[start + heading.len()..];
    blocks_in(&section[..section.find("\n## ").unwrap_or(section.len())])
}

fn blocks_in(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("unclosed code block");
        blocks.push(body[..close].to_string());
        rest = &body[close + 3..];
    }
    blocks
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-readme-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_trailwatch"),
        dir.join("target/release/trailwatch"),
    )
    .unwrap();
    std::os::unix::fs::symlink(repo().join("events"), dir.join("events")).unwrap();
    dir
}

fn run_script(dir: &Path, script: &str) -> (bool, String, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\nshopt -s expand_aliases\n{script}"
        ))
        .current_dir(dir)
        .output()
        .expect("bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn quick_start_runs_as_written() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let first = shell_blocks(&readme, "## Two commands");
    let first_command = first
        .first()
        .and_then(|b| {
            b.lines()
                .find(|l| l.starts_with("cargo run --release -- replay"))
        })
        .expect("the first command replays with cargo run --release");
    let quick = shell_blocks(&readme, "## Quick start");
    assert!(!quick.is_empty(), "the quick start has shell blocks");

    let dir = scratch();
    let replay = first_command.replacen("cargo run --release --", "target/release/trailwatch", 1);
    let (ok, stdout, stderr) = run_script(&dir, &replay);
    assert!(ok, "{replay}\n{stdout}\n{stderr}");
    assert!(dir.join("out/insights.jsonl").is_file());

    let (ok, stdout, stderr) = run_script(&dir, &quick.join("\n"));
    assert!(ok, "quick start failed:\n{stdout}\n{stderr}");
    // The deletion question is answered: the one DeleteBucket of the sample trail, by its user.
    assert!(stdout.contains("DeleteBucket"), "{stdout}");
    assert!(stdout.contains("bert-jan"), "{stdout}");
    assert!(stdout.contains("valid"), "selectors check: {stdout}");
    let insights = std::fs::read_to_string(dir.join("insights.jsonl")).unwrap();
    for line in insights.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(record["eventType"], "AwsCloudTrailInsight");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_command_shown_has_help() {
    let blocks: Vec<String> = documentation()
        .iter()
        .flat_map(|page| blocks_in(&std::fs::read_to_string(page).unwrap()))
        .collect();
    let mut commands: Vec<Vec<&str>> = Vec::new();
    for line in blocks.iter().flat_map(|b| b.lines()) {
        let Some(rest) = line.trim_start().strip_prefix("trailwatch ") else {
            continue;
        };
        let words: Vec<&str> = rest
            .split_whitespace()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .filter(|w| !w.starts_with('-'))
            .take(2)
            .collect();
        if !words.is_empty() && !commands.contains(&words) {
            commands.push(words);
        }
    }
    assert!(commands.len() >= 5, "{commands:?}");
    for words in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
            .args(&words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "trailwatch {} --help: {}",
            words.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The README and every page of `docs/`.
fn documentation() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ beside the code")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The text outside fenced code blocks and inline code spans, line by line: what renders as
/// prose, where links and headings live. (Our own pages only, so a few lines of scanning
/// rather than a Markdown parser dependency.)
fn prose_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push(line.split('`').step_by(2).collect::<String>());
        }
    }
    lines
}

/// The anchor GitHub gives a heading: lower case, letters, digits, `-` and `_` kept, spaces
/// turned into `-`, everything else dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a page's headings. Inline code is part of a heading's text, so headings are
/// read from the raw lines (outside fences), not from `prose_lines`.
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every `[text](target)` target on the page's prose lines.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            targets.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in documentation() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target.as_str(), None),
            };
            let linked = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            let name = page
                .strip_prefix(repo())
                .unwrap_or(&page)
                .display()
                .to_string();
            if !linked.exists() {
                broken.push(format!("{name}: {target}: no such file"));
                continue;
            }
            if let Some(fragment) = fragment {
                let linked_text = std::fs::read_to_string(&linked).unwrap_or_default();
                if !anchors(&linked_text).iter().any(|a| a == fragment) {
                    broken.push(format!("{name}: {target}: no heading with that anchor"));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: is the scan broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(anchor(" Hold-back: full calls"), "hold-back-full-calls");
    assert_eq!(
        anchor(" The `trailwatch` command"),
        "the-trailwatch-command"
    );
    assert_eq!(anchor(" Too old, too new"), "too-old-too-new");
    assert_eq!(
        link_targets("see [a](docs/a.md#x) and `[b](not-a-link)`\n```\n[c](fenced)\n```"),
        ["docs/a.md#x"]
    );
}
