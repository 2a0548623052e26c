//! Alert checks: did the alert pipeline fire for *this* sign-in in time?
//!
//! [`AlertCheck`] is the seam every kind plugs into (webhook today; Graph,
//! Alerts Management, Log Analytics, Defender, mailbox and PagerDuty come
//! later). The correlation rules are pure ([`correlate`]): an alert counts
//! only if it is for this drill's account and fired at or after this
//! drill's sign-in; anything else is kept as "ignored" with the reason,
//! because an auditor wants to see it. [`webhook`] is the built-in
//! receiver: one per process, routing each delivery to the runs waiting.

pub mod correlate;
pub mod webhook;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use correlate::{CommonAlert, IgnoreReason, same_rule};
pub use webhook::{ReceiverError, WebhookCheck, WebhookReceiver};

/// An alert as it reached a receiver.
#[derive(Debug, Clone)]
pub struct ReceivedAlert {
    /// Arrival order at the receiver, from 1.
    pub seq: u64,
    /// When it arrived (glassdrill's clock).
    pub received_at: DateTime<Utc>,
    /// When it arrived, on the monotonic clock deadlines are measured on:
    /// an alert is on time by when it arrived, not by when a check got
    /// round to reading it.
    pub arrived: tokio::time::Instant,
    /// The exact bytes received (what evidence stores).
    pub raw: Bytes,
    /// What correlation read from it.
    pub alert: CommonAlert,
}

/// What one check saw.
#[derive(Debug, Clone, Default)]
pub struct AlertObservation {
    /// The alert that counts, if any.
    pub matched: Option<ReceivedAlert>,
    /// Alerts seen and not counted, with reasons.
    pub ignored: Vec<(ReceivedAlert, IgnoreReason)>,
    /// The alert that would have counted, arrived after the deadline.
    pub late: Option<ReceivedAlert>,
    /// The check itself failed (API down...): an ERROR, not a finding.
    pub error: Option<String>,
    /// The check was cancelled.
    pub cancelled: bool,
}

/// What an alert check looks for.
#[derive(Debug, Clone)]
pub struct AlertTarget {
    /// The account.
    pub upn: String,
    /// The sign-in time (the log's `createdDateTime` when known).
    pub signin_at: DateTime<Utc>,
    /// The alert must arrive by this instant.
    pub deadline: tokio::time::Instant,
    /// Listening goes on until this instant (at or after `deadline`), so
    /// an alert that arrives late is told apart from one that never comes.
    pub late_until: tokio::time::Instant,
}

/// How long a check keeps listening past a missing alert's deadline: as
/// long again, at least 10 s and at most an hour.
pub fn late_grace(deadline: std::time::Duration) -> std::time::Duration {
    deadline.clamp(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(3600),
    )
}

/// An alert check of one kind.
#[async_trait::async_trait]
pub trait AlertCheck: Send + Sync {
    /// Waits until an alert for `target` arrives, the deadline passes, or
    /// `cancel` fires.
    async fn observe(&self, target: &AlertTarget, cancel: &CancellationToken) -> AlertObservation;
}
