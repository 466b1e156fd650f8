//! The fuzz targets' kept corpus (`fuzz/corpus/<target>/`, minimised with `cargo fuzz cmin`,
//! with every input that once crashed) replayed through the same functions the fuzzer runs,
//! on the stable toolchain: every input must still pass the target's checks.

// `fuzzing` and the `cli` feature are the fuzz crate's cfgs, unknown here.
#[allow(unexpected_cfgs)]
#[path = "../../fuzz/targets.rs"]
mod targets;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_kept_input_passes_its_target() {
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let inputs = corpus(name);
        assert!(!inputs.is_empty(), "no corpus for fuzz target {name}");
        for input in inputs {
            let bytes = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&bytes));
            assert!(outcome.is_ok(), "{name}: {} fails", input.display());
            replayed += 1;
        }
    }
    eprintln!("{replayed} corpus inputs replayed");
}
