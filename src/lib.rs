//! glassdrill: prove, on a schedule, that break-glass accounts still work and
//! are still watched.
//!
//! Module map (each line: what the module owns, and what it never touches):
//!
//! - [`cli`]: clap definitions and command dispatch; the only module that
//!   prints to stdout. Never holds drill logic.
//! - [`config`]: host config and drill files, parsed in two stages (serde
//!   structs, then validated types) with file:line:column errors. No I/O
//!   besides reading the files it is given.
//! - [`secret`]: `env:`/`file:` secret references, resolved into `secrecy`
//!   types. Never logs or formats a secret value.
//! - [`flow`]: sign-in flows as data (steps, selectors with fallbacks, page
//!   identities) and the runner that drives them through a [`browser`]
//!   session. Knows nothing of Entra beyond the flow file and the
//!   `window.$Config` page identity it reads.
//! - [`browser`]: owns chromedriver, Chromium, the temp profile and the
//!   WebDriver session (plus the DevTools commands a drill needs:
//!   screenshots, typing); cleans them up on drop. Knows nothing of drills.
//! - [`authenticator`]: the `Authenticator` trait and its kinds (`virtual`:
//!   the WebDriver virtual authenticator). Never sees the flow.
//! - [`alerts`]: the `AlertCheck` trait, the built-in webhook receiver and
//!   the pure correlation rules (right account, after the sign-in).
//! - [`graph`]: OAuth2 client-credentials tokens and the Graph sign-in log
//!   client used by the `confirm` stage.
//! - [`drill`]: the pipeline of timed stages and the one verdict model.
//! - [`evidence`]: signed bundles (`SHA256SUMS`, SSH signature), keygen and
//!   offline verification. Never re-serialises what it signs.
//! - [`progress`]: live progress (a progress display on a terminal, plain
//!   lines otherwise).
//! - [`tenant`]: the rehearsal tenant, a loopback stand-in for Entra ID and
//!   its alert pipeline, with fault switches; `tenant::pages` is its HTML
//!   (and the HTML escaping `report` reuses), `tenant::console` serves it
//!   alone for `glassdrill tenant`. A drill against Entra never starts it.
//! - [`webauthn`]: WebAuthn data, pure: assertion verification (the
//!   tenant's relying-party side) and P-256 credential keys (the
//!   authenticator side).
//! - [`report`]: `report.html` of one drill record (pure).
//! - [`runner`]: puts one drill together (signing key, webhook receiver,
//!   rehearsal tenant or Entra endpoints, authenticator, alert checks) and
//!   runs it; `rehearse` and `run` both come through it.
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

pub mod alerts;
pub mod authenticator;
pub mod browser;
pub mod cli;
pub mod config;
pub mod drill;
pub mod evidence;
pub mod flow;
pub mod graph;
pub mod progress;
pub mod report;
pub mod runner;
pub mod secret;
pub mod tenant;
pub mod webauthn;
