//! Malformed host config and drill files give clear, positioned errors and
//! exit 64; `check-config` reports every problem at once; secrets never
//! show in messages.

use crate::util::World;

fn write(w: &World, rel: &str, text: &str) {
    let p = w.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const GOOD_ALERT: &str = "[[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\ndeadline = \"15m\"\n";

fn check(w: &World) -> (Option<i32>, String, String) {
    let out = w.run(["check-config"]);
    (out.code, out.stdout, out.stderr)
}

#[test]
fn bad_toml_in_host_config() {
    let w = World::new();
    write(
        &w,
        "glassdrill.toml",
        "data_dir = \"/x\"\n[webhook\nlisten = 1\n",
    );
    let (code, _, err) = check(&w);
    assert_eq!(code, Some(64));
    assert!(err.contains("glassdrill.toml:2:"), "{err}");
}

#[test]
fn unknown_key_in_host_config_names_position_and_expected_keys() {
    let w = World::new();
    write(
        &w,
        "glassdrill.toml",
        "[webhook]\nlisten = \"127.0.0.1:8765\"\nlisen = \"x\"\n",
    );
    let (code, _, err) = check(&w);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("glassdrill.toml:3:1: error: unknown field `lisen`"),
        "{err}"
    );
    assert!(
        err.contains("listen"),
        "the accepted fields are listed: {err}"
    );
}

#[test]
fn inline_secret_is_refused_without_echoing_it() {
    let w = World::new();
    write(
        &w,
        "glassdrill.toml",
        "[entra]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"Zx8Q~verysecretvalue\"\n",
    );
    let (code, _, err) = check(&w);
    assert_eq!(code, Some(64));
    assert!(
        err.contains(
            "glassdrill.toml:4:17: error: entra.client_secret: secrets are given by reference"
        ),
        "{err}"
    );
    assert!(!err.contains("verysecretvalue"), "{err}");
}

#[test]
fn every_drill_problem_is_reported_at_once() {
    let w = World::new();
    // Missing field in one file, bad duration and unknown key in others.
    write(
        &w,
        "drills/a.toml",
        "id = \"a\"\naccount = \"a@contoso.onmicrosoft.com\"\n",
    );
    write(
        &w,
        "drills/b.toml",
        "id = \"b\"\naccount = \"b@contoso.onmicrosoft.com\"\ntenant = \"rehearsal\"\nflow = \"flows/entra-security-key.toml\"\nauthenticator = { kind = \"virtual\" }\n[[alerts]]\nkind = \"webhook\"\nname = \"x\"\ndeadline = \"fifteen minutes\"\n",
    );
    write(
        &w,
        "drills/c.toml",
        &format!(
            "id = \"c\"\naccount = \"c@contoso.onmicrosoft.com\"\ntenant = \"rehearsal\"\nflow = \"flows/entra-security-key.toml\"\ncolor = \"red\"\nsize = 3\nauthenticator = {{ kind = \"virtual\" }}\n{GOOD_ALERT}"
        ),
    );
    write(
        &w,
        "drills/ok.toml",
        &format!(
            "id = \"ok\"\naccount = \"ok@contoso.onmicrosoft.com\"\ntenant = \"rehearsal\"\nflow = \"flows/entra-security-key.toml\"\nauthenticator = {{ kind = \"virtual\" }}\n{GOOD_ALERT}"
        ),
    );
    let (code, out, err) = check(&w);
    assert_eq!(code, Some(64), "{out}{err}");
    assert!(
        err.contains("drills/a.toml:1:1: error: missing field"),
        "{err}"
    );
    assert!(
        err.contains(
            "drills/b.toml:9:12: error: alerts.deadline: `fifteen minutes` is not a duration"
        ),
        "{err}"
    );
    assert!(
        err.contains("drills/c.toml:5:1: error: unknown field `color`"),
        "{err}"
    );
    assert!(
        err.contains("drills/c.toml:6:1: error: unknown field `size`"),
        "both unknown keys of one file are reported: {err}"
    );
    assert!(
        out.contains("drill ok: ok@contoso.onmicrosoft.com"),
        "good drills are still listed: {out}"
    );
}

#[test]
fn unresolvable_secret_reference_is_a_warning_for_check_config_and_an_error_for_run() {
    let w = World::new();
    write(
        &w,
        "drills/bg1.toml",
        &format!(
            "id = \"bg1\"\naccount = \"bg1@contoso.onmicrosoft.com\"\nflow = \"flows/entra-security-key.toml\"\n\
         authenticator = {{ kind = \"virtual\", private_key = \"file:/nonexistent/bg1.pk8\", credential_id = \"AAAA\", rp_id = \"login.microsoft.com\" }}\n{GOOD_ALERT}"
        ),
    );
    let (code, out, err) = check(&w);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(
            "warning: authenticator.private_key: secret file /nonexistent/bg1.pk8 cannot be read"
        ),
        "{err}"
    );
    let out = w.run(["run", "bg1"]);
    assert_eq!(out.code, Some(64));
    let err = &out.stderr;
    assert!(
        err.contains("no [entra] table") && err.contains("bg1.pk8") && err.contains("webhook"),
        "{err}"
    );
    assert!(err.contains("fixed [webhook] listen address"), "{err}");
    assert!(
        !w.state().join("glassdrill/keys").exists(),
        "nothing is created before the config is sound"
    );
}

#[test]
fn bad_flow_file_is_reported_in_the_flow_file() {
    let w = World::new();
    write(
        &w,
        "drills/flows/mine.toml",
        "name = \"mine\"\nstart_url = \"x\"\n[[steps]]\nname = \"only\"\nwait_for = [\"#a\"]\nclik = [\"#b\"]\n",
    );
    write(
        &w,
        "drills/d.toml",
        &format!(
            "id = \"d\"\naccount = \"d@contoso.onmicrosoft.com\"\ntenant = \"rehearsal\"\nflow = \"flows/mine.toml\"\nauthenticator = {{ kind = \"virtual\" }}\n{GOOD_ALERT}"
        ),
    );
    let (code, _, err) = check(&w);
    assert_eq!(code, Some(64));
    assert!(
        err.contains("drills/flows/mine.toml:6:1: error: unknown field `clik`"),
        "{err}"
    );
}

#[test]
fn explicit_missing_config_is_a_usage_error() {
    let w = World::new();
    let out = w.run(["--config", "nope.toml", "check-config"]);
    assert_eq!(out.code, Some(64));
    assert!(
        out.stderr
            .contains("nope.toml: error: cannot read the host config")
    );
}

#[test]
fn keygen_writes_an_openssh_key_with_mode_0600_and_refuses_to_overwrite() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let key = w.path().join("keys/ev");
    let key_arg = key.to_str().unwrap();
    let out = w.run(["keygen", "--out", key_arg, "--comment", "drills@example"]);
    out.expect_exit(0);
    let stdout = &out.stdout;
    assert!(
        stdout.contains("drills@example namespaces=\"glassdrill-evidence-v1\" ssh-ed25519 "),
        "{stdout}"
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    let fp = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key)
        .output()
        .unwrap();
    assert!(fp.status.success(), "ssh-keygen reads the key");
    let again = w.run(["keygen", "--out", key_arg]);
    assert_eq!(again.code, Some(64));
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );
}
