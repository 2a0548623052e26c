//! The host config's `[daemon]` and `[notify]` tables.
//!
//! ```toml
//! [daemon]
//! tick = "0 * * * * *"            # cron (with seconds): how often to look
//! group_gap = "24h"               # drills of one group at least this far apart
//! retry_after = "15m"             # first retry of an ERROR before the sign-in
//! metrics_listen = "127.0.0.1:9464"
//! heartbeat_url = "env:GLASSDRILL_HEARTBEAT_URL"
//!
//! [notify.smtp]
//! host = "smtp.example.org"
//! port = 587
//! security = "starttls"           # "tls" (implicit), or "plain" (loopback only)
//! username = "glassdrill"
//! password = "file:/etc/glassdrill/smtp-password"
//! from = "glassdrill <glassdrill@example.org>"
//! to = ["soc@example.org"]
//! escalate_to = ["identity-oncall@example.org"]
//!
//! [[notify.webhook]]
//! url = "env:GLASSDRILL_TEAMS_WEBHOOK"
//! format = "teams"                # or "slack"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Problem, Severity, Source, parse_duration, secret_ref};
use crate::secret::SecretRef;

#[derive(Deserialize, Default)]
pub(super) struct RawDaemon {
    state: Option<String>,
    tick: Option<Spanned<String>>,
    group_gap: Option<Spanned<String>>,
    retry_after: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    heartbeat_url: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawNotify {
    pub(super) smtp: Option<RawSmtp>,
    #[serde(default)]
    pub(super) webhook: Vec<RawChatHook>,
}

#[derive(Deserialize)]
pub(super) struct RawSmtp {
    host: Spanned<String>,
    port: Option<u16>,
    security: Option<Spanned<String>>,
    username: Option<String>,
    password: Option<Spanned<String>>,
    from: Spanned<String>,
    to: Vec<Spanned<String>>,
    #[serde(default)]
    escalate_to: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
pub(super) struct RawChatHook {
    url: Spanned<String>,
    format: Spanned<String>,
}

/// Daemon settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The state database.
    pub state_db: PathBuf,
    /// Cron expression (with seconds) of the scheduler's ticks.
    pub tick: String,
    /// Drills of one group at least this far apart.
    pub group_gap: Duration,
    /// First retry of an ERROR before any sign-in attempt (doubling, at
    /// most 4 h, inside the drill's windows).
    pub retry_after: Duration,
    /// Prometheus `/metrics` listen address (loopback).
    pub metrics_listen: Option<SocketAddr>,
    /// Heartbeat URL requested after each tick, by reference (it holds a
    /// token).
    pub heartbeat_url: Option<SecretRef>,
}

impl DaemonConfig {
    /// Defaults under `data_dir`.
    pub fn defaults(data_dir: &std::path::Path) -> Self {
        Self {
            state_db: data_dir.join("state.db"),
            tick: "0 * * * * *".into(),
            group_gap: Duration::from_secs(24 * 3600),
            retry_after: Duration::from_secs(15 * 60),
            metrics_listen: None,
            heartbeat_url: None,
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// STARTTLS on the submission port.
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
    /// No TLS: loopback relays only.
    Plain,
}

/// SMTP notification settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Relay host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub security: SmtpSecurity,
    /// Login.
    pub username: Option<String>,
    /// Password, by reference.
    pub password: Option<SecretRef>,
    /// Sender.
    pub from: String,
    /// The SOC: announcements, reports, overdue.
    pub to: Vec<String>,
    /// Escalations (FAIL, touch needed) also go here.
    pub escalate_to: Vec<String>,
}

/// A chat webhook's payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatFormat {
    /// Microsoft Teams incoming webhook (`text`).
    Teams,
    /// Slack incoming webhook (`text`).
    Slack,
}

/// A chat webhook.
#[derive(Debug, Clone)]
pub struct ChatHook {
    /// Its URL, by reference (it holds a token).
    pub url: SecretRef,
    /// Payload shape.
    pub format: ChatFormat,
}

/// Notification channels.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// E-mail.
    pub smtp: Option<SmtpConfig>,
    /// Chat webhooks.
    pub webhooks: Vec<ChatHook>,
}

/// Validates `[daemon]`.
pub(super) fn parse_daemon(
    src: &Source<'_>,
    raw: RawDaemon,
    base: &std::path::Path,
    data_dir: &std::path::Path,
    problems: &mut Vec<Problem>,
) -> DaemonConfig {
    let mut out = DaemonConfig::defaults(data_dir);
    if let Some(s) = raw.state {
        out.state_db = base.join(s);
    }
    if let Some(t) = raw.tick {
        let fields = t.get_ref().split_whitespace().count();
        if !(6..=7).contains(&fields) {
            problems.push(src.error(
                t.span().start,
                format!(
                    "daemon.tick: `{}` is not a cron expression with seconds; write it like \"0 * * * * *\" (every minute)",
                    t.get_ref()
                ),
            ));
        } else {
            out.tick = t.into_inner();
        }
    }
    let week = Duration::from_secs(7 * 86_400);
    if let Some(g) = &raw.group_gap {
        match parse_duration(src, "daemon.group_gap", g, week) {
            Ok(d) => out.group_gap = d,
            Err(p) => problems.push(p),
        }
    }
    if let Some(r) = &raw.retry_after {
        match parse_duration(src, "daemon.retry_after", r, Duration::from_secs(4 * 3600)) {
            Ok(d) => out.retry_after = d,
            Err(p) => problems.push(p),
        }
    }
    if let Some(l) = &raw.metrics_listen {
        match l.get_ref().parse::<SocketAddr>() {
            Ok(a) if a.ip().is_loopback() => out.metrics_listen = Some(a),
            Ok(a) => problems.push(src.error(
                l.span().start,
                format!("daemon.metrics_listen: `{a}` is not loopback; serve /metrics on 127.0.0.1 and let the scraper reach it through a proxy"),
            )),
            Err(_) => problems.push(src.error(
                l.span().start,
                format!("daemon.metrics_listen: `{}` is not an address; write it like 127.0.0.1:9464", l.get_ref()),
            )),
        }
    }
    if let Some(h) = &raw.heartbeat_url {
        out.heartbeat_url = secret_ref(src, "daemon.heartbeat_url", h, false, problems);
    }
    out
}

/// Validates `[notify]`.
pub(super) fn parse_notify(
    src: &Source<'_>,
    raw: RawNotify,
    problems: &mut Vec<Problem>,
) -> NotifyConfig {
    let mut out = NotifyConfig::default();
    if let Some(s) = raw.smtp {
        let security = match s.security.as_ref().map(|v| v.get_ref().as_str()) {
            None | Some("starttls") => Some(SmtpSecurity::StartTls),
            Some("tls") => Some(SmtpSecurity::Tls),
            Some("plain") if crate::support::http::is_loopback_host(s.host.get_ref()) => {
                Some(SmtpSecurity::Plain)
            }
            Some("plain") => {
                problems.push(src.error(
                    s.host.span().start,
                    format!(
                        "notify.smtp: security = \"plain\" is only for a relay on loopback, not `{}`; use \"starttls\" or \"tls\"",
                        s.host.get_ref()
                    ),
                ));
                None
            }
            Some(other) => {
                problems.push(src.error(
                    s.security.as_ref().map_or(0, |v| v.span().start),
                    format!(
                        "notify.smtp.security: `{other}` is not known; use starttls, tls or plain"
                    ),
                ));
                None
            }
        };
        let mut mailbox = |field: &str, v: &Spanned<String>| -> Option<String> {
            match v.get_ref().parse::<lettre::message::Mailbox>() {
                Ok(_) => Some(v.get_ref().clone()),
                Err(e) => {
                    problems.push(src.error(
                        v.span().start,
                        format!(
                            "notify.smtp.{field}: `{}` is not an e-mail address ({e})",
                            v.get_ref()
                        ),
                    ));
                    None
                }
            }
        };
        let from = mailbox("from", &s.from);
        let to: Vec<String> = s.to.iter().filter_map(|v| mailbox("to", v)).collect();
        let escalate_to: Vec<String> = s
            .escalate_to
            .iter()
            .filter_map(|v| mailbox("escalate_to", v))
            .collect();
        if s.to.is_empty() {
            problems.push(src.error(
                s.from.span().start,
                "notify.smtp.to is empty: name the SOC mailbox that must hear of every drill",
            ));
        }
        let password = s
            .password
            .as_ref()
            .and_then(|p| secret_ref(src, "notify.smtp.password", p, false, problems));
        if s.password.is_some() && s.username.is_none() {
            problems.push(src.problem(
                s.host.span().start,
                Severity::Warning,
                "notify.smtp.password is set without a username; it is not used",
            ));
        }
        if let (Some(security), Some(from)) = (security, from) {
            out.smtp = Some(SmtpConfig {
                port: s.port.unwrap_or(match security {
                    SmtpSecurity::Tls => 465,
                    SmtpSecurity::StartTls => 587,
                    SmtpSecurity::Plain => 25,
                }),
                host: s.host.into_inner(),
                security,
                username: s.username,
                password,
                from,
                to,
                escalate_to,
            });
        }
    }
    for w in raw.webhook {
        let format = match w.format.get_ref().as_str() {
            "teams" => Some(ChatFormat::Teams),
            "slack" => Some(ChatFormat::Slack),
            other => {
                problems.push(src.error(
                    w.format.span().start,
                    format!("notify.webhook.format: `{other}` is not known; use teams or slack"),
                ));
                None
            }
        };
        let url = secret_ref(src, "notify.webhook.url", &w.url, false, problems);
        if let (Some(format), Some(url)) = (format, url) {
            out.webhooks.push(ChatHook { url, format });
        }
    }
    out
}
