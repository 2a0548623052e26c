//! Test-only pause points, so a test can stop a drill at an exact place
//! (a stage boundary, a flow step's wait, fill or click) instead of
//! guessing with sleeps.
//!
//! In debug builds, when `GLASSDRILL_TEST_PAUSE` names the point, glassdrill
//! writes `[test-pause] <point>` to stderr and waits there until the drill
//! is told to stop (the test then sends its signal), or, when
//! `GLASSDRILL_TEST_RESUME` names a file, until that file exists (the test
//! does something to the drill's world, e.g. kills the browser, and lets
//! it go on). Release builds compile this to nothing: a production binary
//! never pauses on an environment variable.

use tokio_util::sync::CancellationToken;

/// Pauses at `point` if a test asked for it (debug builds only).
#[cfg(debug_assertions)]
pub async fn pause(point: &str, cancel: &CancellationToken) {
    if std::env::var("GLASSDRILL_TEST_PAUSE").is_ok_and(|p| p == point) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "[test-pause] {point}");
        let resume = std::env::var_os("GLASSDRILL_TEST_RESUME").map(std::path::PathBuf::from);
        let resumed = async {
            match resume {
                // Polls a file a test creates; debug builds only.
                Some(f) => {
                    while !f.exists() {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => {}
            () = resumed => {}
        }
    }
}

/// Release builds: never pauses.
#[cfg(not(debug_assertions))]
pub async fn pause(_point: &str, _cancel: &CancellationToken) {}

/// A place where a stop is honoured: the test pause point `point`, then
/// whether the drill has been told to stop.
pub async fn checkpoint(point: &str, cancel: &CancellationToken) -> bool {
    pause(point, cancel).await;
    cancel.is_cancelled()
}
