//! The `glassdrill` binary: parse, set up logging, run, map to an exit code.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use glassdrill::cli::{Cli, LogFormat};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // --help and --version are not errors; bad usage exits 64, not
            // clap's 2, which would read as a drill ERROR.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                glassdrill::cli::EXIT_USAGE
            } else {
                0
            });
        }
    };
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GLASSDRILL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(cli.color.ansi())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::from(2);
        }
    };
    ExitCode::from(runtime.block_on(glassdrill::cli::execute(cli)))
}
