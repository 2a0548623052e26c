//! Helpers shared by the evidence unit tests.
#![allow(dead_code)]

pub(crate) use super::*;
pub(crate) use std::process::{Command, Stdio};
pub(crate) use tempfile::TempDir;

pub(crate) const SIGNER: &str = "drills@example.org";

/// The files every test bundle holds besides the three `finish` adds.
pub(crate) const FILES: &[(&str, &[u8])] = &[
    ("drill.json", b"{\"drill\":\"bg-1\"}\n"),
    ("signin.json", b"{\"ok\":true}"),
    ("alerts/001.json", b"{\"alert\":1}\n"),
    (
        "screenshots/01-username.png",
        b"\x89PNG\r\n\x1a\n\x00\x01binary\xff",
    ),
    ("report.html", b"<!doctype html><title>r</title>\n"),
    ("a b/with space.txt", b"spaces are fine\n"),
];

pub(crate) fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Runs a command, returning (success, stdout+stderr).
pub(crate) fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is openssh-client installed?): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub(crate) fn ssh_keygen_verify(bundle: &Path, allowed: &Path) -> (bool, String) {
    let manifest = File::open(bundle.join(MANIFEST));
    let stdin = match manifest {
        Ok(f) => Stdio::from(f),
        Err(_) => Stdio::null(),
    };
    run(Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", SIGNER, "-n", NAMESPACE, "-s", SIGNATURE])
        .current_dir(bundle)
        .stdin(stdin))
}

pub(crate) fn sha256sum_check(bundle: &Path) -> (bool, String) {
    run(Command::new("sha256sum")
        .args(["-c", "--strict", MANIFEST])
        .current_dir(bundle))
}

pub(crate) struct Fixture {
    pub(crate) tmp: TempDir,
    pub(crate) key: SigningKey,
    pub(crate) bundle: SealedBundle,
}

pub(crate) fn fixture() -> Fixture {
    let tmp = TempDir::new().unwrap();
    let key = SigningKey::generate(&tmp.path().join("keys/evidence"), "glassdrill test").unwrap();
    let bundle = make_bundle(tmp.path(), &key, "run-1");
    Fixture { tmp, key, bundle }
}

pub(crate) fn make_bundle(root: &Path, key: &SigningKey, run_id: &str) -> SealedBundle {
    let mut w = BundleWriter::create(&root.join("evidence"), "bg-1", run_id).unwrap();
    for (p, b) in FILES {
        w.add(p, b).unwrap();
    }
    w.finish(key, SIGNER).unwrap()
}

pub(crate) fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    fs::write(path, bytes).unwrap();
}
