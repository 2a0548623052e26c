//! Puts a drill together and runs it: resolves what the drill file and
//! host config name (secrets, credential, tenant), starts the process's
//! [`Services`] (or uses ones already running), starts the rehearsal
//! tenant when the drill asks for it, and attaches a run. `glassdrill
//! rehearse` and `glassdrill run` both come through [`run_configured`], so
//! a rehearsal exercises exactly the production path except for where it
//! signs in.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertCheck;
use crate::alerts::sources::CloudEndpoints;
use crate::authenticator::Credential;
use crate::authenticator::{
    Authenticator, AuthenticatorError, KeyAuthenticator, KeySettings, VirtualAuthenticator,
};
use crate::browser::BrowserOptions;
use crate::cloud::{AppCredentials, GraphClient};
use crate::config::{AlertKind, AuthenticatorConfig, DrillConfig, HostConfig, TenantKind};
use crate::drill::{DrillOutcome, Progress, RunPlan, TenantEndpoints};
use crate::secret::{SecretError, random_token};
use crate::services::{ServiceError, Services, WebhookSettings};
use crate::tenant::{
    Fault, RehearsalTenant, TENANT_ID, TenantError, TenantOptions, rehearsal_account,
};
use crate::webauthn::KeyError;

/// Per-run options from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Who runs the drill.
    pub operator: Option<String>,
    /// Who watches.
    pub witness: Option<String>,
    /// The key and its envelope's seals.
    pub custody: crate::drill::Custody,
    /// Set-up findings for the report (keys not proven in time).
    pub findings: Vec<String>,
    /// Rehearsal tenant faults.
    pub faults: Vec<Fault>,
    /// Rehearsal alert delay.
    pub alert_delay: Duration,
    /// Overrides every alert deadline.
    pub alert_deadline: Option<Duration>,
    /// Overrides the flow step timeout.
    pub step_timeout: Option<Duration>,
    /// The signature counter of the key's last recorded assertion (from
    /// the state store), for the cloned-key check.
    pub last_sign_count: Option<u32>,
    /// When the previous drill of these accounts ended: sign-ins since
    /// then that no drill made are unexpected use (default: 60 days back).
    pub previous_drill_end: Option<chrono::DateTime<chrono::Utc>>,
    /// Rehearsals: the tenant posts its alerts to the receiver's secure
    /// webhook with a bearer token it signs (instead of the token URL).
    pub secure_webhook: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            operator: None,
            witness: None,
            custody: crate::drill::Custody::default(),
            findings: Vec::new(),
            faults: Vec::new(),
            alert_delay: Duration::from_secs(2),
            alert_deadline: None,
            step_timeout: None,
            last_sign_count: None,
            secure_webhook: false,
            previous_drill_end: None,
        }
    }
}

/// A user mistake that stops a run before anything starts (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum PlanProblem {
    /// A rehearsal credential for another RP id.
    #[error("{source_file}: authenticator.rp_id must be `{expected}` for the rehearsal tenant")]
    RehearsalRpId {
        /// The drill file.
        source_file: String,
        /// The RP id it must have.
        expected: String,
    },
    /// A setting cannot be used.
    #[error("{field}: {reason}")]
    Setting {
        /// Which (`file: field`).
        field: String,
        /// Why, and the fix.
        reason: String,
    },
    /// A secret reference cannot be resolved.
    #[error("{field}: {error}")]
    Secret {
        /// Where the reference is (`file: field`).
        field: String,
        /// Why.
        error: SecretError,
    },
    /// The credential key is unusable.
    #[error("{source_file}: authenticator.private_key: {error}")]
    CredentialKey {
        /// The drill file.
        source_file: String,
        /// Why.
        error: KeyError,
    },
    /// The drill's key cannot be used as configured.
    #[error("{source_file}: authenticator: {reason}")]
    Key {
        /// The drill file.
        source_file: String,
        /// Why, and the fix.
        reason: String,
    },
    /// An Entra drill on a host with no `[entra]` (or no
    /// `[tenants.<name>]` for its `tenant_name`).
    #[error("{source_file}: {why}")]
    NoEntra {
        /// The drill file.
        source_file: String,
        /// What is missing, and the fix.
        why: String,
    },
    /// An Entra drill needs a fixed receiver address.
    #[error(
        "a drill against Entra needs a fixed [webhook] listen address (like \"127.0.0.1:8765\"): the action group posts to it"
    )]
    WebhookListen,
    /// An Entra drill needs a receiver token.
    #[error(
        "a drill against Entra needs [webhook] token = \"env:...\" or \"file:...\" in glassdrill.toml: the action group's webhook URL carries it"
    )]
    WebhookToken,
}

/// Every user mistake found, reported at once.
#[derive(Debug)]
pub struct PlanProblems(pub Vec<PlanProblem>);

impl std::fmt::Display for PlanProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\nerror: ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PlanProblems {}

/// Why a drill could not even start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration does not allow this run: a user mistake.
    #[error(transparent)]
    Plan(#[from] PlanProblems),
    /// A service could not start: an outage or host problem.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The rehearsal tenant could not start.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The run's authenticator could not be built.
    #[error(transparent)]
    Authenticator(#[from] AuthenticatorError),
}

impl RunError {
    /// The exit code of a run that could not start: a user mistake (fix
    /// the configuration, 64) or an outage or host problem (retry, 2).
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Plan(_) => crate::record::EXIT_USAGE,
            Self::Service(_) | Self::Tenant(_) | Self::Authenticator(_) => {
                crate::record::Verdict::Error.exit_code()
            }
        }
    }
}

/// What a run takes from configuration and secrets, each resolved once.
struct Inputs {
    /// What the run itself needs.
    run: RunInputs,
    /// Receiver listen address and path token, for a process of its own.
    webhook: WebhookSettings,
}

/// What one run needs besides the process's services.
struct RunInputs {
    credential: Presenter,
    /// The Entra tenant; `None` means the built-in rehearsal tenant.
    entra: Option<(TenantEndpoints, AppCredentials)>,
    /// PagerDuty's API and `Authorization` value, when a drill polls it.
    pagerduty: Option<(String, SecretString)>,
}

/// What presents the credential.
enum Presenter {
    /// The virtual authenticator with this credential.
    Virtual(Credential),
    /// A key behind the bridge.
    Key(Box<KeyInputs>),
}

/// A bridged key, resolved.
struct KeyInputs {
    name: Option<String>,
    source: crate::authenticator::KeySource,
    aaguid: Option<String>,
    credential_id: Option<Vec<u8>>,
    pin: SecretString,
    cfg: crate::config::drill::KeyConfig,
    /// A rehearsal's own soft key: its directory lives as long as the run.
    _temp: Option<tempfile::TempDir>,
}

impl KeyInputs {
    fn settings(
        self,
        drill: &DrillConfig,
        last_sign_count: Option<u32>,
    ) -> (KeySettings, Option<tempfile::TempDir>) {
        (
            KeySettings {
                name: self.name,
                source: self.source,
                aaguid: self.aaguid,
                rp_id: self.cfg.rp_id.clone(),
                user_handle: self.cfg.user_handle.clone(),
                credential_id: self.credential_id,
                pin: self.pin,
                max_pin_retries: self.cfg.max_pin_retries,
                touch_timeout: self.cfg.touch_timeout,
                touch_command: self.cfg.touch_command.clone(),
                last_sign_count,
                drill_id: drill.id.clone(),
                account: drill.account.clone(),
                attended: false,
            },
            self._temp,
        )
    }
}

/// The authenticator of key `name` of a `hid`/`soft` drill, for `glassdrill
/// keys check` (its preflight is the check).
pub fn key_authenticator(
    drill: &DrillConfig,
    name: &str,
) -> Result<KeyAuthenticator, PlanProblems> {
    let mut problems = Vec::new();
    let AuthenticatorConfig::Key(k) = &drill.authenticator else {
        return Err(PlanProblems(vec![PlanProblem::Key {
            source_file: drill.source.display().to_string(),
            reason: "this drill has no security key (authenticator kind `hid` or `soft`)".into(),
        }]));
    };
    match key_inputs(drill, k, Some(name), &mut problems) {
        Some(inputs) if problems.is_empty() => {
            let (mut settings, _) = inputs.settings(drill, None);
            settings.attended = true;
            Ok(KeyAuthenticator::new(settings, None))
        }
        _ => Err(PlanProblems(problems)),
    }
}

/// A fresh soft key for a rehearsal: a temp dir, a random PIN, one
/// credential for the rehearsal tenant's RP id.
fn rehearsal_soft_key(
    rp_id: &str,
    upn: &str,
) -> Result<(tempfile::TempDir, std::path::PathBuf, SecretString), String> {
    let dir = tempfile::Builder::new()
        .prefix("glassdrill-softkey-")
        .tempdir()
        .map_err(|e| format!("cannot create a temp dir for the soft key: {e}"))?;
    let path = dir.path().join("soft-key.json");
    let pin = SecretString::from(random_token(12));
    crate::fido::soft::SoftKey::create(
        &path,
        &crate::fido::soft::NewSoftKey {
            rp_id,
            user_handle: &crate::tenant::rehearsal_user_handle(),
            user_name: upn,
            pin: &pin,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((dir, path, pin))
}

/// Resolves `[authenticator]` of kind `hid`/`soft` for the chosen key.
fn key_inputs(
    drill: &DrillConfig,
    k: &crate::config::drill::KeyConfig,
    chosen: Option<&str>,
    problems: &mut Vec<PlanProblem>,
) -> Option<KeyInputs> {
    use crate::authenticator::KeySource;
    use crate::config::drill::KeyKind;
    let src = drill.source.display().to_string();
    if k.kind == KeyKind::Hid && drill.tenant == TenantKind::Rehearsal {
        problems.push(PlanProblem::Key {
            source_file: src,
            reason: "a `hid` key cannot sign in to the rehearsal tenant (the tenant cannot know the key's credential); rehearse with `--authenticator soft`, and check the key with `glassdrill keys check`".into(),
        });
        return None;
    }
    if k.keys.is_empty() {
        // A rehearsal's soft key, made for this run.
        return match rehearsal_soft_key(&k.rp_id, &drill.account) {
            Ok((dir, path, pin)) => Some(KeyInputs {
                name: None,
                source: KeySource::Soft(path),
                aaguid: None,
                credential_id: None,
                pin,
                cfg: k.clone(),
                _temp: Some(dir),
            }),
            Err(reason) => {
                problems.push(PlanProblem::Key {
                    source_file: src,
                    reason,
                });
                None
            }
        };
    }
    let Some(entry) = k.entry(chosen) else {
        problems.push(PlanProblem::Key {
            source_file: src,
            reason: format!(
                "no key chosen among {}: pass --key NAME",
                k.keys
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        return None;
    };
    let pin = match entry.pin.as_ref().map(crate::secret::SecretRef::resolve) {
        Some(Ok(p)) => p,
        Some(Err(error)) => {
            problems.push(PlanProblem::Secret {
                field: format!("{src}: PIN of key {}", entry.name),
                error,
            });
            return None;
        }
        None => {
            problems.push(PlanProblem::Key {
                source_file: src,
                reason: format!("key {} has no PIN reference", entry.name),
            });
            return None;
        }
    };
    let source = match (k.kind, &entry.state) {
        (KeyKind::Soft, Some(p)) => KeySource::Soft(p.clone()),
        _ => KeySource::Hid(crate::fido::Selector {
            aaguid: entry.aaguid.clone(),
            credential_id: entry.credential_id.clone(),
            device: entry.device.clone(),
        }),
    };
    Some(KeyInputs {
        name: Some(entry.name.clone()),
        source,
        aaguid: entry.aaguid.clone(),
        credential_id: entry.credential_id.clone(),
        pin,
        cfg: k.clone(),
        _temp: None,
    })
}

/// Resolves every secret and setting the run needs, reporting every
/// problem at once before anything is started or created.
fn resolve_inputs(
    host: &HostConfig,
    drill: &DrillConfig,
    chosen_key: Option<&str>,
) -> Result<Inputs, PlanProblems> {
    let mut problems = Vec::new();
    let src = drill.source.display().to_string();
    let rehearsal_rp_id = crate::tenant::RP_ID.to_owned();
    let credential = match &drill.authenticator {
        AuthenticatorConfig::Key(k) => {
            key_inputs(drill, k, chosen_key, &mut problems).map(|k| Presenter::Key(Box::new(k)))
        }
        AuthenticatorConfig::Virtual(Some(c)) => {
            if drill.tenant == TenantKind::Rehearsal && c.rp_id != rehearsal_rp_id {
                problems.push(PlanProblem::RehearsalRpId {
                    source_file: src.clone(),
                    expected: rehearsal_rp_id.clone(),
                });
            }
            match c.private_key.resolve_bytes() {
                Ok(pkcs8) => Some(Presenter::Virtual(Credential {
                    id: c.credential_id.clone(),
                    pkcs8,
                    rp_id: c.rp_id.clone(),
                    user_handle: c.user_handle.clone(),
                })),
                Err(error) => {
                    problems.push(PlanProblem::Secret {
                        field: format!("{src}: authenticator.private_key"),
                        error,
                    });
                    None
                }
            }
        }
        AuthenticatorConfig::Virtual(None) => {
            match Credential::generate(&rehearsal_rp_id, crate::tenant::rehearsal_user_handle()) {
                Ok(c) => Some(Presenter::Virtual(c)),
                Err(error) => {
                    problems.push(PlanProblem::CredentialKey {
                        source_file: src.clone(),
                        error,
                    });
                    None
                }
            }
        }
    };
    let mut webhook = None;
    let mut entra = None;
    match drill.tenant {
        // A rehearsal listens where the host config says (so a real
        // action group can be pointed at it), on a free loopback port and
        // with a fresh token by default.
        TenantKind::Rehearsal => {
            let token = match &host.webhook.token {
                None => Some(SecretString::from(random_token(32))),
                Some(t) => match t.resolve() {
                    Ok(token) => Some(token),
                    Err(error) => {
                        problems.push(PlanProblem::Secret {
                            field: "webhook.token".into(),
                            error,
                        });
                        None
                    }
                },
            };
            webhook = token.map(|token| WebhookSettings {
                listen: host.webhook.listen,
                token,
            });
        }
        TenantKind::Entra => {
            match host.entra_for(drill) {
                Err(why) => problems.push(PlanProblem::NoEntra {
                    source_file: src.clone(),
                    why,
                }),
                Ok(e) => match entra_credentials(e) {
                    Ok(creds) => {
                        entra = Some((
                            TenantEndpoints {
                                authority: e.authority.clone(),
                                tenant_id: e.tenant_id.clone(),
                                graph: e.graph.clone(),
                                management: e.management.clone(),
                                log_analytics: e.log_analytics.clone(),
                            },
                            creds,
                        ));
                    }
                    Err((field, reason)) => problems.push(PlanProblem::Setting {
                        field: field.into(),
                        reason,
                    }),
                },
            }
            if host.webhook.listen.port() == 0 {
                problems.push(PlanProblem::WebhookListen);
            }
            match &host.webhook.token {
                None => problems.push(PlanProblem::WebhookToken),
                Some(t) => match t.resolve() {
                    Ok(token) => {
                        webhook = Some(WebhookSettings {
                            listen: host.webhook.listen,
                            token,
                        });
                    }
                    Err(error) => problems.push(PlanProblem::Secret {
                        field: "webhook.token".into(),
                        error,
                    }),
                },
            }
        }
    }
    let mut pagerduty = None;
    // The rehearsal tenant has its own PagerDuty stand-in.
    if drill.tenant == TenantKind::Entra
        && drill.alerts.iter().any(|a| a.kind == AlertKind::PagerDuty)
    {
        match &host.pagerduty {
            None => problems.push(PlanProblem::Setting {
                field: "pagerduty.api_key".into(),
                reason: format!("{src}: a pagerduty alert needs [pagerduty] api_key in glassdrill.toml (a read-only REST API key)"),
            }),
            Some(pd) => match pd.api_key.resolve() {
                Ok(key) => {
                    pagerduty = Some((
                        pd.api.clone(),
                        SecretString::from(format!("Token token={}", key.expose_secret())),
                    ));
                }
                Err(error) => problems.push(PlanProblem::Secret {
                    field: "pagerduty.api_key".into(),
                    error,
                }),
            },
        }
    }
    match (credential, webhook) {
        (Some(credential), Some(webhook)) if problems.is_empty() => Ok(Inputs {
            run: RunInputs {
                credential,
                entra,
                pagerduty,
            },
            webhook,
        }),
        _ => Err(PlanProblems(problems)),
    }
}

/// `drill` with the command line's overrides applied, and its inputs
/// resolved (every problem reported before anything starts).
fn prepare(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: &RunOptions,
) -> Result<(DrillConfig, Inputs), PlanProblems> {
    let mut drill = drill.clone();
    if let Some(d) = opts.alert_deadline {
        for a in &mut drill.alerts {
            a.deadline = d;
        }
    }
    let inputs = resolve_inputs(host, &drill, opts.custody.key_id.as_deref())?;
    Ok((drill, inputs))
}

/// Runs `drill` as configured, in a process of its own: starts the
/// services, runs, stops them.
pub async fn run_configured(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: &RunOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DrillOutcome, RunError> {
    let (drill, inputs) = prepare(host, drill, opts)?;
    let services = Services::start(host, inputs.webhook, progress).await?;
    let outcome = attach(&services, host, &drill, inputs.run, opts, progress, cancel).await;
    services.shutdown().await;
    outcome
}

/// Runs `drill` on services that are already running (the daemon's, or a
/// test's running several drills in one process).
pub async fn run_with(
    services: &Services,
    host: &HostConfig,
    drill: &DrillConfig,
    opts: &RunOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DrillOutcome, RunError> {
    let (drill, inputs) = prepare(host, drill, opts)?;
    attach(services, host, &drill, inputs.run, opts, progress, cancel).await
}

async fn attach(
    services: &Services,
    host: &HostConfig,
    drill: &DrillConfig,
    RunInputs {
        credential,
        entra,
        mut pagerduty,
    }: RunInputs,
    opts: &RunOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<DrillOutcome, RunError> {
    // Webhooks attach before anything can fire an alert, so no delivery is
    // missed; the polling checks are made once the APIs are known.
    let mut webhooks: Vec<Option<crate::alerts::WebhookCheck>> = drill
        .alerts
        .iter()
        .map(|a| {
            (a.kind == AlertKind::Webhook).then(|| {
                services
                    .receiver()
                    .attach(&drill.account, drill.object_id.as_deref(), &a.rule)
            })
        })
        .collect();
    let mut tenant = None;
    let mut key_temp = None;
    // A rehearsal's secure-webhook issuer is trusted for its run only.
    let mut _trust = None;
    // The rehearsal tenant stands for login.microsoft.com: a public site.
    let mut public_space = Vec::new();
    let (endpoints, creds) =
        match entra {
            Some(e) => e,
            None => {
                let client_secret = SecretString::from(random_token(32));
                let mut account = tenant_account(drill, &credential)?;
                // The tenant remembers the counter as Entra does across sign-ins.
                account.credential.sign_count = opts.last_sign_count.unwrap_or(0);
                let longest = drill
                    .alerts
                    .iter()
                    .map(|a| a.deadline)
                    .max()
                    .unwrap_or_default();
                let t = RehearsalTenant::start(TenantOptions {
                    account,
                    client_id: "glassdrill-rehearsal".into(),
                    client_secret: client_secret.clone(),
                    faults: opts.faults.clone(),
                    alert_delay: opts.alert_delay,
                    alert_late_delay: longest.saturating_add(Duration::from_secs(2)),
                    log_delay: Duration::from_secs(2),
                    webhook_url: Some(
                        services
                            .receiver()
                            .url_with_token()
                            .expose_secret()
                            .to_owned(),
                    ),
                    // The tenant's alert rules are the ones the drill expects
                    // by webhook (the other kinds read what those raised).
                    alert_rules: drill
                        .alerts
                        .iter()
                        .filter(|a| a.kind == AlertKind::Webhook)
                        .map(|a| a.rule.clone())
                        .collect(),
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    secure_webhook: opts.secure_webhook.then(|| {
                        (
                            services.receiver().secure_url(),
                            REHEARSAL_WEBHOOK_AUDIENCE.to_owned(),
                        )
                    }),
                    allow_list: false,
                    lax_session_cookie: false,
                })
                .await?;
                progress.note(&format!(
                    "rehearsal tenant at {} (faults: {})",
                    t.urls().authority,
                    fault_list(&opts.faults)
                ));
                let endpoints = TenantEndpoints {
                    authority: t.urls().authority.clone(),
                    tenant_id: TENANT_ID.into(),
                    graph: t.urls().graph.clone(),
                    management: t.urls().management.clone(),
                    log_analytics: t.urls().log_analytics.clone(),
                };
                let creds = AppCredentials {
                    authority: t.urls().authority.clone(),
                    tenant_id: TENANT_ID.into(),
                    client_id: "glassdrill-rehearsal".into(),
                    client_secret,
                    certificate: None,
                };
                // The tenant's PagerDuty stand-in takes its client secret as
                // the API key.
                if drill.alerts.iter().any(|a| a.kind == AlertKind::PagerDuty) {
                    pagerduty = Some((
                        t.urls().pagerduty.clone(),
                        SecretString::from(format!(
                            "Token token={}",
                            creds.client_secret.expose_secret()
                        )),
                    ));
                }
                if opts.secure_webhook {
                    let authority = &t.urls().authority;
                    _trust = Some(services.receiver().trust(
                        crate::alerts::webhook::SecureWebhook {
                            jwks_url: format!("{authority}/{TENANT_ID}/discovery/v2.0/keys"),
                            issuers: vec![format!("{authority}/{TENANT_ID}/v2.0")],
                            audiences: vec![REHEARSAL_WEBHOOK_AUDIENCE.to_owned()],
                            role: crate::alerts::webhook::SECURE_WEBHOOK_ROLE.to_owned(),
                        },
                    ));
                }
                public_space.push(t.addr());
                tenant = Some(t);
                (endpoints, creds)
            }
        };
    progress.note(&format!(
        "webhook receiver at {}",
        services.receiver().url_redacted()
    ));

    // The page after the ceremony may wait for a person's touch: a flow
    // step never gives up before the key does.
    let mut step_timeout = opts.step_timeout.unwrap_or(host.browser.step_timeout);
    if let Presenter::Key(k) = &credential {
        step_timeout = step_timeout.max(k.cfg.touch_timeout + Duration::from_secs(15));
    }
    let authenticator: Box<dyn Authenticator> = match credential {
        Presenter::Virtual(c) => Box::new(VirtualAuthenticator::new(
            c.id,
            c.pkcs8,
            c.rp_id,
            c.user_handle,
        )?),
        Presenter::Key(k) => {
            let (settings, temp) = k.settings(drill, opts.last_sign_count);
            key_temp = temp;
            Box::new(KeyAuthenticator::new(settings, Some(services.notifier())))
        }
    };
    let tokens = services.tokens(creds)?;
    let cloud = CloudEndpoints {
        graph: endpoints.graph.clone(),
        management: endpoints.management.clone(),
        log_analytics: endpoints.log_analytics.clone(),
        pagerduty,
    };
    let alert_checks = alert_checks(drill, &mut webhooks, &cloud, &tokens)?;
    // Posture: the rehearsal tenant's own set-up, or the host's [posture].
    let posture_cfg = match &tenant {
        Some(_) => Some(crate::tenant::posture::posture_config()),
        None => host.posture_for(drill.tenant_name.as_deref()).cloned(),
    };
    let posture = posture_cfg.map(|cfg| crate::drill::stages::posture::PosturePlan {
        evidence_dir: host.evidence_dir(),
        cfg,
        graph: endpoints.graph.clone(),
        management: endpoints.management.clone(),
        tokens: tokens.clone(),
        since: opts.previous_drill_end.unwrap_or_else(|| {
            crate::support::time::now()
                - if tenant.is_some() {
                    chrono::Duration::hours(1)
                } else {
                    chrono::Duration::days(60)
                }
        }),
    });
    let graph = GraphClient::new(&endpoints.graph, tokens);
    let plan = RunPlan {
        drill,
        host_digest: host.digest.clone(),
        tenant: endpoints,
        graph,
        authenticator: authenticator.as_ref(),
        alert_checks,
        browser: BrowserOptions {
            chromium: host.browser.chromium.clone(),
            chromedriver: host.browser.chromedriver.clone(),
            temp_dir: host.browser.temp_dir.clone(),
            public_address_space: public_space,
        },
        step_timeout,
        operator: opts.operator.clone(),
        witness: opts.witness.clone(),
        custody: opts.custody.clone(),
        findings: opts.findings.clone(),
        posture,
    };
    let outcome = crate::drill::run(plan, &services.sinks(), progress, cancel).await;
    drop(authenticator);
    drop(key_temp);
    if let Some(t) = tenant {
        let seen = t.stats();
        progress.note(&format!(
            "rehearsal tenant: {} security-key assertion(s) received, {} sign-in attempt(s) recorded",
            seen.assertions, seen.signin_attempts
        ));
        t.shutdown().await;
    }
    Ok(outcome)
}

/// The app registration's credentials for the [entra] tenant: its
/// secret, or its certificate loaded for client assertions. `Err` names
/// the field and why.
pub fn entra_credentials(
    e: &crate::config::EntraConfig,
) -> Result<AppCredentials, (&'static str, String)> {
    use crate::config::host::EntraCredential;
    let (client_secret, certificate) = match &e.credential {
        EntraCredential::Secret(r) => (
            r.resolve()
                .map_err(|err| ("entra.client_secret", err.to_string()))?,
            None,
        ),
        EntraCredential::Certificate(r, alg) => {
            let pem = r
                .resolve()
                .map_err(|err| ("entra.client_certificate", err.to_string()))?;
            let cert = crate::cloud::token::ClientCertificate::from_pem(&pem, *alg)
                .map_err(|err| ("entra.client_certificate", err))?;
            (SecretString::from(String::new()), Some(cert))
        }
    };
    Ok(AppCredentials {
        authority: e.authority.clone(),
        tenant_id: e.tenant_id.clone(),
        client_id: e.client_id.clone(),
        client_secret,
        certificate,
    })
}

/// The Application ID URI a rehearsal's secure webhook tokens are for.
const REHEARSAL_WEBHOOK_AUDIENCE: &str = "api://glassdrill-rehearsal";

/// One check per expected alert, in the drill's order: the attached
/// webhook checks, and a polling check for every other kind. A drill
/// that also reads Log Analytics confirms alerts naming no account (by
/// rule and window) from the rule's rows.
fn alert_checks(
    drill: &DrillConfig,
    webhooks: &mut [Option<crate::alerts::WebhookCheck>],
    cloud: &CloudEndpoints,
    tokens: &std::sync::Arc<crate::cloud::TokenCache>,
) -> Result<Vec<Box<dyn AlertCheck>>, PlanProblems> {
    let confirmer = || -> Option<Box<dyn crate::alerts::SearchConfirm>> {
        drill
            .alerts
            .iter()
            .find(|a| a.kind == AlertKind::LogAnalytics)
            .and_then(|a| crate::alerts::sources::log_analytics(a, cloud, tokens.clone()))
            .map(|la| Box::new(la) as Box<dyn crate::alerts::SearchConfirm>)
    };
    let mut out: Vec<Box<dyn AlertCheck>> = Vec::new();
    for (a, hook) in drill.alerts.iter().zip(webhooks.iter_mut()) {
        if let Some(h) = hook.take() {
            out.push(Box::new(match confirmer() {
                Some(c) => h.with_confirm(c),
                None => h,
            }));
            continue;
        }
        let check =
            crate::alerts::sources::polling_check(a, cloud, tokens.clone()).map_err(|reason| {
                PlanProblems(vec![PlanProblem::Key {
                    source_file: drill.source.display().to_string(),
                    reason: format!("alert `{}`: {reason}", a.name),
                }])
            })?;
        out.push(Box::new(match (a.kind, confirmer()) {
            (AlertKind::AzureAlerts, Some(c)) => check.with_confirm(c),
            _ => check,
        }));
    }
    Ok(out)
}

/// The rehearsal tenant's account for what presents the credential.
fn tenant_account(
    drill: &DrillConfig,
    p: &Presenter,
) -> Result<crate::tenant::Account, PlanProblems> {
    let problem = |reason: String| {
        PlanProblems(vec![PlanProblem::Key {
            source_file: drill.source.display().to_string(),
            reason,
        }])
    };
    match p {
        Presenter::Virtual(c) => rehearsal_account(&drill.account, c).map_err(|error| {
            PlanProblems(vec![PlanProblem::CredentialKey {
                source_file: drill.source.display().to_string(),
                error,
            }])
        }),
        Presenter::Key(k) => match &k.source {
            crate::authenticator::KeySource::Soft(path) => {
                let (id, user_handle, public_key) = crate::fido::soft::SoftKey::open(path)
                    .registered(&k.cfg.rp_id)
                    .map_err(|e| problem(e.to_string()))?;
                Ok(crate::tenant::account_with(
                    &drill.account,
                    crate::webauthn::StoredCredential {
                        id,
                        public_key,
                        sign_count: 0,
                        user_handle,
                    },
                ))
            }
            crate::authenticator::KeySource::Hid(_) => Err(problem(
                "a `hid` key cannot sign in to the rehearsal tenant".into(),
            )),
        },
    }
}

fn fault_list(f: &[Fault]) -> String {
    if f.is_empty() {
        "none".into()
    } else {
        f.iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    }
}
