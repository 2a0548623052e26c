//! Command-line interface: clap definitions and dispatch. The only module
//! that prints results to stdout; all real work is in the library.
//!
//! Exit codes: 0 PASS / success, 1 FAIL (or evidence that does not verify),
//! 2 ERROR / INTERRUPTED, 64 usage or configuration error.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{DrillConfig, Environment, HostConfig, Problems, load_drills};
use crate::drill::{DrillOutcome, Verdict};
use crate::evidence::{self, SigningKey};
use crate::progress::{self, Progress};
use crate::runner::{self, RunError, RunOptions};
use crate::tenant::Fault;

/// Exit code for usage and configuration errors (BSD `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// glassdrill proves that break-glass accounts still work and are still
/// watched: a real sign-in with the security key through a real browser,
/// the alert pipeline checked against its deadline, signed evidence.
#[derive(Debug, Parser)]
#[command(
    name = "glassdrill",
    version,
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
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
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
    /// Override every flow step's timeout (e.g. `30s`).
    #[arg(long, value_parser = parse_duration)]
    pub step_timeout: Option<Duration>,
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
    /// Delay between a sign-in and the rehearsal tenant's alert.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub alert_delay: Duration,
}

/// `rehearse` options.
#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// Rehearsal tenant behaviour.
    #[command(flatten)]
    pub tenant: TenantBehaviour,
    /// Override the alert deadline of the rehearsal drill (30s).
    #[arg(long, value_parser = parse_duration)]
    pub alert_deadline: Option<Duration>,
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
    /// added or removed; names the file that is wrong.
    Verify(VerifyArgs),
}

/// `evidence verify` options.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// An allowed_signers file you trust [default: the bundle's own, which
    /// proves integrity but not who signed].
    #[arg(long)]
    pub allowed_signers: Option<PathBuf>,
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

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is not a duration; write it like `2s`, `500ms` or `1m`"))
}

fn print_problems(p: &Problems) {
    for problem in &p.0 {
        errln!("{problem}");
    }
}

fn progress_for(mode: ProgressMode) -> Box<dyn Progress> {
    match mode {
        ProgressMode::Auto => progress::auto(),
        ProgressMode::Plain => Box::new(progress::Plain),
        ProgressMode::None => Box::new(progress::Quiet),
    }
}

/// Cancels on Ctrl-C or SIGTERM so a drill tears its browser down.
fn cancel_on_signals() -> CancellationToken {
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        errln!("interrupted: stopping the drill and cleaning up…");
        c.cancel();
    });
    cancel
}

/// Runs a parsed command; returns the process exit code.
pub async fn execute(cli: Cli) -> u8 {
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
            let drill = match DrillConfig::rehearsal() {
                Ok(d) => d,
                Err(p) => {
                    print_problems(&p);
                    return EXIT_USAGE;
                }
            };
            let opts = a.drill.run_options(a.tenant, a.alert_deadline);
            drill_command(&host, &drill, &opts, a.drill.progress).await
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
            drill_command(&host, &drill, &opts, a.drill_args.progress).await
        }
        Command::CheckConfig => check_config(&host),
        Command::Keygen(a) => keygen(&host, a),
        Command::Evidence(EvidenceCommand::Verify(a)) => verify(a),
        Command::Tenant(a) => tenant(&host, a).await,
    }
}

async fn drill_command(
    host: &HostConfig,
    drill: &DrillConfig,
    opts: &RunOptions,
    mode: ProgressMode,
) -> u8 {
    let progress = progress_for(mode);
    let cancel = cancel_on_signals();
    match runner::run_configured(host, drill, opts, progress.as_ref(), &cancel).await {
        Ok(outcome) => {
            print_outcome(drill, host, &outcome);
            outcome.verdict.exit_code()
        }
        Err(RunError::Config(m)) => {
            errln!("error: {m}");
            EXIT_USAGE
        }
        Err(RunError::Host(m)) => {
            errln!("error: {m}");
            Verdict::Error.exit_code()
        }
    }
}

fn print_outcome(drill: &DrillConfig, host: &HostConfig, o: &DrillOutcome) {
    out!("{}  drill {}  run {}", o.verdict, drill.id, o.run_id);
    for r in &o.reasons {
        out!("  reason: {r}");
    }
    for s in &o.stages {
        out!(
            "  {:<9} {:<11} {:>8.2}s",
            s.stage.name(),
            format!("{:?}", s.status).to_lowercase(),
            s.duration_ms as f64 / 1000.0
        );
    }
    for a in &o.alert_summaries {
        out!(
            "  alert {}: fired {} ms and delivered {} ms after the sign-in",
            a["name"].as_str().unwrap_or("?"),
            a["signin_to_fired_ms"],
            a["signin_to_received_ms"]
        );
    }
    match &o.bundle {
        Ok(b) => {
            let d = b.dir.display();
            out!("evidence: {d}");
            out!("verify it:");
            out!(
                "  ssh-keygen -Y verify -f {d}/allowed_signers -I {} -n {} -s {d}/SHA256SUMS.sig < {d}/SHA256SUMS",
                host.evidence.signer,
                evidence::NAMESPACE
            );
            out!("  (cd {d} && sha256sum -c --strict SHA256SUMS)");
        }
        Err(e) => out!("evidence: NOT WRITTEN: {e}"),
    }
}

fn check_config(host: &HostConfig) -> u8 {
    match &host.source {
        Some(p) => out!("host config: {}", p.display()),
        None => out!("host config: none found; using built-in defaults"),
    }
    out!("data directory: {}", host.data_dir.display());
    out!("drills directory: {}", host.drills_dir.display());
    print_problems(&Problems(host.warnings.clone()));
    let (drills, problems) = load_drills(&host.drills_dir);
    print_problems(&problems);
    for d in &drills {
        out!(
            "drill {}: {} ({} alert(s)) from {}",
            d.id,
            d.account,
            d.alerts.len(),
            d.source.display()
        );
    }
    if problems.has_errors() {
        errln!("configuration has errors");
        EXIT_USAGE
    } else {
        out!("configuration OK");
        0
    }
}

fn keygen(host: &HostConfig, a: KeygenArgs) -> u8 {
    let path = a.out.unwrap_or_else(|| host.evidence.signing_key.clone());
    let comment = a.comment.unwrap_or_else(|| host.evidence.signer.clone());
    match SigningKey::generate(&path, &comment) {
        Ok(k) => {
            out!(
                "created {} (mode 0600) and {}.pub",
                path.display(),
                path.display()
            );
            out!("fingerprint: {}", k.fingerprint());
            out!("allowed_signers line for auditors:");
            out!(
                "{comment} namespaces=\"{}\" {}",
                evidence::NAMESPACE,
                k.public_key_openssh()
            );
            0
        }
        Err(e) => {
            errln!("error: {e}");
            EXIT_USAGE
        }
    }
}

fn verify(a: VerifyArgs) -> u8 {
    match evidence::verify_bundle_all(&a.bundle, a.allowed_signers.as_deref()) {
        Ok(v) => {
            out!(
                "OK: {} files verified; signed by {} ({})",
                v.files.len(),
                v.signer,
                v.fingerprint
            );
            if a.allowed_signers.is_none() {
                out!(
                    "note: checked against the bundle's own allowed_signers; pass --allowed-signers with a key you trust to prove who signed"
                );
            }
            0
        }
        Err(errors) => {
            for e in &errors {
                errln!("FAILED: {e}");
            }
            1
        }
    }
}

async fn tenant(host: &HostConfig, a: TenantArgs) -> u8 {
    if let Some(u) = &a.webhook_url {
        let loopback = url::Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| {
                h == "127.0.0.1" || h == "localhost" || h.ends_with(".localhost") || h == "[::1]"
            });
        if !loopback {
            errln!("error: --webhook-url must point at loopback (127.0.0.1 or *.localhost)");
            return EXIT_USAGE;
        }
    }
    match crate::tenant::console::serve(
        host,
        a.listen,
        a.tenant.faults,
        a.tenant.alert_delay,
        a.webhook_url,
        cancel_on_signals(),
    )
    .await
    {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: {e}");
            2
        }
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
