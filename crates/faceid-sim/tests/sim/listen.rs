//! `faceid-sim listen` through its command line: it verifies pushes signed by the
//! receiver's push client, prints one line per event, and answers as told.

use std::process::Stdio;

use faceid_protocol::clock::{Clock, SystemClock};
use faceid_receiver::push::{
    ClientSettings, EndpointSecret, PushClient, SigningKeys, Target, TargetPolicy,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const BODY: &[u8] = br#"{"type":"verification.completed","timestamp":"2024-01-01T00:00:00.000Z","data":{"biz_id":"1704067200,abc","status":"OK"}}"#;
const DEVELOPMENT: TargetPolicy = TargetPolicy {
    allow_http: true,
    allow_private: true,
};

struct Listening {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    target: Target,
}

impl Listening {
    async fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_faceid-sim"))
            .args(["listen", "--port", "0"])
            .args(args)
            .env_remove("FACEID_SIM_WEBHOOK_SECRET")
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run faceid-sim listen");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("a first line");
        let url = first
            .strip_prefix("faceid-sim listening for webhooks on ")
            .unwrap_or_else(|| panic!("{first}"));
        let target = Target::parse(&format!("{url}/hooks/faceid"), &DEVELOPMENT).unwrap();
        Self {
            child,
            lines,
            target,
        }
    }

    /// Delivers `BODY` signed with `keys` and returns the answer's status and the line printed.
    async fn push(&mut self, keys: &SigningKeys, id: &str) -> (Option<u16>, String) {
        let client = PushClient::new(ClientSettings {
            policy: DEVELOPMENT,
            ..ClientSettings::default()
        })
        .unwrap();
        let headers = keys.sign(id, SystemClock.now_ms(), BODY);
        let attempt = client.deliver(&self.target, &headers, BODY).await;
        let line = self
            .lines
            .next_line()
            .await
            .unwrap()
            .expect("a line per event");
        (attempt.status(), line)
    }

    async fn stop(mut self) {
        self.child.kill().await.expect("stop faceid-sim listen");
    }
}

#[tokio::test]
async fn listen_verifies_and_prints_one_line_per_event() {
    let secret = EndpointSecret::generate();
    let mut listening = Listening::start(&["--secret", &secret.expose_whsec()]).await;

    let good = listening.push(&SigningKeys::new(secret), "evt_good").await;
    let forged = listening
        .push(&SigningKeys::new(EndpointSecret::generate()), "evt_forged")
        .await;
    listening.stop().await;

    assert_eq!(
        good,
        (
            Some(200),
            "verified=ok type=verification.completed id=evt_good biz_id=1704067200,abc answer=200"
                .to_owned()
        )
    );
    assert_eq!(forged.0, Some(401));
    assert_eq!(
        forged.1,
        "verified=failed type=verification.completed id=evt_forged biz_id=1704067200,abc \
         answer=401 reason=\"no signature matches\""
    );
}

#[tokio::test]
async fn listen_fails_the_first_events_on_request_then_answers_the_chosen_status() {
    let secret = EndpointSecret::generate();
    let keys = SigningKeys::new(secret.clone());
    let mut listening = Listening::start(&[
        "--secret",
        &secret.expose_whsec(),
        "--fail-first",
        "2",
        "--status",
        "410",
    ])
    .await;

    let mut answers = Vec::new();
    for n in 0..3 {
        answers.push(listening.push(&keys, &format!("evt_{n}")).await.0);
    }
    listening.stop().await;

    assert_eq!(answers, [Some(503), Some(503), Some(410)]);
}

#[tokio::test]
async fn listen_accepts_a_previous_secret_during_a_rotation() {
    let (old, new) = (EndpointSecret::generate(), EndpointSecret::generate());
    let mut listening = Listening::start(&[
        "--secret",
        &new.expose_whsec(),
        "--previous-secret",
        &old.expose_whsec(),
    ])
    .await;

    let (status, line) = listening.push(&SigningKeys::new(old), "evt_old").await;
    listening.stop().await;

    assert_eq!(status, Some(200));
    assert!(line.ends_with("answer=200 secret=previous#1"), "{line}");
}

#[tokio::test]
async fn listen_refuses_a_malformed_secret_without_repeating_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_faceid-sim"))
        .args(["listen", "--port", "0", "--secret", "whsec_c2hvcnQ="])
        .env_remove("FACEID_SIM_WEBHOOK_SECRET")
        .output()
        .await
        .expect("run faceid-sim listen");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("--secret is not an endpoint secret: an endpoint secret's key must be 24 to 64 bytes (this one has 5)"),
        "{stderr}"
    );
    assert!(!stderr.contains("c2hvcnQ"), "{stderr}");
}
