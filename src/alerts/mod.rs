//! Alert checks: did the alert pipeline fire for *this* sign-in in time?
//!
//! [`AlertCheck`] is the seam every kind plugs into: the [`webhook`]
//! receiver, and the polling checks of [`sources`] (the sign-in log,
//! Alerts Management, Log Analytics, Defender, a mailbox, PagerDuty). The correlation rules are pure ([`correlate`]): an alert counts
//! only if it is for this drill's account and fired at or after this
//! drill's sign-in; anything else is kept as "ignored" with the reason,
//! because an auditor wants to see it. [`webhook`] is the built-in
//! receiver: one per process, routing each delivery to the runs waiting.

pub mod correlate;
pub mod sources;
pub mod webhook;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use correlate::{CommonAlert, IgnoreReason, MatchKind, Wanted, same_rule};
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
    /// When the sign-in's record was ingested into the log, where the
    /// source says (Log Analytics' `ingestion_time()`).
    pub ingested: Option<DateTime<Utc>>,
}

/// What one check saw.
#[derive(Debug, Clone, Default)]
pub struct AlertObservation {
    /// The alert that counts, if any.
    pub matched: Option<ReceivedAlert>,
    /// How it (or the late one) was tied to the sign-in.
    pub matched_by: Option<MatchKind>,
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
    /// The account's object id, when the drill file names it.
    pub object_id: Option<String>,
    /// The sign-in time (the log's `createdDateTime` when known).
    pub signin_at: DateTime<Utc>,
    /// The sign-in's log record `id`, when confirmed.
    pub signin_id: Option<String>,
    /// The sign-in's `correlationId`, when known.
    pub correlation_id: Option<String>,
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

impl AlertTarget {
    /// What an alert of `rule` must be about.
    pub fn wanted<'a>(&'a self, rule: &'a str) -> Wanted<'a> {
        Wanted {
            rule,
            upn: &self.upn,
            object_id: self.object_id.as_deref(),
            signin: self.signin_at,
        }
    }
}

/// Confirms a match by rule and window from the rule's own rows (Log
/// Analytics): `Ok(true)` when the rows over the alert's window hold this
/// sign-in's record.
#[async_trait::async_trait]
pub trait SearchConfirm: Send + Sync {
    /// Runs the alert's search (its `linkToSearchResultsAPI`, or the
    /// configured query over its window) and looks for the sign-in.
    async fn holds_signin(
        &self,
        alert: &CommonAlert,
        target: &AlertTarget,
        cancel: &CancellationToken,
    ) -> Result<bool, String>;
}

/// Correlation of a stream of alerts for one expected alert: duplicates
/// (same id and condition) count once, each alert is judged, a match by
/// rule and window is confirmed from the rule's rows where a
/// [`SearchConfirm`] is given. Shared by every check kind.
pub(crate) struct Correlator<'a> {
    /// The expected alert's source.
    pub rule: &'a str,
    /// The sign-in.
    pub target: &'a AlertTarget,
    /// Confirms matches by rule and window.
    pub confirm: Option<&'a dyn SearchConfirm>,
    seen: std::collections::HashSet<String>,
}

impl<'a> Correlator<'a> {
    pub(crate) fn new(
        rule: &'a str,
        target: &'a AlertTarget,
        confirm: Option<&'a dyn SearchConfirm>,
    ) -> Self {
        Self {
            rule,
            target,
            confirm,
            seen: std::collections::HashSet::new(),
        }
    }

    /// Judges one alert into `obs`; `true` once the observation is decided
    /// (an alert matched, in time or late). `keep_duplicates`: a repeated
    /// delivery is kept as ignored evidence (webhooks); pollers, which see
    /// the same alert at every poll, pass `false`.
    pub(crate) async fn consider(
        &mut self,
        obs: &mut AlertObservation,
        a: ReceivedAlert,
        keep_duplicates: bool,
        cancel: &CancellationToken,
    ) -> bool {
        // A delivery is the same alert when its id and condition are; a
        // polled object is also told apart by what is judged of it (rows
        // without an id, an alert whose evidence fills in later).
        let key = if keep_duplicates {
            format!(
                "{}\u{1f}{}",
                a.alert.alert_id.to_ascii_lowercase(),
                a.alert.monitor_condition.to_ascii_lowercase()
            )
        } else {
            format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{:?}",
                a.alert.alert_id.to_ascii_lowercase(),
                a.alert.monitor_condition.to_ascii_lowercase(),
                a.alert.fired.timestamp_micros(),
                a.alert.accounts.join("\u{1f}").to_ascii_lowercase(),
                a.alert.window,
            )
        };
        if !self.seen.insert(key) {
            if keep_duplicates {
                obs.ignored.push((a, IgnoreReason::Duplicate));
            }
            return false;
        }
        let mut kind =
            match correlate::judge(&a.alert, &self.target.wanted(self.rule), a.received_at) {
                Ok(k) => k,
                Err(reason) => {
                    obs.ignored.push((a, reason));
                    return false;
                }
            };
        if kind == MatchKind::ByRuleAndWindow
            && let Some(c) = self.confirm
        {
            match c.holds_signin(&a.alert, self.target, cancel).await {
                Ok(true) => kind = MatchKind::ByRuleWindowAndSearch,
                Ok(false) => {
                    obs.ignored.push((a, IgnoreReason::SearchLacksSignIn));
                    return false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the alert rule's rows; matched by rule and window only");
                }
            }
        }
        obs.matched_by = Some(kind);
        if a.arrived <= self.target.deadline {
            obs.matched = Some(a);
        } else {
            obs.late = Some(a);
        }
        true
    }
}

/// An alert check of one kind.
#[async_trait::async_trait]
pub trait AlertCheck: Send + Sync {
    /// Waits until an alert for `target` arrives, the deadline passes, or
    /// `cancel` fires.
    async fn observe(&self, target: &AlertTarget, cancel: &CancellationToken) -> AlertObservation;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(seq: u64, id: &str, condition: &str) -> ReceivedAlert {
        let t = crate::support::time::parse_rfc3339("2026-11-24T12:00:05Z").unwrap();
        ReceivedAlert {
            seq,
            received_at: t,
            arrived: tokio::time::Instant::now(),
            raw: Bytes::from_static(b"{}"),
            alert: CommonAlert {
                alert_id: id.into(),
                rule: "r".into(),
                severity: "Sev0".into(),
                monitor_condition: condition.into(),
                fired: t,
                accounts: vec!["someone.else@contoso.onmicrosoft.com".into()],
                window: None,
                search_link: None,
            },
            ingested: None,
        }
    }

    /// The same alert (id and condition) delivered twice is one alert: a
    /// webhook keeps the repeat as "duplicate" evidence, a poller (which
    /// sees it at every poll) drops it; its `Resolved` notification is
    /// another alert.
    #[tokio::test]
    async fn duplicates_count_once() {
        let now = tokio::time::Instant::now();
        let target = AlertTarget {
            upn: "bg1@contoso.onmicrosoft.com".into(),
            object_id: None,
            signin_at: crate::support::time::parse_rfc3339("2026-11-24T12:00:00Z").unwrap(),
            signin_id: None,
            correlation_id: None,
            deadline: now + std::time::Duration::from_secs(60),
            late_until: now + std::time::Duration::from_secs(60),
        };
        let cancel = CancellationToken::new();
        for keep in [true, false] {
            let mut obs = AlertObservation::default();
            let mut c = Correlator::new("r", &target, None);
            for (seq, cond) in [(1, "Fired"), (2, "Fired"), (3, "Resolved")] {
                assert!(
                    !c.consider(&mut obs, received(seq, "A-1", cond), keep, &cancel)
                        .await
                );
            }
            let dup = obs
                .ignored
                .iter()
                .filter(|(_, r)| *r == IgnoreReason::Duplicate)
                .count();
            assert_eq!(dup, usize::from(keep), "keep_duplicates = {keep}");
            assert_eq!(obs.ignored.len(), 2 + usize::from(keep));
        }
    }
}
