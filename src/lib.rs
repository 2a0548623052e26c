//! glassdrill: prove, on a schedule, that break-glass accounts still work and
//! are still watched.
//!
//! Module map, lowest layer first (each line: what the module owns, and what
//! it never touches). A module imports only from the lines above it; the
//! data path runs straight down: drill file → plan → stages → record →
//! bundle.
//!
//! - [`support`]: helpers written once — identifier rules (`ids`),
//!   timestamps (`time`), hashing, private atomic files (`fs`), the retry
//!   helper (`retry`), the HTTP client, HTML escaping, test pause points
//!   (`testpoint`, debug builds only), a throw-away PostgreSQL cluster for
//!   tests and benchmarks (`pgtest`). Imports nothing else of glassdrill.
//! - [`secret`]: `env:`/`file:` secret references resolved into `secrecy`
//!   types; random tokens; constant-time comparison. Never logs a value.
//! - [`record`]: the typed, versioned drill record (`drill.json`, schema
//!   v1, JSON Schema in `schema/`). Pure data.
//! - [`webauthn`]: WebAuthn data, pure: assertion verification (the
//!   tenant's relying-party side), Entra's user handle, and P-256 credential keys.
//! - [`fido`]: FIDO2 keys at the CTAP level (USB and file I/O, not pure):
//!   `hid` (a USB key through `ctap-hid-fido2`), `soft` (a P-256 credential
//!   in a 0600 file, for CI); pure key selection (a key told apart without
//!   its PIN) and the PIN-counter and sign-counter rules. Blocking calls,
//!   run on threads of their own under deadlines.
//! - [`ledger`]: the evidence ledger's pure building blocks: RFC 6962
//!   Merkle hashes with inclusion and consistency proofs and prefix roots,
//!   C2SP signed notes and checkpoints (Ed25519). No I/O: the log file is
//!   `evidence::log`.
//! - [`schedule`]: schedule arithmetic, pure: the next due time drawn in a
//!   drill's cadence, fitted into its windows (time zones, DST) and kept
//!   apart from its group. Reads no clock and no random source.
//! - [`config`]: host config (with `[state]` in `config::state` and named
//!   `[tenants.NAME]`), drill files and flow files, in two stages (serde,
//!   then validated types) with file:line:column problems
//!   (`config::diag`). No I/O besides reading the files it is given.
//! - [`browser`]: owns chromedriver, Chromium, the temp profile and the
//!   WebDriver session; cleans them up on drop, and a guard process kills
//!   them if glassdrill dies (`browser::processes`). Knows nothing of
//!   drills.
//! - [`bridge`]: the WebAuthn bridge: a shim injected before page scripts
//!   replaces `navigator.credentials.get`; glassdrill polls it over
//!   WebDriver, checks RP id and origin, builds `clientDataJSON` and
//!   settles the page's promise. Knows no key.
//! - [`authenticator`]: the `Authenticator` trait and its kinds (`virtual`:
//!   the WebDriver virtual authenticator; `hid` and `soft`: a [`fido`] key
//!   behind the [`bridge`]); attaches to the browser and detaches after
//!   the ceremony. Never sees the flow.
//! - [`flow`]: the runner that drives a flow file through a browser,
//!   telling refusal, transient refusal, drift and breakage apart; optional
//!   steps (interrupts), `$Config` failure rules, the session-cookie proof.
//! - [`cloud`]: OAuth2 client-credential tokens cached per resource, and
//!   the Graph sign-in log client.
//! - [`alerts`]: the `AlertCheck` trait, pure correlation
//!   (`alerts::correlate`) and the built-in webhook receiver, which routes
//!   deliveries to the runs waiting for them.
//! - [`evidence`]: signed bundles staged from a run's first moment and
//!   journaled as it goes (`bundle`), offline verification (`verify`,
//!   `manifest`), the signing key (`keys`), `allowed_signers`,
//!   `report.html` (`report`, a `maud` template), the recovery of runs
//!   that died (`recover`), the append-only evidence log with signed
//!   checkpoints, reviews and pruning (`log`), and the auditor's export
//!   (`export`, with its standard-library Python verifier). Never
//!   re-serialises what it signs.
//! - [`notify`]: announcement and report channels (the console today).
//! - [`posture`]: the break-glass set-up's rules, pure (account enabled,
//!   cloud-only, unlicensed, Global Administrator active and permanent,
//!   group, keys and methods, Conditional Access, the alert rule and its
//!   action group) on what Graph and Azure Resource Manager return, each
//!   PASS, FAIL or UNKNOWN; `fetch` reads them read-only. The drill's
//!   `posture` stage and `glassdrill posture`/`uses` use it.
//! - [`state`]: the daemon's state store (`sqlx`'s `Any` driver, one set
//!   of portable migrations: SQLite by default, a fleet's PostgreSQL with
//!   `[state] url`): drawn due times, holds, runs, key proofs, locks as
//!   leases across processes and hosts, the notification outbox; rebuilt
//!   from the bundles. `state::fleet`: hosts and their keys, signers,
//!   content-addressed bundles and the fleet's one evidence log (written out
//!   for `evidence verify`, never verified by code of its own);
//!   `state::migrate`: a host's SQLite rows into a fleet.
//! - [`drill`]: a run's plan, one function per stage (`drill::stages`:
//!   preflight, announce, sign-in, confirm, alerts, posture, teardown,
//!   record, report),
//!   the driver that times and reports them, the pure verdict rules.
//! - [`tenant`]: the rehearsal tenant, a loopback stand-in for Entra ID
//!   and its alert pipeline, with fault switches: `signin` (Entra's
//!   sign-in protocol across its two sites, a strict relying party),
//!   `pages` (Entra's page state), `graph`, `alerting`, and `console`
//!   (`glassdrill tenant`). A drill against Entra never starts it.
//! - [`services`]: the long-lived parts a process starts once (receiver,
//!   token caches, signing key, notifier) that runs attach to.
//! - [`runner`]: resolves a drill's inputs, starts services and the
//!   rehearsal tenant when needed, attaches a run; `rehearse` and `run`
//!   both come through it.
//! - [`daemon`]: `glassdrill daemon`: ticks (`tokio-cron-scheduler`), due
//!   drills started through the runner under state-store locks, the
//!   verdict policy (hold on FAIL, retry an ERROR before the sign-in),
//!   the notification outbox (`daemon::outbox`), `status`/`plan`
//!   (`daemon::status`), `/metrics` (`daemon::metrics`), the control
//!   socket through which `glassdrill run` asks a running daemon
//!   (`daemon::control`), and the one on-demand run path both use
//!   (`daemon::ondemand`). In a fleet: the host's heartbeat and keys,
//!   claims only of drills it has a key of, leases renewed during a run,
//!   other hosts' dead runs recorded INTERRUPTED, bundles published to the
//!   fleet. Time from a `Clock`.
//! - [`cli`]: clap definitions and one file per command group; the only
//!   module that prints results to stdout; man pages and completions
//!   generated from the definitions (`cli::docs`). Never holds drill
//!   logic.
#![forbid(unsafe_code)]

/// `println!` that never panics: a closed stdout (`glassdrill run … | head`)
/// must not turn a recorded drill into a crash. Everything that matters is
/// already on disk when results are printed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics, for the same reason as [`out!`].
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod support;

pub mod secret;

pub mod record;

pub mod webauthn;

pub mod fido;

pub mod ledger;

pub mod schedule;

pub mod config;

pub mod browser;

pub mod bridge;

pub mod authenticator;

pub mod flow;

pub mod cloud;

pub mod alerts;

pub mod evidence;

pub mod notify;

pub mod posture;

pub mod state;

pub mod drill;

pub mod tenant;

pub mod services;

pub mod runner;

pub mod daemon;

pub mod cli;
