//! FaceID's error answers (`{"error_message": "CODE[:detail]", ...}`) and what each means for
//! a follow-up: give up, try later, or stop and tell an operator.
//!
//! Invariant: a class only says what to do *next*; whether a call was spent is the caller's
//! bookkeeping (it was, from the moment it was counted).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaceIdError {
    /// 400: the biz_id is unknown to FaceID.
    ResultNotFound,
    /// 403: the result is past its day or its three calls.
    DataDestroyed,
    /// 403: api_key and api_secret do not match.
    AuthenticationError,
    /// 403 `AUTHORIZATION_ERROR:<reason>`: key disabled, quota, or no permission.
    AuthorizationError(String),
    /// 403: too many concurrent calls.
    ConcurrencyLimitExceeded,
    /// 400 `MISSING_ARGUMENTS:<key>`.
    MissingArguments(String),
    /// 400 `BAD_ARGUMENTS:<key>`.
    BadArguments(String),
    /// 400: FaceID failed to encrypt sensitive fields.
    MessageEncryptionError,
    /// 400: the face in the uploaded video was occluded.
    VideoFaceOcclude,
    /// 404: wrong URL (usually a wrong `megvii.base_url`).
    ApiNotFound,
    /// 500.
    InternalError,
    /// Anything else, kept as text.
    Other(String),
}

/// What a follow-up should do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// FaceID does not know this biz_id: stop, state `not_found`.
    NotFound,
    /// The result is gone: stop, state `expired`.
    Destroyed,
    /// Our credentials or request are wrong: stop, state `failed`, log loudly.
    Configuration,
    /// A final answer that is not a result (e.g. occluded video): stop, state `failed`.
    Terminal,
    /// Worth another try later, budget and window permitting.
    Transient,
}

impl FaceIdError {
    /// Parses an `error_message` value. Spaces after the colon are tolerated (the older seed
    /// writes `MISSING_ARGUMENTS: <key>`).
    pub fn parse(message: &str) -> Self {
        let message = message.trim();
        let (code, detail) = match message.split_once(':') {
            Some((code, detail)) => (code.trim(), detail.trim().to_owned()),
            None => (message, String::new()),
        };
        match code {
            "RESULT_NOT_FOUND" => Self::ResultNotFound,
            "DATA_DESTROYED" => Self::DataDestroyed,
            "AUTHENTICATION_ERROR" => Self::AuthenticationError,
            "AUTHORIZATION_ERROR" => Self::AuthorizationError(detail),
            "CONCURRENCY_LIMIT_EXCEEDED" => Self::ConcurrencyLimitExceeded,
            "MISSING_ARGUMENTS" => Self::MissingArguments(detail),
            "BAD_ARGUMENTS" => Self::BadArguments(detail),
            "MESSAGE_ENCRYPTION_ERROR" => Self::MessageEncryptionError,
            "VIDEO_FACE_OCCLUDE" => Self::VideoFaceOcclude,
            "API_NOT_FOUND" => Self::ApiNotFound,
            "INTERNAL_ERROR" => Self::InternalError,
            _ => Self::Other(message.chars().take(200).collect()),
        }
    }

    /// The HTTP status FaceID documents for this error (used by the simulator).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::ResultNotFound
            | Self::MissingArguments(_)
            | Self::BadArguments(_)
            | Self::MessageEncryptionError
            | Self::VideoFaceOcclude => 400,
            Self::DataDestroyed
            | Self::AuthenticationError
            | Self::AuthorizationError(_)
            | Self::ConcurrencyLimitExceeded => 403,
            Self::ApiNotFound => 404,
            Self::InternalError | Self::Other(_) => 500,
        }
    }

    /// What to do next. `http_status` decides for codes we do not know: a 5xx is FaceID's
    /// trouble and worth retrying, anything else is not.
    pub fn class(&self, http_status: u16) -> ErrorClass {
        match self {
            Self::ResultNotFound => ErrorClass::NotFound,
            Self::DataDestroyed => ErrorClass::Destroyed,
            Self::AuthenticationError
            | Self::AuthorizationError(_)
            | Self::MissingArguments(_)
            | Self::BadArguments(_)
            | Self::ApiNotFound => ErrorClass::Configuration,
            Self::VideoFaceOcclude => ErrorClass::Terminal,
            Self::ConcurrencyLimitExceeded | Self::InternalError | Self::MessageEncryptionError => {
                ErrorClass::Transient
            }
            Self::Other(_) if http_status >= 500 || http_status == 429 => ErrorClass::Transient,
            Self::Other(_) => ErrorClass::Terminal,
        }
    }

    /// The documented code alone, without any detail FaceID added after the colon; `None` for
    /// a code FaceID does not document (its text is not ours to repeat).
    pub fn code(&self) -> Option<&'static str> {
        Some(match self {
            Self::ResultNotFound => "RESULT_NOT_FOUND",
            Self::DataDestroyed => "DATA_DESTROYED",
            Self::AuthenticationError => "AUTHENTICATION_ERROR",
            Self::AuthorizationError(_) => "AUTHORIZATION_ERROR",
            Self::ConcurrencyLimitExceeded => "CONCURRENCY_LIMIT_EXCEEDED",
            Self::MissingArguments(_) => "MISSING_ARGUMENTS",
            Self::BadArguments(_) => "BAD_ARGUMENTS",
            Self::MessageEncryptionError => "MESSAGE_ENCRYPTION_ERROR",
            Self::VideoFaceOcclude => "VIDEO_FACE_OCCLUDE",
            Self::ApiNotFound => "API_NOT_FOUND",
            Self::InternalError => "INTERNAL_ERROR",
            Self::Other(_) => return None,
        })
    }
}

impl fmt::Display for FaceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.code()) {
            (
                Self::AuthorizationError(detail)
                | Self::MissingArguments(detail)
                | Self::BadArguments(detail),
                Some(code),
            ) => write!(f, "{code}:{detail}"),
            (Self::Other(text), _) => f.write_str(text),
            (_, code) => f.write_str(code.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_code_round_trips_with_its_status_and_class() {
        use ErrorClass::*;
        let table = [
            ("RESULT_NOT_FOUND", 400, NotFound),
            ("DATA_DESTROYED", 403, Destroyed),
            ("AUTHENTICATION_ERROR", 403, Configuration),
            ("AUTHORIZATION_ERROR:Denied.", 403, Configuration),
            ("CONCURRENCY_LIMIT_EXCEEDED", 403, Transient),
            ("MISSING_ARGUMENTS:biz_id", 400, Configuration),
            ("BAD_ARGUMENTS:return_image", 400, Configuration),
            ("MESSAGE_ENCRYPTION_ERROR", 400, Transient),
            ("VIDEO_FACE_OCCLUDE", 400, Terminal),
            ("API_NOT_FOUND", 404, Configuration),
            ("INTERNAL_ERROR", 500, Transient),
        ];
        for (code, status, class) in table {
            let e = FaceIdError::parse(code);
            assert_eq!(e.to_string(), code, "display of {code}");
            assert_eq!(
                e.code(),
                code.split(':').next(),
                "the code of {code}, without detail"
            );
            assert_eq!(e.http_status(), status, "status of {code}");
            assert_eq!(e.class(status), class, "class of {code}");
        }
    }

    #[test]
    fn the_older_seed_spacing_is_tolerated() {
        assert_eq!(
            FaceIdError::parse("MISSING_ARGUMENTS: api_key"),
            FaceIdError::MissingArguments("api_key".into())
        );
    }

    #[test]
    fn unknown_codes_are_kept_and_classed_by_http_status() {
        let e = FaceIdError::parse("SOMETHING_NEW");
        assert_eq!(e, FaceIdError::Other("SOMETHING_NEW".into()));
        assert_eq!(e.class(502), ErrorClass::Transient);
        assert_eq!(e.class(400), ErrorClass::Terminal);
    }
}
