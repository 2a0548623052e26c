//! The paths a real drill takes, through the real binary and the rehearsal
//! tenant: every tenant fault with its verdict, stage and reason, and the
//! sign-in attempted at most once under each; two expected alerts that
//! each need their own delivery; an alert that arrives while the alerts
//! stage is already waiting; SIGTERM to the whole unit as systemd sends
//! it; a browser that crashes mid-flow; evidence that cannot be written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{Run, Spawned, Stream, World, bundle_from_stdout, in_parallel};
use glassdrill::record::{DrillRecord, IgnoreReason, Stage, StageStatus, Verdict};
use glassdrill::tenant::{DEFAULT_ALERT_RULE, Fault};
use nix::sys::signal::Signal;

/// Longest a test waits for glassdrill to reach a point or to exit: far
/// more than any run here takes, so a slow CI machine is not a failure,
/// and a hang still ends the test.
const PATIENCE: Duration = Duration::from_secs(180);

/// Writes `drills/x.toml`: the rehearsal account with a fresh credential,
/// a 5 s sign-in-log deadline, and one expected alert per rule.
fn drill(w: &World, rules: &[&str], alert_deadline: &str) {
    let alerts: String = rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "[[alerts]]\nkind = \"webhook\"\nname = \"alert-{}\"\nrule = \"{r}\"\ndeadline = \"{alert_deadline}\"\n",
                i + 1
            )
        })
        .collect();
    std::fs::create_dir_all(w.path().join("drills")).expect("drills dir");
    std::fs::write(
        w.path().join("drills/x.toml"),
        format!(
            "id = \"x\"\naccount = \"breakglass1@rehearsal.onmicrosoft.com\"\ntenant = \"rehearsal\"\n\
             flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"5s\"\n\
             authenticator = {{ kind = \"virtual\" }}\n{alerts}"
        ),
    )
    .expect("drill file");
}

/// `glassdrill run x ARGS` with plain progress, to the end (bounded).
fn run(w: &World, args: &[&str]) -> Run {
    let mut all = vec!["run", "x", "--progress", "plain", "--step-timeout", "15s"];
    all.extend_from_slice(args);
    w.spawn(&all).finish(PATIENCE)
}

/// The typed record of a bundle.
fn record_of(bundle: &Path) -> DrillRecord {
    DrillRecord::from_json(&std::fs::read(bundle.join("drill.json")).expect("drill.json"))
        .expect("a drill record")
}

/// What the rehearsal tenant counted: (security-key assertions, sign-in
/// attempts), from the line glassdrill prints after a rehearsal.
fn attempts(r: &Run) -> (u32, u32) {
    let line = r
        .stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("rehearsal tenant: "))
        .unwrap_or_else(|| panic!("no tenant summary in:\n{}", r.stderr));
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (nums[0], nums[1])
}

fn stage(r: &DrillRecord, s: Stage) -> &glassdrill::record::StageRecord {
    r.stages
        .iter()
        .find(|x| x.stage == s)
        .unwrap_or_else(|| panic!("no {s:?} stage in {:#?}", r.stages))
}

/// A fault, the verdict, the deciding stage and the words it says, and
/// the (security-key assertions, sign-in attempts) the tenant saw.
type Expect = (Fault, Verdict, Stage, &'static str, (u32, u32));

/// Every fault of the rehearsal tenant: its verdict, the stage that
/// decides it and the words that say why, and how many security-key
/// assertions and sign-in attempts the tenant saw. Never more than one
/// of each: a drill signs in once, whatever goes wrong.
#[test]
fn every_fault_gives_its_verdict_and_the_sign_in_is_attempted_at_most_once() {
    use Verdict::{Error, Fail, Pass};
    let table: Vec<Expect> = vec![
        (
            Fault::CredentialRevoked,
            Fail,
            Stage::SignIn,
            "AADSTS135011",
            (1, 1),
        ),
        (
            Fault::AccountDisabled,
            Fail,
            Stage::SignIn,
            "AADSTS50057",
            (0, 1),
        ),
        (Fault::CaBlock, Fail, Stage::SignIn, "AADSTS53003", (1, 1)),
        (
            Fault::AlertNever,
            Fail,
            Stage::Alerts,
            "no `alert-1` alert",
            (1, 1),
        ),
        (
            Fault::AlertLate,
            Fail,
            Stage::Alerts,
            "it arrived late",
            (1, 1),
        ),
        (
            Fault::AlertOtherAccount,
            Fail,
            Stage::Alerts,
            "for another account",
            (1, 1),
        ),
        (
            Fault::AlertBeforeSignin,
            Fail,
            Stage::Alerts,
            "fired before the sign-in",
            (1, 1),
        ),
        (
            Fault::UiDrift,
            Error,
            Stage::SignIn,
            "flow drift at step security key",
            (0, 0),
        ),
        (Fault::ApiThrottle, Pass, Stage::Confirm, "", (1, 1)),
        (Fault::LogDelay, Pass, Stage::Confirm, "", (1, 1)),
        (
            Fault::AlertRuleMissing,
            Fail,
            Stage::Alerts,
            "no `alert-1` alert",
            (1, 1),
        ),
        (
            Fault::SigninNotLogged,
            Fail,
            Stage::Confirm,
            "did not appear in the sign-in log within 5s",
            (1, 1),
        ),
        (
            Fault::SigninLoggedFailed,
            Fail,
            Stage::Confirm,
            "shows error 500121",
            (1, 1),
        ),
        (
            Fault::GraphOutage,
            Error,
            Stage::Confirm,
            "could not read the sign-in log",
            (1, 1),
        ),
        // Entra's protocol: refused before the assertion is read.
        (
            Fault::ChallengeExpired,
            Error,
            Stage::SignIn,
            "AADSTS50089",
            (0, 1),
        ),
        (
            Fault::UnknownCredential,
            Fail,
            Stage::SignIn,
            "AADSTS135010",
            (1, 1),
        ),
        (
            Fault::WrongUserHandle,
            Fail,
            Stage::SignIn,
            "user handle",
            (1, 1),
        ),
        (
            Fault::NoFido,
            Fail,
            Stage::SignIn,
            "HasFido = false",
            (0, 0),
        ),
        (Fault::Cmsi, Pass, Stage::Confirm, "", (1, 1)),
        // The alert pipeline (the webhook alone here; every connector in
        // alerts_all.rs).
        (
            Fault::AlertNoDimensions,
            Pass,
            Stage::Alerts,
            "matched by rule and window only",
            (1, 1),
        ),
        (
            Fault::AlertResolvedOnly,
            Fail,
            Stage::Alerts,
            "monitor condition is Resolved, not Fired",
            (1, 1),
        ),
        (Fault::AlertDuplicate, Pass, Stage::Alerts, "", (1, 1)),
        (Fault::ApiPartialError, Pass, Stage::Alerts, "", (1, 1)),
        (Fault::Kmsi, Pass, Stage::Confirm, "", (1, 1)),
        (
            Fault::ProofUp,
            Fail,
            Stage::SignIn,
            "ConvergedProofUpRedirect",
            (1, 1),
        ),
    ];
    let failures: Vec<String> = in_parallel(table, 3, |(fault, verdict, at, words, seen)| {
        let w = World::new();
        drill(&w, &[DEFAULT_ALERT_RULE], "3s");
        let r = run(&w, &["--fault", fault.name(), "--alert-delay", "200ms"]);
        let ctx = format!("{fault:?}:\nstdout:\n{}\nstderr:\n{}", r.stdout, r.stderr);
        let mut wrong = Vec::new();
        if r.code != Some(i32::from(verdict_code(verdict))) {
            wrong.push(format!("exit {:?}", r.code));
        }
        let bundle = bundle_from_stdout(&r.stdout);
        if w.verify(&bundle).code != Some(0) {
            wrong.push("the bundle does not verify".into());
        }
        let rec = record_of(&bundle);
        if rec.verdict != verdict {
            wrong.push(format!("verdict {:?}", rec.verdict));
        }
        let st = stage(&rec, at);
        if !st.detail.contains(words) {
            wrong.push(format!("{at:?} says `{}`, not `{words}`", st.detail));
        }
        if attempts(&r) != seen {
            wrong.push(format!(
                "the tenant saw {:?} (assertions, attempts), not {seen:?}",
                attempts(&r)
            ));
        }
        if !w.browser_processes().is_empty() {
            wrong.push("browser processes survived".into());
        }
        (!wrong.is_empty()).then(|| format!("{}\n{ctx}", wrong.join("; ")))
    })
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn verdict_code(v: Verdict) -> u8 {
    match v {
        Verdict::Pass => 0,
        Verdict::Fail => 1,
        Verdict::Error | Verdict::Interrupted => 2,
    }
}

/// Tests issue, defect 2: two expected webhook alerts shared one receiver,
/// so one delivery satisfied both. Now each counts only its own rule's.
#[test]
fn two_expected_alerts_each_need_their_own_rules_delivery() {
    let rules = [DEFAULT_ALERT_RULE, "Break-glass sign-in (SOC pager)"];

    let w = World::new();
    drill(&w, &rules, "3s");
    let r = run(
        &w,
        &["--fault", "alert-rule-missing", "--alert-delay", "200ms"],
    );
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let rec = record_of(&bundle_from_stdout(&r.stdout));
    assert_eq!(rec.verdict, Verdict::Fail);
    let (first, second) = (&rec.alerts[0], &rec.alerts[1]);
    assert_eq!(
        first.matched.as_ref().map(|m| m.rule.as_str()),
        Some(rules[0]),
        "{rec:#?}"
    );
    assert!(second.matched.is_none(), "{rec:#?}");
    assert_eq!(second.rule.as_deref(), Some(rules[1]));
    assert!(
        second.ignored.iter().any(|i| i.reason
            == IgnoreReason::OtherRule {
                rule: rules[0].into()
            }),
        "the first rule's delivery reached the second check and was not counted: {second:#?}"
    );
    assert!(
        stage(&rec, Stage::Alerts)
            .detail
            .contains("no `alert-2` alert"),
        "{}",
        stage(&rec, Stage::Alerts).detail
    );
    w.assert_clean();

    // Both rules fire: PASS, each alert matched by a delivery of its own.
    let w = World::new();
    drill(&w, &rules, "20s");
    let r = run(&w, &["--alert-delay", "200ms"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let rec = record_of(&bundle_from_stdout(&r.stdout));
    let ids: Vec<&str> = rec
        .alerts
        .iter()
        .map(|a| a.matched.as_ref().expect("matched").alert_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1], "two deliveries, one per rule");
    w.assert_clean();
}

/// Every other test's alert lands before the alerts stage starts; this one
/// arrives while the stage is already waiting, and counts.
#[test]
fn an_alert_that_arrives_while_the_alerts_stage_waits_counts() {
    let w = World::new();
    drill(&w, &[DEFAULT_ALERT_RULE], "60s");
    let r = run(&w, &["--alert-delay", "5s"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let rec = record_of(&bundle_from_stdout(&r.stdout));
    let alerts = stage(&rec, Stage::Alerts);
    let matched = rec.alerts[0].matched.as_ref().expect("matched");
    assert!(
        matched.received > alerts.started + chrono::Duration::milliseconds(500),
        "received {} while the stage started at {}",
        matched.received,
        alerts.started
    );
    w.assert_clean();
}

/// The chromium processes of this world's browser (not chromedriver).
fn chromium_pids(w: &World) -> Vec<i32> {
    w.browser_processes()
        .iter()
        .filter(|p| p.contains("--user-data-dir"))
        .filter_map(|p| p.split(':').next().and_then(|n| n.parse().ok()))
        .collect()
}

/// A `run` paused at `point`, let go again when `resume` is created.
fn paused(w: &World, point: &str, extra: &[&str]) -> (Spawned, PathBuf) {
    let resume = w.path().join("resume");
    let mut args = vec!["run", "x", "--progress", "plain", "--step-timeout", "15s"];
    args.extend_from_slice(extra);
    let mut cmd = w.command(&args);
    cmd.env("GLASSDRILL_TEST_PAUSE", point)
        .env("GLASSDRILL_TEST_RESUME", &resume);
    let mut s = Spawned::start(cmd);
    let want = format!("[test-pause] {point}");
    s.line(|st, l| st == Stream::Stderr && l == want, PATIENCE);
    (s, resume)
}

/// systemd stops a unit by sending SIGTERM to every process of its cgroup
/// at once: glassdrill, chromedriver and Chromium alike. The drill is
/// INTERRUPTED with verifiable evidence, before and after the sign-in.
#[test]
fn sigterm_to_the_whole_unit_as_systemd_sends_it() {
    for (point, signed_in) in [("step:security key:wait", false), ("stage:alerts", true)] {
        let w = World::new();
        drill(&w, &[DEFAULT_ALERT_RULE], "60s");
        let (s, _) = paused(&w, point, &["--alert-delay", "60s"]);
        let mut pids: Vec<i32> = w
            .browser_processes()
            .iter()
            .filter_map(|p| p.split(':').next().and_then(|n| n.parse().ok()))
            .collect();
        assert!(!pids.is_empty(), "{point}: the browser runs");
        pids.push(s.pid().as_raw());
        for p in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), Signal::SIGTERM);
        }
        let r = s.finish(PATIENCE);
        let ctx = format!("{point}:\n{}\n{}", r.stdout, r.stderr);
        assert_eq!(r.code, Some(2), "{ctx}");
        assert!(r.stdout.starts_with("INTERRUPTED"), "{ctx}");
        let bundle = bundle_from_stdout(&r.stdout);
        w.verify(&bundle).expect_exit(0);
        let rec = record_of(&bundle);
        assert_eq!(rec.verdict, Verdict::Interrupted, "{ctx}");
        assert_eq!(
            rec.sign_in.log_record.is_some(),
            signed_in,
            "{point}: {rec:#?}"
        );
        w.assert_clean();
    }
}

/// Chromium dies in the middle of the flow: an ERROR that says the
/// browser was lost at that step (not flow drift after a timeout), no
/// sign-in attempt, and evidence as for any other ERROR.
#[test]
fn a_browser_that_crashes_mid_flow_is_an_error_naming_the_step() {
    let w = World::new();
    drill(&w, &[DEFAULT_ALERT_RULE], "20s");
    let (s, resume) = paused(&w, "step:security key:wait", &["--alert-delay", "200ms"]);
    let chromium = chromium_pids(&w);
    assert!(!chromium.is_empty(), "Chromium runs");
    for p in chromium {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
    }
    std::fs::write(&resume, b"").expect("resume");
    let r = s.finish(PATIENCE);
    let ctx = format!("{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{ctx}");
    assert!(r.stdout.starts_with("ERROR"), "{ctx}");
    let bundle = bundle_from_stdout(&r.stdout);
    w.verify(&bundle).expect_exit(0);
    let rec = record_of(&bundle);
    let sign_in = stage(&rec, Stage::SignIn);
    assert_eq!(sign_in.status, StageStatus::Errored, "{ctx}");
    assert!(
        sign_in
            .detail
            .contains("browser failed: the browser was lost while waiting at step security key"),
        "{}",
        sign_in.detail
    );
    assert_eq!(attempts(&r), (0, 0), "no sign-in was attempted");
    w.assert_clean();
}

/// A PASS whose evidence cannot be written is not a PASS: the record stage
/// fails (here a directory sits where `drill.json` must be written, as a
/// broken or full file system would refuse it), the verdict is ERROR,
/// and glassdrill says where the partial evidence is.
#[test]
fn evidence_that_cannot_be_written_turns_a_pass_into_an_error() {
    let w = World::new();
    drill(&w, &[DEFAULT_ALERT_RULE], "20s");
    let (s, resume) = paused(&w, "stage:record", &["--alert-delay", "200ms"]);
    let drill_dir = w.state().join("glassdrill/evidence/x");
    let staging: Vec<PathBuf> = std::fs::read_dir(&drill_dir)
        .expect("evidence dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.display().to_string().ends_with(".partial"))
        .collect();
    assert_eq!(staging.len(), 1, "{staging:?}");
    std::fs::create_dir(staging[0].join("drill.json")).expect("block drill.json");
    std::fs::write(&resume, b"").expect("resume");
    let r = s.finish(PATIENCE);
    let ctx = format!("{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.code, Some(2), "{ctx}");
    assert!(r.stdout.starts_with("ERROR"), "{ctx}");
    assert!(r.stdout.contains("evidence: NOT WRITTEN"), "{ctx}");
    assert!(
        r.stdout.contains(&format!(
            "the partial evidence stays in {}",
            staging[0].display()
        )),
        "{ctx}"
    );
    assert!(
        staging[0].join("journal.jsonl").exists(),
        "the journal is kept"
    );
    w.assert_clean();
}
