//! Host config (`glassdrill.toml`) and drill files (`drills/*.toml`).
//!
//! Two stages, as ripgrep and age do it: serde structs that mirror the TOML
//! (`deny_unknown_fields`, spans kept where validation needs a position),
//! then validated types the rest of the crate uses. Every problem is a
//! [`Problem`] naming file:line:column, what is wrong and how to fix it;
//! loading collects problems across all files so `check-config` can show
//! them at once: every unknown key of a file (see [`Source::parse`]), every
//! validation problem, every file. A syntax error, a missing field or a
//! wrong type still stops that one file, because serde stops there.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::flow::Flow;
use crate::secret::SecretRef;

/// The rehearsal drill shipped in `drills/rehearsal.toml`, built in so that
/// `glassdrill rehearse` needs no configuration.
pub const REHEARSAL_DRILL: &str = include_str!("../drills/rehearsal.toml");
/// The Entra security-key sign-in flow, built in for the same reason.
pub const ENTRA_FLOW: &str = include_str!("../drills/flows/entra-security-key.toml");

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// Usable now, but a drill will fail (e.g. a secret not provisioned yet).
    Warning,
}

/// One problem in one file, with its position and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {sev}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {sev}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Problems found while loading configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Whether any problem is an error (warnings alone do not stop a load).
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A file's text, to turn byte spans into line:column.
pub struct Source<'a> {
    /// The file's path, as shown in messages.
    pub path: &'a Path,
    /// Its text.
    pub text: &'a str,
}

impl Source<'_> {
    /// A problem at a byte offset of this file.
    pub fn problem(
        &self,
        offset: usize,
        severity: Severity,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = line_col(self.text, offset);
        Problem {
            file: self.path.to_path_buf(),
            line,
            column,
            severity,
            message: message.into(),
        }
    }

    /// An error at a byte offset.
    pub fn error(&self, offset: usize, message: impl Into<String>) -> Problem {
        self.problem(offset, Severity::Error, message)
    }

    /// Parses TOML into `T`, turning serde's errors into positioned
    /// problems with a hint for the usual mistakes.
    ///
    /// serde stops at the first error. So that every misspelt key is
    /// reported at once, an unknown key on a `key = value` line of its own
    /// is commented out (same length, so positions stay true) and the text
    /// parsed again; any other error ends the search.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Vec<Problem>> {
        let mut text = self.text.to_owned();
        let mut problems = Vec::new();
        // Bounded: each pass removes one line.
        for _ in 0..=self.text.lines().count() {
            let e = match toml::from_str::<T>(&text) {
                Ok(v) if problems.is_empty() => return Ok(v),
                Ok(_) => return Err(problems),
                Err(e) => e,
            };
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().to_owned();
            let unknown = msg.starts_with("unknown field");
            let hint = if unknown {
                " (check the spelling; the fields this table accepts are listed after `expected`)"
            } else if msg.starts_with("missing field") {
                " (add it; see the commented example in deploy/ or drills/)"
            } else {
                ""
            };
            problems.push(self.error(offset, format!("{msg}{hint}")));
            if !unknown || !comment_out_key_line(&mut text, offset) {
                break;
            }
        }
        Err(problems)
    }
}

/// Comments out the line holding the key at `offset` when that line is a
/// plain `key = value` whose key starts there; false when it cannot (an
/// inline table, a table header), so the caller stops instead of causing
/// follow-on errors.
fn comment_out_key_line(text: &mut String, offset: usize) -> bool {
    let start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(offset..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| offset + i);
    let Some(line) = text.get(start..line_end) else {
        return false;
    };
    let indent = line.len() - line.trim_start().len();
    let multi_line_value = line.contains("\"\"\"")
        || line.contains("\'\'\'")
        || (line.contains('[') && !line.contains(']'));
    if start + indent != offset
        || line.trim_start().starts_with('[')
        || line.contains('{')
        || multi_line_value
    {
        return false;
    }
    // Replace the key's first character with `#` plus padding, so every
    // later byte offset stays where it was.
    let Some(first) = text.get(offset..).and_then(|t| t.chars().next()) else {
        return false;
    };
    let width = first.len_utf8();
    text.replace_range(
        offset..offset + width,
        &format!("#{}", " ".repeat(width - 1)),
    );
    true
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses a duration like `90s`, `15m` or `1h 30m`.
pub fn parse_duration(
    src: &Source<'_>,
    field: &str,
    v: &Spanned<String>,
) -> Result<Duration, Problem> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(src.error(v.span().start, format!("{field} must be longer than zero"))),
        Err(_) => Err(src.error(
            v.span().start,
            format!(
                "{field}: `{}` is not a duration; write it like `90s`, `15m` or `1h 30m`",
                v.get_ref()
            ),
        )),
    }
}

/// Parses a secret reference (an inline secret is an error) and checks it
/// can be read now; one that cannot is only a warning at load time (it may
/// be provisioned later) and becomes an error when a drill runs. `binary`
/// secrets (key files) are read as bytes, others as text.
fn secret_ref(
    src: &Source<'_>,
    field: &str,
    v: &Spanned<String>,
    binary: bool,
    problems: &mut Vec<Problem>,
) -> Option<SecretRef> {
    let at = v.span().start;
    match SecretRef::parse(v.get_ref()) {
        Ok(r) => {
            let readable = if binary {
                r.resolve_bytes().map(drop)
            } else {
                r.resolve().map(drop)
            };
            if let Err(e) = readable {
                problems.push(src.problem(at, Severity::Warning, format!("{field}: {e}")));
            }
            Some(r)
        }
        Err(e) => {
            problems.push(src.error(at, format!("{field}: {e}")));
            None
        }
    }
}

/// Where glassdrill looks for things, read once from the environment so
/// tests can give their own.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The working directory.
    pub cwd: PathBuf,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
}

impl Environment {
    /// The real process environment.
    pub fn from_process() -> Self {
        let non_empty = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            home: non_empty("HOME"),
            xdg_config_home: non_empty("XDG_CONFIG_HOME"),
            xdg_state_home: non_empty("XDG_STATE_HOME"),
        }
    }

    /// Candidate host config files, in lookup order.
    pub fn config_candidates(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cwd.join("glassdrill.toml")];
        if let Some(x) = &self.xdg_config_home {
            v.push(x.join("glassdrill/glassdrill.toml"));
        } else if let Some(h) = &self.home {
            v.push(h.join(".config/glassdrill/glassdrill.toml"));
        }
        v.push(PathBuf::from("/etc/glassdrill/glassdrill.toml"));
        v
    }

    /// `$XDG_STATE_HOME/glassdrill`, else `~/.local/state/glassdrill`.
    pub fn default_data_dir(&self) -> PathBuf {
        if let Some(x) = &self.xdg_state_home {
            x.join("glassdrill")
        } else if let Some(h) = &self.home {
            h.join(".local/state/glassdrill")
        } else {
            self.cwd.join(".glassdrill")
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    data_dir: Option<Spanned<String>>,
    drills_dir: Option<Spanned<String>>,
    #[serde(default)]
    evidence: RawEvidence,
    #[serde(default)]
    webhook: RawWebhook,
    entra: Option<RawEntra>,
    #[serde(default)]
    browser: RawBrowser,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvidence {
    signing_key: Option<String>,
    signer: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    listen: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    max_body_bytes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntra {
    tenant_id: String,
    authority: Option<Spanned<String>>,
    graph: Option<Spanned<String>>,
    client_id: String,
    client_secret: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
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
    /// Browser binaries and timeouts.
    pub browser: BrowserConfig,
    /// SHA-256 of the file's bytes (or of nothing), recorded in evidence.
    pub digest: String,
    /// Problems that do not stop loading (e.g. a secret not provisioned yet).
    pub warnings: Vec<Problem>,
}

/// Evidence signing settings.
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// OpenSSH Ed25519 private key (created by `glassdrill keygen`).
    pub signing_key: PathBuf,
    /// The principal written to `allowed_signers`.
    pub signer: String,
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
    /// App registration with `AuditLog.Read.All`.
    pub client_id: String,
    /// Its client secret, by reference.
    pub client_secret: SecretRef,
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
pub const DEFAULT_MAX_BODY: usize = 256 * 1024;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl HostConfig {
    /// Built-in defaults (no config file).
    pub fn defaults(env: &Environment) -> Self {
        let data_dir = env.default_data_dir();
        Self {
            source: None,
            evidence: EvidenceConfig {
                signing_key: data_dir.join("keys/evidence_ed25519"),
                signer: default_signer(),
            },
            data_dir,
            drills_dir: env.cwd.join("drills"),
            webhook: WebhookConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                token: None,
                max_body_bytes: DEFAULT_MAX_BODY,
            },
            entra: None,
            browser: BrowserConfig::default(),
            digest: sha256_hex(b""),
            warnings: Vec::new(),
        }
    }

    /// Finds and loads the host config: `explicit`, else the lookup order
    /// of [`Environment::config_candidates`], else defaults.
    pub fn locate(explicit: Option<&Path>, env: &Environment) -> Result<Self, Problems> {
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
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                severity: Severity::Error,
                message: format!("cannot read the host config ({e}); check --config"),
            }])
        })?;
        Self::parse(path, &text, env)
    }

    /// Parses and validates host config text.
    pub fn parse(path: &Path, text: &str, env: &Environment) -> Result<Self, Problems> {
        let src = Source { path, text };
        let raw: RawHost = src.parse().map_err(Problems)?;
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
        if let Some(s) = raw.evidence.signer {
            cfg.evidence.signer = s;
        }
        if let Some(l) = &raw.webhook.listen {
            match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => cfg.webhook.listen = a,
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
        if let Some(e) = raw.entra {
            let url_field = |field: &str,
                             v: &Option<Spanned<String>>,
                             default: &str,
                             problems: &mut Vec<Problem>| {
                match v {
                    None => default.to_owned(),
                    Some(s) => match url::Url::parse(s.get_ref()) {
                        Ok(_) => s.get_ref().trim_end_matches('/').to_owned(),
                        Err(err) => {
                            problems.push(src.error(
                                s.span().start,
                                format!("entra.{field}: {err}; write a full https:// URL"),
                            ));
                            default.to_owned()
                        }
                    },
                }
            };
            let authority = url_field(
                "authority",
                &e.authority,
                "https://login.microsoftonline.com",
                &mut problems,
            );
            let graph = url_field(
                "graph",
                &e.graph,
                "https://graph.microsoft.com",
                &mut problems,
            );
            let secret = secret_ref(
                &src,
                "entra.client_secret",
                &e.client_secret,
                false,
                &mut problems,
            );
            cfg.entra = secret.map(|client_secret| EntraConfig {
                tenant_id: e.tenant_id,
                authority,
                graph,
                client_id: e.client_id,
                client_secret,
            });
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
        if let Some(t) = &raw.browser.step_timeout {
            match parse_duration(&src, "browser.step_timeout", t) {
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

    /// Where evidence bundles go.
    pub fn evidence_dir(&self) -> PathBuf {
        self.data_dir.join("evidence")
    }
}

fn default_signer() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("glassdrill@{host}")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrill {
    id: Spanned<String>,
    account: Spanned<String>,
    group: Option<String>,
    description: Option<String>,
    tenant: Option<Spanned<String>>,
    flow: Spanned<String>,
    start_url: Option<String>,
    confirm_deadline: Option<Spanned<String>>,
    authenticator: Spanned<RawAuthenticator>,
    #[serde(default)]
    alerts: Vec<RawAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthenticator {
    kind: Spanned<String>,
    private_key: Option<Spanned<String>>,
    credential_id: Option<Spanned<String>>,
    rp_id: Option<String>,
    user_handle: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    kind: Spanned<String>,
    name: String,
    deadline: Spanned<String>,
}

/// Which tenant a drill signs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantKind {
    /// The built-in rehearsal tenant.
    Rehearsal,
    /// The real Entra tenant of the host config's `[entra]` table.
    Entra,
}

/// How the drill presents the credential.
#[derive(Debug, Clone)]
pub enum AuthenticatorConfig {
    /// WebDriver virtual authenticator. Without `private_key` (rehearsal
    /// only) a fresh credential is made and registered for the run.
    Virtual(Option<VirtualCredential>),
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
    /// How long after the sign-in the alert may take.
    pub deadline: Duration,
}

/// Alert check kinds implemented so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The built-in Azure Monitor webhook receiver.
    Webhook,
}

impl AlertKind {
    /// The kind's name, as in drill files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
        }
    }
}

/// A validated drill.
#[derive(Debug, Clone)]
pub struct DrillConfig {
    /// Drill id (also the evidence directory name).
    pub id: String,
    /// Account UPN.
    pub account: String,
    /// Accounts in one group are never drilled close together.
    pub group: String,
    /// Free text for reports.
    pub description: String,
    /// Which tenant.
    pub tenant: TenantKind,
    /// The sign-in flow.
    pub flow: Flow,
    /// Start URL template (`{authority}`, `{tenant_id}`, `{upn}`); the
    /// flow's own when unset.
    pub start_url: String,
    /// How long the sign-in may take to appear in the sign-in log.
    pub confirm_deadline: Duration,
    /// The authenticator.
    pub authenticator: AuthenticatorConfig,
    /// Expected alerts.
    pub alerts: Vec<ExpectedAlert>,
    /// The drill file.
    pub source: PathBuf,
    /// SHA-256 over the drill file and flow file bytes.
    pub digest: String,
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

/// Reads a flow file relative to the drill file; the built-in Entra flow is
/// used when `name` is the built-in's file name and no such file exists.
fn read_flow(drill_path: &Path, name: &str) -> std::io::Result<(PathBuf, String)> {
    let dir = drill_path.parent().unwrap_or(Path::new("."));
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok((path, t)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && name == "flows/entra-security-key.toml" =>
        {
            Ok((path, ENTRA_FLOW.to_owned()))
        }
        Err(e) => Err(e),
    }
}

impl DrillConfig {
    /// Loads a drill file from disk.
    pub fn load(path: &Path) -> Result<Self, Problems> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Problems(vec![Problem {
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                severity: Severity::Error,
                message: format!("cannot read the drill file ({e})"),
            }])
        })?;
        Self::parse(path, &text, |name| read_flow(path, name))
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
    pub fn parse(
        path: &Path,
        text: &str,
        flow_reader: impl FnOnce(&str) -> std::io::Result<(PathBuf, String)>,
    ) -> Result<Self, Problems> {
        let src = Source { path, text };
        let raw: RawDrill = src.parse().map_err(Problems)?;
        let mut problems = Vec::new();

        let id = raw.id.get_ref().clone();
        let id_ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !id_ok {
            problems.push(src.error(
                raw.id.span().start,
                "id must be 1-64 characters of letters, digits, `-` and `_` (it names the evidence directory)",
            ));
        }
        let account = raw.account.get_ref().trim().to_owned();
        if account.split('@').count() != 2 || account.starts_with('@') || account.ends_with('@') {
            problems.push(src.error(
                raw.account.span().start,
                "account must be the user principal name, like `bg1@contoso.onmicrosoft.com`",
            ));
        }
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
        let confirm_deadline = match &raw.confirm_deadline {
            None => Duration::from_secs(600),
            Some(d) => parse_duration(&src, "confirm_deadline", d).unwrap_or_else(|p| {
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
            "hid" | "native" => {
                problems.push(src.error(
                    a.kind.span().start,
                    format!("authenticator kind `{}` is not available in this version yet; use `virtual`", a.kind.get_ref()),
                ));
                AuthenticatorConfig::Virtual(None)
            }
            other => {
                problems.push(src.error(
                    a.kind.span().start,
                    format!("authenticator kind `{other}` is not known; use `virtual`"),
                ));
                AuthenticatorConfig::Virtual(None)
            }
        };

        let mut alerts = Vec::new();
        for al in &raw.alerts {
            let kind = match al.kind.get_ref().as_str() {
                "webhook" => Some(AlertKind::Webhook),
                other => {
                    problems.push(src.error(
                        al.kind.span().start,
                        format!("alert kind `{other}` is not available; use `webhook`"),
                    ));
                    None
                }
            };
            let deadline = parse_duration(&src, "alerts.deadline", &al.deadline);
            match (kind, deadline) {
                (Some(kind), Ok(deadline)) => alerts.push(ExpectedAlert {
                    kind,
                    name: al.name.clone(),
                    deadline,
                }),
                (_, Err(p)) => problems.push(p),
                _ => {}
            }
        }
        if raw.alerts.is_empty() {
            problems.push(src.error(0, "a drill needs at least one [[alerts]] entry: a sign-in nobody is told about proves nothing"));
        }

        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        let flow = match flow_reader(raw.flow.get_ref()) {
            Ok((fpath, ftext)) => {
                hasher.update(ftext.as_bytes());
                match Flow::parse(&fpath, &ftext) {
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
            group: raw.group.unwrap_or_else(|| "break-glass".to_owned()),
            description: raw.description.unwrap_or_default(),
            tenant,
            flow,
            start_url,
            confirm_deadline,
            authenticator,
            alerts,
            source: path.to_path_buf(),
            digest: hex::encode(hasher.finalize()),
            warnings: problems.0,
        })
    }
}

/// Loads every `*.toml` drill file in `dir`, collecting all problems.
pub fn load_drills(dir: &Path) -> (Vec<DrillConfig>, Problems) {
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
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        match DrillConfig::load(&p) {
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
pub fn find_drill(dir: &Path, name: &str) -> Result<DrillConfig, Problems> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path) -> Environment {
        Environment {
            cwd: dir.to_path_buf(),
            home: Some(dir.join("home")),
            xdg_config_home: None,
            xdg_state_home: None,
        }
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("a\nbc\nd", 3), (2, 2));
        assert_eq!(line_col("é=1\nx", 5), (2, 1));
        assert_eq!(line_col("", 10), (1, 1));
    }

    #[test]
    fn rehearsal_drill_is_valid() {
        let d = DrillConfig::rehearsal().unwrap();
        assert_eq!(d.tenant, TenantKind::Rehearsal);
        assert!(!d.alerts.is_empty());
        assert!(!d.flow.steps.is_empty());
    }

    #[test]
    fn shipped_entra_example_is_valid() {
        let text = include_str!("../drills/entra-bg1.toml.example");
        let d = DrillConfig::parse(Path::new("drills/bg1.toml"), text, |_| {
            Ok((
                PathBuf::from("flows/entra-security-key.toml"),
                ENTRA_FLOW.to_owned(),
            ))
        })
        .unwrap();
        assert_eq!(d.tenant, TenantKind::Entra);
        // The key file does not exist here: a warning, not an error.
        assert!(d.warnings.iter().all(|w| w.severity == Severity::Warning));
        assert!(!d.warnings.is_empty());
        let host = include_str!("../deploy/glassdrill.toml");
        let dir = tempfile::tempdir().unwrap();
        let h =
            HostConfig::parse(&dir.path().join("glassdrill.toml"), host, &env(dir.path())).unwrap();
        assert!(h.entra.is_some());
        assert_eq!(h.webhook.listen.port(), 8765);
    }

    #[test]
    fn defaults_follow_xdg() {
        let e = Environment {
            cwd: "/w".into(),
            home: Some("/h".into()),
            xdg_config_home: None,
            xdg_state_home: Some("/s".into()),
        };
        let c = HostConfig::defaults(&e);
        assert_eq!(c.data_dir, PathBuf::from("/s/glassdrill"));
        assert_eq!(c.drills_dir, PathBuf::from("/w/drills"));
        assert_eq!(
            e.config_candidates(),
            vec![
                PathBuf::from("/w/glassdrill.toml"),
                PathBuf::from("/h/.config/glassdrill/glassdrill.toml"),
                PathBuf::from("/etc/glassdrill/glassdrill.toml")
            ]
        );
    }

    #[test]
    fn host_config_problems_have_positions() {
        let dir = tempfile::tempdir().unwrap();
        let e = env(dir.path());
        let p = dir.path().join("glassdrill.toml");
        let err = HostConfig::parse(&p, "data_dir = \"x\"\ncolour = 1\n", &e).unwrap_err();
        assert_eq!(err.0[0].line, 2, "{err}");
        assert!(err.0[0].message.contains("unknown field"), "{err}");

        let text = "[webhook]\nlisten = \"nowhere\"\ntoken = \"hunter2\"\n[browser]\nstep_timeout = \"soon\"\n";
        let err = HostConfig::parse(&p, text, &e).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(
            err.to_string().contains(":2:10: error: webhook.listen"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(":3:9: error: webhook.token: secrets are given by reference"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(
            err.to_string()
                .contains(":5:16: error: browser.step_timeout"),
            "{err}"
        );
    }

    #[test]
    fn every_unknown_key_of_a_file_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("glassdrill.toml");
        let text = "dta_dir = \"/x\"\n[webhook]\n  lisen = \"a\"\nmax_body = 3\n[browser]\ntimeout = \"1s\"\n";
        let err = HostConfig::parse(&p, text, &env(dir.path())).unwrap_err();
        let s = err.to_string();
        assert_eq!(err.0.len(), 4, "{s}");
        assert!(s.contains(":1:1: error: unknown field `dta_dir`"), "{s}");
        assert!(s.contains(":3:3: error: unknown field `lisen`"), "{s}");
        assert!(s.contains(":4:1: error: unknown field `max_body`"), "{s}");
        assert!(s.contains(":6:1: error: unknown field `timeout`"), "{s}");
        // A quoted key is commented out like any other.
        let text = "\"é_key\" = 1\n\"other\" = 2\n";
        let err = HostConfig::parse(&p, text, &env(dir.path())).unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        // An unknown key inside an inline table stops the search (commenting
        // the line out would hide the whole table) but is still reported.
        let text = "[browser]\nx = { a = 1 }\ny = 2\n";
        let err = HostConfig::parse(&p, text, &env(dir.path())).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert!(
            err.to_string().contains(":2:1: error: unknown field `x`"),
            "{err}"
        );
    }

    #[test]
    fn unresolvable_secret_is_only_a_warning_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("glassdrill.toml");
        let text = "[entra]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"env:GLASSDRILL_TEST_UNSET_SECRET\"\n";
        let cfg = HostConfig::parse(&p, text, &env(dir.path())).unwrap();
        assert!(cfg.entra.is_some());
        assert_eq!(cfg.drills_dir, dir.path().join("drills"));
    }

    fn drill(text: &str) -> Result<DrillConfig, Problems> {
        DrillConfig::parse(Path::new("drills/x.toml"), text, |_| {
            Ok((PathBuf::from("flows/f.toml"), ENTRA_FLOW.to_owned()))
        })
    }

    #[test]
    fn drill_validation_collects_every_problem() {
        let text = r#"id = "bad id!"
account = "nobody"
tenant = "rehearsal"
flow = "flows/f.toml"
authenticator = { kind = "virtual" }
[[alerts]]
kind = "pager"
name = "x"
deadline = "5m"
[[alerts]]
kind = "webhook"
name = "y"
deadline = "quickly"
"#;
        let err = drill(text).unwrap_err();
        let s = err.to_string();
        assert_eq!(err.0.len(), 4, "{s}");
        assert!(s.contains("x.toml:1:6: error: id must"), "{s}");
        assert!(s.contains(":2:11: error: account"), "{s}");
        assert!(s.contains(":7:8: error: alert kind `pager`"), "{s}");
        assert!(
            s.contains(":13:12: error: alerts.deadline: `quickly`"),
            "{s}"
        );
    }

    #[test]
    fn drill_missing_field_and_inline_secret() {
        let err = drill("id = \"a\"\n").unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        let text = r#"id = "a"
account = "a@b.onmicrosoft.com"
flow = "flows/f.toml"
authenticator = { kind = "virtual", private_key = "MIGHAgEAMBMGByqGSM49", credential_id = "AAAA", rp_id = "login.microsoft.com" }
[[alerts]]
kind = "webhook"
name = "y"
deadline = "5m"
"#;
        let err = drill(text).unwrap_err().to_string();
        assert!(
            err.contains(":4:51: error: authenticator.private_key: secrets are given by reference"),
            "{err}"
        );
        assert!(!err.contains("MIGHAgEAMBMGByqGSM49"), "{err}");
    }
}
