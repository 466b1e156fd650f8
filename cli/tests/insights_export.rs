//! `trailwatch insights backtest --export`: the snapshot that seeds a new deployment.

use std::process::Command;

#[test]
fn backtest_exports_a_snapshot_of_every_key_it_learned() {
    let dir = std::env::temp_dir().join(format!("trailwatch-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, export) = (dir.join("insights.jsonl"), dir.join("snapshot.json"));
    let status = Command::new(env!("CARGO_BIN_EXE_trailwatch"))
        .args(["insights", "backtest"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../events/sample-trail"
        ))
        .arg("--out")
        .arg(&out)
        .arg("--export")
        .arg(&export)
        .status()
        .unwrap();
    assert!(status.success());
    let snapshot: trailwatch::insights::store::Snapshot =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert!(snapshot
        .origin_minute
        .is_some_and(|o| o <= snapshot.closed_through));
    assert!(!snapshot.keys.is_empty());
    for key in &snapshot.keys {
        assert!(
            key.key.event_source.ends_with(".amazonaws.com"),
            "{:?}",
            key.key
        );
        assert!(
            !key.state.is_empty() && key.state.len() <= 4096,
            "hex state within 2 KB"
        );
    }
}
