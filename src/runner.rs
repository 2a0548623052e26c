//! Puts a drill together and runs it: signing key, webhook receiver,
//! tenant endpoints (the built-in rehearsal tenant or the configured Entra
//! tenant), authenticator and alert checks. `glassdrill rehearse` and
//! `glassdrill run` both come through [`run_configured`], so a rehearsal
//! exercises exactly the production path except for where it signs in.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretSlice, SecretString};
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertCheck, WebhookReceiver};
use crate::authenticator::VirtualAuthenticator;
use crate::browser::BrowserOptions;
use crate::config::{AlertKind, AuthenticatorConfig, DrillConfig, HostConfig, TenantKind};
use crate::drill::{DrillOutcome, DrillPlan, TenantEndpoints, run_drill};
use crate::evidence::SigningKey;
use crate::progress::Progress;
use crate::secret::{random_bytes, random_token};
use crate::tenant::{Account, Fault, RehearsalTenant, TENANT_ID, TenantOptions};
use crate::webauthn::{self, StoredCredential};

/// Per-run options from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Who runs the drill.
    pub operator: Option<String>,
    /// Who watches.
    pub witness: Option<String>,
    /// Rehearsal tenant faults.
    pub faults: Vec<Fault>,
    /// Rehearsal alert delay.
    pub alert_delay: Duration,
    /// Overrides every alert deadline.
    pub alert_deadline: Option<Duration>,
    /// Overrides the flow step timeout.
    pub step_timeout: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            operator: None,
            witness: None,
            faults: Vec::new(),
            alert_delay: Duration::from_secs(2),
            alert_deadline: None,
            step_timeout: None,
        }
    }
}

/// Why a drill could not even start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration does not allow this run (exit 64).
    #[error("{0}")]
    Config(String),
    /// Something on the host failed (exit 2).
    #[error("{0}")]
    Host(String),
}

/// A fresh credential for a rehearsal: never written to disk.
pub struct GeneratedCredential {
    /// Credential id.
    pub id: Vec<u8>,
    /// PKCS#8 DER private key.
    pub pkcs8: SecretSlice<u8>,
    /// User handle.
    pub user_handle: Vec<u8>,
}

impl GeneratedCredential {
    /// Generates one.
    pub fn new() -> Result<Self, RunError> {
        let pkcs8 = webauthn::generate_p256_pkcs8().map_err(|e| RunError::Host(e.to_string()))?;
        Ok(Self {
            id: random_bytes(16),
            pkcs8: pkcs8.into(),
            user_handle: random_bytes(16),
        })
    }
}

/// The rehearsal tenant's account for a credential.
pub fn rehearsal_account(
    upn: &str,
    id: &[u8],
    pkcs8: &[u8],
    user_handle: &[u8],
) -> Result<Account, RunError> {
    let public_key = webauthn::public_key_from_pkcs8(pkcs8)
        .map_err(|e| RunError::Config(format!("credential key: {e}")))?;
    Ok(Account {
        upn: upn.to_owned(),
        display_name: "Break Glass 1 (rehearsal)".to_owned(),
        id: "00000000-0000-0000-0000-0000000b6e01".to_owned(),
        credential: StoredCredential {
            id: id.to_vec(),
            public_key,
            sign_count: 0,
            user_handle: user_handle.to_vec(),
        },
    })
}

/// Loads the evidence signing key, creating it on first use (and saying
/// where through `progress`).
pub fn signing_key(host: &HostConfig, progress: &dyn Progress) -> Result<SigningKey, RunError> {
    let (key, created) =
        SigningKey::load_or_generate(&host.evidence.signing_key, &host.evidence.signer)
            .map_err(|e| RunError::Host(e.to_string()))?;
    if created {
        progress.note(&format!(
            "created the evidence signing key {} ({}); back it up and give auditors its .pub",
            key.path().display(),
            key.fingerprint()
        ));
    }
    Ok(key)
}

/// Runs `drill` as configured.
pub async fn run_configured(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: &RunOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DrillOutcome, RunError> {
    let mut drill = drill.clone();
    if let Some(d) = opts.alert_deadline {
        for a in &mut drill.alerts {
            a.deadline = d;
        }
    }
    let Inputs {
        credential,
        webhook: (listen, token),
        entra,
    } = resolve_inputs(host, &drill)?;
    let key = signing_key(host, progress)?;

    // The receiver listens before anything can fire an alert.
    let receiver = WebhookReceiver::start(listen, token, host.webhook.max_body_bytes)
        .await
        .map_err(|e| RunError::Host(e.to_string()))?;

    let mut tenant = None;
    let endpoints = match entra {
        Some(endpoints) => endpoints,
        None => {
            let client_secret = SecretString::from(random_token(32));
            let account = rehearsal_account(
                &drill.account,
                &credential.id,
                credential.pkcs8.expose_secret(),
                &credential.user_handle,
            )?;
            let t = RehearsalTenant::start(TenantOptions {
                account,
                client_id: "glassdrill-rehearsal".into(),
                client_secret: client_secret.clone(),
                faults: opts.faults.clone(),
                alert_delay: opts.alert_delay,
                alert_late_delay: drill
                    .alerts
                    .iter()
                    .map(|a| a.deadline)
                    .max()
                    .unwrap_or_default()
                    + Duration::from_secs(2),
                log_delay: Duration::from_secs(2),
                webhook_url: Some(receiver.url_with_token().expose_secret().to_owned()),
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            })
            .await
            .map_err(|e| RunError::Host(e.to_string()))?;
            progress.note(&format!(
                "rehearsal tenant at {} (faults: {})",
                t.urls().authority,
                fault_list(&opts.faults)
            ));
            let e = TenantEndpoints {
                authority: t.urls().authority.clone(),
                tenant_id: TENANT_ID.into(),
                graph: t.urls().graph.clone(),
                client_id: "glassdrill-rehearsal".into(),
                client_secret,
            };
            tenant = Some(t);
            e
        }
    };
    progress.note(&format!("webhook receiver at {}", receiver.url_redacted()));

    let authenticator = VirtualAuthenticator::new(
        credential.id,
        credential.pkcs8,
        credential.rp_id,
        credential.user_handle,
    )
    .map_err(|e| RunError::Config(e.to_string()))?;
    let alert_checks: Vec<Box<dyn AlertCheck>> = drill
        .alerts
        .iter()
        .map(|a| match a.kind {
            AlertKind::Webhook => Box::new(receiver.check()) as Box<dyn AlertCheck>,
        })
        .collect();
    let plan = DrillPlan {
        drill: &drill,
        host_digest: &host.digest,
        tenant: endpoints,
        authenticator: &authenticator,
        alert_checks,
        browser: BrowserOptions {
            chromium: host.browser.chromium.clone(),
            chromedriver: host.browser.chromedriver.clone(),
            temp_dir: host.browser.temp_dir.clone(),
        },
        step_timeout: opts.step_timeout.unwrap_or(host.browser.step_timeout),
        evidence_dir: host.evidence_dir(),
        signing_key: &key,
        signer: &host.evidence.signer,
        operator: opts.operator.clone(),
        witness: opts.witness.clone(),
    };
    let outcome = run_drill(plan, progress, cancel).await;
    if let Some(t) = tenant {
        t.shutdown().await;
    }
    receiver.shutdown().await;
    Ok(outcome)
}

/// The credential the virtual authenticator presents.
struct Credential {
    id: Vec<u8>,
    pkcs8: SecretSlice<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
}

/// What a run takes from configuration and secrets, each resolved once.
struct Inputs {
    credential: Credential,
    /// Receiver listen address and path token.
    webhook: (SocketAddr, SecretString),
    /// The Entra tenant; `None` means the built-in rehearsal tenant.
    entra: Option<TenantEndpoints>,
}

/// Resolves every secret and setting the run needs, reporting every
/// problem at once before anything is started or created.
fn resolve_inputs(host: &HostConfig, drill: &DrillConfig) -> Result<Inputs, RunError> {
    let mut problems = Vec::new();
    let src = drill.source.display();
    let rehearsal_rp_id = format!("ceremony.{}", crate::tenant::DOMAIN);
    let credential = match &drill.authenticator {
        AuthenticatorConfig::Virtual(Some(c)) => {
            if drill.tenant == TenantKind::Rehearsal && c.rp_id != rehearsal_rp_id {
                problems.push(format!(
                    "{src}: authenticator.rp_id must be `{rehearsal_rp_id}` for the rehearsal tenant"
                ));
            }
            match c.private_key.resolve_bytes() {
                Ok(pkcs8) => Some(Credential {
                    id: c.credential_id.clone(),
                    pkcs8,
                    rp_id: c.rp_id.clone(),
                    user_handle: c.user_handle.clone(),
                }),
                Err(e) => {
                    problems.push(format!("{src}: authenticator.private_key: {e}"));
                    None
                }
            }
        }
        AuthenticatorConfig::Virtual(None) => {
            let g = GeneratedCredential::new()?;
            Some(Credential {
                id: g.id,
                pkcs8: g.pkcs8,
                rp_id: rehearsal_rp_id.clone(),
                user_handle: g.user_handle,
            })
        }
    };
    let mut webhook = None;
    let mut entra = None;
    match drill.tenant {
        // A rehearsal never takes the production listener's port.
        TenantKind::Rehearsal => {
            webhook = Some((
                SocketAddr::from(([127, 0, 0, 1], 0)),
                SecretString::from(random_token(32)),
            ));
        }
        TenantKind::Entra => {
            match &host.entra {
                None => problems.push(format!("{src}: drill {} signs in to Entra, but the host config has no [entra] table; see deploy/glassdrill.toml", drill.id)),
                Some(e) => match e.client_secret.resolve() {
                    Ok(client_secret) => {
                        entra = Some(TenantEndpoints {
                            authority: e.authority.clone(),
                            tenant_id: e.tenant_id.clone(),
                            graph: e.graph.clone(),
                            client_id: e.client_id.clone(),
                            client_secret,
                        });
                    }
                    Err(err) => problems.push(format!("entra.client_secret: {err}")),
                },
            }
            if host.webhook.listen.port() == 0 {
                problems.push(
                    "a drill against Entra needs a fixed [webhook] listen address (like \"127.0.0.1:8765\"): the action group posts to it".into(),
                );
            }
            match &host.webhook.token {
                None => problems.push("a drill against Entra needs [webhook] token = \"env:...\" or \"file:...\" in glassdrill.toml: the action group's webhook URL carries it".into()),
                Some(t) => match t.resolve() {
                    Ok(token) => webhook = Some((host.webhook.listen, token)),
                    Err(err) => problems.push(format!("webhook.token: {err}")),
                },
            }
        }
    }
    match (credential, webhook) {
        (Some(credential), Some(webhook)) if problems.is_empty() => Ok(Inputs {
            credential,
            webhook,
            entra,
        }),
        _ => Err(RunError::Config(problems.join("\nerror: "))),
    }
}

fn fault_list(f: &[Fault]) -> String {
    if f.is_empty() {
        "none".into()
    } else {
        f.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    }
}
