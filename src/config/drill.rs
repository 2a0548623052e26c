//! Drill files, `drills/*.toml`: one account, its flow, authenticator and
//! expected alerts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::diag::{Seg, fields_of};
use super::{
    ENTRA_FLOW, Flow, Problem, Problems, REHEARSAL_DRILL, Severity, Source, TenantKind,
    parse_duration, secret_ref,
};
use crate::secret::SecretRef;

#[derive(Deserialize)]
struct RawDrill {
    id: Spanned<String>,
    /// `account = "upn"`, or `[account] upn = …, object_id = …`.
    account: Spanned<toml::Value>,
    group: Option<String>,
    description: Option<String>,
    tenant: Option<Spanned<String>>,
    tenant_name: Option<Spanned<String>>,
    flow: Spanned<String>,
    start_url: Option<String>,
    confirm_deadline: Option<Spanned<String>>,
    authenticator: Spanned<RawAuthenticator>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
    #[serde(default)]
    schedule: super::schedule::RawSchedule,
}

#[derive(Deserialize)]
struct RawAuthenticator {
    kind: Spanned<String>,
    private_key: Option<Spanned<String>>,
    credential_id: Option<Spanned<String>>,
    rp_id: Option<String>,
    user_handle: Option<Spanned<String>>,
    pin: Option<Spanned<String>>,
    touch_timeout: Option<Spanned<String>>,
    touch_command: Option<Vec<String>>,
    max_pin_retries: Option<u32>,
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    name: Spanned<String>,
    aaguid: Option<Spanned<String>>,
    credential_id: Option<Spanned<String>>,
    device: Option<String>,
    state: Option<String>,
    pin: Option<Spanned<String>>,
}

#[derive(Deserialize)]
struct RawAlert {
    kind: Spanned<String>,
    name: String,
    rule: Option<Spanned<String>>,
    deadline: Spanned<String>,
    workspace: Option<Spanned<String>>,
    query: Option<String>,
    mailbox: Option<Spanned<String>>,
    sender: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
}

/// How the drill presents the credential.
#[derive(Debug, Clone)]
pub enum AuthenticatorConfig {
    /// WebDriver virtual authenticator. Without `private_key` (rehearsal
    /// only) a fresh credential is made and registered for the run.
    Virtual(Option<VirtualCredential>),
    /// A FIDO2 key behind the WebAuthn bridge (`hid` or `soft`).
    Key(KeyConfig),
}

/// `hid` or `soft`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A USB security key.
    Hid,
    /// The software key (CI, rehearsals).
    Soft,
}

/// A drill's keys behind the bridge.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// `hid` or `soft`.
    pub kind: KeyKind,
    /// RP id (Entra: `login.microsoft.com`).
    pub rp_id: String,
    /// The account's user handle, when known.
    pub user_handle: Option<Vec<u8>>,
    /// How long the key may wait for its touch.
    pub touch_timeout: Duration,
    /// An actuator run when a touch is needed.
    pub touch_command: Option<Vec<String>>,
    /// The keys' maximum PIN retries.
    pub max_pin_retries: u32,
    /// The registered keys (none: a rehearsal makes a soft key per run).
    pub keys: Vec<KeyEntry>,
}

/// One registered key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its name (as in `schedule.keys`).
    pub name: String,
    /// AAGUID (lower-case 8-4-4-4-12).
    pub aaguid: Option<String>,
    /// Its credential id for the account.
    pub credential_id: Option<Vec<u8>>,
    /// A fixed device path (`hid`).
    pub device: Option<String>,
    /// The state file (`soft`).
    pub state: Option<PathBuf>,
    /// Its PIN, by reference.
    pub pin: Option<SecretRef>,
}

impl KeyConfig {
    /// A rehearsal's soft key, made for each run.
    pub fn rehearsal_soft() -> Self {
        Self {
            kind: KeyKind::Soft,
            rp_id: crate::tenant::RP_ID.to_owned(),
            user_handle: None,
            touch_timeout: Duration::from_secs(30),
            touch_command: None,
            max_pin_retries: crate::fido::DEFAULT_MAX_PIN_RETRIES,
            keys: Vec::new(),
        }
    }

    /// The entry for `name`, or the only one.
    pub fn entry(&self, name: Option<&str>) -> Option<&KeyEntry> {
        match name {
            Some(n) => self.keys.iter().find(|k| k.name == n),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

/// A credential loaded into the virtual authenticator.
#[derive(Debug, Clone)]
pub struct VirtualCredential {
    /// PKCS#8 DER P-256 private key, by reference.
    pub private_key: SecretRef,
    /// Credential id bytes.
    pub credential_id: Vec<u8>,
    /// Relying party id the credential is scoped to.
    pub rp_id: String,
    /// User handle bytes.
    pub user_handle: Vec<u8>,
}

/// An alert the drill expects, with its deadline after the sign-in.
#[derive(Debug, Clone)]
pub struct ExpectedAlert {
    /// Check kind.
    pub kind: AlertKind,
    /// Human name (shown in reports).
    pub name: String,
    /// The alert rule whose alert counts, by name (`essentials.alertRule`)
    /// or resource id (its last segment is the name): an alert from any
    /// other rule never counts, even when it names the account.
    pub rule: String,
    /// How long after the sign-in the alert may take.
    pub deadline: Duration,
    /// `log-analytics`: the workspace id.
    pub workspace: Option<String>,
    /// `log-analytics`: the KQL (`{object_id}`, `{upn}`), or the default.
    pub query: Option<String>,
    /// `mailbox`: the mailbox (user id or UPN) the action group mails.
    pub mailbox: Option<String>,
    /// `mailbox`: text the subject contains.
    pub subject: Option<String>,
    /// Polling kinds: time between polls (never faster than the API's
    /// documented limit allows).
    pub every: Duration,
}

impl ExpectedAlert {
    /// An expected alert of `kind` from `rule`, with no kind-specific
    /// settings and the default poll interval.
    pub fn new(kind: AlertKind, name: &str, rule: &str, deadline: Duration) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            rule: rule.to_owned(),
            deadline,
            workspace: None,
            query: None,
            mailbox: None,
            subject: None,
            every: Duration::from_secs(15),
        }
    }
}

/// Alert check kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The built-in Azure Monitor webhook receiver.
    Webhook,
    /// The Graph sign-in log: the sign-in logged.
    GraphSignIn,
    /// Azure Resource Manager Alerts Management: the rule's alert raised.
    AzureAlerts,
    /// The Log Analytics query API: the sign-in's row in the workspace.
    LogAnalytics,
    /// Graph `security/alerts_v2`: Defender / Sentinel alerts.
    GraphSecurity,
    /// A mailbox the action group mails, through Graph.
    Mailbox,
    /// PagerDuty incidents.
    PagerDuty,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [AlertKind; 7] = [
        Self::Webhook,
        Self::GraphSignIn,
        Self::AzureAlerts,
        Self::LogAnalytics,
        Self::GraphSecurity,
        Self::Mailbox,
        Self::PagerDuty,
    ];

    /// The kind's name, as in drill files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::GraphSignIn => "graph-signin",
            Self::AzureAlerts => "azure-alerts",
            Self::LogAnalytics => "log-analytics",
            Self::GraphSecurity => "graph-security",
            Self::Mailbox => "mailbox",
            Self::PagerDuty => "pagerduty",
        }
    }

    /// The kind of this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What `rule` names for this kind.
    fn rule_means(self) -> &'static str {
        match self {
            Self::Webhook | Self::AzureAlerts | Self::LogAnalytics => {
                "the alert rule whose alert counts (its name as in essentials.alertRule, or its resource id)"
            }
            Self::GraphSignIn => "nothing (the sign-in log)",
            Self::GraphSecurity => "the title of the Defender or Sentinel alert that counts",
            Self::Mailbox => "the sender (`sender`)",
            Self::PagerDuty => "the PagerDuty service id (`service`)",
        }
    }
}

/// SHA-256 over a drill file's bytes followed by its flow file's, computed
/// on first use: `status` and the daemon's ticks read thousands of drill
/// files and never need it. The flow text is shared by every drill that
/// names the flow.
#[derive(Clone)]
pub struct DrillDigest(std::sync::Arc<DigestInner>);

struct DigestInner {
    drill: String,
    flow: Option<std::sync::Arc<str>>,
    done: std::sync::OnceLock<String>,
}

impl DrillDigest {
    fn new(drill: &str, flow: Option<std::sync::Arc<str>>) -> Self {
        Self(std::sync::Arc::new(DigestInner {
            drill: drill.to_owned(),
            flow,
            done: std::sync::OnceLock::new(),
        }))
    }

    /// The lower-case hex SHA-256.
    pub fn sha256(&self) -> &str {
        let i = &*self.0;
        i.done.get_or_init(|| match &i.flow {
            Some(f) => crate::support::hash::sha256_hex_all([i.drill.as_bytes(), f.as_bytes()]),
            None => crate::support::hash::sha256_hex(i.drill.as_bytes()),
        })
    }
}

impl std::fmt::Debug for DrillDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.sha256())
    }
}

/// A validated drill.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    /// Drill id (also the evidence directory name).
    pub id: String,
    /// Account UPN.
    pub account: String,
    /// The account's object id (a GUID; lower-case): the sign-in log's
    /// `userId`, what alerts name besides the UPN. Required for Entra
    /// drills; the rehearsal account's by default for rehearsals.
    pub object_id: Option<String>,
    /// Accounts in one group are never drilled close together.
    pub group: String,
    /// Free text for reports.
    pub description: String,
    /// Which tenant.
    pub tenant: TenantKind,
    /// The tenant's name in a fleet of many: an Entra drill signs in with
    /// `[tenants.<name>]` of the host config (not `[entra]`); for every
    /// drill, what `status --tenant` and the metrics' `tenant` label say,
    /// and the scope of its group.
    pub tenant_name: Option<String>,
    /// The sign-in flow.
    pub flow: std::sync::Arc<Flow>,
    /// Start URL template (`{authority}`, `{tenant_id}`, `{upn}`); the
    /// flow's own when unset.
    pub start_url: String,
    /// How long the sign-in may take to appear in the sign-in log.
    pub confirm_deadline: Duration,
    /// The authenticator.
    pub authenticator: AuthenticatorConfig,
    /// Expected alerts.
    pub alerts: Vec<ExpectedAlert>,
    /// When the daemon runs it.
    pub schedule: super::ScheduleConfig,
    /// The drill file.
    pub source: PathBuf,
    /// SHA-256 over the drill file and flow file bytes (computed when a
    /// run records it, not for every scan of the drills).
    pub digest: DrillDigest,
    /// Problems that do not stop loading (shown by `check-config`).
    pub warnings: Vec<Problem>,
}

fn base64url(src: &Source<'_>, field: &str, v: &Spanned<String>) -> Result<Vec<u8>, Problem> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.get_ref().trim_end_matches('='))
        .map_err(|_| {
            src.error(
                v.span().start,
                format!("{field} must be base64url (as WebAuthn shows credential ids)"),
            )
        })
}

/// Validates `[authenticator]` of kind `hid` or `soft`.
fn key_config(
    src: &Source<'_>,
    kind: KeyKind,
    a: &RawAuthenticator,
    tenant: TenantKind,
    problems: &mut Vec<Problem>,
) -> AuthenticatorConfig {
    let kind_name = if kind == KeyKind::Hid { "hid" } else { "soft" };
    let at = a.kind.span().start;
    if a.private_key.is_some() || a.credential_id.is_some() {
        problems.push(src.error(
            at,
            format!("authenticator kind `{kind_name}` takes its credential from the key: name it in [[authenticator.keys]] (credential_id there), not private_key/credential_id"),
        ));
    }
    let rp_id = match (&a.rp_id, tenant) {
        (Some(r), _) => r.trim().to_ascii_lowercase(),
        (None, TenantKind::Entra) => "login.microsoft.com".to_owned(),
        (None, TenantKind::Rehearsal) => crate::tenant::RP_ID.to_owned(),
    };
    let user_handle = a.user_handle.as_ref().and_then(|u| {
        base64url(src, "authenticator.user_handle", u)
            .map_err(|p| problems.push(p))
            .ok()
    });
    let touch_timeout = match &a.touch_timeout {
        None => Duration::from_secs(30),
        Some(t) => super::parse_duration(
            src,
            "authenticator.touch_timeout",
            t,
            Duration::from_secs(300),
        )
        .unwrap_or_else(|p| {
            problems.push(p);
            Duration::from_secs(30)
        }),
    };
    if let Some(cmd) = &a.touch_command
        && cmd.first().is_none_or(|p| !Path::new(p).is_absolute())
    {
        problems.push(src.error(
            at,
            "authenticator.touch_command must be a list whose first element is an absolute path, like [\"/usr/local/bin/press-key\", \"--hold\"]",
        ));
    }
    let max_pin_retries = a
        .max_pin_retries
        .unwrap_or(crate::fido::DEFAULT_MAX_PIN_RETRIES);
    if !(1..=255).contains(&max_pin_retries) {
        problems.push(src.error(
            at,
            "authenticator.max_pin_retries must be between 1 and 255 (CTAP2 keys: 8)",
        ));
    }
    let shared_pin = a
        .pin
        .as_ref()
        .and_then(|p| super::secret_ref(src, "authenticator.pin", p, false, problems));
    let mut keys = Vec::new();
    for (i, k) in a.keys.iter().enumerate() {
        let field = |f: &str| format!("authenticator.keys[{i}].{f}");
        let name = k.name.get_ref().trim().to_owned();
        if let Err(why) = crate::support::ids::check(&name) {
            problems.push(src.error(
                k.name.span().start,
                format!("{}: `{name}` {why}", field("name")),
            ));
        }
        if keys.iter().any(|e: &KeyEntry| e.name == name) {
            problems.push(src.error(
                k.name.span().start,
                format!("{}: `{name}` is named twice", field("name")),
            ));
        }
        let aaguid = k.aaguid.as_ref().and_then(|g| match crate::fido::parse_aaguid(g.get_ref()) {
            Some(b) => Some(crate::fido::format_aaguid(&b)),
            None => {
                problems.push(src.error(g.span().start, format!("{} must be an AAGUID like `2fc0579f-8113-47ea-b116-bb5a8db9202a` (`glassdrill keys list` shows it)", field("aaguid"))));
                None
            }
        });
        let credential_id = k.credential_id.as_ref().and_then(|c| {
            base64url(src, &field("credential_id"), c)
                .map_err(|p| problems.push(p))
                .ok()
        });
        let pin = match &k.pin {
            Some(p) => super::secret_ref(src, &field("pin"), p, false, problems),
            None => shared_pin.clone(),
        };
        if pin.is_none() && k.pin.is_none() && a.pin.is_none() {
            problems.push(src.error(k.name.span().start, format!("key `{name}` has no PIN: set authenticator.pin or {} to a secret reference like `credential:{name}-pin`", field("pin"))));
        }
        match kind {
            KeyKind::Hid => {
                if aaguid.is_none() && k.device.is_none() {
                    problems.push(src.error(k.name.span().start, format!("key `{name}`: set {} (from `glassdrill keys list`) or {}, so glassdrill never takes whichever key is attached", field("aaguid"), field("device"))));
                }
                if k.state.is_some() {
                    problems.push(src.error(
                        k.name.span().start,
                        format!("{} is for `soft` keys only", field("state")),
                    ));
                }
            }
            KeyKind::Soft => {
                if k.state.is_none() {
                    problems.push(src.error(k.name.span().start, format!("key `{name}`: a soft key needs {} (its state file; create one with `glassdrill keys soft-new`)", field("state"))));
                }
            }
        }
        keys.push(KeyEntry {
            name,
            aaguid,
            credential_id,
            device: k.device.clone(),
            state: k.state.as_ref().map(PathBuf::from),
            pin,
        });
    }
    if keys.is_empty() && !(kind == KeyKind::Soft && tenant == TenantKind::Rehearsal) {
        problems.push(src.error(
            at,
            format!("authenticator kind `{kind_name}` needs at least one [[authenticator.keys]] entry (name, aaguid or device, pin)"),
        ));
    }
    AuthenticatorConfig::Key(KeyConfig {
        kind,
        rp_id,
        user_handle,
        touch_timeout,
        touch_command: a.touch_command.clone(),
        max_pin_retries,
        keys,
    })
}

/// Reads a flow file relative to the drill file; the built-in Entra flow is
/// used when `name` is the built-in's file name and no such file exists.
///
/// The flow must resolve (after symlinks) inside the drill file's
/// directory: a drill file cannot make glassdrill read `/etc/shadow`.
fn read_flow(drill_path: &Path, name: &str) -> Result<(PathBuf, String), String> {
    let dir = match drill_path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let path = dir.join(name);
    let root = dir
        .canonicalize()
        .map_err(|e| format!("the drills directory cannot be resolved ({e})"))?;
    match path.canonicalize() {
        Ok(real) if !real.starts_with(&root) => Err(format!(
            "it resolves to {}, outside the drills directory {}; keep flow files under drills/ (like `flows/entra-security-key.toml`)",
            real.display(),
            root.display()
        )),
        Ok(real) => super::diag::read_text(&real)
            .map(|t| (path, t))
            .map_err(|e| e.to_string()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && name == "flows/entra-security-key.toml" =>
        {
            Ok((path, ENTRA_FLOW.to_owned()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Most alerts one drill may expect (each is a concurrent wait).
pub const MAX_ALERTS: usize = 32;

impl DrillConfig {
    /// The tenant as status and metrics name it: its `tenant_name`, else
    /// `entra` (the host's [entra]) or `rehearsal`.
    pub fn tenant_label(&self) -> &str {
        self.tenant_name.as_deref().unwrap_or(match self.tenant {
            TenantKind::Entra => "entra",
            TenantKind::Rehearsal => "rehearsal",
        })
    }

    /// The group as the schedule and the locks know it: a tenant's groups
    /// are its own (two tenants' `break-glass` groups never wait on each
    /// other).
    pub fn group_key(&self) -> String {
        match &self.tenant_name {
            Some(t) => format!("{t}/{}", self.group),
            None => self.group.clone(),
        }
    }

    /// Loads a drill file from disk.
    pub fn load(path: &Path) -> Result<Self, Problems> {
        let text = super::diag::read_config(path, "drill file", "")?;
        Self::parse(path, &text, |name| read_flow(path, name))
    }

    /// Loads a drill file, its flow file read through `flows`.
    fn load_with(path: &Path, flows: &FlowFiles) -> Result<Self, Problems> {
        let text = super::diag::read_config(path, "drill file", "")?;
        Self::parse(path, &text, |name| flows.read(path, name))
    }

    /// The built-in rehearsal drill.
    pub fn rehearsal() -> Result<Self, Problems> {
        Self::parse(Path::new("drills/rehearsal.toml"), REHEARSAL_DRILL, |_| {
            Ok((
                PathBuf::from("drills/flows/entra-security-key.toml"),
                ENTRA_FLOW.to_owned(),
            ))
        })
    }

    /// Parses and validates drill text; `flow_reader` fetches the flow file.
    pub fn parse<T: Into<std::sync::Arc<str>>>(
        path: &Path,
        text: &str,
        flow_reader: impl FnOnce(&str) -> Result<(PathBuf, T), String>,
    ) -> Result<Self, Problems> {
        let src = Source::new(path, text);
        let raw: RawDrill = src
            .parse(&|p: &[Seg]| match p {
                [] => Some(fields_of::<RawDrill>()),
                [Seg::Key(k)] if k == "authenticator" => Some(fields_of::<RawAuthenticator>()),
                [Seg::Key(k), Seg::Key(s), Seg::Index(_)]
                    if k == "authenticator" && s == "keys" =>
                {
                    Some(fields_of::<RawKey>())
                }
                [Seg::Key(k), Seg::Index(_)] if k == "alerts" => Some(fields_of::<RawAlert>()),
                [Seg::Key(k)] if k == "schedule" => {
                    Some(fields_of::<super::schedule::RawSchedule>())
                }
                [Seg::Key(k), Seg::Key(w), Seg::Index(_)] if k == "schedule" && w == "windows" => {
                    Some(fields_of::<super::schedule::RawWindow>())
                }
                _ => None,
            })
            .map_err(Problems)?;
        let mut problems = Vec::new();

        let id = raw.id.get_ref().clone();
        if let Err(why) = crate::support::ids::check(&id) {
            problems.push(src.error(
                raw.id.span().start,
                format!(
                    "id `{id}` {why}: an id is {} (it names the evidence directory)",
                    crate::support::ids::RULE
                ),
            ));
        }
        let at = raw.account.span().start;
        let (account, object_id) = match raw.account.get_ref() {
            toml::Value::String(u) => (u.trim().to_owned(), None),
            toml::Value::Table(t) => {
                for k in t
                    .keys()
                    .filter(|k| !["upn", "object_id"].contains(&k.as_str()))
                {
                    problems.push(src.error(
                        at,
                        format!(
                            "account.{k} is not a known key; [account] takes upn and object_id"
                        ),
                    ));
                }
                let text = |k: &str| {
                    t.get(k)
                        .and_then(toml::Value::as_str)
                        .map(|v| v.trim().to_owned())
                };
                (text("upn").unwrap_or_default(), text("object_id"))
            }
            _ => (String::new(), None),
        };
        if account.split('@').count() != 2 || account.starts_with('@') || account.ends_with('@') {
            problems.push(src.error(
                at,
                "account must be the user principal name, like `bg1@contoso.onmicrosoft.com` (or `[account]` with upn and object_id)",
            ));
        }
        let object_id = match object_id {
            Some(o) => match uuid::Uuid::parse_str(&o) {
                Ok(u) => Some(u.hyphenated().to_string()),
                Err(_) => {
                    problems.push(src.error(
                        at,
                        format!("account.object_id `{o}` is not a GUID: copy the account's Object ID from the Entra admin center (Users → the account)"),
                    ));
                    None
                }
            },
            None => None,
        };
        let tenant = match raw.tenant.as_ref().map(|t| t.get_ref().as_str()) {
            None | Some("entra") => TenantKind::Entra,
            Some("rehearsal") => TenantKind::Rehearsal,
            Some(other) => {
                problems.push(src.error(
                    raw.tenant.as_ref().map_or(0, |t| t.span().start),
                    format!("tenant `{other}` is not known; use `entra` (the host config's [entra]) or `rehearsal`"),
                ));
                TenantKind::Entra
            }
        };
        let tenant_name = match &raw.tenant_name {
            Some(n) if super::state::name_ok(n.get_ref()) => Some(n.get_ref().clone()),
            Some(n) => {
                problems.push(src.error(
                    n.span().start,
                    format!(
                        "tenant_name `{}`: use letters, digits, `.`, `-` and `_` (at most 64): it names [tenants.{}] in glassdrill.toml",
                        n.get_ref(),
                        n.get_ref()
                    ),
                ));
                None
            }
            None => None,
        };
        let confirm_deadline = match &raw.confirm_deadline {
            None => Duration::from_secs(600),
            Some(d) => parse_duration(&src, "confirm_deadline", d, super::MAX_DEADLINE)
                .unwrap_or_else(|p| {
                    problems.push(p);
                    Duration::from_secs(600)
                }),
        };

        let a = raw.authenticator.get_ref();
        let authenticator = match a.kind.get_ref().as_str() {
            "virtual" => {
                if let Some(pk) = &a.private_key {
                    let key =
                        secret_ref(&src, "authenticator.private_key", pk, true, &mut problems);
                    let cid = match &a.credential_id {
                        Some(c) => base64url(&src, "authenticator.credential_id", c).map(Some),
                        None => Err(src.error(
                            raw.authenticator.span().start,
                            "authenticator.credential_id is required with private_key",
                        )),
                    };
                    let uh = match &a.user_handle {
                        Some(u) => base64url(&src, "authenticator.user_handle", u),
                        None => Ok(Vec::new()),
                    };
                    let rp = a.rp_id.clone().ok_or_else(|| {
                        src.error(raw.authenticator.span().start, "authenticator.rp_id is required with private_key (Entra: `login.microsoft.com`)")
                    });
                    match (key, cid, uh, rp) {
                        (
                            Some(private_key),
                            Ok(Some(credential_id)),
                            Ok(user_handle),
                            Ok(rp_id),
                        ) => AuthenticatorConfig::Virtual(Some(VirtualCredential {
                            private_key,
                            credential_id,
                            rp_id,
                            user_handle,
                        })),
                        (_, c, u, r) => {
                            problems.extend(c.err());
                            problems.extend(u.err());
                            problems.extend(r.err());
                            AuthenticatorConfig::Virtual(None)
                        }
                    }
                } else {
                    if tenant != TenantKind::Rehearsal {
                        problems.push(src.error(
                            raw.authenticator.span().start,
                            "a virtual authenticator needs private_key, credential_id and rp_id outside the rehearsal tenant",
                        ));
                    }
                    AuthenticatorConfig::Virtual(None)
                }
            }
            "hid" => key_config(&src, KeyKind::Hid, a, tenant, &mut problems),
            "soft" => key_config(&src, KeyKind::Soft, a, tenant, &mut problems),
            "native" => {
                problems.push(src.error(
                    a.kind.span().start,
                    "authenticator kind `native` is not available in this version yet; use `hid` (the key through glassdrill's bridge)",
                ));
                AuthenticatorConfig::Virtual(None)
            }
            other => {
                problems.push(src.error(
                    a.kind.span().start,
                    format!("authenticator kind `{other}` is not known; use `hid` (a security key), `soft` (the software key) or `virtual`"),
                ));
                AuthenticatorConfig::Virtual(None)
            }
        };

        let mut alerts: Vec<ExpectedAlert> = Vec::new();
        for al in &raw.alerts {
            let at = al.kind.span().start;
            let kind = AlertKind::from_name(al.kind.get_ref());
            if kind.is_none() {
                let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.name()).collect();
                problems.push(src.error(
                    at,
                    format!(
                        "alert kind `{}` is not known; use one of: {}",
                        al.kind.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
            let text = |v: &Option<Spanned<String>>| {
                v.as_ref()
                    .map(|s| s.get_ref().trim().to_owned())
                    .filter(|s| !s.is_empty())
            };
            let need = |problems: &mut Vec<Problem>, field: &str, v: &Option<Spanned<String>>| {
                let got = text(v);
                if got.is_none() {
                    problems.push(src.error(
                        at,
                        format!(
                            "alerts.{field} is missing for {} alert `{}`",
                            al.kind.get_ref(),
                            al.name
                        ),
                    ));
                }
                got
            };
            // Each kind's source: what `rule` holds for it.
            let rule = match kind {
                Some(AlertKind::GraphSignIn) => Some(crate::alerts::sources::SIGNIN_LOG.to_owned()),
                Some(AlertKind::Mailbox) => need(&mut problems, "sender", &al.sender),
                Some(AlertKind::PagerDuty) => need(&mut problems, "service", &al.service),
                Some(AlertKind::LogAnalytics) => {
                    Some(text(&al.rule).unwrap_or_else(|| "Log Analytics sign-in row".to_owned()))
                }
                Some(k) => {
                    let r = text(&al.rule);
                    if r.is_none() {
                        problems.push(src.error(
                            at,
                            format!(
                                "alerts.rule is missing for alert `{}`: name {}, so an alert from another rule that names the account is not taken for it",
                                al.name,
                                k.rule_means()
                            ),
                        ));
                    }
                    r
                }
                None => None,
            };
            let workspace = match kind {
                Some(AlertKind::LogAnalytics) => need(&mut problems, "workspace", &al.workspace),
                _ => text(&al.workspace),
            };
            let (mailbox, subject) = match kind {
                Some(AlertKind::Mailbox) => (
                    need(&mut problems, "mailbox", &al.mailbox),
                    need(&mut problems, "subject", &al.subject),
                ),
                _ => (text(&al.mailbox), text(&al.subject)),
            };
            if kind == Some(AlertKind::AzureAlerts)
                && let Some(r) = &rule
                && !r.to_ascii_lowercase().starts_with("/subscriptions/")
            {
                problems.push(src.error(
                    at,
                    format!("alerts.rule `{r}` of azure-alerts alert `{}` must be the alert rule's resource id (/subscriptions/…/scheduledQueryRules/NAME): the Alerts Management API is asked for that rule's alerts", al.name),
                ));
            }
            if let (Some(k), Some(r)) = (kind, &rule)
                && raw.alerts.len() <= MAX_ALERTS
                && alerts
                    .iter()
                    .any(|a| a.kind == k && crate::alerts::same_rule(&a.rule, r))
            {
                problems.push(src.error(
                    al.rule.as_ref().map_or(at, |r| r.span().start),
                    format!("alerts.rule `{r}` is expected twice: one delivery would count for both; give each [[alerts]] entry its own rule"),
                ));
            }
            let every = match &al.every {
                Some(e) => parse_duration(&src, "alerts.every", e, super::MAX_DEADLINE)
                    .unwrap_or_else(|p| {
                        problems.push(p);
                        Duration::from_secs(15)
                    }),
                None => Duration::from_secs(15),
            };
            let deadline =
                parse_duration(&src, "alerts.deadline", &al.deadline, super::MAX_DEADLINE);
            if let (Ok(d), Some(e)) = (&deadline, &al.every)
                && every >= *d
            {
                problems.push(src.error(
                    e.span().start,
                    format!("alerts.every ({}) must be shorter than the deadline ({}), or the alert is looked for once", e.get_ref(), al.deadline.get_ref()),
                ));
            }
            match (kind, deadline, rule) {
                (Some(kind), Ok(deadline), Some(rule)) => alerts.push(ExpectedAlert {
                    kind,
                    name: al.name.clone(),
                    rule,
                    deadline,
                    workspace,
                    query: al.query.clone(),
                    mailbox,
                    subject,
                    every,
                }),
                (_, Err(p), _) => problems.push(p),
                _ => {}
            }
        }
        if raw.alerts.len() > MAX_ALERTS {
            problems.push(src.error(
                0,
                format!(
                    "{} [[alerts]] entries: a drill expects at most {MAX_ALERTS} alerts; split the checks across drills",
                    raw.alerts.len()
                ),
            ));
        }
        if raw.alerts.is_empty() {
            problems.push(src.error(0, "a drill needs at least one [[alerts]] entry: a sign-in nobody is told about proves nothing"));
        }

        let mut schedule = super::schedule::parse(&src, raw.schedule, &mut problems);
        if let AuthenticatorConfig::Key(k) = &authenticator
            && !k.keys.is_empty()
        {
            // The keys the schedule rotates are the registered ones.
            let names: Vec<String> = k.keys.iter().map(|e| e.name.clone()).collect();
            if schedule.keys.is_empty() {
                schedule.keys = names;
            } else if schedule.keys.iter().any(|s| !names.contains(s))
                || names.iter().any(|n| !schedule.keys.contains(n))
            {
                problems.push(src.error(
                    0,
                    format!(
                        "schedule.keys ({}) and the names in [[authenticator.keys]] ({}) must be the same keys; leave schedule.keys out to use every registered key",
                        schedule.keys.join(", "),
                        names.join(", ")
                    ),
                ));
            }
        }

        let mut digest = DrillDigest::new(text, None);
        let flow = match flow_reader(raw.flow.get_ref()) {
            Ok((fpath, ftext)) => {
                let ftext: std::sync::Arc<str> = ftext.into();
                digest = DrillDigest::new(text, Some(ftext.clone()));
                match parse_flow_cached(&fpath, &ftext) {
                    Ok(f) => Some(f),
                    Err(ps) => {
                        problems.extend(ps.0);
                        None
                    }
                }
            }
            Err(e) => {
                problems.push(src.error(
                    raw.flow.span().start,
                    format!(
                        "flow file `{}` cannot be read ({e}); paths are relative to the drill file",
                        raw.flow.get_ref()
                    ),
                ));
                None
            }
        };

        let object_id = match (object_id, tenant) {
            (Some(o), _) => Some(o),
            (None, TenantKind::Rehearsal) => Some(crate::tenant::REHEARSAL_OBJECT_ID.to_owned()),
            (None, TenantKind::Entra) => {
                problems.push(src.error(
                    at,
                    "account.object_id is missing: write `account = { upn = \"…\", object_id = \"…\" }` with the account's Object ID from the Entra admin center (Users → the account), so the sign-in log and alerts are matched on it",
                ));
                None
            }
        };
        let problems = Problems(problems);
        if problems.has_errors() {
            return Err(problems);
        }
        let Some(flow) = flow else {
            return Err(problems);
        };
        let start_url = raw.start_url.unwrap_or_else(|| flow.start_url.clone());
        Ok(Self {
            id,
            account,
            object_id,
            group: raw.group.unwrap_or_else(|| "break-glass".to_owned()),
            description: raw.description.unwrap_or_default(),
            tenant,
            tenant_name,
            flow,
            start_url,
            confirm_deadline,
            authenticator,
            alerts,
            schedule,
            source: path.to_path_buf(),
            digest,
            warnings: problems.0,
        })
    }
}

/// Parses a flow file, once per distinct (path, text): thousands of drill
/// files usually share one or two flows. Pure, so caching is safe.
fn parse_flow_cached(path: &Path, text: &str) -> Result<std::sync::Arc<Flow>, Problems> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cached = (std::sync::Arc<str>, Result<std::sync::Arc<Flow>, Problems>);
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // A hit is the same file with the same text (compared whole: cheaper
    // than hashing it for every drill that names it).
    if let Some((t, hit)) = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(path)
        && **t == *text
    {
        return hit.clone();
    }
    let parsed = Flow::parse(path, text).map(std::sync::Arc::new);
    let mut c = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Bounded: a long-lived daemon re-reads flows that may change.
    if c.len() > 256 {
        c.clear();
    }
    c.insert(
        path.to_path_buf(),
        (std::sync::Arc::from(text), parsed.clone()),
    );
    parsed
}

/// Flow files read once per directory scan: every drill of a directory
/// naming the same flow shares one read (and one path resolution).
#[derive(Default)]
struct FlowFiles(std::sync::Mutex<std::collections::HashMap<String, FlowRead>>);

type FlowRead = Result<(PathBuf, std::sync::Arc<str>), String>;

impl FlowFiles {
    fn read(&self, drill_path: &Path, name: &str) -> FlowRead {
        let dir = drill_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let key = format!("{}\0{name}", dir.display());
        if let Some(hit) = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return hit.clone();
        }
        let got = read_flow(drill_path, name).map(|(p, t)| (p, std::sync::Arc::from(t)));
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, got.clone());
        got
    }
}

/// Loads every `*.toml` drill file in `dir`, collecting all problems.
pub(crate) fn load_drills(dir: &Path) -> (Vec<DrillConfig>, Problems) {
    let mut drills = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                severity: Severity::Error,
                message: format!(
                    "cannot read the drills directory ({e}); set drills_dir in the host config"
                ),
            });
            return (drills, Problems(problems));
        }
    };
    // The directory entry's own type (no stat per file); a symlink is
    // followed.
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.path().extension().is_some_and(|x| x == "toml")
                && e.file_type()
                    .is_ok_and(|t| t.is_file() || (t.is_symlink() && e.path().is_file()))
        })
        .map(|e| e.path())
        .collect();
    paths.sort();
    // Thousands of drill files (a managed-service provider's) load on every
    // core; results keep the sorted order.
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = paths.len().div_ceil(workers).max(64);
    let flows = FlowFiles::default();
    let loaded: Vec<Result<DrillConfig, Problems>> = std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|part| {
                let flows = &flows;
                s.spawn(move || {
                    part.iter()
                        .map(|p| DrillConfig::load_with(p, flows))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(Problems(vec![Problem {
                        file: dir.to_path_buf(),
                        line: 0,
                        column: 0,
                        severity: Severity::Error,
                        message: "glassdrill failed while loading some drill files (a bug); those drills are not loaded".into(),
                    }]))]
                })
            })
            .collect()
    });
    for r in loaded {
        match r {
            Ok(d) => {
                problems.extend(d.warnings.iter().cloned());
                drills.push(d);
            }
            Err(ps) => problems.extend(ps.0),
        }
    }
    let mut seen = std::collections::HashMap::new();
    for d in &drills {
        if let Some(first) = seen.insert(d.id.clone(), d.source.clone()) {
            problems.push(Problem {
                file: d.source.clone(),
                line: 0,
                column: 0,
                severity: Severity::Error,
                message: format!(
                    "drill id `{}` is also used by {}; ids must be unique",
                    d.id,
                    first.display()
                ),
            });
        }
    }
    (drills, Problems(problems))
}

/// Finds a drill by id (or by path to its file).
pub(crate) fn find_drill(dir: &Path, name: &str) -> Result<DrillConfig, Problems> {
    let as_path = Path::new(name);
    if name.ends_with(".toml") && as_path.is_file() {
        return DrillConfig::load(as_path);
    }
    let candidate = dir.join(format!("{name}.toml"));
    if candidate.is_file() {
        let d = DrillConfig::load(&candidate)?;
        if d.id == name {
            return Ok(d);
        }
    }
    let (drills, problems) = load_drills(dir);
    if let Some(d) = drills.into_iter().find(|d| d.id == name) {
        return Ok(d);
    }
    let mut v = problems.0;
    v.push(Problem {
        file: dir.to_path_buf(),
        line: 0,
        column: 0,
        severity: Severity::Error,
        message: format!(
            "no drill with id `{name}` here; list them with `glassdrill check-config`"
        ),
    });
    Err(Problems(v))
}
