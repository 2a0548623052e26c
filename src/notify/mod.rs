//! Notifications: the drill announcement (before the sign-in, so the SOC
//! knows the alert is a drill) and the report (after). [`Notifier`] is the
//! seam SMTP and chat channels plug into; [`Console`] is the built-in
//! channel: the log and the operator's console, nothing delivered to
//! anyone else.

/// Why a notification could not be delivered.
#[derive(Debug, thiserror::Error)]
#[error("notification through {channel} failed: {reason}")]
pub struct NotifyError {
    /// The channel.
    pub channel: String,
    /// Why.
    pub reason: String,
}

/// A notification channel, shared by every run of a process.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Announces a drill; returns what was done, for the stage record.
    async fn announce(&self, drill: &str, run_id: &str, text: &str) -> Result<String, NotifyError>;
    /// Whether [`report`](Self::report) delivers anything (the `report`
    /// stage is skipped otherwise).
    fn delivers_reports(&self) -> bool;
    /// Delivers a report; returns what was done.
    async fn report(&self, drill: &str, run_id: &str, text: &str) -> Result<String, NotifyError>;
    /// A security key waits for a touch (the custodian channel).
    async fn touch_needed(&self, drill: &str, text: &str) -> Result<String, NotifyError> {
        tracing::warn!(target: "glassdrill::touch", drill, "{text}");
        Ok("on the log and console".into())
    }
}

/// The log and console only.
#[derive(Debug, Default)]
pub struct Console;

#[async_trait::async_trait]
impl Notifier for Console {
    async fn announce(&self, drill: &str, run_id: &str, text: &str) -> Result<String, NotifyError> {
        tracing::info!(target: "glassdrill::announce", drill, run = run_id, "{text}");
        Ok("announced on the log and console (no notification channel configured)".into())
    }

    fn delivers_reports(&self) -> bool {
        false
    }

    async fn report(&self, _: &str, _: &str, text: &str) -> Result<String, NotifyError> {
        tracing::info!(target: "glassdrill::report", "{text}");
        Ok("reported on the log".into())
    }
}

pub mod channels;

pub use channels::{Channels, Kind};
