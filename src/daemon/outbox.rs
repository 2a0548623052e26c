//! The daemon's notifier: every notification is written to the state
//! store's outbox first (one row per channel), then delivered; one that
//! cannot be delivered stays there, is retried with backoff and shows in
//! `status`. Delivery never changes a drill's verdict.

use std::sync::Arc;

use chrono::Duration;

use super::Clock;
use crate::notify::{Channels, Kind, Notifier, NotifyError};
use crate::state::StateStore;

/// Retry backoff of an undelivered notification: 1 min, doubling, at most
/// an hour.
fn backoff(attempts: u32) -> Duration {
    Duration::minutes(1i64 << attempts.min(6)).min(Duration::hours(1))
}

/// The outbox and its channels.
#[derive(Clone)]
pub struct Outbox {
    store: StateStore,
    channels: Arc<Channels>,
    clock: Arc<dyn Clock>,
}

impl Outbox {
    /// An outbox on `store` delivering through `channels`.
    pub fn new(store: StateStore, channels: Arc<Channels>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            channels,
            clock,
        }
    }

    /// Queues a notification on every channel and tries to deliver it at
    /// once; returns what each channel did.
    pub async fn notify(
        &self,
        drill: Option<&str>,
        kind: Kind,
        subject: &str,
        body: &str,
    ) -> Vec<Result<String, NotifyError>> {
        if !self.channels.any() {
            tracing::info!(target: "glassdrill::notify", kind = kind.name(), drill, "{subject}\n{body}");
            return vec![Ok("logged (no notification channel configured)".into())];
        }
        let now = self.clock.now();
        let mut out = Vec::new();
        for channel in self.channels.names() {
            let queued = self
                .store
                .queue(&channel, drill, kind.name(), subject, body, now)
                .await;
            match queued {
                Ok(id) => out.push(self.deliver(&id, &channel, kind, subject, body, 0).await),
                Err(e) => out.push(Err(NotifyError {
                    channel,
                    reason: format!("not queued: {e}"),
                })),
            }
        }
        out
    }

    async fn deliver(
        &self,
        id: &str,
        channel: &str,
        kind: Kind,
        subject: &str,
        body: &str,
        attempts: u32,
    ) -> Result<String, NotifyError> {
        // Claimed first: a tick retrying due notifications and this send
        // never deliver the same one twice.
        match self
            .store
            .claim(id, self.clock.now(), Duration::minutes(2))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                return Err(NotifyError {
                    channel: channel.to_owned(),
                    reason: "being delivered by another task".into(),
                });
            }
            Err(e) => {
                return Err(NotifyError {
                    channel: channel.to_owned(),
                    reason: format!("outbox: {e}"),
                });
            }
        }
        let sent = self.channels.send(channel, kind, subject, body).await;
        let now = self.clock.now();
        let recorded = match &sent {
            Ok(_) => self.store.delivered(id, now).await,
            Err(e) => {
                tracing::warn!(channel, error = %e, "notification not delivered; it will be retried");
                self.store
                    .delivery_failed(id, &e.reason, now + backoff(attempts))
                    .await
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record a notification's delivery");
        }
        sent
    }

    /// Retries every notification that is due for another attempt.
    pub async fn deliver_due(&self) {
        let due = match self.store.due_notifications(self.clock.now()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification outbox");
                return;
            }
        };
        // Bounded, so a relay that swallows connections cannot stall the
        // schedule: what is left waits for the next tick.
        let started = std::time::Instant::now();
        for n in due {
            if started.elapsed() > std::time::Duration::from_secs(20) {
                break;
            }
            let kind = Kind::from_name(&n.kind).unwrap_or(Kind::Report);
            let _ = self
                .deliver(&n.id, &n.channel, kind, &n.subject, &n.body, n.attempts)
                .await;
        }
    }

    fn summary(results: Vec<Result<String, NotifyError>>) -> Result<String, NotifyError> {
        let ok: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        let failed: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err().map(ToString::to_string))
            .collect();
        match (ok.is_empty(), failed.is_empty()) {
            (_, true) => Ok(ok.join("; ")),
            (false, false) => Ok(format!(
                "{}; not yet delivered (retried): {}",
                ok.join("; "),
                failed.join("; ")
            )),
            (true, false) => Err(NotifyError {
                channel: "every channel".into(),
                reason: format!("{} (queued and retried)", failed.join("; ")),
            }),
        }
    }
}

#[async_trait::async_trait]
impl Notifier for Outbox {
    async fn announce(&self, drill: &str, run_id: &str, text: &str) -> Result<String, NotifyError> {
        let subject = format!("glassdrill: break-glass drill {drill} starts now (run {run_id})");
        Self::summary(
            self.notify(Some(drill), Kind::Announce, &subject, text)
                .await,
        )
    }

    fn delivers_reports(&self) -> bool {
        self.channels.any()
    }

    async fn report(&self, drill: &str, _run_id: &str, text: &str) -> Result<String, NotifyError> {
        let subject = text
            .lines()
            .next()
            .unwrap_or("glassdrill: drill report")
            .to_owned();
        Self::summary(self.notify(Some(drill), Kind::Report, &subject, text).await)
    }

    async fn touch_needed(&self, drill: &str, text: &str) -> Result<String, NotifyError> {
        tracing::warn!(target: "glassdrill::touch", drill, "{text}");
        let subject = format!("glassdrill: drill {drill}: touch the security key now");
        Self::summary(self.notify(Some(drill), Kind::Touch, &subject, text).await)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_to_an_hour() {
        let m: Vec<i64> = (0..9).map(|a| super::backoff(a).num_minutes()).collect();
        assert_eq!(m, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
