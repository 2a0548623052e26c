//! Drills with a security key behind the bridge, through the real binary:
//! a soft key (`glassdrill keys soft-new`) in a drill file against the
//! rehearsal tenant, which verifies signature, counter, UP and UV as Entra
//! does. PASS; a wrong PIN (a finding, never tried twice); a lowered PIN
//! counter (the key is not used); UV not performed (the tenant refuses);
//! a counter that went backwards (a finding); no touch in time; the
//! touch actuator. And the PIN never appears anywhere.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use glassdrill::fido::Fido2Key as _;
use glassdrill::fido::soft::SoftKey;
use serde_json::Value;

use crate::util::{Run, World, bundle_from_stdout};

const PIN: &str = "739104";

fn secret_file(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

/// A soft key made with `glassdrill keys soft-new`, and a drill file using
/// it with the PIN in `pin_file` (which may hold a wrong PIN).
struct KeyDrill {
    key: PathBuf,
    pin_file: PathBuf,
}

fn setup(w: &World, extra_auth: &str) -> KeyDrill {
    let pin_file = w.path().join("pin");
    secret_file(&pin_file, PIN);
    let key = w.path().join("soft-a.json");
    let made = w.run([
        "keys",
        "soft-new",
        key.to_str().unwrap(),
        "--rp-id",
        glassdrill::tenant::RP_ID,
        "--user-name",
        "breakglass1@rehearsal.onmicrosoft.com",
        "--tenant-id",
        glassdrill::tenant::TENANT_ID,
        "--object-id",
        glassdrill::tenant::REHEARSAL_OBJECT_ID,
        "--pin",
        &format!("file:{}", pin_file.display()),
    ]);
    made.expect_exit(0);
    assert!(made.stdout.contains("credential_id"), "{}", made.stdout);
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    std::fs::write(
        w.path().join("drills/bg-soft.toml"),
        format!(
            "id = \"bg-soft\"\naccount = \"breakglass1@rehearsal.onmicrosoft.com\"\ntenant = \"rehearsal\"\n\
             flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"20s\"\n\
             [authenticator]\nkind = \"soft\"\npin = \"file:{}\"\n{extra_auth}\n\
             [[authenticator.keys]]\nname = \"soft-a\"\nstate = \"{}\"\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"20s\"\n",
            pin_file.display(),
            key.display(),
        ),
    )
    .unwrap();
    KeyDrill { key, pin_file }
}

fn run(w: &World) -> Run {
    let mut c = w.command(&[
        "run",
        "bg-soft",
        "--progress",
        "plain",
        "--alert-delay",
        "200ms",
    ]);
    c.env("GLASSDRILL_LOG", "debug");
    crate::util::Spawned::start(c).finish(std::time::Duration::from_secs(300))
}

fn record(out: &Run) -> Value {
    let b = bundle_from_stdout(&out.stdout);
    serde_json::from_slice(&std::fs::read(b.join("drill.json")).unwrap()).unwrap()
}

fn set_pin(d: &KeyDrill, pin: &str) {
    std::fs::write(&d.pin_file, pin).unwrap();
}

fn soft(d: &KeyDrill) -> SoftKey {
    SoftKey::open(&d.key)
}

/// Every byte glassdrill left (output, evidence, state, logs) searched
/// for the PIN.
fn assert_pin_nowhere(w: &World, outs: &[&Run]) {
    for o in outs {
        assert!(!o.stdout.contains(PIN), "PIN on stdout:\n{}", o.stdout);
        assert!(!o.stderr.contains(PIN), "PIN on stderr:\n{}", o.stderr);
    }
    let mut stack = vec![w.state()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                assert!(
                    !bytes.windows(PIN.len()).any(|win| win == PIN.as_bytes()),
                    "PIN in {}",
                    p.display()
                );
            }
        }
    }
}

#[test]
fn a_soft_key_drill_passes_through_the_bridge_and_a_cloned_counter_is_caught() {
    let w = World::new();
    let d = setup(&w, "");
    let check = w.run(["keys", "check", "bg-soft"]);
    check.expect_exit(0);
    assert!(check.stdout.contains("key soft-a: OK"), "{}", check.stdout);

    let first = run(&w);
    first.expect_exit(0);
    assert!(first.stdout.starts_with("PASS"), "{}", first.stdout);
    let r = record(&first);
    let k = &r["key"];
    assert_eq!(k["kind"], "soft");
    assert_eq!(k["name"], "soft-a");
    assert_eq!(k["pin_retries_before"], 8);
    assert_eq!(k["pin_retries_after"], 8);
    assert_eq!(k["sign_count_after"], 1);
    assert_eq!(k["user_verified"], true);
    assert_eq!(k["credential_id_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(r["authenticator"]["kind"], "soft");
    w.verify(&bundle_from_stdout(&first.stdout)).expect_exit(0);

    // The key is cloned: its counter goes back. The tenant (which
    // remembers 1, as Entra does) refuses, and the record says why.
    soft(&d).tamper(|k| k.set_sign_count(0)).unwrap();
    let second = run(&w);
    assert!(
        second.stdout.starts_with("FAIL"),
        "{}\n{}",
        second.stdout,
        second.stderr
    );
    let r = record(&second);
    assert_eq!(r["key"]["sign_count_before"], 1);
    assert_eq!(r["key"]["sign_count_after"], 1);
    let findings = r["key"]["findings"].to_string();
    assert!(findings.contains("did not increase"), "{findings}");
    assert!(second.stdout.contains("finding:") || second.stderr.contains("did not increase"));
    assert_pin_nowhere(&w, &[&check, &first, &second]);
    w.assert_clean();
}

#[test]
fn a_wrong_pin_is_a_finding_and_never_tried_again() {
    let w = World::new();
    let d = setup(&w, "");
    set_pin(&d, "000000");
    let first = run(&w);
    assert_eq!(first.code, Some(1), "{}\n{}", first.stdout, first.stderr);
    assert!(first.stdout.starts_with("FAIL"), "{}", first.stdout);
    assert!(first.stdout.contains("7 retries left"), "{}", first.stdout);
    let r = record(&first);
    assert!(
        r["key"]["findings"].to_string().contains("7 retries left"),
        "{}",
        r["key"]
    );
    assert_eq!(soft(&d).info().unwrap().pin_retries, Some(7));
    // No sign-in was attempted: preflight stopped it.
    assert_eq!(r["stages"][1]["status"], "skipped", "{}", r["stages"]);

    // The next run does not try the PIN at all: the counter is below its
    // maximum, a tamper signal.
    let second = run(&w);
    assert!(second.stdout.starts_with("FAIL"), "{}", second.stdout);
    assert!(second.stdout.contains("7 of 8"), "{}", second.stdout);
    assert_eq!(soft(&d).info().unwrap().pin_retries, Some(7));
    let check = w.run(["keys", "check", "bg-soft"]);
    check.expect_exit(1);
    assert!(check.stdout.contains("tamper"), "{}", check.stdout);
    assert_eq!(soft(&d).info().unwrap().pin_retries, Some(7));
    w.assert_clean();
}

#[test]
fn a_key_that_skips_user_verification_is_refused_by_the_tenant() {
    let w = World::new();
    let d = setup(&w, "");
    soft(&d).tamper(|k| k.set_performs_uv(false)).unwrap();
    let out = run(&w);
    assert!(
        out.stdout.starts_with("FAIL"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout.contains("user verification") || out.stdout.contains("UV"),
        "{}",
        out.stdout
    );
    let r = record(&out);
    assert_eq!(r["key"]["user_verified"], false);
    w.assert_clean();
}

#[test]
fn no_touch_in_time_is_an_error_that_counts_as_the_sign_in_and_the_actuator_touches() {
    let w = World::new();
    let d = setup(&w, "touch_timeout = \"2s\"");
    soft(&d).tamper(|k| k.set_wait_for_touch(true)).unwrap();
    let out = run(&w);
    assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("no touch within 2 s"), "{}", out.stdout);
    assert!(
        out.stderr.contains("touch the security key now"),
        "{}",
        out.stderr
    );
    let r = record(&out);
    let sign_in = r["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "sign-in")
        .unwrap();
    assert_eq!(sign_in["status"], "errored", "{sign_in}");
    assert!(
        sign_in["detail"]
            .as_str()
            .unwrap()
            .contains("the run's one sign-in attempt"),
        "{sign_in}"
    );
    // The state store holds the drill: the sign-in was attempted.
    let status = w.run(["status", "--json"]);
    assert!(
        status.stdout.contains("held") || status.stdout.contains("hold"),
        "{}",
        status.stdout
    );
    std::fs::remove_file(soft(&d).touch_path()).ok();

    // With an actuator that "presses" the key, it passes.
    let w2 = World::new();
    let d2 = setup(
        &w2,
        "touch_timeout = \"20s\"\ntouch_command = [\"/bin/sh\", \"-c\", \"sleep 0.3; : > \\\"$0.touch\\\"\"]",
    );
    soft(&d2).tamper(|k| k.set_wait_for_touch(true)).unwrap();
    let out = run(&w2);
    assert!(
        out.stdout.starts_with("PASS"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    let r = record(&out);
    assert!(
        r["key"]["touch_wait_ms"].as_u64().unwrap() >= 300,
        "{}",
        r["key"]
    );
    w.assert_clean();
    w2.assert_clean();
}

#[test]
fn keys_list_without_a_key_says_so_and_succeeds() {
    let w = World::new();
    let out = w.run(["keys", "list"]);
    out.expect_exit(0);
    assert!(
        out.stdout.contains("no FIDO security key is attached"),
        "{}",
        out.stdout
    );
    let json = w.run(["keys", "list", "--json"]);
    json.expect_exit(0);
    assert_eq!(json.stdout.trim(), "[]");
}

#[test]
fn keys_check_names_a_key_without_the_accounts_credential() {
    let w = World::new();
    let d = setup(&w, "");
    // Another key file: a credential for another account only.
    std::fs::remove_file(&d.key).unwrap();
    let made = w.run([
        "keys",
        "soft-new",
        d.key.to_str().unwrap(),
        "--rp-id",
        glassdrill::tenant::RP_ID,
        "--user-name",
        "someone.else@rehearsal.onmicrosoft.com",
        "--pin",
        &format!("file:{}", d.pin_file.display()),
    ]);
    made.expect_exit(0);
    let check = w.run(["keys", "check", "bg-soft"]);
    check.expect_exit(1);
    assert!(
        check
            .stdout
            .contains("none for breakglass1@rehearsal.onmicrosoft.com"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains(PIN) && !check.stderr.contains(PIN));
}

/// The page asks for an RP id the drill does not own: the bridge refuses
/// (SecurityError, no signature), and the drill says it was glassdrill's
/// refusal (ERROR), not a finding about the account.
#[test]
fn a_bridge_refusal_is_an_error_not_a_finding_about_the_account() {
    let w = World::new();
    let pin_file = w.path().join("pin");
    secret_file(&pin_file, PIN);
    let key = w.path().join("soft-other.json");
    w.run([
        "keys",
        "soft-new",
        key.to_str().unwrap(),
        "--rp-id",
        "other.localhost",
        "--user-name",
        "breakglass1@rehearsal.onmicrosoft.com",
        "--pin",
        &format!("file:{}", pin_file.display()),
    ])
    .expect_exit(0);
    std::fs::create_dir_all(w.path().join("drills")).unwrap();
    std::fs::write(
        w.path().join("drills/bg-soft.toml"),
        format!(
            "id = \"bg-soft\"\naccount = \"breakglass1@rehearsal.onmicrosoft.com\"\ntenant = \"rehearsal\"\n\
             flow = \"flows/entra-security-key.toml\"\nconfirm_deadline = \"20s\"\n\
             [authenticator]\nkind = \"soft\"\nrp_id = \"other.localhost\"\npin = \"file:{}\"\n\
             [[authenticator.keys]]\nname = \"soft-a\"\nstate = \"{}\"\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"20s\"\n",
            pin_file.display(),
            key.display(),
        ),
    )
    .unwrap();
    let out = run(&w);
    assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("ERROR"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("glassdrill's WebAuthn bridge refused the page's request"),
        "{}",
        out.stdout
    );
    let r = record(&out);
    assert_eq!(r["key"]["sign_count_after"], serde_json::Value::Null);
    assert!(
        r["key"]["refused"].to_string().contains("SecurityError"),
        "{}",
        r["key"]
    );
    w.assert_clean();
}
