//! Host config (`glassdrill.toml`), drill files (`drills/*.toml`) and
//! sign-in flow files (`drills/flows/*.toml`).
//!
//! Two stages, as ripgrep and age do it: serde structs that mirror the TOML
//! (`deny_unknown_fields`, spans kept where validation needs a position),
//! then validated types the rest of the crate uses. Every problem is a
//! [`Problem`] naming file:line:column, what is wrong and how to fix it
//! ([`diag`]); loading collects problems across all files so
//! `check-config` can show them at once. A syntax error, a missing field or
//! a wrong type still stops that one file, because serde stops there.
//!
//! [`host`]: the host config. [`drill`]: drill files. [`flow`]: flow files
//! (data only; the runner that drives them is [`crate::flow`]).

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use crate::secret::SecretRef;

pub mod daemon;
pub mod diag;
pub mod drill;
pub mod flow;
pub mod host;
pub mod schedule;
pub mod state;
#[cfg(test)]
mod tests;

pub use crate::record::TenantKind;
pub use daemon::{ChatFormat, ChatHook, DaemonConfig, NotifyConfig, SmtpConfig, SmtpSecurity};
pub use diag::{Problem, Problems, Severity, Source};
pub use drill::{AlertKind, AuthenticatorConfig, DrillConfig, ExpectedAlert, VirtualCredential};
pub(crate) use drill::{find_drill, load_drills};
pub use flow::Flow;
pub use host::{BrowserConfig, EntraConfig, EvidenceConfig, HostConfig, WebhookConfig};
pub use schedule::{Custody, ScheduleConfig};
pub use state::{PgTls, PostgresConfig, StateConfig};

/// The rehearsal drill shipped in `drills/rehearsal.toml`, built in so that
/// `glassdrill rehearse` needs no configuration.
pub(crate) const REHEARSAL_DRILL: &str = include_str!("../../drills/rehearsal.toml");
/// The Entra security-key sign-in flow, built in for the same reason.
pub(crate) const ENTRA_FLOW: &str = include_str!("../../drills/flows/entra-security-key.toml");

/// Longest flow step wait.
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest sign-in-log or alert deadline.
pub const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// Longest rehearsal alert delay.
pub const MAX_ALERT_DELAY: Duration = Duration::from_secs(3600);

/// Parses a duration setting like `90s`, `15m` or `1h 30m`: non-zero and
/// at most `max` (the bound is in the message).
pub(crate) fn parse_duration(
    src: &Source<'_>,
    field: &str,
    v: &Spanned<String>,
    max: Duration,
) -> Result<Duration, Problem> {
    crate::support::time::parse_bounded(v.get_ref(), max, false)
        .map_err(|e| src.error(v.span().start, format!("{field}: {e}")))
}

/// Parses a secret reference (an inline secret is an error) and checks it
/// can be read now; one that cannot is only a warning at load time (it may
/// be provisioned later) and becomes an error when a drill runs. `binary`
/// secrets (key files) are read as bytes, others as text.
pub(crate) fn secret_ref(
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
                // Not provisioned yet: a warning until a drill needs it. Present
                // but unsafe (other users can read it, not a regular file,
                // another owner, absurdly large): an error now.
                let severity = if e.is_unsafe() {
                    Severity::Error
                } else {
                    Severity::Warning
                };
                problems.push(src.problem(at, severity, format!("{field}: {e}")));
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
    pub(crate) fn from_process() -> Self {
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
    pub(crate) fn config_candidates(&self) -> Vec<PathBuf> {
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
    pub(crate) fn default_data_dir(&self) -> PathBuf {
        if let Some(x) = &self.xdg_state_home {
            x.join("glassdrill")
        } else if let Some(h) = &self.home {
            h.join(".local/state/glassdrill")
        } else {
            self.cwd.join(".glassdrill")
        }
    }
}
