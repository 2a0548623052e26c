//! The hardening issue, tried as a hostile tester would: stops at every
//! stage boundary and flow step (deterministic test pause points) and at
//! random moments, `kill -9` at every stage, and one test per defect found,
//! each named after it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::util::{Spawned, Stream, World, bundle_from_stdout, in_parallel};
use glassdrill::record::{DrillRecord, Stage, StageStatus, Verdict};
use nix::sys::signal::{Signal, kill};

/// Longest a test waits for glassdrill to reach a point or to exit.
const PATIENCE: Duration = Duration::from_secs(120);

/// A glassdrill paused at a test pause point.
struct Paused {
    run: Spawned,
}

impl Paused {
    /// Starts `rehearse` and waits until it reports `[test-pause] POINT`.
    fn start(w: &World, point: &str, alert_delay: &str) -> Self {
        let mut cmd = w.command(&[
            "rehearse",
            "--progress",
            "plain",
            "--alert-delay",
            alert_delay,
            "--alert-deadline",
            "60s",
        ]);
        cmd.env("GLASSDRILL_TEST_PAUSE", point);
        let mut run = Spawned::start(cmd);
        let want = format!("[test-pause] {point}");
        run.line(|s, l| s == Stream::Stderr && l == want, PATIENCE);
        Self { run }
    }

    /// Sends `sig` and waits for the exit: (exit code, stdout, stderr).
    fn stop(self, sig: Signal) -> (Option<i32>, String, String) {
        self.run.signal(sig);
        let r = self.run.finish(PATIENCE);
        (r.code, r.stdout, r.stderr)
    }
}

/// The typed record of a bundle.
fn record_of(bundle: &std::path::Path) -> DrillRecord {
    DrillRecord::from_json(&std::fs::read(bundle.join("drill.json")).expect("drill.json"))
        .expect("a drill record")
}

/// Every stop point of a rehearsal, and whether it lies before the
/// security-key ceremony (so a stop there must mean no sign-in attempt).
fn stop_points() -> Vec<(String, bool)> {
    let mut points: Vec<(String, bool)> = ["preflight", "announce", "sign-in"]
        .iter()
        .map(|s| (format!("stage:{s}"), true))
        .collect();
    // (step, before the ceremony, its pause points): the optional
    // interrupts only wait when they do not come.
    let steps = [
        ("username", true, &["wait", "fill", "click"][..]),
        ("security key", true, &["wait", "fill", "click"][..]),
        ("consent", false, &["wait"][..]),
        ("stay signed in", false, &["wait"][..]),
        ("landing", false, &["wait", "fill", "click"][..]),
    ];
    for (step, before, ats) in steps {
        for at in ats {
            // The pause before the ceremony step's click is the last
            // moment before the sign-in.
            points.push((format!("step:{step}:{at}"), before));
        }
    }
    for s in ["confirm", "alerts", "teardown", "record"] {
        points.push((format!("stage:{s}"), false));
    }
    points
}

/// Fails with every failure the runs reported (`None` is a pass).
#[track_caller]
fn all_passed(results: Vec<Option<String>>) {
    let failures: Vec<String> = results.into_iter().flatten().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Defect 1: Ctrl-C / SIGTERM before the sign-in did not stop the sign-in.
#[test]
fn ctrl_c_or_sigterm_at_every_stage_and_flow_step_never_signs_in_after_the_stop() {
    all_passed(in_parallel(
        stop_points().into_iter().enumerate().collect(),
        3,
        |(i, (point, before))| {
            let w = World::new();
            let sig = if i % 2 == 0 {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            };
            let (code, out, err) = Paused::start(&w, &point, "0s").stop(sig);
            let ctx = format!("{point} ({sig}):\nstdout:\n{out}\nstderr:\n{err}");
            if code != Some(2) || !out.starts_with("INTERRUPTED") {
                return Some(format!("not INTERRUPTED with exit 2 at {ctx}"));
            }
            let bundle = bundle_from_stdout(&out);
            if w.verify(&bundle).code != Some(0) {
                return Some(format!("bundle does not verify at {ctx}"));
            }
            let r = record_of(&bundle);
            assert_eq!(r.verdict, Verdict::Interrupted, "{ctx}");
            let sign_in = r.stages.iter().find(|s| s.stage == Stage::SignIn);
            if before {
                let untouched = sign_in.is_some_and(|s| {
                    matches!(s.status, StageStatus::Interrupted | StageStatus::Skipped)
                        && s.detail.contains("stopped before the sign-in")
                }) || (point == "stage:preflight"
                    && sign_in.is_some_and(|s| s.status == StageStatus::Skipped));
                if !untouched
                    || r.sign_in.log_record.is_some()
                    || bundle.join("signin.json").exists()
                {
                    return Some(format!(
                        "a sign-in was attempted after a stop at {ctx}\n{r:#?}"
                    ));
                }
            }
            w.assert_clean();
            None
        },
    ));
}

/// Defect 1, at random moments: 20 runs, each stopped at a random time
/// while the drill is under way; never PASS, always a verifiable bundle, no
/// process or directory left.
#[test]
fn twenty_stops_at_random_moments_never_pass() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    let delays: Vec<u64> = (0..20u64)
        .map(|i| {
            300 + (u64::from(seed)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(i * 7919))
                % 2400
        })
        .collect();
    let results = in_parallel(delays.into_iter().enumerate().collect(), 3, |(i, ms)| {
        let w = World::new();
        let mut run = w.spawn(&["rehearse", "--progress", "none", "--alert-delay", "2s"]);
        // A plain test thread, not the async runtime: waiting a random time
        // is what this test is about.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(Duration::from_millis(ms));
        let sig = if i % 2 == 0 {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        };
        let delivered = run.running() && kill(run.pid(), sig).is_ok();
        let out = run.finish(PATIENCE);
        let stdout = out.stdout.clone();
        let ctx = format!("stop after {ms} ms ({sig}): {stdout}{}", out.stderr);
        if delivered {
            assert!(!stdout.starts_with("PASS"), "PASS after a stop: {ctx}");
            assert_eq!(out.code, Some(2), "{ctx}");
            if stdout.contains("evidence: ") {
                w.verify(&bundle_from_stdout(&stdout)).expect_exit(0);
            } else {
                // Stopped before even a bundle could be staged? Never: the
                // bundle is staged before the first stage.
                panic!("no evidence after a stop: {ctx}");
            }
        }
        w.assert_clean();
        delivered
    });
    assert!(
        results.iter().filter(|d| **d).count() >= 15,
        "most stops land mid-drill: {results:?}"
    );
}

/// The chromedriver port of this world's browser, if one is running.
fn driver_port(w: &World) -> Option<u16> {
    w.browser_processes().iter().find_map(|p| {
        p.split_whitespace()
            .find_map(|a| a.strip_prefix("--port="))
            .and_then(|p| p.parse().ok())
    })
}

/// Defects 2 and 4: `kill -9` left a live browser with the credential
/// loaded and its WebDriver port open, and `.partial` directories nobody
/// reported.
#[test]
fn kill_9_at_each_stage_leaves_no_browser_and_the_next_start_recovers_the_run() {
    let points = [
        "stage:preflight",
        "stage:sign-in",
        "step:security key:click",
        "step:stay signed in:wait",
        "stage:confirm",
        "stage:alerts",
        "stage:teardown",
        "stage:record",
        "record:sealing",
    ];
    all_passed(in_parallel(points.to_vec(), 3, |point| {
        let w = World::new();
        let paused = Paused::start(&w, point, "0s");
        let port = driver_port(&w);
        paused.run.signal(Signal::SIGKILL);
        let _ = paused.run.finish(PATIENCE);
        // Within 2 s, nothing of that run's browser is alive.
        let t0 = Instant::now();
        while !w.browser_processes().is_empty() && t0.elapsed() < Duration::from_secs(2) {
            // Polling a bounded 2 s for processes to go, on a test thread.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = w.browser_processes();
        if !left.is_empty() {
            return Some(format!(
                "{point}: browser processes outlived kill -9: {left:#?}"
            ));
        }
        if let Some(port) = port
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return Some(format!(
                "{point}: the WebDriver port {port} still accepts connections"
            ));
        }
        let drill_dir = w.state().join("glassdrill/evidence/rehearsal");
        let partial: Vec<PathBuf> = std::fs::read_dir(&drill_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if partial.len() != 1 || !partial[0].display().to_string().ends_with(".partial") {
            return Some(format!(
                "{point}: expected one .partial staging dir, found {partial:?}"
            ));
        }
        // The next start turns it into a signed INTERRUPTED bundle.
        let next = w.run(["rehearse", "--progress", "plain", "--alert-delay", "0s"]);
        next.expect_exit(0);
        let recovered_line = next
            .stderr
            .lines()
            .find(|l| l.contains("recovered a run that died"));
        let Some(line) = recovered_line else {
            return Some(format!("{point}: nothing recovered: {}", next.stderr));
        };
        let dir = PathBuf::from(
            line.split(": ")
                .nth(1)
                .unwrap_or_default()
                .trim_end_matches(" (INTERRUPTED)"),
        );
        w.verify(&dir).expect_exit(0);
        let r = record_of(&dir);
        assert_eq!(r.verdict, Verdict::Interrupted, "{point}");
        let recovery = r.recovery.clone().expect("recovery info");
        assert!(
            recovery
                .recovered_files
                .iter()
                .any(|f| f == "recovered/journal.jsonl"),
            "{point}: {recovery:?}"
        );
        if point == "record:sealing" {
            assert_eq!(recovery.died_during, Some(Stage::Record), "{point}");
            assert!(
                recovery
                    .recovered_files
                    .iter()
                    .any(|f| f == "recovered/drill.json"),
                "the unsigned record of the dead run is kept: {recovery:?}"
            );
        }
        assert_eq!(
            recovery.sign_in_attempted,
            !matches!(
                point,
                "stage:preflight" | "stage:sign-in" | "step:security key:click"
            ),
            "{point}: {r:#?}"
        );
        w.assert_clean();
        None
    }));
}
