//! One function per stage. Each takes what it needs and returns an
//! [`Ended`]: how it ended, a sentence for the record, and its value for
//! the stages after it. None of them times itself or prints: the driver
//! does that once.

pub mod alerts;
pub mod announce;
pub mod confirm;
pub mod posture;
pub mod preflight;
pub mod record;
pub mod report;
pub mod sign_in;
pub mod teardown;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::flow::Capture;
use crate::record::{SignInStep, StageStatus};

/// How a stage ended, and what it hands on.
pub struct Ended<T> {
    /// Its status.
    pub status: StageStatus,
    /// What happened, in a sentence.
    pub detail: String,
    /// What later stages need.
    pub value: T,
}

impl<T> Ended<T> {
    /// A stage that ended with `status`.
    pub fn new(status: StageStatus, detail: impl Into<String>, value: T) -> Self {
        Self {
            status,
            detail: detail.into(),
            value,
        }
    }
}

/// The run's journal (`journal.jsonl` in its staged bundle), appended and
/// fsynced line by line (see [`crate::evidence::recover`]).
#[derive(Debug, Clone)]
pub(crate) struct Journal(pub(crate) std::path::PathBuf);

impl Journal {
    /// Appends one line.
    pub(crate) fn append(&self, line: &crate::record::JournalLine) -> Result<(), String> {
        let bytes = serde_json::to_vec(line).map_err(|e| e.to_string())?;
        crate::evidence::append_journal(&self.0, &bytes).map_err(|e| e.to_string())
    }
}

/// What a run has gathered for its record.
pub(crate) struct Gathered {
    pub(crate) run_id: String,
    pub(crate) started: DateTime<Utc>,
    pub(crate) announcement: String,
    pub(crate) steps: Vec<SignInStep>,
    pub(crate) captures: Vec<Capture>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) signin_record: Option<Value>,
    pub(crate) observations: Vec<alerts::Observed>,
    pub(crate) posture: posture::PostureFound,
}

impl Gathered {
    pub(crate) fn new(run_id: &str, started: DateTime<Utc>) -> Self {
        Self {
            run_id: run_id.to_owned(),
            started,
            announcement: String::new(),
            steps: Vec::new(),
            captures: Vec::new(),
            correlation_id: None,
            signin_record: None,
            observations: Vec::new(),
            posture: posture::PostureFound::default(),
        }
    }

    pub(crate) fn sign_in(&mut self, s: sign_in::SignedIn) {
        self.steps = s.steps;
        self.captures.extend(s.captures);
        self.correlation_id = s.correlation_id;
    }

    /// Whether the sign-in log shows this sign-in succeeded.
    pub(crate) fn signin_succeeded(&self) -> bool {
        self.signin_record.as_ref().is_some_and(confirm::succeeded)
    }

    /// The sign-in log's own `createdDateTime`, when confirmed.
    pub(crate) fn signin_time(&self) -> Option<DateTime<Utc>> {
        self.signin_record
            .as_ref()
            .and_then(|r| r["createdDateTime"].as_str())
            .and_then(crate::support::time::parse_rfc3339)
    }
}
