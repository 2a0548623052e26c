//! Man pages and shell completions, generated from the clap definitions
//! (so they never disagree with `--help`) and, for `glassdrill.toml(5)`,
//! from the documented sample config `deploy/glassdrill.toml` checked
//! against the keys the config types accept.

use std::io::Write as _;
use std::path::Path;

use clap::CommandFactory as _;

use super::Cli;

/// The sample host config: every key, with its comment.
pub(crate) const SAMPLE_CONFIG: &str = include_str!("../../deploy/glassdrill.toml");

const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "PASS: the drill proved the account works and is watched.",
    ),
    (
        "1",
        "FAIL: a finding (sign-in refused, sign-in not in the log, alert missing or late, a key finding). Never retried automatically.",
    ),
    (
        "2",
        "ERROR or INTERRUPTED: the drill could not be carried out (an outage, a crash, a stop); the evidence says how far it got.",
    ),
    (
        "64",
        "Usage or configuration error (fix the command line or the file named).",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/etc/glassdrill/glassdrill.toml",
        "The host config (see glassdrill.toml(5)); else ./glassdrill.toml or $XDG_CONFIG_HOME/glassdrill/glassdrill.toml.",
    ),
    (
        "/etc/glassdrill/drills/*.toml",
        "Drill files: the account, its flow, authenticator, keys, alerts and schedule.",
    ),
    (
        "/etc/glassdrill/secrets/",
        "Secrets passed to the service as systemd credentials (LoadCredential=), named credential:NAME in the config.",
    ),
    (
        "/var/lib/glassdrill/evidence/",
        "Signed evidence bundles, one directory per drill and run; audit material, kept when the package is purged.",
    ),
    (
        "/var/lib/glassdrill/state.db",
        "The daemon's state (SQLite): due times, runs, key proofs and counters, locks, the notification outbox.",
    ),
    (
        "/var/lib/glassdrill/daemon.sock",
        "The daemon's control socket: glassdrill run asks the running daemon to run a drill.",
    ),
    (
        "/var/lib/glassdrill/keys/evidence_ed25519",
        "The evidence signing key (its .pub goes to auditors).",
    ),
];

/// Escapes text for a roff line.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\\\").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn extra_sections(top: bool) -> String {
    let mut s = String::from(".SH \"EXIT STATUS\"\n");
    for (code, what) in EXIT_STATUS {
        s.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", roff(what)));
    }
    if top {
        s.push_str(".SH FILES\n");
        for (f, what) in FILES {
            s.push_str(&format!(".TP\n\\fI{}\\fR\n{}\n", roff(f), roff(what)));
        }
        s.push_str(".SH ENVIRONMENT\n.TP\n\\fBGLASSDRILL_LOG\\fR\nA tracing filter (e.g. debug) for the log on stderr.\n.TP\n\\fBNO_COLOR\\fR\nNo colour in the log unless \\-\\-color always.\n.TP\n\\fBCREDENTIALS_DIRECTORY\\fR\nWhere systemd puts the credentials named credential:NAME.\n");
    }
    s.push_str(".SH \"SEE ALSO\"\n\\fBglassdrill\\fR(1), \\fBglassdrill.toml\\fR(5), \\fBssh\\-keygen\\fR(1), \\fBsha256sum\\fR(1)\n");
    s
}

/// Writes `glassdrill.1`, `glassdrill-<command>.1` for every command, and
/// `glassdrill.toml.5` into `dir`.
pub(crate) fn write_man_pages(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let cmd = Cli::command();
    let mut page = |name: String, c: clap::Command, top: bool| -> std::io::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        buf.extend_from_slice(extra_sections(top).as_bytes());
        let file = format!("{name}.1");
        std::fs::write(dir.join(&file), buf)?;
        written.push(file);
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("glassdrill-{}", sub.get_name());
        let c = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("glassdrill {}", sub.get_name()));
        page(name, c, false)?;
    }
    page("glassdrill".into(), cmd, true)?;
    std::fs::write(dir.join("glassdrill.toml.5"), config_man_page())?;
    written.push("glassdrill.toml.5".into());
    Ok(written)
}

/// One documented key of the sample config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DocumentedKey {
    /// `table.key` (`key` at the top level; `notify.webhook[].url` in an
    /// array of tables).
    pub key: String,
    /// The example value.
    pub example: String,
    /// The comment above it.
    pub doc: String,
}

/// The keys the sample config documents, in order, with their comments
/// (a commented-out `# key = value` documents an optional key).
pub(crate) fn documented_keys() -> Vec<DocumentedKey> {
    let mut out = Vec::new();
    let mut table = String::new();
    let mut comment: Vec<String> = Vec::new();
    for line in SAMPLE_CONFIG.lines() {
        let t = line.trim();
        let body = t.strip_prefix('#').map_or(t, str::trim);
        if body.starts_with("[[") && body.ends_with("]]") {
            table = format!("{}[]", &body[2..body.len() - 2]);
            comment.clear();
            continue;
        }
        if body.starts_with('[') && body.ends_with(']') && !body.contains('=') {
            table = body[1..body.len() - 1].to_owned();
            comment.clear();
            continue;
        }
        let is_key = body.split_once('=').is_some_and(|(k, _)| {
            !k.trim().is_empty()
                && k.trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if is_key {
            let (k, v) = body.split_once('=').unwrap_or_default();
            let key = if table.is_empty() {
                k.trim().to_owned()
            } else {
                format!("{table}.{}", k.trim())
            };
            let example = v.split(" #").next().unwrap_or(v).trim().to_owned();
            out.push(DocumentedKey {
                key,
                example,
                doc: comment.join(" "),
            });
            comment.clear();
        } else if t.starts_with('#') {
            comment.push(body.to_owned());
        } else if t.is_empty() {
            comment.clear();
        }
    }
    out
}

fn config_man_page() -> String {
    let mut s = String::from(
        ".TH GLASSDRILL.TOML 5 \"\" \"glassdrill\" \"File Formats\"\n.SH NAME\nglassdrill.toml \\- glassdrill host configuration\n.SH DESCRIPTION\n",
    );
    s.push_str(&roff(
        "The host config of glassdrill, read from --config PATH, else ./glassdrill.toml, else $XDG_CONFIG_HOME/glassdrill/glassdrill.toml, else /etc/glassdrill/glassdrill.toml. Every key is optional; an unknown key is an error naming the keys its table accepts. Secrets are never written inline: give them as credential:NAME (a systemd credential), env:NAME or file:PATH (mode 0600, owned by the glassdrill user). Check a config with glassdrill check-config.",
    ));
    s.push_str("\n.SH KEYS\n");
    for k in documented_keys() {
        s.push_str(&format!(
            ".TP\n\\fB{}\\fR = {}\n{}\n",
            roff(&k.key),
            roff(&k.example),
            roff(if k.doc.is_empty() {
                "See the sample config."
            } else {
                &k.doc
            })
        ));
    }
    s.push_str(".SH FILES\n.TP\n\\fI/usr/share/doc/glassdrill/glassdrill.toml\\fR\nThe documented sample, as installed to /etc/glassdrill/glassdrill.toml.\n.SH \"SEE ALSO\"\n\\fBglassdrill\\fR(1)\n");
    s
}

/// Prints the completion script for `shell`.
pub(crate) fn completions(shell: clap_complete::Shell) {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "glassdrill", &mut buf);
    let _ = std::io::stdout().write_all(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_man_page_documents_every_key_the_config_accepts() {
        let documented: Vec<String> = documented_keys().into_iter().map(|k| k.key).collect();
        let accepted = crate::config::host::accepted_keys();
        let missing: Vec<&String> = accepted
            .iter()
            .filter(|k| !documented.contains(k))
            .collect();
        assert!(
            missing.is_empty(),
            "not in deploy/glassdrill.toml: {missing:?}"
        );
        let unknown: Vec<&String> = documented
            .iter()
            .filter(|k| !accepted.contains(k))
            .collect();
        assert!(
            unknown.is_empty(),
            "documented but not accepted: {unknown:?}"
        );
        let page = config_man_page();
        for k in &accepted {
            assert!(
                page.contains(&roff(k)),
                "{k} missing from glassdrill.toml(5)"
            );
        }
    }

    #[test]
    fn man_pages_name_the_exit_codes_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_man_pages(dir.path()).unwrap();
        assert!(files.contains(&"glassdrill.1".to_owned()));
        assert!(files.contains(&"glassdrill-run.1".to_owned()));
        assert!(files.contains(&"glassdrill-daemon.1".to_owned()));
        let top = std::fs::read_to_string(dir.path().join("glassdrill.1")).unwrap();
        assert!(
            top.contains("EXIT STATUS") && top.contains("\\fB64\\fR"),
            "{top}"
        );
        assert!(top.contains("/var/lib/glassdrill/evidence/"));
        let run = std::fs::read_to_string(dir.path().join("glassdrill-run.1")).unwrap();
        assert!(run.contains("\\-\\-operator") && run.contains("EXIT STATUS"));
    }
}
