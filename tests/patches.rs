//! The vendored `sqlx-core` (`[patch.crates-io]` in Cargo.toml) really is the sqlx-core the
//! build uses, for as long as the published one lacks the TCP_NODELAY fix.
//!
//! Why it matters: without `TCP_NODELAY` a statement whose message spans more than one TCP
//! segment (a group-commit batch, a result with images) waits ~40 ms for PostgreSQL's delayed
//! ACK (BENCHMARKS.md). A patch stops applying silently: after a `cargo update` that moves sqlx
//! past the vendored version, cargo only warns "patch was not used" and builds the registry's
//! crate. "Needed" means: the sqlx release in `Cargo.lock` is one whose published sqlx-core is
//! known to lack the fix (0.9.0, transact-rs/sqlx#4335, fixed by #4336 after it). A newer sqlx
//! fails this test on purpose, so that someone checks its sqlx-core for the fix and either
//! drops the patch (and this test) or re-vendors.

use std::path::{Path, PathBuf};
use std::process::Command;

/// sqlx releases whose published sqlx-core lacks the TCP_NODELAY fix.
const WITHOUT_THE_FIX: &[&str] = &["0.9.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The host triple, as cargo reports it.
fn host() -> String {
    let output = Command::new(env!("CARGO"))
        .arg("-vV")
        .output()
        .expect("run cargo -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("cargo -vV names the host")
        .to_owned()
}

/// `cargo metadata` of this workspace for this host, exactly as `Cargo.lock` resolves it
/// (`--locked`: never rewritten; `--offline`: only crates already fetched for the build).
fn metadata() -> serde_json::Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(repo())
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata --locked failed (Cargo.lock no longer matches Cargo.toml?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn packages<'a>(metadata: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["name"] == name)
        .collect()
}

#[test]
fn sqlx_core_is_the_vendored_crate_while_the_published_one_lacks_tcp_nodelay() {
    let metadata = metadata();
    let sqlx = packages(&metadata, "sqlx");
    assert_eq!(sqlx.len(), 1, "one sqlx in the graph");
    let sqlx_version = sqlx[0]["version"].as_str().expect("version");
    assert!(
        WITHOUT_THE_FIX.contains(&sqlx_version),
        "sqlx is now {sqlx_version}: check whether its sqlx-core sets TCP_NODELAY \
         (transact-rs/sqlx#4336); if it does, remove [patch.crates-io], vendor/sqlx-core and \
         this test; if not, re-vendor sqlx-core {sqlx_version} with the fix"
    );

    let core = packages(&metadata, "sqlx-core");
    assert_eq!(core.len(), 1, "one sqlx-core in the graph: {core:?}");
    let core = core[0];
    assert!(
        core["source"].is_null(),
        "sqlx-core comes from {} instead of vendor/sqlx-core: [patch.crates-io] no longer applies",
        core["source"]
    );
    let manifest = Path::new(core["manifest_path"].as_str().expect("manifest_path"));
    assert_eq!(
        manifest,
        repo().join("vendor/sqlx-core/Cargo.toml"),
        "sqlx-core is built from vendor/sqlx-core"
    );
    assert_eq!(
        core["version"].as_str(),
        Some(sqlx_version),
        "the vendored sqlx-core is the version sqlx {sqlx_version} pins"
    );
}

#[test]
fn the_vendored_sqlx_core_sets_tcp_nodelay_on_its_sockets() {
    // The fix itself: each TCP connect path of sqlx-core's socket module sets it.
    let socket = std::fs::read_to_string(repo().join("vendor/sqlx-core/src/net/socket/mod.rs"))
        .expect("read the vendored socket module");
    assert!(
        socket.matches("set_nodelay(true)").count() >= 3,
        "vendor/sqlx-core lost the TCP_NODELAY fix (plain TCP, and both async runtimes)"
    );
}

#[test]
fn the_vendored_licences_are_the_texts_not_link_paths() {
    for (file, opening) in [
        ("LICENSE-APACHE", "Apache License"),
        ("LICENSE-MIT", "Permission is hereby granted"),
    ] {
        let text = std::fs::read_to_string(repo().join("vendor/sqlx-core").join(file))
            .unwrap_or_else(|e| panic!("read {file}: {e}"));
        assert!(
            text.len() > 1000 && text.contains(opening),
            "vendor/sqlx-core/{file} is not the licence text: {text:?}"
        );
    }
}
