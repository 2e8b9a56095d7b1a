//! Replays every committed fuzz corpus file (fuzz/corpus/<target>/) through the property of its
//! target, on every `cargo test`: the fuzzers' findings stay fixed, and the corpora (which cover
//! what the fuzzers reached) keep exercising the parsers without libFuzzer or nightly. The
//! parsers are synchronous, so this runs the same under either io driver.

use std::path::{Path, PathBuf};

use tether_testkit::TARGETS;

/// More files than this in one corpus means it was not minimised (`scripts/fuzz.sh --merge`).
const MAX_CORPUS_FILES: usize = 48;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_property() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (target, property) in TARGETS {
        let files = corpus_files(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        assert!(
            files.len() <= MAX_CORPUS_FILES,
            "fuzz/corpus/{target} has {} files; minimise it with scripts/fuzz.sh --merge",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap();
            // One panic must not hide the others: collect them all.
            if let Err(panic) = std::panic::catch_unwind(|| property(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {message}", file.display()));
            }
            replayed += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} corpus files fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    for (target, _) in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] {target}"
        );
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source).unwrap();
        assert!(
            text.contains(&format!("tether_testkit::props::{target}(data)")),
            "{} does not call its property",
            source.display()
        );
    }
}
