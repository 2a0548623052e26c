//! `glassdrill rehearse` end to end through the binary: real Chromium via
//! chromedriver, the rehearsal tenant, the webhook, a signed bundle that
//! `evidence verify`, `ssh-keygen -Y verify` and `sha256sum -c --strict`
//! accept; then tampering with every file of it is caught.

use std::path::Path;
use std::process::Command;

use crate::util::{World, bundle_from_stdout, files};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// Copies the bundle, applies `tamper` to `file` in the copy, and checks
/// that `evidence verify` fails and names that file.
fn assert_tamper_caught(
    w: &World,
    bundle: &Path,
    copy: &Path,
    file: &str,
    tamper: impl FnOnce(&Path),
) {
    copy_dir(bundle, copy);
    tamper(&copy.join(file));
    let out = w.verify(copy);
    assert_eq!(out.code, Some(1), "{} went unnoticed", copy.display());
    assert!(
        out.stderr.contains(file),
        "{}: the error does not name {file}:\n{}",
        copy.display(),
        out.stderr
    );
}

#[test]
fn rehearse_passes_and_the_bundle_verifies_with_standard_tools() {
    let w = World::new();
    let out = w.run(["rehearse", "--progress", "plain", "--alert-delay", "300ms"]);
    out.expect_exit(0);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(stdout.starts_with("PASS  drill rehearsal"), "{stdout}");
    // Live progress per stage, the key creation note, the verify commands.
    for stage in [
        "preflight",
        "announce",
        "sign-in",
        "confirm",
        "alerts",
        "teardown",
        "record",
    ] {
        assert!(
            stderr.contains(&format!("[{stage}] started")),
            "{stage} missing in\n{stderr}"
        );
    }
    assert!(
        stderr.contains("created the evidence signing key"),
        "{stderr}"
    );
    assert!(stdout.contains("ssh-keygen -Y verify -f "), "{stdout}");
    assert!(
        stdout.contains("sha256sum -c --strict SHA256SUMS"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fired ") && stdout.contains("ms after the sign-in"),
        "{stdout}"
    );
    w.assert_clean();

    let bundle = bundle_from_stdout(stdout);
    assert!(bundle.starts_with(w.state().join("glassdrill/evidence/rehearsal")));
    let listed = files(&bundle);
    for f in [
        "drill.json",
        "signin.json",
        "report.html",
        "allowed_signers",
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "screenshots/01-username.jpg",
        "screenshots/05-landing.jpg",
    ] {
        assert!(
            listed.contains(&f.to_owned()),
            "{f} missing from {listed:?}"
        );
    }
    assert!(
        listed
            .iter()
            .any(|f| f.starts_with("alerts/") && f.ends_with("-matched.json")),
        "{listed:?}"
    );

    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("drill.json")).unwrap()).unwrap();
    assert_eq!(record["verdict"], "PASS");
    assert_eq!(record["authenticator"]["kind"], "virtual");
    assert_eq!(record["runner"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        record["stages"].as_array().unwrap().len(),
        7,
        "stages up to teardown (posture included) are in the signed record"
    );
    assert!(
        record["config_digest"]["drill_and_flow_sha256"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    let lat = &record["alerts"][0]["latency"];
    assert!(lat["signin_to_fired_ms"].as_i64().unwrap() >= 300, "{lat}");

    // glassdrill's own verification.
    w.verify(&bundle).expect_exit(0);

    // The auditor's tools.
    let signer = std::fs::read_to_string(bundle.join("allowed_signers"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let sums = std::fs::File::open(bundle.join("SHA256SUMS")).unwrap();
    let ssh = Command::new("ssh-keygen")
        .args([
            "-Y",
            "verify",
            "-f",
            "allowed_signers",
            "-I",
            &signer,
            "-n",
            "glassdrill-evidence-v1",
            "-s",
            "SHA256SUMS.sig",
        ])
        .current_dir(&bundle)
        .stdin(sums)
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    let sha = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        sha.status.success(),
        "sha256sum: {}",
        String::from_utf8_lossy(&sha.stdout)
    );

    // No secret reaches the bundle: the virtual credential's private key is
    // never written, and the webhook token never appears.
    for f in &listed {
        let text = String::from_utf8_lossy(&std::fs::read(bundle.join(f)).unwrap()).to_string();
        assert!(
            !text.contains("privateKey")
                && !text.contains("client_secret")
                && !text.contains("/webhook/"),
            "{f} mentions a secret"
        );
    }

    // Tampering: one byte changed in any file, a file removed, a file added.
    let scratch = w.path().join("tamper");
    for f in &listed {
        assert_tamper_caught(
            &w,
            &bundle,
            &scratch.join(format!("changed-{}", f.replace('/', "_"))),
            f,
            |p| {
                let mut bytes = std::fs::read(p).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x01;
                std::fs::write(p, bytes).unwrap();
            },
        );
        assert_tamper_caught(
            &w,
            &bundle,
            &scratch.join(format!("removed-{}", f.replace('/', "_"))),
            f,
            |p| {
                std::fs::remove_file(p).unwrap();
            },
        );
    }
    for extra in ["extra.txt", "screenshots/extra.png"] {
        assert_tamper_caught(
            &w,
            &bundle,
            &scratch.join(format!("added-{}", extra.replace('/', "_"))),
            extra,
            |p| {
                std::fs::write(p, b"not part of the drill").unwrap();
            },
        );
    }
}

#[test]
fn rehearse_with_a_fault_exits_1_and_still_records_evidence() {
    let w = World::new();
    let out = w.run([
        "rehearse",
        "--progress",
        "none",
        "--fault",
        "alert-never",
        "--alert-deadline",
        "2s",
    ]);
    out.expect_exit(1);
    let stdout = &out.stdout;
    assert!(stdout.starts_with("FAIL"), "{stdout}");
    assert!(stdout.contains("reason: alerts: no `"), "{stdout}");
    let bundle = bundle_from_stdout(stdout);
    assert_eq!(w.verify(&bundle).code, Some(0));
    w.assert_clean();
}

#[test]
fn usage_errors_exit_64() {
    let w = World::new();
    let out = w.run(["rehearse", "--fault", "meteor-strike"]);
    assert_eq!(out.code, Some(64));
    assert!(out.stderr.contains("meteor-strike"));
    let out = w.run(["run", "no-such-drill"]);
    assert_eq!(out.code, Some(64));
    assert!(out.stderr.contains("no drill with id `no-such-drill`"));
}
