//! Scripts: what the simulated get_result answers for one biz_id (or RAW token), call by call.
//!
//! A script is a list of [`Step`]s written as short strings (`PROCESSING`, `OK`, `500`,
//! `slow:2000:OK`, `seed:raw-failed`, …). Call *n* (counting only the calls FaceID would charge
//! to this result) is answered by step *n*; the last step repeats. The three-call and one-day
//! rules are enforced by the server around the script, so a script cannot extend them.

use std::fmt;
use std::str::FromStr;

use faceid_protocol::Status;

/// FaceID's own example payloads, served verbatim to exercise lenient parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedShape {
    /// Seed 001's get_result success example (`"PASS/FAIL/TIMEOUT"`, misspelled keys, …),
    /// with its biz_id replaced by the one asked for.
    LiteOk,
    /// Seed 002's RAW `OK` example. It is not valid JSON (a brace is missing); served as is.
    RawOk,
    /// Seed 002's RAW `"Failed"` example: mixed-case status, numbers where strings belong.
    RawFailed,
    /// Seed 002's RAW `NOT_STARTED` example, with null liveness fields.
    RawNotStarted,
}

impl SeedShape {
    const ALL: [SeedShape; 4] = [
        Self::LiteOk,
        Self::RawOk,
        Self::RawFailed,
        Self::RawNotStarted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::LiteOk => "ok",
            Self::RawOk => "raw-ok",
            Self::RawFailed => "raw-failed",
            Self::RawNotStarted => "raw-not-started",
        }
    }

    /// The seed document's text, byte for byte.
    pub fn text(self) -> &'static str {
        match self {
            Self::LiteOk => include_str!("../../../tests/vectors/seed_get_result_ok.json"),
            Self::RawOk => include_str!("../../../tests/vectors/seed_raw_ok.json"),
            Self::RawFailed => include_str!("../../../tests/vectors/seed_raw_failed.json"),
            Self::RawNotStarted => include_str!("../../../tests/vectors/seed_raw_not_started.json"),
        }
    }
}

/// Who quotes the request back in an [`Step::Echo`] answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoShape {
    /// A proxy's HTML error page with the request line and the decoded parameters.
    Proxy,
    /// FaceID's JSON error shape, `BAD_ARGUMENTS:<the raw query>`.
    FaceId,
}

/// The biz_id inside seed 001's examples, replaced when a seed payload is served for another id.
pub const SEED_BIZ_ID: &str = "1462259748,52b13fb5-8dfb-4537-a62b-a641d5e929f1";

/// One scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A generated result whose `status` is this text, verbatim. The named statuses
    /// (`OK`, `PROCESSING`, …) are written upper-case; `status:<text>` writes anything, e.g.
    /// `status:Failed` as in the RAW seed.
    Status(String),
    /// `500 INTERNAL_ERROR` (written `500`).
    InternalError,
    /// `403 CONCURRENCY_LIMIT_EXCEEDED` (written `concurrency`).
    Concurrency,
    /// `403 DATA_DESTROYED` before the budget or the day is over (written `destroyed`).
    Destroyed,
    /// `400 RESULT_NOT_FOUND` although the id is scripted (written `not_found`).
    NotFound,
    /// `502` with an HTML body, as a proxy in front of FaceID answers (written `502`).
    BadGateway,
    /// An error body that quotes the request, query and all (so `api_key` and `api_secret`
    /// too): a proxy's `502` page (written `echo`), or FaceID's `400 BAD_ARGUMENTS` with the
    /// query as its detail (written `echo:faceid`). Tests use it to prove the secret leaves
    /// the receiver in no encoding.
    Echo(EchoShape),
    /// A seed example verbatim (written `seed`, `seed:ok`, `seed:raw-ok`, `seed:raw-failed`,
    /// `seed:raw-not-started`).
    Seed(SeedShape),
    /// Answer `then` after `ms` milliseconds (written `slow:<ms>` or `slow:<ms>:<step>`;
    /// without a step it answers `OK`).
    Slow { ms: u64, then: Box<Step> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown script step {0:?}: expected a status (NOT_STARTED, PROCESSING, OK, FAILED, CANCELLED, \
     TIMEOUT, WEBRTC_UNSUPPORTED, status:<text>), 500, 502, concurrency, destroyed, not_found, \
     echo[:faceid], seed[:ok|raw-ok|raw-failed|raw-not-started] or slow:<ms>[:<step>]"
)]
pub struct StepError(pub String);

impl FromStr for Step {
    type Err = StepError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let bad = || StepError(text.to_owned());
        if let Some(custom) = text.strip_prefix("status:") {
            return if custom.is_empty() {
                Err(bad())
            } else {
                Ok(Self::Status(custom.to_owned()))
            };
        }
        if let Some(rest) = text.strip_prefix("slow:") {
            let (ms, then) = match rest.split_once(':') {
                Some((ms, then)) => (ms, then.parse::<Step>().map_err(|_| bad())?),
                None => (rest, Self::Status("OK".into())),
            };
            let ms = ms.parse::<u64>().map_err(|_| bad())?;
            // A nested delay says nothing a single one cannot, and would make the rule harder
            // to read.
            if matches!(then, Self::Slow { .. }) {
                return Err(bad());
            }
            return Ok(Self::Slow {
                ms,
                then: Box::new(then),
            });
        }
        if let Some(name) = text.strip_prefix("seed:") {
            return SeedShape::ALL
                .into_iter()
                .find(|s| s.name().eq_ignore_ascii_case(name))
                .map(Self::Seed)
                .ok_or_else(bad);
        }
        let lower = text.to_ascii_lowercase();
        match lower.as_str() {
            "500" | "internal_error" => return Ok(Self::InternalError),
            "502" | "bad_gateway" => return Ok(Self::BadGateway),
            "concurrency" => return Ok(Self::Concurrency),
            "destroyed" => return Ok(Self::Destroyed),
            "not_found" | "not-found" => return Ok(Self::NotFound),
            "echo" | "echo:proxy" => return Ok(Self::Echo(EchoShape::Proxy)),
            "echo:faceid" => return Ok(Self::Echo(EchoShape::FaceId)),
            "seed" => return Ok(Self::Seed(SeedShape::LiteOk)),
            _ => {}
        }
        match Status::parse(text) {
            Status::Other(_) => Err(bad()),
            known => Ok(Self::Status(known.as_str().to_owned())),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(text) => match Status::parse(text) {
                Status::Other(_) => write!(f, "status:{text}"),
                known if known.as_str() == text => f.write_str(text),
                _ => write!(f, "status:{text}"),
            },
            Self::InternalError => f.write_str("500"),
            Self::BadGateway => f.write_str("502"),
            Self::Concurrency => f.write_str("concurrency"),
            Self::Destroyed => f.write_str("destroyed"),
            Self::NotFound => f.write_str("not_found"),
            Self::Echo(EchoShape::Proxy) => f.write_str("echo"),
            Self::Echo(EchoShape::FaceId) => f.write_str("echo:faceid"),
            Self::Seed(shape) => write!(f, "seed:{}", shape.name()),
            Self::Slow { ms, then } => write!(f, "slow:{ms}:{then}"),
        }
    }
}

/// A parsed script; never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Script(Vec<Step>);

impl Script {
    /// Parses steps; an empty list means `["OK"]`.
    pub fn parse<I, S>(steps: I) -> Result<Self, StepError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let steps = steps
            .into_iter()
            .map(|s| s.as_ref().parse())
            .collect::<Result<Vec<Step>, _>>()?;
        Ok(Self::from_steps(steps))
    }

    pub fn from_steps(steps: Vec<Step>) -> Self {
        if steps.is_empty() {
            Self(vec![Step::Status("OK".into())])
        } else {
            Self(steps)
        }
    }

    /// The step for the `index`-th charged call (0-based); the last step repeats.
    pub fn step(&self, index: usize) -> &Step {
        &self.0[index.min(self.0.len() - 1)]
    }

    pub fn steps(&self) -> &[Step] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_step_parses_and_prints_back() {
        let cases = [
            ("OK", "OK"),
            ("processing", "PROCESSING"),
            ("NOT_STARTED", "NOT_STARTED"),
            ("status:Failed", "status:Failed"),
            ("500", "500"),
            ("502", "502"),
            ("concurrency", "concurrency"),
            ("destroyed", "destroyed"),
            ("not_found", "not_found"),
            ("echo", "echo"),
            ("echo:faceid", "echo:faceid"),
            ("seed", "seed:ok"),
            ("seed:raw-failed", "seed:raw-failed"),
            ("slow:250", "slow:250:OK"),
            ("slow:10:500", "slow:10:500"),
        ];
        for (text, printed) in cases {
            let step: Step = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(step.to_string(), printed, "step {text}");
            assert_eq!(
                printed.parse::<Step>().unwrap(),
                step,
                "round trip of {text}"
            );
        }
    }

    #[test]
    fn nonsense_steps_are_refused_by_name() {
        for bad in [
            "",
            "MAYBE",
            "slow",
            "slow:x",
            "slow:1:slow:2",
            "seed:nope",
            "status:",
        ] {
            let err = bad.parse::<Step>().unwrap_err();
            assert_eq!(err.0, bad, "step {bad:?}");
        }
    }

    #[test]
    fn the_last_step_repeats_and_an_empty_script_means_ok() {
        let script = Script::parse(["PROCESSING", "OK"]).unwrap();
        assert_eq!(script.step(0), &Step::Status("PROCESSING".into()));
        assert_eq!(script.step(1), &Step::Status("OK".into()));
        assert_eq!(script.step(7), &Step::Status("OK".into()));
        let empty = Script::parse(Vec::<String>::new()).unwrap();
        assert_eq!(empty.steps(), [Step::Status("OK".into())]);
    }

    #[test]
    fn the_seed_biz_id_is_in_the_lite_seed() {
        assert!(SeedShape::LiteOk.text().contains(SEED_BIZ_ID));
    }
}
