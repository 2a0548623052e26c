//! Command-line interface: clap definitions and dispatch. The only module
//! that prints results to stdout; all real work is in the library.
//!
//! Exit codes: 0 PASS / success, 1 FAIL (or evidence that does not verify),
//! 2 ERROR / INTERRUPTED, 64 usage or configuration error.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{DrillConfig, Environment, HostConfig, Problems};
use crate::drill::{Progress, Verdict};
use crate::runner::RunOptions;
use crate::tenant::Fault;

mod check;
mod daemon;
mod docs;
mod evidence;
mod fleet;
mod keys;
mod posture;
mod progress;
mod run;
mod tenant;

use check::{check_config, keygen};
use run::drill_command;
use tenant::tenant;

/// Exit code for usage and configuration errors (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = crate::record::EXIT_USAGE;

/// `--version`: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GLASSDRILL_COMMIT"),
    ")"
);

/// glassdrill proves that break-glass accounts still work and are still
/// watched: a real sign-in with the security key through a real browser,
/// the alert pipeline checked against its deadline, signed evidence.
#[derive(Debug, Parser)]
#[command(
    name = "glassdrill",
    version = VERSION,
    propagate_version = true,
    after_help = "Exit codes: 0 PASS, 1 FAIL (a finding), 2 ERROR or INTERRUPTED (retry), 64 usage or configuration error.\nStart with `glassdrill rehearse`."
)]
pub struct Cli {
    /// Host config file [default: ./glassdrill.toml, then
    /// $XDG_CONFIG_HOME/glassdrill/glassdrill.toml, then
    /// /etc/glassdrill/glassdrill.toml, else built-in defaults].
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// More log detail (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour in the log on stderr: auto (a terminal, and NO_COLOR unset),
    /// always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour stderr.
    pub fn ansi(self) -> bool {
        use std::io::IsTerminal as _;
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        }
    }
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line (for log shippers).
    Json,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProgressMode {
    /// A live display on a terminal, plain lines otherwise.
    Auto,
    /// Plain lines.
    Plain,
    /// Nothing but the result.
    None,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a full drill against the built-in rehearsal tenant: real headless
    /// Chromium, a FIDO2 credential in the WebDriver virtual authenticator,
    /// a real alert webhook, signed evidence. Needs no configuration.
    Rehearse(RehearseArgs),
    /// Run one drill now (by id from the drills directory, or a path to a
    /// drill file).
    Run(RunArgs),
    /// Check the host config and every drill file; report all problems with
    /// file:line:column.
    CheckConfig,
    /// Create the Ed25519 evidence signing key (OpenSSH format, mode 0600).
    Keygen(KeygenArgs),
    /// Work with evidence bundles.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Serve the rehearsal tenant on its own and print its URLs, to try the
    /// sign-in flow by hand. Stops on Ctrl-C.
    Tenant(TenantArgs),
    /// Run drills on their schedule until SIGTERM or Ctrl-C (a drill in
    /// progress tears down and records INTERRUPTED evidence).
    Daemon,
    /// Per drill: last verdict, last PASS, next due, overdue, next key,
    /// running now; and notifications not delivered yet.
    Status(StatusArgs),
    /// The upcoming schedule.
    Plan(PlanArgs),
    /// Check, read-only, that every break-glass account listed in
    /// [posture] is still set up as one and its alert still routes to
    /// someone: PASS, FAIL or UNKNOWN (a permission missing) per check.
    Posture(posture::PostureArgs),
    /// Every sign-in of the [posture] accounts since a day: a drill's,
    /// classified, or UNREVIEWED (exit 1).
    Uses(posture::UsesArgs),
    /// The state database.
    #[command(subcommand)]
    State(StateCommand),
    /// A fleet of drill hosts sharing one PostgreSQL state ([state] url).
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Security keys: list the attached ones, check a drill's keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Print the shell completion script for bash, zsh or fish.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (glassdrill(1), one per command,
    /// glassdrill.toml(5)) into a directory (for packaging).
    #[command(hide = true)]
    Manpages {
        /// The directory.
        dir: PathBuf,
    },
}

/// Options shared by `rehearse` and `run`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Who runs the drill (recorded in evidence).
    #[arg(long)]
    pub operator: Option<String>,
    /// Who witnesses it (recorded in evidence).
    #[arg(long)]
    pub witness: Option<String>,
    /// Progress display.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Override every flow step's timeout (e.g. `30s`; at most 10m).
    #[arg(long, value_parser = parse_step_timeout)]
    pub step_timeout: Option<Duration>,
    /// The seal number of the key's envelope before the drill (custody
    /// evidence).
    #[arg(long)]
    pub seal_before: Option<String>,
    /// The seal number of the envelope the key goes back into.
    #[arg(long)]
    pub seal_after: Option<String>,
}

impl DrillArgs {
    fn run_options(&self, tenant: TenantBehaviour, alert_deadline: Option<Duration>) -> RunOptions {
        RunOptions {
            operator: self.operator.clone(),
            witness: self.witness.clone(),
            faults: tenant.faults,
            alert_delay: tenant.alert_delay,
            alert_deadline,
            step_timeout: self.step_timeout,
            custody: crate::drill::Custody {
                key_id: None,
                seal_before: self.seal_before.clone(),
                seal_after: self.seal_after.clone(),
            },
            findings: Vec::new(),
            last_sign_count: None,
            secure_webhook: false,
            previous_drill_end: None,
        }
    }
}

/// How the rehearsal tenant behaves (for `run`: only drills with
/// `tenant = "rehearsal"`).
#[derive(Debug, Args)]
pub struct TenantBehaviour {
    /// Switch on a rehearsal-tenant fault (repeatable) to see how a drill
    /// reports it; `run` applies faults only to drills with `tenant =
    /// "rehearsal"`.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<Fault>,
    /// Delay between a sign-in and the rehearsal tenant's alert (at most 1h).
    #[arg(long, default_value = "2s", value_parser = parse_alert_delay)]
    pub alert_delay: Duration,
}

/// What presents the credential in a rehearsal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RehearsalAuthenticator {
    /// The WebDriver virtual authenticator.
    Virtual,
    /// A software key behind the WebAuthn bridge.
    Soft,
}

/// Which alert checks a rehearsal runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RehearsalAlerts {
    /// The rehearsal drill's webhook alert.
    Webhook,
    /// Every alert check kind.
    All,
}

/// `rehearse` options.
#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// Rehearsal tenant behaviour.
    #[command(flatten)]
    pub tenant: TenantBehaviour,
    /// Override the alert deadline of the rehearsal drill (30s; at most 24h).
    #[arg(long, value_parser = parse_deadline)]
    pub alert_deadline: Option<Duration>,
    /// What presents the credential: `virtual` (Chromium's WebDriver
    /// virtual authenticator) or `soft` (a software FIDO2 key made for the
    /// run, through the same WebAuthn bridge a security key uses).
    #[arg(long, value_enum, default_value_t = RehearsalAuthenticator::Virtual)]
    pub authenticator: RehearsalAuthenticator,
    /// Which alert checks: `webhook` (the drill file's), or `all` (every
    /// kind against the rehearsal tenant's stand-in APIs: graph-signin,
    /// azure-alerts, log-analytics, graph-security, mailbox, pagerduty).
    #[arg(long, value_enum, default_value_t = RehearsalAlerts::Webhook)]
    pub alerts: RehearsalAlerts,
    /// Common drill options.
    #[command(flatten)]
    pub drill: DrillArgs,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Drill id (from the drills directory) or path to a drill file.
    pub drill: String,
    /// Rehearsal tenant behaviour.
    #[command(flatten)]
    pub tenant: TenantBehaviour,
    /// Common drill options.
    #[command(flatten)]
    pub drill_args: DrillArgs,
    /// Which of the drill's `schedule.keys` is used [default: the least
    /// recently proven].
    #[arg(long)]
    pub key: Option<String>,
    /// When another drill of the same group, account or key is running
    /// (the daemon's, or another `run`), wait for it instead of refusing.
    #[arg(long)]
    pub wait: bool,
    /// Run in this process even while the daemon runs (by default the
    /// daemon runs it: its webhook receiver, its secrets).
    #[arg(long)]
    pub local: bool,
}

/// `status` options.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only this tenant's drills (a drill file's `tenant_name`).
    #[arg(long)]
    pub tenant: Option<String>,
}

/// `plan` options.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// How far ahead.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3660))]
    pub days: i64,
    /// JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Recreate the runs in the state database from the evidence bundles.
    Rebuild,
    /// Copy this host's SQLite state and its evidence bundles into a
    /// fleet's PostgreSQL database (rows the fleet has are kept).
    Migrate(fleet::MigrateArgs),
}

/// `fleet` subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Hosts, their keys and heartbeats, leases held, the drills each host
    /// can serve, and drills no host can serve (a finding: exit 1).
    Status(fleet::FleetStatusArgs),
}

/// `keygen` options.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (`.pub` beside it) [default: the
    /// host config's evidence.signing_key].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Signer principal written in the key comment and allowed_signers.
    #[arg(long)]
    pub comment: Option<String>,
}

/// `evidence` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Check a bundle's signature and every file hash, and that no file was
    /// added or removed; names the file that is wrong. Without a bundle:
    /// every bundle and the evidence log.
    Verify(VerifyArgs),
    /// Export a period's bundles, the evidence log and its checkpoint, an
    /// index, a CSV summary, the cadence findings and the commands an
    /// auditor runs to verify it all without glassdrill.
    Export(ExportArgs),
    /// Record a signed post-drill review of a run in the evidence log (the
    /// bundle is never changed).
    Review(ReviewArgs),
    /// Delete bundles older than a duration, recording each in the evidence
    /// log first (verification then knows them as pruned, not missing).
    Prune(PruneArgs),
    /// Classify a sign-in of a break-glass account that was not a drill
    /// (Microsoft's post-use review: drill, emergency or misuse), in the
    /// evidence log.
    Classify(ClassifyArgs),
}

/// `evidence prune` options.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete bundles of runs that started longer ago than this (`400d`).
    #[arg(long, value_parser = |s: &str| bounded(s, Duration::from_secs(100 * 365 * 86_400), false))]
    pub older_than: Duration,
    /// Also inside the configured audit window.
    #[arg(long)]
    pub force: bool,
}

/// `evidence review` options.
#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The run id.
    pub run: String,
    /// Who reviewed.
    #[arg(long)]
    pub by: String,
    /// The outcome.
    #[arg(long, value_parser = ["accepted", "follow-up"])]
    pub outcome: String,
    /// What the reviewer found.
    #[arg(long)]
    pub note: String,
}

/// `evidence classify` options.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The sign-in's id in the Entra sign-in log.
    #[arg(long)]
    pub signin: String,
    /// The break-glass account (UPN).
    #[arg(long)]
    pub account: String,
    /// What it was.
    #[arg(long = "as", value_parser = ["drill", "emergency", "misuse"])]
    pub class: String,
    /// Who classified it.
    #[arg(long)]
    pub by: String,
    /// Why.
    #[arg(long)]
    pub note: String,
}

/// `evidence export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// First day (YYYY-MM-DD, UTC, inclusive).
    #[arg(long)]
    pub from: chrono::NaiveDate,
    /// Last day (YYYY-MM-DD, UTC, inclusive).
    #[arg(long)]
    pub to: chrono::NaiveDate,
    /// Only this drill.
    #[arg(long)]
    pub drill: Option<String>,
    /// The directory to create, or a `.tar.gz` file.
    #[arg(long)]
    pub out: PathBuf,
}

/// `evidence verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle directory [default: every bundle under the evidence
    /// directory, and the evidence log].
    pub bundle: Option<PathBuf>,
    /// An allowed_signers file you trust [default: the host's configured
    /// signer keys; for a lone bundle on a machine without them, the
    /// bundle's own copy, which proves integrity but not who signed].
    #[arg(long)]
    pub allowed_signers: Option<PathBuf>,
    /// The evidence directory (every bundle and the log) [default: the
    /// host config's].
    #[arg(long, value_name = "DIR")]
    pub evidence_dir: Option<PathBuf>,
    /// The signer principal whose key signs the log [default: the host
    /// config's, or the only one in --allowed-signers].
    #[arg(long)]
    pub signer: Option<String>,
    /// A checkpoint you kept (from a report): prove the log only grew since.
    #[arg(long, value_name = "FILE")]
    pub since_checkpoint: Option<PathBuf>,
}

/// `tenant` options.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Rehearsal tenant behaviour.
    #[command(flatten)]
    pub tenant: TenantBehaviour,
    /// Where the alert rule posts its webhook (must be loopback).
    #[arg(long)]
    pub webhook_url: Option<String>,
}

fn bounded(s: &str, max: Duration, allow_zero: bool) -> Result<Duration, String> {
    crate::support::time::parse_bounded(s, max, allow_zero).map_err(|e| e.to_string())
}

pub(crate) fn parse_step_timeout(s: &str) -> Result<Duration, String> {
    bounded(s, crate::config::MAX_STEP_TIMEOUT, false)
}

pub(crate) fn parse_deadline(s: &str) -> Result<Duration, String> {
    bounded(s, crate::config::MAX_DEADLINE, false)
}

pub(crate) fn parse_alert_delay(s: &str) -> Result<Duration, String> {
    bounded(s, crate::config::MAX_ALERT_DELAY, true)
}

pub(crate) fn print_problems(p: &Problems) {
    for problem in &p.0 {
        errln!("{problem}");
    }
}

pub(crate) fn progress_for(mode: ProgressMode) -> Box<dyn Progress> {
    match mode {
        ProgressMode::Auto => progress::auto(),
        ProgressMode::Plain => Box::new(progress::Plain),
        ProgressMode::None => Box::new(crate::drill::Quiet),
    }
}

/// Cancels on Ctrl-C, SIGTERM or SIGHUP (a lost SSH session) so a drill
/// tears its browser down and records what happened. The
/// handlers are registered before this returns (not when a task first
/// runs), so a signal that arrives at any moment after it is a stop, never
/// the default "terminate at once".
pub(crate) fn cancel_on_signals() -> CancellationToken {
    use tokio::signal::unix::{SignalKind, signal};
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    let hup = signal(SignalKind::hangup());
    tokio::spawn(async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(int) => {}
            () = wait(term) => {}
            () = wait(hup) => {}
        }
        errln!("interrupted: stopping the drill and cleaning up…");
        c.cancel();
    });
    cancel
}

/// Runs a parsed command; returns the process exit code.
pub async fn execute(cli: Cli) -> u8 {
    // Auditor-side commands never need the drill host's configuration and
    // never read its secrets: an auditor runs them on their own machine.
    if let Command::Evidence(EvidenceCommand::Verify(a)) = cli.command {
        // An auditor with a bundle and a pinned file needs nothing of the
        // host; otherwise the host config (if any) names the evidence
        // directory and the signer keys.
        let host = if a.bundle.is_some() && a.allowed_signers.is_some() {
            None
        } else {
            HostConfig::locate(cli.config.as_deref(), &Environment::from_process()).ok()
        };
        // A fleet's host verifies the fleet's evidence, from its database.
        if fleet::fleet_mode(host.as_ref())
            && a.bundle.is_none()
            && a.evidence_dir.is_none()
            && a.allowed_signers.is_none()
            && let Some(h) = &host
        {
            return fleet::verify(h, a.since_checkpoint.as_deref()).await;
        }
        return evidence::verify_command(a, host.as_ref());
    }
    // Documentation commands need no configuration either.
    match &cli.command {
        Command::Completions { shell } => {
            docs::completions(*shell);
            return 0;
        }
        Command::Manpages { dir } => {
            return match docs::write_man_pages(dir) {
                Ok(files) => {
                    out!("{} man pages in {}", files.len(), dir.display());
                    0
                }
                Err(e) => {
                    errln!(
                        "error: cannot write the man pages to {}: {e}",
                        dir.display()
                    );
                    1
                }
            };
        }
        _ => {}
    }
    // Commands that start a drill or a server take over Ctrl-C and SIGTERM
    // first of all, before any configuration is read.
    let cancel = matches!(
        cli.command,
        Command::Rehearse(_) | Command::Run(_) | Command::Tenant(_) | Command::Daemon
    )
    .then(cancel_on_signals)
    .unwrap_or_default();
    let env = Environment::from_process();
    let host = match HostConfig::locate(cli.config.as_deref(), &env) {
        Ok(h) => h,
        Err(p) => {
            print_problems(&p);
            return EXIT_USAGE;
        }
    };
    match cli.command {
        Command::Rehearse(a) => {
            let mut drill = match DrillConfig::rehearsal() {
                Ok(d) => d,
                Err(p) => {
                    print_problems(&p);
                    return EXIT_USAGE;
                }
            };
            if a.authenticator == RehearsalAuthenticator::Soft {
                drill.authenticator = crate::config::drill::AuthenticatorConfig::Key(
                    crate::config::drill::KeyConfig::rehearsal_soft(),
                );
            }
            if a.alerts == RehearsalAlerts::All {
                let deadline = drill
                    .alerts
                    .first()
                    .map_or(Duration::from_secs(30), |x| x.deadline);
                drill
                    .alerts
                    .extend(crate::tenant::apis::every_alert_kind(deadline));
            }
            let mut opts = a.drill.run_options(a.tenant, a.alert_deadline);
            // Every connector: the webhook arrives as Azure Monitor's
            // secure webhook, with a token the tenant signs.
            opts.secure_webhook = a.alerts == RehearsalAlerts::All;
            drill_command(&host, &drill, &opts, a.drill.progress, &cancel).await
        }
        Command::Run(a) => {
            let drill = match crate::config::find_drill(&host.drills_dir, &a.drill) {
                Ok(d) => d,
                Err(p) => {
                    print_problems(&p);
                    return EXIT_USAGE;
                }
            };
            let opts = a.drill_args.run_options(a.tenant, None);
            run::run_command(
                &host,
                &drill,
                opts,
                a.drill_args.progress,
                run::Locking {
                    key: a.key,
                    wait: a.wait,
                    local: a.local,
                },
                &cancel,
            )
            .await
        }
        Command::Daemon => daemon::daemon(host, cancel).await,
        Command::Status(a) => daemon::status(&host, a).await,
        Command::Posture(a) => posture::posture(&host, a).await,
        Command::Uses(a) => posture::uses(&host, a).await,
        Command::Plan(a) => daemon::plan(&host, a).await,
        Command::State(StateCommand::Rebuild) => daemon::rebuild(&host).await,
        Command::State(StateCommand::Migrate(a)) => fleet::migrate(&host, &a).await,
        Command::Fleet(FleetCommand::Status(a)) => fleet::status(&host, &a).await,
        Command::Keys(k) => keys::keys(&host, k).await,
        // Answered above, before the configuration is read.
        Command::Completions { .. } | Command::Manpages { .. } => 0,
        Command::CheckConfig => check_config(&host),
        Command::Keygen(a) => keygen(&host, a),
        Command::Evidence(EvidenceCommand::Verify(_)) => 0, // answered above
        Command::Evidence(EvidenceCommand::Export(a)) if fleet::fleet_mode(Some(&host)) => {
            fleet::export(&host, &a).await
        }
        Command::Evidence(EvidenceCommand::Export(a)) => evidence::export_command(&host, &a),
        Command::Evidence(EvidenceCommand::Review(a)) => {
            fleet::published(&host, evidence::review_command(&host, &a)).await
        }
        Command::Evidence(EvidenceCommand::Prune(a)) => evidence::prune_command(&host, &a),
        Command::Evidence(EvidenceCommand::Classify(a)) => {
            fleet::published(&host, evidence::classify_command(&host, &a)).await
        }
        Command::Tenant(a) => tenant(&host, a, cancel).await,
    }
}

impl clap::ValueEnum for Fault {
    fn value_variants<'a>() -> &'a [Self] {
        &Fault::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}
