//! The README's quick start, run as a new user runs it: the first of the two commands
//! (`cargo run --release -- replay ...`, here the binary cargo built for this test), then every
//! line of the "Quick start" section's shell blocks, in a scratch folder where
//! `target/release/trailwatch` is that binary and `events/` is the repository's.

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
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let blocks = blocks_in(&readme);
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
