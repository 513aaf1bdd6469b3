//! The workspace's layout rules (see the crate docs): no import circle
//! inside any crate, no source file over the size limit outside tests.
#![allow(clippy::unwrap_used, reason = "a test fails on error")]

use std::path::{Path, PathBuf};

use druid_layout::{MAX_LINES, circles, dependencies, display, is_test_file, read_crate};

/// Every workspace crate's `src` directory.
fn crate_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let mut dirs = Vec::new();
    for group in ["host", "plugins", "tests", "tests/plugins", "plugins/sdk"] {
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for entry in entries.flatten() {
            let src = entry.path().join("src");
            if entry.path().join("Cargo.toml").is_file() && src.is_dir() {
                dirs.push(src);
            }
        }
    }
    dirs.sort();
    assert!(dirs.len() >= 10, "found only {dirs:?}");
    dirs
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut problems = std::collections::BTreeSet::new();
    for src in crate_sources() {
        let sources = read_crate(&src).unwrap();
        for depth in [1, 2] {
            for circle in circles(&dependencies(&sources, &src, depth)) {
                let names: Vec<String> = circle.iter().map(display).collect();
                problems.insert(format!("{}: {}", src.display(), names.join(" ⇄ ")));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "import circles (make the dependency go one way, e.g. move what both use into a module below them):\n{}",
        problems.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn no_source_file_is_over_the_limit() {
    let mut problems = Vec::new();
    for src in crate_sources() {
        for source in read_crate(&src).unwrap() {
            let lines = source.text.lines().count();
            if lines > MAX_LINES && !is_test_file(&src, &source.path) {
                problems.push(format!("{} has {lines} lines", source.path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "files over {MAX_LINES} lines (split them by concern; tests can move to a tests.rs beside the module):\n{}",
        problems.join("\n")
    );
}
