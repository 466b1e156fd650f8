//! What every command does with input it cannot use: a file or folder that cannot be read is a
//! usage error (exit 2) naming it, a configuration or key file is read only up to a bound, and
//! a value quoted back in a message is cut to a few hundred characters.

use std::path::PathBuf;
use std::process::Command;

fn trailwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("trailwatch-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn sample_trail() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../events/sample-trail").to_owned()
}

#[test]
fn every_command_exits_2_naming_an_input_it_cannot_read() {
    let missing = temp("missing.json");
    let missing = missing.to_str().unwrap();
    let out = temp("out");
    let out = out.to_str().unwrap();
    let trail = sample_trail();
    let cases: Vec<Vec<&str>> = vec![
        vec!["selectors", "check", missing],
        vec!["selectors", "explain", missing, &trail],
        vec![
            "selectors",
            "explain",
            "../events/trail-config.json",
            missing,
        ],
        vec!["replay", "--out", out, missing],
        vec!["replay", "--out", out, "--config", missing, &trail],
        vec!["insights", "backtest", "--out", out, missing],
        vec!["lookup", missing],
        vec!["detect", missing],
        vec!["validate-logs", missing],
        vec!["validate-logs", &trail, "--public-key", missing],
    ];
    for args in cases {
        let (code, out, err) = trailwatch(&args);
        let said = out + &err;
        assert_eq!(code, 2, "{args:?}: {said}");
        assert!(
            said.contains("missing.json"),
            "{args:?} names the file: {said}"
        );
    }
}

#[test]
fn a_configuration_is_read_up_to_a_bound() {
    let big = temp("big.json");
    std::fs::write(
        &big,
        format!(
            "{{\"EventSelectors\":[],\"x\":\"{}\"}}",
            "x".repeat(5 << 20)
        ),
    )
    .unwrap();
    let (code, out, _) = trailwatch(&["selectors", "check", big.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("larger than 4194304 bytes"), "{out}");
}

#[test]
fn a_long_value_is_cut_in_the_message_that_quotes_it() {
    let config = temp("long-name.json");
    let name = "n".repeat(3 << 20);
    std::fs::write(
        &config,
        format!(r#"{{"AdvancedEventSelectors":[{{"Name":"{name}","FieldSelectors":[{{"Field":"eventCategory","Equals":["Management"]}}]}}]}}"#),
    )
    .unwrap();
    let (code, out, _) = trailwatch(&["selectors", "check", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("Name is longer than 1000 characters"),
        "{}",
        &out[..out.len().min(2000)]
    );
    assert!(out.lines().all(|l| l.len() < 1000), "{} bytes", out.len());

    // One argument can be 128 KiB at most (Linux's MAX_ARG_STRLEN).
    let key = "k".repeat(100_000);
    let attribute = format!("AttributeKey={key},AttributeValue=x");
    let (code, _, err) =
        trailwatch(&["lookup", &sample_trail(), "--lookup-attributes", &attribute]);
    assert_eq!(code, 2);
    assert!(
        err.contains("is not one of EventId"),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(err.len() < 1000, "{} bytes", err.len());
}
