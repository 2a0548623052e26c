//! `glassdrill run <drill>` with a drill file of its own (a virtual
//! credential from a key file, against the rehearsal tenant), and Ctrl-C in
//! the middle of a drill: INTERRUPTED, evidence kept, nothing left running.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::OpenOptionsExt;

use crate::util::World;
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
             [authenticator]\nkind = \"virtual\"\nprivate_key = \"file:{}\"\ncredential_id = \"{}\"\nuser_handle = \"{}\"\nrp_id = \"ceremony.rehearsal.localhost\"\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\ndeadline = \"20s\"\n",
            key.display(),
            b64.encode(b"credential-id-01"),
            b64.encode(b"user-handle-0001"),
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
/// waiting in the alerts stage, with the browser open; also returns the
/// rest of its stderr.
fn rehearsal_waiting_for_alerts(
    w: &World,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = w.spawn(&[
        "rehearse",
        "--progress",
        "plain",
        "--alert-delay",
        "60s",
        "--alert-deadline",
        "90s",
    ]);
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("[alerts] started") {
            return (child, lines);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the rehearsal never reached the alerts stage");
}

#[test]
fn ctrl_c_mid_drill_interrupts_cleans_up_and_keeps_evidence() {
    let w = World::new();
    let (child, rest) = rehearsal_waiting_for_alerts(&w);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let seen: Vec<String> = rest.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{seen:#?}");
    assert!(stdout.starts_with("INTERRUPTED"), "{stdout}\n{seen:#?}");
    assert!(stdout.contains("evidence: "), "{stdout}");
    w.assert_clean();
}

#[test]
fn the_next_run_cleans_up_after_a_glassdrill_that_was_killed_outright() {
    let w = World::new();
    let (mut child, _) = rehearsal_waiting_for_alerts(&w);
    // SIGKILL: no Drop runs, the browser is orphaned.
    child.kill().unwrap();
    child.wait().unwrap();
    let left: Vec<_> = std::fs::read_dir(w.browser_tmp())
        .unwrap()
        .flatten()
        .collect();
    assert!(
        !left.is_empty(),
        "a killed glassdrill leaves its browser behind (nothing can run at SIGKILL)"
    );
    assert!(
        !w.browser_processes().is_empty(),
        "the killed run's browser is still running"
    );

    // The next drill reaps the orphans before it starts its own browser.
    w.run(["rehearse", "--progress", "none", "--alert-delay", "0s"])
        .expect_exit(0);
    w.assert_clean();
}
