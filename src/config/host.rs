//! The host config, `glassdrill.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::{Seg, fields_of};
use super::{Environment, Problem, Problems, Severity, Source, parse_duration, secret_ref};
use crate::secret::SecretRef;
use crate::support::hash::sha256_hex;

#[derive(Deserialize, Default)]
struct RawHost {
    data_dir: Option<Spanned<String>>,
    drills_dir: Option<Spanned<String>>,
    #[serde(default)]
    evidence: RawEvidence,
    #[serde(default)]
    webhook: RawWebhook,
    entra: Option<RawEntra>,
    pagerduty: Option<RawPagerDuty>,
    posture: Option<RawPosture>,
    #[serde(default)]
    browser: RawBrowser,
    #[serde(default)]
    daemon: super::daemon::RawDaemon,
    #[serde(default)]
    notify: super::daemon::RawNotify,
    #[serde(default)]
    state: super::state::RawState,
    #[serde(default)]
    tenants: std::collections::BTreeMap<String, RawTenant>,
}

/// `[tenants.<name>]`: an Entra tenant of a fleet of many, with the
/// fields of `[entra]` and its own `[tenants.<name>.posture]`.
#[derive(Deserialize)]
struct RawTenant {
    tenant_id: String,
    authority: Option<Spanned<String>>,
    graph: Option<Spanned<String>>,
    management: Option<Spanned<String>>,
    log_analytics: Option<Spanned<String>>,
    client_id: String,
    client_secret: Option<Spanned<String>>,
    client_certificate: Option<Spanned<String>>,
    client_assertion_alg: Option<Spanned<String>>,
    posture: Option<RawPosture>,
}

#[derive(Deserialize, Default)]
struct RawEvidence {
    signing_key: Option<String>,
    signer: Option<String>,
    allowed_signers: Option<String>,
    audit_window: Option<Spanned<String>>,
    controls: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct RawWebhook {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
    secure_audience: Option<Vec<String>>,
    secure_issuer: Option<Vec<String>>,
    secure_jwks: Option<Spanned<String>>,
    secure_role: Option<String>,
}

#[derive(Deserialize)]
struct RawPosture {
    group_id: Option<String>,
    alert_rule: Option<String>,
    #[serde(default)]
    allowed_aaguids: Vec<String>,
    #[serde(default)]
    accounts: Vec<RawPostureAccount>,
}

#[derive(Deserialize)]
struct RawPostureAccount {
    object_id: Spanned<String>,
    upn: String,
}

#[derive(Deserialize)]
struct RawPagerDuty {
    api: Option<Spanned<String>>,
    api_key: Spanned<String>,
}

#[derive(Deserialize)]
struct RawEntra {
    tenant_id: String,
    authority: Option<Spanned<String>>,
    graph: Option<Spanned<String>>,
    management: Option<Spanned<String>>,
    log_analytics: Option<Spanned<String>>,
    client_id: String,
    client_secret: Option<Spanned<String>>,
    client_certificate: Option<Spanned<String>>,
    client_assertion_alg: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
struct RawBrowser {
    chromium: Option<String>,
    chromedriver: Option<String>,
    step_timeout: Option<Spanned<String>>,
    temp_dir: Option<String>,
}

/// The validated host config.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The file it came from; `None` means built-in defaults.
    pub source: Option<PathBuf>,
    /// Keys, state and evidence live here.
    pub data_dir: PathBuf,
    /// Drill files (`*.toml`).
    pub drills_dir: PathBuf,
    /// Evidence signing.
    pub evidence: EvidenceConfig,
    /// The built-in webhook receiver.
    pub webhook: WebhookConfig,
    /// A real Entra tenant, when configured.
    pub entra: Option<EntraConfig>,
    /// PagerDuty's REST API, for `pagerduty` alert checks.
    pub pagerduty: Option<PagerDutyConfig>,
    /// The break-glass accounts of the [entra] tenant, named explicitly,
    /// and what their set-up is checked against.
    pub posture: Option<PostureConfig>,
    /// Browser binaries and timeouts.
    pub browser: BrowserConfig,
    /// The daemon: state, ticks, spacing, metrics, heartbeat.
    pub daemon: super::DaemonConfig,
    /// Where announcements, reports and escalations go.
    pub notify: super::NotifyConfig,
    /// Where the state lives: SQLite (`daemon.state`) or a fleet's
    /// PostgreSQL; this host's name and the fleet's.
    pub state: super::state::StateConfig,
    /// Named Entra tenants (`[tenants.<name>]`), for drills whose
    /// `tenant_name` names one: many tenants on one host or fleet.
    pub tenants: std::collections::BTreeMap<String, TenantConfig>,
    /// SHA-256 of the file's bytes (or of nothing), recorded in evidence.
    pub digest: String,
    /// Problems that do not stop loading (e.g. a secret not provisioned yet).
    pub warnings: Vec<Problem>,
}

/// A named tenant (`[tenants.<name>]`).
#[derive(Debug, Clone)]
pub struct TenantConfig {
    /// Its app registration and endpoints, as `[entra]`.
    pub entra: EntraConfig,
    /// Its break-glass set-up, as `[posture]`.
    pub posture: Option<PostureConfig>,
}

/// Evidence signing settings.
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// OpenSSH Ed25519 private key (created by `glassdrill keygen`).
    pub signing_key: PathBuf,
    /// The principal written to `allowed_signers`.
    pub signer: String,
    /// The signer keys `evidence verify` trusts (an OpenSSH allowed_signers
    /// file: the current key and retired ones with `valid-before`); `None`:
    /// the current key's `.pub`.
    pub allowed_signers: Option<PathBuf>,
    /// Bundles younger than this are never pruned without `--force`.
    pub audit_window: Duration,
    /// The controls a drill evidences, named in reports and exports.
    pub controls: Vec<String>,
}

/// Webhook receiver settings.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Listen address; loopback by default (put a TLS reverse proxy in front).
    pub listen: SocketAddr,
    /// The secret path token; a random one per run when unset.
    pub token: Option<SecretRef>,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    /// Azure Monitor's secure webhook (`POST /webhook` with an Entra
    /// bearer token), when `secure_audience` is set.
    pub secure: Option<crate::alerts::webhook::SecureWebhook>,
}

/// A real Entra tenant.
#[derive(Debug, Clone)]
pub struct EntraConfig {
    /// Directory (tenant) id.
    pub tenant_id: String,
    /// Sign-in authority, `https://login.microsoftonline.com` by default.
    pub authority: String,
    /// Graph base URL, `https://graph.microsoft.com` by default.
    pub graph: String,
    /// Azure Resource Manager, `https://management.azure.com` by default.
    pub management: String,
    /// The Log Analytics query API, `https://api.loganalytics.io` by
    /// default.
    pub log_analytics: String,
    /// App registration with `AuditLog.Read.All`.
    pub client_id: String,
    /// How it proves itself: a client secret or a certificate, by
    /// reference.
    pub credential: EntraCredential,
}

/// An app registration's credential.
#[derive(Debug, Clone)]
pub enum EntraCredential {
    /// A client secret.
    Secret(SecretRef),
    /// A PEM file with the certificate and its RSA private key, signing
    /// JWT client assertions with this algorithm.
    Certificate(SecretRef, crate::cloud::token::AssertionAlg),
}

/// The break-glass set-up to check (`glassdrill posture`).
#[derive(Debug, Clone)]
pub struct PostureConfig {
    /// The accounts, by object id (UPN alongside, for people).
    pub accounts: Vec<crate::posture::Account>,
    /// The break-glass group's object id.
    pub group_id: Option<String>,
    /// The alert rule's resource id.
    pub alert_rule: Option<String>,
    /// The FIDO2 key models allowed (AAGUIDs); empty allows any.
    pub allowed_aaguids: Vec<String>,
}

/// PagerDuty's REST API.
#[derive(Debug, Clone)]
pub struct PagerDutyConfig {
    /// `https://api.pagerduty.com` by default.
    pub api: String,
    /// A read-only REST API key, by reference.
    pub api_key: SecretRef,
}

/// Browser settings.
#[derive(Debug, Clone)]
pub struct BrowserConfig {
    /// Chromium binary.
    pub chromium: PathBuf,
    /// chromedriver binary.
    pub chromedriver: PathBuf,
    /// How long one flow step may wait for its page.
    pub step_timeout: Duration,
    /// Parent of the ephemeral browser profile (system temp dir if unset).
    pub temp_dir: Option<PathBuf>,
}

impl Default for BrowserConfig {
    fn default() -> Self {
        Self {
            chromium: PathBuf::from("/usr/bin/chromium"),
            chromedriver: PathBuf::from("/usr/bin/chromedriver"),
            step_timeout: Duration::from_secs(20),
            temp_dir: None,
        }
    }
}

/// Default body limit of the webhook receiver: Azure Monitor payloads are a
/// few KiB; 256 KiB leaves room without inviting abuse.
pub(crate) const DEFAULT_MAX_BODY: usize = 256 * 1024;

/// Whether secrets may be sent to `u`: https://, or http:// to a loopback
/// or `*.localhost` test server.
pub(crate) fn secure_endpoint(u: &url::Url) -> bool {
    match u.scheme() {
        "https" => u.host().is_some(),
        "http" => match u.host() {
            Some(url::Host::Domain(d)) => crate::support::http::is_localhost_name(d),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// The keys each table of the host config accepts (the parser's schema,
/// also walked by [`accepted_keys`]).
fn host_schema(p: &[Seg]) -> Option<&'static [&'static str]> {
    match p {
        [] => Some(fields_of::<RawHost>()),
        [Seg::Key(k)] if k == "evidence" => Some(fields_of::<RawEvidence>()),
        [Seg::Key(k)] if k == "webhook" => Some(fields_of::<RawWebhook>()),
        [Seg::Key(k)] if k == "entra" => Some(fields_of::<RawEntra>()),
        [Seg::Key(k)] if k == "pagerduty" => Some(fields_of::<RawPagerDuty>()),
        [Seg::Key(k)] if k == "posture" => Some(fields_of::<RawPosture>()),
        [Seg::Key(k), Seg::Key(a), Seg::Index(_)] if k == "posture" && a == "accounts" => {
            Some(fields_of::<RawPostureAccount>())
        }
        [Seg::Key(k)] if k == "browser" => Some(fields_of::<RawBrowser>()),
        [Seg::Key(k)] if k == "daemon" => Some(fields_of::<super::daemon::RawDaemon>()),
        [Seg::Key(k)] if k == "notify" => Some(fields_of::<super::daemon::RawNotify>()),
        [Seg::Key(k)] if k == "state" => Some(fields_of::<super::state::RawState>()),
        // A map: its one documented key stands for any tenant's name.
        [Seg::Key(k)] if k == "tenants" => Some(&["NAME"]),
        [Seg::Key(k), Seg::Key(_)] if k == "tenants" => Some(fields_of::<RawTenant>()),
        [Seg::Key(k), Seg::Key(_), Seg::Key(p)] if k == "tenants" && p == "posture" => {
            Some(fields_of::<RawPosture>())
        }
        [
            Seg::Key(k),
            Seg::Key(_),
            Seg::Key(p),
            Seg::Key(a),
            Seg::Index(_),
        ] if k == "tenants" && p == "posture" && a == "accounts" => {
            Some(fields_of::<RawPostureAccount>())
        }
        [Seg::Key(k), Seg::Key(s)] if k == "notify" && s == "smtp" => {
            Some(fields_of::<super::daemon::RawSmtp>())
        }
        [Seg::Key(k), Seg::Key(w), Seg::Index(_)] if k == "notify" && w == "webhook" => {
            Some(fields_of::<super::daemon::RawChatHook>())
        }
        _ => None,
    }
}

/// Every key the host config accepts, as `table.key` (`key` at the top,
/// `table[].key` in an array of tables): for `glassdrill.toml(5)` and the
/// test that keeps it complete.
pub fn accepted_keys() -> Vec<String> {
    fn walk(path: &mut Vec<Seg>, name: &str, out: &mut Vec<String>) {
        let Some(fields) = host_schema(path) else {
            return;
        };
        for f in fields {
            path.push(Seg::Key((*f).to_owned()));
            let table = host_schema(path).is_some();
            path.push(Seg::Index(0));
            let array = !table && host_schema(path).is_some();
            path.pop();
            let full = if name.is_empty() {
                (*f).to_owned()
            } else {
                format!("{name}.{f}")
            };
            if table {
                walk(path, &full, out);
            } else if array {
                path.push(Seg::Index(0));
                walk(path, &format!("{full}[]"), out);
                path.pop();
            } else {
                out.push(full);
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(&mut Vec::new(), "", &mut out);
    out
}

impl HostConfig {
    /// Built-in defaults (no config file).
    pub fn defaults(env: &Environment) -> Self {
        let data_dir = env.default_data_dir();
        let daemon = super::DaemonConfig::defaults(&data_dir);
        Self {
            source: None,
            evidence: EvidenceConfig {
                signing_key: data_dir.join("keys/evidence_ed25519"),
                signer: default_signer(),
                allowed_signers: None,
                audit_window: Duration::from_secs(400 * 86_400),
                controls: crate::evidence::DEFAULT_CONTROLS
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect(),
            },
            data_dir,
            drills_dir: env.cwd.join("drills"),
            webhook: WebhookConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: None,
                max_body_bytes: DEFAULT_MAX_BODY,
                secure: None,
            },
            entra: None,
            pagerduty: None,
            posture: None,
            browser: BrowserConfig::default(),
            daemon,
            notify: super::NotifyConfig::default(),
            state: super::state::StateConfig::default(),
            tenants: std::collections::BTreeMap::new(),
            digest: sha256_hex(b""),
            warnings: Vec::new(),
        }
    }

    /// Finds and loads the host config: `explicit`, else the lookup order
    /// of [`Environment::config_candidates`], else defaults.
    pub(crate) fn locate(explicit: Option<&Path>, env: &Environment) -> Result<Self, Problems> {
        if let Some(p) = explicit {
            return Self::load(p, env);
        }
        for c in env.config_candidates() {
            if c.is_file() {
                return Self::load(&c, env);
            }
        }
        Ok(Self::defaults(env))
    }

    /// Loads one host config file.
    pub fn load(path: &Path, env: &Environment) -> Result<Self, Problems> {
        let text = super::diag::read_config(path, "host config", "; check --config")?;
        Self::parse(path, &text, env)
    }

    /// Parses and validates host config text.
    pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Self, Problems> {
        let src = Source::new(path, text);
        let raw: RawHost = src.parse(&host_schema).map_err(Problems)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| env.cwd.clone());
        let base = if base.as_os_str().is_empty() {
            env.cwd.clone()
        } else {
            base
        };
        let mut problems = Vec::new();
        let mut cfg = Self::defaults(env);
        cfg.source = Some(path.to_path_buf());
        cfg.digest = sha256_hex(text.as_bytes());
        cfg.drills_dir = base.join("drills");
        if let Some(d) = &raw.data_dir {
            cfg.data_dir = base.join(d.get_ref());
            cfg.evidence.signing_key = cfg.data_dir.join("keys/evidence_ed25519");
        }
        if let Some(d) = &raw.drills_dir {
            cfg.drills_dir = base.join(d.get_ref());
        }
        if let Some(k) = raw.evidence.signing_key {
            cfg.evidence.signing_key = base.join(k);
        }
        if let Some(a) = raw.evidence.allowed_signers {
            cfg.evidence.allowed_signers = Some(base.join(a));
        }
        if let Some(c) = raw.evidence.controls {
            cfg.evidence.controls = c;
        }
        if let Some(w) = &raw.evidence.audit_window {
            match parse_duration(
                &src,
                "evidence.audit_window",
                w,
                Duration::from_secs(100 * 365 * 86_400),
            ) {
                Ok(d) => cfg.evidence.audit_window = d,
                Err(p) => problems.push(p),
            }
        }
        if let Some(s) = raw.evidence.signer {
            cfg.evidence.signer = s;
        }
        if let Some(l) = &raw.webhook.listen {
            match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => {
                    if !a.ip().is_loopback() {
                        problems.push(src.problem(
                            l.span().start,
                            Severity::Warning,
                            format!(
                                "webhook.listen: `{a}` is reachable from other hosts over plain HTTP; keep the receiver on loopback and put a reverse proxy with TLS in front of it"
                            ),
                        ));
                    }
                    cfg.webhook.listen = a;
                }
                Err(_) => problems.push(src.error(
                    l.span().start,
                    format!(
                        "webhook.listen: `{}` is not an address; write it like `127.0.0.1:8765`",
                        l.get_ref()
                    ),
                )),
            }
        }
        if let Some(t) = &raw.webhook.token {
            cfg.webhook.token = secret_ref(&src, "webhook.token", t, false, &mut problems);
        }
        if let Some(m) = &raw.webhook.max_body_bytes {
            let v = *m.get_ref();
            if !(1024..=16 * 1024 * 1024).contains(&v) {
                problems.push(src.error(
                    m.span().start,
                    "webhook.max_body_bytes must be between 1024 and 16777216",
                ));
            } else {
                cfg.webhook.max_body_bytes = usize::try_from(v).unwrap_or(DEFAULT_MAX_BODY);
            }
        }
        let url_field = |field: &str,
                         v: &Option<Spanned<String>>,
                         default: &str,
                         problems: &mut Vec<Problem>| {
            match v {
                None => default.to_owned(),
                Some(s) => match url::Url::parse(s.get_ref()) {
                    Ok(u) if secure_endpoint(&u) => s.get_ref().trim_end_matches('/').to_owned(),
                    Ok(_) => {
                        problems.push(src.error(
                                s.span().start,
                                format!(
                                    "{field}: `{}` is not an https:// URL; the client secret and tokens travel to it (plain http:// is accepted only for loopback and *.localhost test servers)",
                                    s.get_ref()
                                ),
                            ));
                        default.to_owned()
                    }
                    Err(err) => {
                        problems.push(src.error(
                            s.span().start,
                            format!("{field}: {err}; write a full https:// URL"),
                        ));
                        default.to_owned()
                    }
                },
            }
        };
        let parse_entra = |e: RawEntra,
                           prefix: &str,
                           problems: &mut Vec<Problem>|
         -> Option<EntraConfig> {
            let authority = url_field(
                &format!("{prefix}.authority"),
                &e.authority,
                "https://login.microsoftonline.com",
                problems,
            );
            let graph = url_field(
                &format!("{prefix}.graph"),
                &e.graph,
                "https://graph.microsoft.com",
                problems,
            );
            let management = url_field(
                &format!("{prefix}.management"),
                &e.management,
                "https://management.azure.com",
                problems,
            );
            let log_analytics = url_field(
                &format!("{prefix}.log_analytics"),
                &e.log_analytics,
                "https://api.loganalytics.io",
                problems,
            );
            let alg = match e
                .client_assertion_alg
                .as_ref()
                .map(|a| a.get_ref().as_str())
            {
                None | Some("PS256") => crate::cloud::token::AssertionAlg::Ps256,
                Some("RS256") => crate::cloud::token::AssertionAlg::Rs256,
                Some(other) => {
                    problems.push(src.error(
                        e.client_assertion_alg.as_ref().map_or(0, |a| a.span().start),
                        format!("{prefix}.client_assertion_alg `{other}` is not known; use PS256 or RS256"),
                    ));
                    crate::cloud::token::AssertionAlg::Ps256
                }
            };
            let credential = match (&e.client_secret, &e.client_certificate) {
                (Some(sec), None) => secret_ref(
                    &src,
                    &format!("{prefix}.client_secret"),
                    sec,
                    false,
                    problems,
                )
                .map(EntraCredential::Secret),
                (None, Some(cert)) => secret_ref(
                    &src,
                    &format!("{prefix}.client_certificate"),
                    cert,
                    false,
                    problems,
                )
                .map(|r| EntraCredential::Certificate(r, alg)),
                (Some(sec), Some(_)) => {
                    problems.push(src.error(
                        sec.span().start,
                        format!("{prefix}: give client_secret or client_certificate, not both"),
                    ));
                    None
                }
                (None, None) => {
                    problems.push(src.error(
                        0,
                        format!("{prefix} needs client_secret or client_certificate (a PEM file with the app's certificate and private key, by reference)"),
                    ));
                    None
                }
            };
            credential.map(|credential| EntraConfig {
                tenant_id: e.tenant_id,
                authority,
                graph,
                management,
                log_analytics,
                client_id: e.client_id,
                credential,
            })
        };
        cfg.entra = raw
            .entra
            .and_then(|e| parse_entra(e, "entra", &mut problems));
        if let Some(aud) = raw.webhook.secure_audience.filter(|a| !a.is_empty()) {
            // Defaults from [entra]: Entra's v2 and v1 issuers and its keys.
            let entra = cfg.entra.as_ref();
            let issuers = raw.webhook.secure_issuer.unwrap_or_else(|| {
                entra
                    .map(|e| {
                        vec![
                            format!("{}/{}/v2.0", e.authority, e.tenant_id),
                            format!("https://sts.windows.net/{}/", e.tenant_id),
                        ]
                    })
                    .unwrap_or_default()
            });
            let jwks = match &raw.webhook.secure_jwks {
                Some(j) => Some(url_field(
                    "webhook.secure_jwks",
                    &Some(j.clone()),
                    "",
                    &mut problems,
                )),
                None => {
                    entra.map(|e| format!("{}/{}/discovery/v2.0/keys", e.authority, e.tenant_id))
                }
            };
            match jwks.filter(|j| !j.is_empty()) {
                Some(jwks_url) if !issuers.is_empty() => {
                    cfg.webhook.secure = Some(crate::alerts::webhook::SecureWebhook {
                        jwks_url,
                        issuers,
                        audiences: aud,
                        role: raw
                            .webhook
                            .secure_role
                            .unwrap_or_else(|| crate::alerts::webhook::SECURE_WEBHOOK_ROLE.to_owned()),
                    });
                }
                _ => problems.push(src.error(
                    0,
                    "webhook.secure_audience is set, but the token's issuer and keys are unknown: configure [entra] (tenant_id, authority) or set webhook.secure_issuer and webhook.secure_jwks",
                )),
            }
        }
        let parse_posture = |p: RawPosture,
                             prefix: &str,
                             problems: &mut Vec<Problem>|
         -> PostureConfig {
            let mut accounts = Vec::new();
            for a in p.accounts {
                match uuid::Uuid::parse_str(a.object_id.get_ref().trim()) {
                    Ok(u) => accounts.push(crate::posture::Account {
                        object_id: u.hyphenated().to_string(),
                        upn: a.upn,
                    }),
                    Err(_) => problems.push(src.error(
                        a.object_id.span().start,
                        format!("{prefix}.accounts.object_id `{}` is not a GUID: copy the account's Object ID from the Entra admin center", a.object_id.get_ref()),
                    )),
                }
            }
            if accounts.is_empty() {
                problems.push(src.error(
                    0,
                    format!("[{prefix}] lists no accounts: name every break-glass account with [[{prefix}.accounts]] object_id and upn (nothing is inferred)"),
                ));
            }
            PostureConfig {
                accounts,
                group_id: p.group_id,
                alert_rule: p.alert_rule,
                allowed_aaguids: p.allowed_aaguids,
            }
        };
        cfg.posture = raw
            .posture
            .map(|p| parse_posture(p, "posture", &mut problems));
        for (name, t) in raw.tenants {
            if !super::state::name_ok(&name) {
                problems.push(src.error(
                    0,
                    format!("[tenants.{name}]: name tenants with letters, digits, `.`, `-` and `_` (at most 64)"),
                ));
                continue;
            }
            let prefix = format!("tenants.{name}");
            let entra = RawEntra {
                tenant_id: t.tenant_id,
                authority: t.authority,
                graph: t.graph,
                management: t.management,
                log_analytics: t.log_analytics,
                client_id: t.client_id,
                client_secret: t.client_secret,
                client_certificate: t.client_certificate,
                client_assertion_alg: t.client_assertion_alg,
            };
            let posture = t
                .posture
                .map(|p| parse_posture(p, &format!("{prefix}.posture"), &mut problems));
            if let Some(entra) = parse_entra(entra, &prefix, &mut problems) {
                cfg.tenants.insert(name, TenantConfig { entra, posture });
            }
        }
        if let Some(pd) = raw.pagerduty {
            let api = url_field(
                "pagerduty.api",
                &pd.api,
                "https://api.pagerduty.com",
                &mut problems,
            );
            cfg.pagerduty =
                secret_ref(&src, "pagerduty.api_key", &pd.api_key, false, &mut problems)
                    .map(|api_key| PagerDutyConfig { api, api_key });
        }
        if let Some(c) = raw.browser.chromium {
            cfg.browser.chromium = PathBuf::from(c);
        }
        if let Some(c) = raw.browser.chromedriver {
            cfg.browser.chromedriver = PathBuf::from(c);
        }
        if let Some(t) = raw.browser.temp_dir {
            cfg.browser.temp_dir = Some(base.join(t));
        }
        cfg.daemon =
            super::daemon::parse_daemon(&src, raw.daemon, &base, &cfg.data_dir, &mut problems);
        cfg.notify = super::daemon::parse_notify(&src, raw.notify, &mut problems);
        cfg.state = super::state::parse_state(&src, raw.state, &base, &mut problems);
        if let Some(t) = &raw.browser.step_timeout {
            match parse_duration(&src, "browser.step_timeout", t, super::MAX_STEP_TIMEOUT) {
                Ok(d) => cfg.browser.step_timeout = d,
                Err(p) => problems.push(p),
            }
        }
        let problems = Problems(problems);
        if problems.has_errors() {
            Err(problems)
        } else {
            cfg.warnings = problems.0;
            Ok(cfg)
        }
    }

    /// The Entra tenant `drill` signs in to: `[tenants.<tenant_name>]`,
    /// else `[entra]`; `Err` names what is missing.
    pub fn entra_for(&self, drill: &super::DrillConfig) -> Result<&EntraConfig, String> {
        match &drill.tenant_name {
            Some(n) => self.tenants.get(n).map(|t| &t.entra).ok_or_else(|| {
                format!(
                    "drill {} names tenant_name = \"{n}\", but the host config has no [tenants.{n}]; add it (the fields of [entra]) to glassdrill.toml",
                    drill.id
                )
            }),
            None => self.entra.as_ref().ok_or_else(|| {
                format!(
                    "drill {} signs in to Entra, but the host config has no [entra] table; see deploy/glassdrill.toml",
                    drill.id
                )
            }),
        }
    }

    /// The posture settings of `tenant` (`None`: `[posture]`).
    pub fn posture_for(&self, tenant: Option<&str>) -> Option<&PostureConfig> {
        match tenant {
            Some(n) => self.tenants.get(n).and_then(|t| t.posture.as_ref()),
            None => self.posture.as_ref(),
        }
    }

    /// Where evidence bundles go.
    pub fn evidence_dir(&self) -> PathBuf {
        self.data_dir.join("evidence")
    }
}

fn default_signer() -> String {
    format!("glassdrill@{}", super::state::hostname())
}
