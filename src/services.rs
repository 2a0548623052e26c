//! The long-lived parts a process starts once — webhook receiver, token
//! caches (one per app registration, each caching one token per
//! resource), the evidence signing key, the notifier — and that every run
//! of that process attaches to. `glassdrill run` and `rehearse` start them
//! for one run; the daemon keeps them for its whole life.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use secrecy::SecretString;

use crate::alerts::{ReceiverError, WebhookReceiver};
use crate::cloud::{AppCredentials, CloudError, TokenCache};
use crate::config::HostConfig;
use crate::drill::{Progress, Sinks};
use crate::evidence::recover::Recovered;
use crate::evidence::{EvidenceError, SigningKey};
use crate::notify::{Console, Notifier};

/// A service that could not start: an outage or a host problem (exit 2),
/// not a user mistake.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The signing key cannot be loaded or created.
    #[error("evidence signing key: {0}")]
    SigningKey(#[from] EvidenceError),
    /// The webhook receiver cannot listen.
    #[error(transparent)]
    Receiver(#[from] ReceiverError),
    /// The HTTP client cannot be built.
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Where the webhook receiver listens and its path token.
pub struct WebhookSettings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Secret path token.
    pub token: SecretString,
}

/// The services of one process.
pub struct Services {
    receiver: WebhookReceiver,
    signing_key: SigningKey,
    signer: String,
    evidence_dir: PathBuf,
    notifier: Arc<dyn Notifier>,
    controls: Vec<String>,
    tokens: Mutex<HashMap<(String, String, String), Arc<TokenCache>>>,
    recovered: Vec<PathBuf>,
}

impl Services {
    /// Starts every service: loads (or creates, saying where through
    /// `progress`) the signing key, binds the receiver.
    pub async fn start(
        host: &HostConfig,
        webhook: WebhookSettings,
        progress: &dyn Progress,
    ) -> Result<Self, ServiceError> {
        let (signing_key, created) =
            SigningKey::load_or_generate(&host.evidence.signing_key, &host.evidence.signer)?;
        if created {
            progress.note(&format!(
                "created the evidence signing key {} ({}); back it up and give auditors its .pub",
                signing_key.path().display(),
                signing_key.fingerprint()
            ));
        }
        // Runs that died (SIGKILL, crash, power loss) become signed
        // INTERRUPTED bundles before anything new starts, and their
        // browsers' leftovers go.
        crate::browser::reap_orphans(
            &host
                .browser
                .temp_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
        );
        let mut recovered = Vec::new();
        for r in crate::evidence::recover::recover_all(
            &host.evidence_dir(),
            &signing_key,
            &host.evidence.signer,
        ) {
            match r {
                Recovered::Sealed {
                    bundle,
                    died_during,
                } => {
                    progress.note(&format!(
                        "recovered a run that died{}: {} (INTERRUPTED)",
                        died_during
                            .map(|s| format!(" during {}", s.name()))
                            .unwrap_or_default(),
                        bundle.dir.display()
                    ));
                    recovered.push(bundle.dir);
                }
                Recovered::Empty(dir) => {
                    tracing::info!(dir = %dir.display(), "removed the empty staging directory of a run that died at once");
                }
                Recovered::Failed { dir, why } => progress.note(&format!(
                    "could not recover the run that died in {}: {why}",
                    dir.display()
                )),
            }
        }
        // Sealed bundles the evidence log does not hold yet (a run that
        // died between sealing and appending, or evidence from before the
        // log) are appended now, in time order.
        match crate::evidence::log::catch_up(
            &host.evidence_dir(),
            &signing_key,
            &host.evidence.signer,
        ) {
            Ok(0) => {}
            Ok(n) => progress.note(&format!(
                "appended {n} sealed bundle(s) to the evidence log"
            )),
            Err(e) => progress.note(&format!(
                "the evidence log could not be brought up to date: {e}"
            )),
        }
        let receiver = WebhookReceiver::start_with(
            webhook.listen,
            webhook.token,
            host.webhook.max_body_bytes,
            host.webhook.secure.clone(),
        )
        .await?;
        Ok(Self {
            receiver,
            signing_key,
            signer: host.evidence.signer.clone(),
            evidence_dir: host.evidence_dir(),
            notifier: Arc::new(Console),
            controls: host.evidence.controls.clone(),
            tokens: Mutex::new(HashMap::new()),
            recovered,
        })
    }

    /// Replaces the notifier (the daemon's outbox).
    pub fn with_notifier(mut self, notifier: Box<dyn Notifier>) -> Self {
        self.notifier = Arc::from(notifier);
        self
    }

    /// The notifier, for parts that outlive a borrow (the key's touch
    /// events).
    pub fn notifier(&self) -> Arc<dyn Notifier> {
        self.notifier.clone()
    }

    /// The evidence signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The bundles of runs that died, recovered when the services started.
    pub fn recovered(&self) -> &[PathBuf] {
        &self.recovered
    }

    /// The webhook receiver.
    pub fn receiver(&self) -> &WebhookReceiver {
        &self.receiver
    }

    /// The token cache of an app registration (created on first use, then
    /// shared by every run).
    pub fn tokens(&self, creds: AppCredentials) -> Result<Arc<TokenCache>, ServiceError> {
        let key = (
            creds.authority.clone(),
            creds.tenant_id.clone(),
            creds.client_id.clone(),
        );
        let mut map = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let cache = Arc::new(TokenCache::new(creds)?);
        map.insert(key, cache.clone());
        Ok(cache)
    }

    /// What a run writes to.
    pub fn sinks(&self) -> Sinks<'_> {
        Sinks {
            evidence_dir: self.evidence_dir.clone(),
            signing_key: &self.signing_key,
            signer: &self.signer,
            notifier: self.notifier.as_ref(),
            controls: &self.controls,
        }
    }

    /// Stops the receiver.
    pub async fn shutdown(self) {
        self.receiver.shutdown().await;
    }
}
