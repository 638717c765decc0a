//! The README's Layout section lists every module of every crate in the workspace, and only
//! paths that exist: a module added, moved or removed without its line fails here.
//!
//! The format it reads: in the Layout code block, a line starting at column 0 begins with a
//! path from the repository root (a directory ends with `/`); a line indented by exactly two
//! spaces names, before its first run of two spaces, files of the last such directory; deeper
//! indented lines continue a description.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every path the Layout names, from the repository root.
fn named_paths(readme: &str) -> BTreeSet<String> {
    let section = &readme[readme
        .find("\n## Layout\n")
        .expect("README has a Layout section")..];
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layout section has a code block");
    let mut named = BTreeSet::new();
    let mut dir: Option<&str> = None;
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let indent = line.len() - line.trim_start().len();
        let names = line.trim_start().split("  ").next().unwrap_or_default();
        match indent {
            0 => {
                let path = names.split_whitespace().next().expect("a path");
                dir = path.ends_with('/').then_some(path);
                named.insert(path.trim_end_matches('/').to_owned());
            }
            2 => {
                let dir = dir.unwrap_or_else(|| panic!("{line:?} follows no directory line"));
                for name in names.split_whitespace() {
                    assert!(
                        name.ends_with(".rs") || name.ends_with('/'),
                        "{line:?}: {name:?} is not a file or directory name"
                    );
                    named.insert(format!("{dir}{}", name.trim_end_matches('/')));
                }
            }
            _ => {}
        }
    }
    named
}

/// The `.rs` files under `dir`, recursively, as paths from the repository root.
fn rust_files(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(repo().join(dir)).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = dir.join(entry.unwrap().file_name());
        if repo().join(&path).is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.insert(path.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn the_readme_layout_names_every_module_and_nothing_that_does_not_exist() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let named = named_paths(&readme);

    let mut modules = BTreeSet::new();
    rust_files(Path::new("src"), &mut modules);
    for krate in std::fs::read_dir(repo().join("crates")).expect("read crates/") {
        let src = Path::new("crates")
            .join(krate.unwrap().file_name())
            .join("src");
        rust_files(&src, &mut modules);
    }
    modules.insert("bench/loadgen.rs".to_owned());
    assert!(modules.len() > 50, "found the modules: {modules:?}");

    let unlisted: Vec<&String> = modules.difference(&named).collect();
    assert!(
        unlisted.is_empty(),
        "README's Layout does not name {unlisted:?}"
    );
    let missing: Vec<&String> = named
        .iter()
        .filter(|path| !repo().join(path).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "README's Layout names {missing:?}, which do not exist"
    );
}
