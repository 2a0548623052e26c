//! The integration tests, one binary (one link): real Chromium through real
//! chromedriver, real HTTP servers on loopback, the real binary.

mod alerts_all;
mod bridge;
mod cli_conventions;
mod config_cli;
mod connectors;
mod daemon;
mod deploy;
mod entra;
mod faults;
mod fleet;
mod graph;
mod hardening;
mod hw;
mod keys;
mod ledger;
mod paths;
mod posture;
mod preflight;
mod record;
mod redaction;
mod rehearse_cli;
mod run_cli;
mod services;
mod tenant_cli;
mod util;
mod webhook;
