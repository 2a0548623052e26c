//! What `deploy/` ships: the sample host config and drill file load with
//! every key known (only secrets and directories of a real host are
//! missing here), and the systemd unit's sandbox rates "OK" (exposure at
//! most 2.0) with `systemd-analyze security`.

use crate::util::World;

fn repo(p: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn the_sample_host_config_and_drill_file_have_only_known_keys() {
    let w = World::new();
    std::fs::copy(
        repo("deploy/glassdrill.toml"),
        w.path().join("glassdrill.toml"),
    )
    .unwrap();
    let out = w.run(["check-config"]);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(": error:"))
        .collect();
    assert!(!lines.is_empty(), "{}", out.stderr);
    // The only errors: the drills directory of a real host is not here.
    assert!(
        lines
            .iter()
            .all(|l| l.contains("cannot read the drills directory")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("unknown"), "{}", out.stderr);

    let drills = w.path().join("drills");
    std::fs::create_dir_all(&drills).unwrap();
    std::fs::copy(
        repo("drills/entra-bg1.toml.example"),
        drills.join("bg1.toml"),
    )
    .unwrap();
    let drill = glassdrill::config::DrillConfig::load(&drills.join("bg1.toml"));
    let problems = match drill {
        Ok(d) => {
            assert_eq!(d.schedule.keys.len(), 2);
            assert_eq!(d.schedule.windows.list.len(), 1);
            String::new()
        }
        Err(p) => p.to_string(),
    };
    // A real credential is missing here; nothing else may be wrong.
    assert!(
        problems
            .lines()
            .all(|l| l.contains("private_key") || l.trim().is_empty()),
        "{problems}"
    );
}

#[test]
fn the_systemd_unit_is_sandboxed_to_an_exposure_of_at_most_2() {
    let unit = repo("deploy/glassdrill.service");
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&unit)
        .output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let last = text.lines().last().unwrap_or_default().to_owned();
            assert!(
                o.status.success(),
                "{last}\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let level: f64 = last
                .split("glassdrill.service:")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(10.0);
            assert!(level <= 2.0, "{last}");
        }
        // The unit is checked wherever systemd is; a build machine without
        // it cannot, and says so.
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "systemd-analyze is not available ({e}); the unit was not rated"
            );
        }
    }
}
