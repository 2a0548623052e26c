//! CLI conventions: `--version` names the build, completions load,
//! `--color` and `NO_COLOR`, `--json` on the read-only table commands.

use crate::util::World;

#[test]
fn version_names_the_release_and_the_commit() {
    let w = World::new();
    let out = w.run(["--version"]);
    out.expect_exit(0);
    assert!(
        out.stdout.starts_with(&format!(
            "glassdrill {} (commit ",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn completion_scripts_are_printed_and_bash_loads_its_own() {
    let w = World::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = w.run(["completions", shell]);
        out.expect_exit(0);
        assert!(out.stdout.contains("glassdrill"), "{shell}");
        assert!(
            out.stdout.contains("rehearse"),
            "{shell}: subcommands are completed"
        );
    }
    let script = w.path().join("glassdrill.bash");
    std::fs::write(&script, w.run(["completions", "bash"]).stdout).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    // And it defines the completion function when sourced.
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p glassdrill",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}

#[test]
fn color_follows_the_flag_and_no_color() {
    let w = World::new();
    let esc = |args: &[&str], no_color: bool| {
        let mut c = w.command(args);
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c.output().unwrap();
        String::from_utf8_lossy(&out.stderr).contains('\u{1b}')
    };
    // -vv logs at debug level: `status` always logs its queries.
    assert!(esc(&["-vv", "--color", "always", "status"], false));
    assert!(!esc(&["-vv", "--color", "never", "status"], false));
    // auto: stderr is not a terminal here, and NO_COLOR is honoured.
    assert!(!esc(&["-vv", "status"], true));
}

#[test]
fn read_only_tables_have_json() {
    let w = World::new();
    for args in [
        &["status", "--json"][..],
        &["plan", "--json", "--days", "30"][..],
        &["keys", "list", "--json"][..],
    ] {
        let out = w.run(args.iter().copied());
        out.expect_exit(0);
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", out.stdout));
        assert!(v.is_object() || v.is_array(), "{args:?}");
    }
}
