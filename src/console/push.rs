//! The seam where push deliveries (issue I: signed webhooks to the merchant's endpoints)
//! show in the console: the overview's panel ([`PushPanel`]) and a verification's push
//! attempts ([`PushAttempts`]). Until push storage exists, both say push deliveries are not
//! configured; filling them in needs only the two functions here (and their templates'
//! rows), not the pages that render them.

use crate::http::AppState;

/// One endpoint's deliveries, for the overview.
pub struct EndpointRow {
    pub endpoint: String,
    pub pending: i64,
    pub failing: i64,
    pub disabled: bool,
}

/// The overview's push panel.
pub struct PushPanel {
    pub configured: bool,
    pub endpoints: Vec<EndpointRow>,
}

/// One push attempt of a verification, for its timeline.
pub struct AttemptRow {
    pub when: String,
    pub endpoint: String,
    pub outcome: String,
}

/// A verification's push attempts.
pub struct PushAttempts {
    pub configured: bool,
    pub attempts: Vec<AttemptRow>,
}

/// The overview's push panel: not configured yet (issue I fills this in).
pub async fn overview_panel(_state: &AppState) -> PushPanel {
    PushPanel {
        configured: false,
        endpoints: Vec::new(),
    }
}

/// The push attempts of `biz_id`: not configured yet (issue I fills this in).
pub async fn attempts(_state: &AppState, _biz_id: &str) -> PushAttempts {
    PushAttempts {
        configured: false,
        attempts: Vec::new(),
    }
}
