//! `glassdrill run <drill>` with a drill file of its own (a virtual
//! credential from a key file, against the rehearsal tenant), and Ctrl-C in
//! the middle of a drill: INTERRUPTED, evidence kept, nothing left running.

use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::util::{Spawned, Stream, World, bundle_from_stdout};
use base64::Engine as _;

fn setup_drill(w: &World) {
    let pkcs8 = glassdrill::webauthn::generate_p256_pkcs8().unwrap();
    let key = w.path().join("bg-rehearsal.pk8");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .unwrap();
    std::io::Write::write_all(&mut f, &pkcs8).unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    std::fs::write(
        w.path().join("drills/bg-rehearsal.toml"),
        format!(
            "id = \"bg-rehearsal\"\naccount = \"breakglass1@rehearsal.onmicrosoft.com\"\ntenant = \"rehearsal\"\n\
             flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"20s\"\n\
             [authenticator]\nkind = \"virtual\"\nprivate_key = \"file:{}\"\ncredential_id = \"{}\"\nuser_handle = \"{}\"\nrp_id = \"login.microsoft.localhost\"\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"20s\"\n",
            key.display(),
            b64.encode(b"credential-id-01"),
            b64.encode(glassdrill::tenant::rehearsal_user_handle()),
        ),
    )
    .unwrap();
}

#[test]
fn run_a_drill_file_with_a_key_from_a_file() {
    let w = World::new();
    setup_drill(&w);
    let out = w.run([
        "run",
        "bg-rehearsal",
        "--operator",
        "Alice Custodian",
        "--witness",
        "Bob SOC",
        "--progress",
        "plain",
        "--alert-delay",
        "200ms",
    ]);
    out.expect_exit(0);
    let dir = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("evidence: "))
        .unwrap()
        .trim()
        .to_owned();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}/drill.json")).unwrap()).unwrap();
    assert_eq!(record["operator"], "Alice Custodian");
    assert_eq!(record["witness"], "Bob SOC");
    assert_eq!(
        record["authenticator"]["credential_id"],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"credential-id-01")
    );
    assert!(
        record["authenticator"]["public_key_sha256"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    // The private key never reaches the evidence.
    let pkcs8 = std::fs::read(w.path().join("bg-rehearsal.pk8")).unwrap();
    let needle = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&pkcs8);
    for f in crate::util::files(std::path::Path::new(&dir)) {
        let text =
            String::from_utf8_lossy(&std::fs::read(format!("{dir}/{f}")).unwrap()).to_string();
        assert!(!text.contains(&needle), "{f} contains the private key");
    }
    w.assert_clean();
}

/// Starts a rehearsal whose alert is a minute away and returns once it is
/// waiting in the alerts stage, with the browser open.
fn rehearsal_waiting_for_alerts(w: &World) -> Spawned {
    let mut run = w.spawn(&[
        "rehearse",
        "--progress",
        "plain",
        "--alert-delay",
        "60s",
        "--alert-deadline",
        "90s",
    ]);
    run.line(
        |s, l| s == Stream::Stderr && l.starts_with("[alerts] started"),
        Duration::from_secs(120),
    );
    run
}

#[test]
fn ctrl_c_mid_drill_interrupts_cleans_up_and_keeps_evidence() {
    let w = World::new();
    let run = rehearsal_waiting_for_alerts(&w);
    run.signal(nix::sys::signal::Signal::SIGINT);
    let out = run.finish(Duration::from_secs(60));
    let ctx = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(2), "{ctx}");
    assert!(out.stdout.starts_with("INTERRUPTED"), "{ctx}");
    // The evidence is there, verifies, and says where the drill stopped.
    let bundle = bundle_from_stdout(&out.stdout);
    w.verify(&bundle).expect_exit(0);
    let r = glassdrill::record::DrillRecord::from_json(
        &std::fs::read(bundle.join("drill.json")).expect("drill.json"),
    )
    .expect("a drill record");
    assert_eq!(r.verdict, glassdrill::record::Verdict::Interrupted);
    let alerts = r
        .stages
        .iter()
        .find(|s| s.stage == glassdrill::record::Stage::Alerts)
        .expect("alerts stage");
    assert_eq!(
        alerts.status,
        glassdrill::record::StageStatus::Interrupted,
        "{:#?}",
        r.stages
    );
    assert!(
        r.stages
            .iter()
            .any(|s| s.stage == glassdrill::record::Stage::SignIn
                && s.status == glassdrill::record::StageStatus::Passed),
        "the sign-in before it is kept: {:#?}",
        r.stages
    );
    w.assert_clean();
}

#[test]
fn the_next_run_cleans_up_after_a_glassdrill_that_was_killed_outright() {
    let w = World::new();
    let run = rehearsal_waiting_for_alerts(&w);
    // SIGKILL: no Drop runs, the browser is orphaned.
    run.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = run.finish(Duration::from_secs(60));
    let left: Vec<_> = std::fs::read_dir(w.browser_tmp())
        .unwrap()
        .flatten()
        .collect();
    assert!(
        !left.is_empty(),
        "a killed glassdrill leaves its browser behind (nothing can run at SIGKILL)"
    );
    // Its browser may already be gone: the guard process kills it when
    // glassdrill dies, racing this test. Its directory is still there.

    // The next drill reaps the orphans before it starts its own browser.
    w.run(["rehearse", "--progress", "none", "--alert-delay", "0s"])
        .expect_exit(0);
    w.assert_clean();
}
