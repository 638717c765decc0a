//! Finding the browser tools the browser tests drive: Debian's headless Chromium and its
//! chromedriver (`apt-get install chromium chromium-driver`, what `.ci/run` does).
//!
//! A missing tool skips loudly, so a bare machine's `cargo test` still passes; under `CI` (or
//! `REQUIRE_CHROMIUM=1`) it fails instead.

use std::path::PathBuf;

/// `name` (or the first of `names`) on `PATH`, unless `env` names a path.
fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

pub fn chromium() -> Option<PathBuf> {
    find("CHROMIUM", &["chromium", "chromium-browser"])
}

pub fn chromedriver() -> Option<PathBuf> {
    find("CHROMEDRIVER", &["chromedriver"])
}

/// In CI (`CI` set, as CI services and `.ci/run`'s caller do) or with `REQUIRE_CHROMIUM=1`, a
/// missing browser is a failure: `.ci/run` installs it, so a skip there means the test never
/// ran.
pub fn chromium_required() -> bool {
    let set =
        |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("CI") || set("REQUIRE_CHROMIUM")
}

fn or_skip(found: Option<PathBuf>, what: &str, package: &str) -> Option<PathBuf> {
    if found.is_none() {
        assert!(
            !chromium_required(),
            "{what} is not installed but CI (or REQUIRE_CHROMIUM=1) is set: the browser \
             test must run there (apt-get install -y {package}, as .ci/run does)"
        );
        eprintln!("!!! {what} is not installed: skipping this browser test");
        eprintln!("!!! apt-get install -y {package} (what .ci/run does) to run it");
    }
    found
}

pub fn chromium_or_skip() -> Option<PathBuf> {
    or_skip(chromium(), "chromium", "chromium")
}

/// Chromium and its chromedriver, both or neither.
pub fn chromedriver_or_skip() -> Option<(PathBuf, PathBuf)> {
    let chromium = chromium_or_skip()?;
    let driver = or_skip(chromedriver(), "chromedriver", "chromium-driver")?;
    Some((chromium, driver))
}
