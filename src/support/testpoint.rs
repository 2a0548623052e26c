//! Test-only pause points, so a test can stop a drill at an exact place
//! (a stage boundary, a flow step's wait, fill or click) instead of
//! guessing with sleeps.
//!
//! In debug builds, when `GLASSDRILL_TEST_PAUSE` names the point, glassdrill
//! writes `[test-pause] <point>` to stderr and waits there until the drill
//! is told to stop; the test then sends its signal. Release builds compile
//! this to nothing: a production binary never pauses on an environment
//! variable.

use tokio_util::sync::CancellationToken;

/// Pauses at `point` if a test asked for it (debug builds only).
#[cfg(debug_assertions)]
pub async fn pause(point: &str, cancel: &CancellationToken) {
    if std::env::var("GLASSDRILL_TEST_PAUSE").is_ok_and(|p| p == point) {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "[test-pause] {point}");
        cancel.cancelled().await;
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
