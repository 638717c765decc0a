//! Every raw output BENCHMARKS.md and the README name by its path under `bench/results/`
//! exists: a figure whose file was moved, renamed or never committed fails here.
//!
//! A path is every run of path characters (letters, digits, `.`, `_`, `-`, `/`) that starts
//! with `bench/results/`, in prose, inline code or code blocks alike; a placeholder
//! (`bench/results/<date>/`) is skipped. Paths given relative to a section's directory
//! (`after-3/`) are not checked: which directory they are relative to is prose.

use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `bench/results/…` paths in `text`, as written, without a sentence's final `.`.
fn named_results(text: &str) -> Vec<String> {
    const PREFIX: &str = "bench/results/";
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    text.match_indices(PREFIX)
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            (path.len() > PREFIX.len()).then(|| path.to_owned())
        })
        .collect()
}

#[test]
fn named_results_are_every_path_under_bench_results_but_placeholders() {
    let text = "see `bench/results/2026-12-03/after-6/` and `BENCH_OUT=x bench/results/a/b.txt`, \
                prose bench/results/c.txt. but not `bench/results/<date>/`";
    assert_eq!(
        named_results(text),
        [
            "bench/results/2026-12-03/after-6/",
            "bench/results/a/b.txt",
            "bench/results/c.txt"
        ]
    );
}

#[test]
fn every_raw_output_the_docs_name_exists() {
    let mut named = Vec::new();
    for doc in ["BENCHMARKS.md", "README.md"] {
        let text = std::fs::read_to_string(repo().join(doc)).expect("read the doc");
        named.extend(named_results(&text).into_iter().map(|path| (doc, path)));
    }
    assert!(named.len() >= 20, "found only {named:?}");
    let missing: Vec<_> = named
        .iter()
        .filter(|(_, path)| !repo().join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "named but not in the repository: {missing:?}"
    );
}
