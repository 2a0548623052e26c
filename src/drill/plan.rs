//! A run's plan — the drill, account, authenticator, expected alerts and
//! deadlines — and the long-lived sinks it writes to (evidence directory,
//! signing key, notifier), which belong to the process, not the run.

use std::path::PathBuf;
use std::time::Duration;

use crate::alerts::AlertCheck;
use crate::authenticator::Authenticator;
use crate::browser::BrowserOptions;
use crate::cloud::GraphClient;
use crate::config::DrillConfig;
use crate::evidence::SigningKey;
use crate::notify::Notifier;

/// Where the drill signs in and reads logs.
#[derive(Debug, Clone)]
pub struct TenantEndpoints {
    /// Sign-in authority.
    pub authority: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Graph base URL.
    pub graph: String,
    /// Azure Resource Manager base URL.
    pub management: String,
    /// Log Analytics query API base URL.
    pub log_analytics: String,
}

/// Everything one drill run needs.
pub struct RunPlan<'a> {
    /// The drill (with any command-line overrides applied).
    pub drill: &'a DrillConfig,
    /// Host config digest, recorded in evidence.
    pub host_digest: String,
    /// Where and how.
    pub tenant: TenantEndpoints,
    /// The sign-in log, with the process's token cache.
    pub graph: GraphClient,
    /// The authenticator.
    pub authenticator: &'a dyn Authenticator,
    /// One check per expected alert, same order as `drill.alerts`,
    /// attached before the sign-in so no delivery is missed.
    pub alert_checks: Vec<Box<dyn AlertCheck>>,
    /// Browser binaries.
    pub browser: BrowserOptions,
    /// Per-step timeout of the flow.
    pub step_timeout: Duration,
    /// Who ran it.
    pub operator: Option<String>,
    /// Who watched.
    pub witness: Option<String>,
    /// Custody: the key used and the envelope's seals.
    pub custody: Custody,
    /// The posture stage's reads (`None`: no [posture] configured).
    pub posture: Option<crate::drill::stages::posture::PosturePlan>,
    /// Findings about the drill's set-up the report carries besides the
    /// run's own (a key not proven within `max_days`).
    pub findings: Vec<String>,
}

/// Custody evidence of one run: which key, and the seal numbers of its
/// envelope before and after (what auditors ask of a break-glass key kept
/// in a safe).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Custody {
    /// The key's name in the drill's `schedule.keys`.
    pub key_id: Option<String>,
    /// Seal number before.
    pub seal_before: Option<String>,
    /// Seal number after.
    pub seal_after: Option<String>,
}

/// What a run writes to, owned by the process's services.
pub struct Sinks<'a> {
    /// Evidence root (`<data>/evidence`).
    pub evidence_dir: PathBuf,
    /// Signing key.
    pub signing_key: &'a SigningKey,
    /// Signer principal.
    pub signer: &'a str,
    /// Announcements and reports.
    pub notifier: &'a dyn Notifier,
    /// The controls a drill evidences (named in the report).
    pub controls: &'a [String],
}
