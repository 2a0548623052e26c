use std::path::Path;

use super::*;

fn env(dir: &Path) -> Environment {
    Environment {
        cwd: dir.to_path_buf(),
        home: Some(dir.join("home")),
        xdg_config_home: None,
        xdg_state_home: None,
    }
}

#[test]
fn line_col_counts_chars() {
    assert_eq!(diag::line_col("a\nbc\nd", 3), (2, 2));
    assert_eq!(diag::line_col("é=1\nx", 5), (2, 1));
    assert_eq!(diag::line_col("", 10), (1, 1));
}

#[test]
fn rehearsal_drill_is_valid() {
    let d = DrillConfig::rehearsal().unwrap();
    assert_eq!(d.tenant, TenantKind::Rehearsal);
    assert!(!d.alerts.is_empty());
    assert!(!d.flow.steps.is_empty());
}

#[test]
fn shipped_entra_example_is_valid() {
    let text = include_str!("../../drills/entra-bg1.toml.example");
    let d = DrillConfig::parse(Path::new("drills/bg1.toml"), text, |_| {
        Ok((
            PathBuf::from("flows/entra-security-key.toml"),
            ENTRA_FLOW.to_owned(),
        ))
    })
    .unwrap();
    assert_eq!(d.tenant, TenantKind::Entra);
    // The key file does not exist here: a warning, not an error.
    assert!(d.warnings.iter().all(|w| w.severity == Severity::Warning));
    assert!(!d.warnings.is_empty());
    let host = include_str!("../../deploy/glassdrill.toml");
    let dir = tempfile::tempdir().unwrap();
    let h = HostConfig::parse(&dir.path().join("glassdrill.toml"), host, &env(dir.path())).unwrap();
    assert!(h.entra.is_some());
    assert_eq!(h.webhook.listen.port(), 8765);
}

#[test]
fn defaults_follow_xdg() {
    let e = Environment {
        cwd: "/w".into(),
        home: Some("/h".into()),
        xdg_config_home: None,
        xdg_state_home: Some("/s".into()),
    };
    let c = HostConfig::defaults(&e);
    assert_eq!(c.data_dir, PathBuf::from("/s/glassdrill"));
    assert_eq!(c.drills_dir, PathBuf::from("/w/drills"));
    assert_eq!(
        e.config_candidates(),
        vec![
            PathBuf::from("/w/glassdrill.toml"),
            PathBuf::from("/h/.config/glassdrill/glassdrill.toml"),
            PathBuf::from("/etc/glassdrill/glassdrill.toml")
        ]
    );
}

#[test]
fn host_config_problems_have_positions() {
    let dir = tempfile::tempdir().unwrap();
    let e = env(dir.path());
    let p = dir.path().join("glassdrill.toml");
    let err = HostConfig::parse(&p, "data_dir = \"x\"\ncolour = 1\n", &e).unwrap_err();
    assert_eq!(err.0[0].line, 2, "{err}");
    assert!(err.0[0].message.contains("unknown field"), "{err}");

    let text = "[webhook]\nlisten = \"nowhere\"\ntoken = \"hunter2\"\n[browser]\nstep_timeout = \"soon\"\n";
    let err = HostConfig::parse(&p, text, &e).unwrap_err();
    assert_eq!(err.0.len(), 3, "{err}");
    assert!(
        err.to_string().contains(":2:10: error: webhook.listen"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(":3:9: error: webhook.token: secrets are given by reference"),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(
        err.to_string()
            .contains(":5:16: error: browser.step_timeout"),
        "{err}"
    );
}

#[test]
fn every_unknown_key_of_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("glassdrill.toml");
    let text =
        "dta_dir = \"/x\"\n[webhook]\n  lisen = \"a\"\nmax_body = 3\n[browser]\ntimeout = \"1s\"\n";
    let err = HostConfig::parse(&p, text, &env(dir.path())).unwrap_err();
    let s = err.to_string();
    assert_eq!(err.0.len(), 4, "{s}");
    assert!(s.contains(":1:1: error: unknown field `dta_dir`"), "{s}");
    assert!(s.contains(":3:3: error: unknown field `lisen`"), "{s}");
    assert!(s.contains(":4:1: error: unknown field `max_body`"), "{s}");
    assert!(s.contains(":6:1: error: unknown field `timeout`"), "{s}");
    // A quoted key is commented out like any other.
    let text = "\"é_key\" = 1\n\"other\" = 2\n";
    let err = HostConfig::parse(&p, text, &env(dir.path())).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    // An unknown inline table, and an unknown [table], are reported as
    // themselves, and never hide the unknown keys after them.
    let text = "[browser]\nx = { a = 1 }\ny = 2\n[webhok]\nlisten = 1\n[webhook]\nlistn = 1\n";
    let err = HostConfig::parse(&p, text, &env(dir.path())).unwrap_err();
    let s = err.to_string();
    assert_eq!(err.0.len(), 4, "{s}");
    assert!(s.contains(":2:1: error: unknown field `x`"), "{s}");
    assert!(s.contains(":3:1: error: unknown field `y`"), "{s}");
    assert!(
        s.contains(":4:2: error: unknown field `webhok`, expected one of `data_dir`"),
        "{s}"
    );
    assert!(s.contains(":7:1: error: unknown field `listn`, expected one of `listen`, `token`, `max_body_bytes`"), "{s}");
}

#[test]
fn unresolvable_secret_is_only_a_warning_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("glassdrill.toml");
    let text = "[entra]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"env:GLASSDRILL_TEST_UNSET_SECRET\"\n";
    let cfg = HostConfig::parse(&p, text, &env(dir.path())).unwrap();
    assert!(cfg.entra.is_some());
    assert_eq!(cfg.drills_dir, dir.path().join("drills"));
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = cfg.warnings[0].to_string();
    assert!(
        w.contains("warning")
            && w.contains("entra.client_secret")
            && w.contains("GLASSDRILL_TEST_UNSET_SECRET"),
        "the warning names the field and the reference: {w}"
    );
}

fn drill(text: &str) -> Result<DrillConfig, Problems> {
    DrillConfig::parse(Path::new("drills/x.toml"), text, |_| {
        Ok((PathBuf::from("flows/f.toml"), ENTRA_FLOW.to_owned()))
    })
}

#[test]
fn drill_validation_collects_every_problem() {
    let text = r#"id = "bad id!"
account = "nobody"
tenant = "rehearsal"
flow = "flows/f.toml"
authenticator = { kind = "virtual" }
[[alerts]]
kind = "pager"
name = "x"
rule = "p"
deadline = "5m"
[[alerts]]
kind = "webhook"
name = "y"
rule = "r"
deadline = "quickly"
"#;
    let err = drill(text).unwrap_err();
    let s = err.to_string();
    assert_eq!(err.0.len(), 4, "{s}");
    assert!(
        s.contains("x.toml:1:6: error: id `bad id!` may hold only ASCII letters"),
        "{s}"
    );
    assert!(s.contains(":2:11: error: account"), "{s}");
    assert!(s.contains(":7:8: error: alert kind `pager`"), "{s}");
    assert!(
        s.contains(":15:12: error: alerts.deadline: `quickly`"),
        "{s}"
    );
}

#[test]
fn drill_missing_field_and_inline_secret() {
    let err = drill("id = \"a\"\n").unwrap_err();
    assert!(err.to_string().contains("missing field"), "{err}");
    let text = r#"id = "a"
account = "a@b.onmicrosoft.com"
flow = "flows/f.toml"
authenticator = { kind = "virtual", private_key = "MIGHAgEAMBMGByqGSM49", credential_id = "AAAA", rp_id = "login.microsoft.com" }
[[alerts]]
kind = "webhook"
name = "y"
rule = "r"
deadline = "5m"
"#;
    let err = drill(text).unwrap_err().to_string();
    assert!(
        err.contains(":4:51: error: authenticator.private_key: secrets are given by reference"),
        "{err}"
    );
    assert!(!err.contains("MIGHAgEAMBMGByqGSM49"), "{err}");
}

#[test]
fn every_expected_alert_names_its_own_rule() {
    let head = "id = \"a\"\naccount = \"a@b.onmicrosoft.com\"\ntenant = \"rehearsal\"\nflow = \"flows/f.toml\"\nauthenticator = { kind = \"virtual\" }\n";
    let err = drill(&format!(
        "{head}[[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\ndeadline = \"5m\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("error: alerts.rule is missing for alert `sev0`: name the alert rule"),
        "{err}"
    );
    let err = drill(&format!(
        "{head}[[alerts]]\nkind = \"webhook\"\nname = \"a\"\nrule = \"Break-glass sign-in\"\ndeadline = \"5m\"\n\
         [[alerts]]\nkind = \"webhook\"\nname = \"b\"\nrule = \"/subscriptions/s/resourceGroups/g/providers/microsoft.insights/scheduledqueryrules/BREAK-GLASS sign-in\"\ndeadline = \"5m\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(":14:8: error: alerts.rule `/subscriptions/")
            && err.contains("is expected twice"),
        "{err}"
    );
    let ok = drill(&format!(
        "{head}[[alerts]]\nkind = \"webhook\"\nname = \"a\"\nrule = \"Break-glass sign-in\"\ndeadline = \"5m\"\n\
         [[alerts]]\nkind = \"webhook\"\nname = \"b\"\nrule = \"Break-glass sign-in (SOC)\"\ndeadline = \"5m\"\n"
    ))
    .unwrap();
    assert_eq!(ok.alerts[1].rule, "Break-glass sign-in (SOC)");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Lines that look like TOML a person might write, valid or not.
    fn tomlish() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "data_dir",
            "drills_dir",
            "listen",
            "token",
            "max_body_bytes",
            "step_timeout",
            "id",
            "account",
            "tenant",
            "flow",
            "kind",
            "name",
            "deadline",
            "confirm_deadline",
            "private_key",
            "credential_id",
            "rp_id",
            "x",
            "\"é\"",
        ]);
        let value = prop::sample::select(vec![
            "\"1s\"",
            "\"18446744073709551615s\"",
            "1",
            "-1",
            "99999999999999999999",
            "\"env:X\"",
            "\"file:/dev/zero\"",
            "\"127.0.0.1:0\"",
            "{ a = 1 }",
            "[1, 2",
            "\"\"",
            "true",
            "\"rehearsal\"",
            "\"virtual\"",
            "\"webhook\"",
            "\"../../etc/shadow\"",
        ]);
        let line = prop_oneof![
            (key.clone(), value).prop_map(|(k, v)| format!("{k} = {v}")),
            prop::sample::select(vec![
                "[webhook]",
                "[browser]",
                "[entra]",
                "[evidence]",
                "[[alerts]]",
                "[authenticator]",
                "[webhok]",
                "[[steps]]",
                "[",
                "]]",
            ])
            .prop_map(str::to_owned),
            "\\PC{0,30}",
        ];
        prop::collection::vec(line, 0..30).prop_map(|l| l.join("\n"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// The host config loader never panics, whatever the text.
        #[test]
        fn the_host_config_loader_never_panics(text in prop_oneof![tomlish(), "\\PC{0,200}"]) {
            let dir = std::env::temp_dir();
            let _ = HostConfig::parse(&dir.join("glassdrill.toml"), &text, &env(&dir));
        }

        /// The drill and flow loaders never panic, whatever the text.
        #[test]
        fn the_drill_and_flow_loaders_never_panic(
            text in prop_oneof![tomlish(), "\\PC{0,200}"],
            flow in prop_oneof![tomlish(), Just(ENTRA_FLOW.to_owned())],
        ) {
            let _ = DrillConfig::parse(Path::new("d.toml"), &text, |_| {
                Ok((std::path::PathBuf::from("f.toml"), flow.clone()))
            });
        }
    }
}

fn drill_with(auth: &str) -> Result<DrillConfig, Problems> {
    let text = format!(
        "id = \"bg1\"\naccount = {{ upn = \"bg1@contoso.onmicrosoft.com\", object_id = \"00000000-0000-0000-0000-000000000B61\" }}\nflow = \"flows/entra-security-key.toml\"\n{auth}\n\
         [[alerts]]\nkind = \"webhook\"\nname = \"a\"\nrule = \"r\"\ndeadline = \"5m\"\n"
    );
    DrillConfig::parse(Path::new("drills/bg1.toml"), &text, |_| {
        Ok((
            PathBuf::from("flows/entra-security-key.toml"),
            ENTRA_FLOW.to_owned(),
        ))
    })
}

fn messages(p: Problems) -> String {
    p.0.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn hid_keys_are_named_exactly_and_their_pin_is_a_reference() {
    let d = drill_with(
        "[authenticator]\nkind = \"hid\"\npin = \"env:BG1_PIN\"\n\
         [[authenticator.keys]]\nname = \"bg1-a\"\naaguid = \"A25342C0-3CDC-4414-8E46-F4807FCA511C\"\ncredential_id = \"AAEC\"\n\
         [[authenticator.keys]]\nname = \"bg1-b\"\ndevice = \"/dev/hidraw3\"\n",
    )
    .unwrap();
    let AuthenticatorConfig::Key(k) = &d.authenticator else {
        panic!("a key authenticator");
    };
    assert_eq!(k.kind, drill::KeyKind::Hid);
    assert_eq!(k.rp_id, "login.microsoft.com");
    assert_eq!(
        k.keys[0].aaguid.as_deref(),
        Some("a25342c0-3cdc-4414-8e46-f4807fca511c")
    );
    assert_eq!(k.keys[0].credential_id.as_deref(), Some(&[0u8, 1, 2][..]));
    assert_eq!(k.keys[1].device.as_deref(), Some("/dev/hidraw3"));
    // The schedule rotates the registered keys.
    assert_eq!(d.schedule.keys, vec!["bg1-a", "bg1-b"]);

    // A key glassdrill could not tell from any other attached key.
    let m = messages(
        drill_with("[authenticator]\nkind = \"hid\"\npin = \"env:P\"\n[[authenticator.keys]]\nname = \"k\"\n")
            .unwrap_err(),
    );
    assert!(m.contains("never takes whichever key is attached"), "{m}");
    // No PIN, an inline PIN, a bad AAGUID, no keys at all.
    let m = messages(
        drill_with("[authenticator]\nkind = \"hid\"\n[[authenticator.keys]]\nname = \"k\"\naaguid = \"nope\"\n")
            .unwrap_err(),
    );
    assert!(
        m.contains("has no PIN") && m.contains("must be an AAGUID"),
        "{m}"
    );
    let m = messages(
        drill_with("[authenticator]\nkind = \"hid\"\npin = \"123456\"\n[[authenticator.keys]]\nname = \"k\"\ndevice = \"/dev/hidraw0\"\n")
            .unwrap_err(),
    );
    assert!(m.contains("by reference"), "{m}");
    assert!(
        !m.contains("123456"),
        "the inline PIN is never repeated: {m}"
    );
    let m = messages(drill_with("[authenticator]\nkind = \"hid\"\npin = \"env:P\"\n").unwrap_err());
    assert!(m.contains("at least one [[authenticator.keys]]"), "{m}");
    // A soft key needs its state file; schedule.keys must match the keys.
    let m = messages(
        drill_with("[authenticator]\nkind = \"soft\"\npin = \"env:P\"\n[[authenticator.keys]]\nname = \"k\"\n[schedule]\nkeys = [\"other\"]\n")
            .unwrap_err(),
    );
    assert!(
        m.contains("needs authenticator.keys[0].state") && m.contains("must be the same keys"),
        "{m}"
    );
}

#[test]
fn the_account_names_its_object_id_for_entra() {
    let d = drill_with("authenticator = { kind = \"virtual\", private_key = \"env:BG1_KEY\", credential_id = \"AAAA\", rp_id = \"login.microsoft.com\" }").unwrap();
    assert_eq!(d.account, "bg1@contoso.onmicrosoft.com");
    assert_eq!(
        d.object_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000b61"),
        "lower-cased"
    );
    let parse = |account: &str| {
        let text = format!(
            "id = \"bg1\"\naccount = {account}\nflow = \"flows/entra-security-key.toml\"\n\
             authenticator = {{ kind = \"virtual\", private_key = \"env:BG1_KEY\", credential_id = \"AAAA\", rp_id = \"login.microsoft.com\" }}\n\
             [[alerts]]\nkind = \"webhook\"\nname = \"a\"\nrule = \"r\"\ndeadline = \"5m\"\n"
        );
        DrillConfig::parse(Path::new("drills/bg1.toml"), &text, |_| {
            Ok((
                PathBuf::from("flows/entra-security-key.toml"),
                ENTRA_FLOW.to_owned(),
            ))
        })
    };
    let missing = messages(parse("\"bg1@contoso.onmicrosoft.com\"").unwrap_err());
    assert!(
        missing.contains("drills/bg1.toml:2:11: error: account.object_id is missing"),
        "{missing}"
    );
    let bad = messages(
        parse("{ upn = \"bg1@contoso.onmicrosoft.com\", object_id = \"bg1\", colour = 1 }")
            .unwrap_err(),
    );
    assert!(
        bad.contains("account.object_id `bg1` is not a GUID"),
        "{bad}"
    );
    assert!(bad.contains("account.colour is not a known key"), "{bad}");
    // A rehearsal's account is the rehearsal tenant's.
    let r = DrillConfig::rehearsal().unwrap();
    assert_eq!(
        r.object_id.as_deref(),
        Some(crate::tenant::REHEARSAL_OBJECT_ID)
    );
}

#[test]
fn alert_kinds_name_their_source() {
    let parse = |alerts: &str| {
        let text = format!(
            "id = \"bg1\"\naccount = {{ upn = \"bg1@contoso.onmicrosoft.com\", object_id = \"00000000-0000-0000-0000-000000000b61\" }}\n\
             flow = \"flows/entra-security-key.toml\"\n\
             authenticator = {{ kind = \"virtual\", private_key = \"env:BG1_KEY\", credential_id = \"AAAA\", rp_id = \"login.microsoft.com\" }}\n{alerts}"
        );
        DrillConfig::parse(Path::new("drills/bg1.toml"), &text, |_| {
            Ok((
                PathBuf::from("flows/entra-security-key.toml"),
                ENTRA_FLOW.to_owned(),
            ))
        })
    };
    let ok = parse(
        "[[alerts]]\nkind = \"log-analytics\"\nname = \"la\"\nworkspace = \"ws\"\ndeadline = \"5m\"\nevery = \"30s\"\n\
         [[alerts]]\nkind = \"mailbox\"\nname = \"mail\"\nmailbox = \"soc@contoso.com\"\nsender = \"azure-noreply@microsoft.com\"\nsubject = \"Break-glass\"\ndeadline = \"5m\"\n\
         [[alerts]]\nkind = \"pagerduty\"\nname = \"pd\"\nservice = \"PBGLASS\"\ndeadline = \"5m\"\n\
         [[alerts]]\nkind = \"graph-signin\"\nname = \"logged\"\ndeadline = \"5m\"\n",
    )
    .unwrap();
    let kinds: Vec<_> = ok
        .alerts
        .iter()
        .map(|a| (a.kind, a.rule.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (AlertKind::LogAnalytics, "Log Analytics sign-in row"),
            (AlertKind::Mailbox, "azure-noreply@microsoft.com"),
            (AlertKind::PagerDuty, "PBGLASS"),
            (AlertKind::GraphSignIn, "sign-in log"),
        ]
    );
    assert_eq!(ok.alerts[0].every, Duration::from_secs(30));
    let bad = messages(
        parse(
            "[[alerts]]\nkind = \"mailbox\"\nname = \"mail\"\ndeadline = \"5m\"\n\
             [[alerts]]\nkind = \"azure-alerts\"\nname = \"arm\"\nrule = \"Break-glass\"\ndeadline = \"5m\"\n\
             [[alerts]]\nkind = \"log-analytics\"\nname = \"la\"\ndeadline = \"5m\"\n\
             [[alerts]]\nkind = \"sms\"\nname = \"x\"\nrule = \"r\"\ndeadline = \"5m\"\n",
        )
        .unwrap_err(),
    );
    for want in [
        "alerts.sender is missing for mailbox alert `mail`",
        "alerts.mailbox is missing for mailbox alert `mail`",
        "alerts.subject is missing for mailbox alert `mail`",
        "must be the alert rule's resource id",
        "alerts.workspace is missing for log-analytics alert `la`",
        "alert kind `sms` is not known; use one of: webhook, graph-signin, azure-alerts, log-analytics, graph-security, mailbox, pagerduty",
    ] {
        assert!(bad.contains(want), "`{want}` not in:\n{bad}");
    }
}

#[test]
fn state_names_a_fleets_postgres_with_its_password_by_reference() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("glassdrill.toml");
    let e = env(dir.path());
    let ok = HostConfig::parse(
        &p,
        "[state]\nurl = \"postgres://glassdrill@db.internal.example:5432/glassdrill\"\npassword = \"env:GLASSDRILL_DB_PASSWORD\"\ntls_ca = \"ca.pem\"\nhost = \"drill-a\"\nfleet = \"corp\"\nlease = \"90s\"\n",
        &e,
    )
    .unwrap();
    let pg = ok.state.postgres.as_ref().unwrap();
    assert_eq!(
        pg.tls,
        crate::config::PgTls::VerifyFull,
        "verified by default"
    );
    assert_eq!(
        pg.tls_ca.as_deref(),
        Some(dir.path().join("ca.pem").as_path())
    );
    assert_eq!(
        (ok.state.host.as_str(), ok.state.fleet.as_str()),
        ("drill-a", "corp")
    );
    assert_eq!(ok.state.lease, std::time::Duration::from_secs(90));
    // A password in the URL, a bad TLS mode, a short lease, a bad name:
    // each named with its fix.
    let err = HostConfig::parse(
        &p,
        "[state]\nurl = \"postgres://glassdrill:hunter2@db.internal.example/glassdrill\"\n",
        &e,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("state.password") && !err.contains("hunter2"),
        "{err}"
    );
    for (text, want) in [
        (
            "[state]\nurl = \"postgres://g@db.internal.example/g\"\ntls = \"sometimes\"\n",
            "state.tls",
        ),
        ("[state]\nlease = \"1s\"\n", "state.lease: at least 3s"),
        ("[state]\nhost = \"drill host\"\n", "state.host"),
        (
            "[state]\nurl = \"mysql://g@db.internal.example/g\"\n",
            "postgres://USER@HOST",
        ),
        ("[state]\npassword = \"env:X\"\n", "state.url is not"),
    ] {
        let err = HostConfig::parse(&p, text, &e).unwrap_err().to_string();
        assert!(err.contains(want), "{text}: {err}");
    }
    // Unverified TLS to a remote database: a warning.
    let warned = HostConfig::parse(
        &p,
        "[state]\nurl = \"postgres://g@db.internal.example/g\"\ntls = \"require\"\n",
        &e,
    )
    .unwrap();
    assert!(
        warned
            .warnings
            .iter()
            .any(|w| w.message.contains("not verified"))
    );
}

#[test]
fn named_tenants_have_their_own_entra_and_posture() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("glassdrill.toml");
    let e = env(dir.path());
    let h = HostConfig::parse(
        &p,
        "[tenants.contoso]\ntenant_id = \"11111111-1111-1111-1111-111111111111\"\nclient_id = \"c\"\nclient_secret = \"env:CONTOSO_SECRET\"\n\
         [tenants.contoso.posture]\ngroup_id = \"g\"\n[[tenants.contoso.posture.accounts]]\nobject_id = \"22222222-2222-2222-2222-222222222222\"\nupn = \"bg1@contoso.onmicrosoft.com\"\n\
         [tenants.fabrikam]\ntenant_id = \"33333333-3333-3333-3333-333333333333\"\nclient_id = \"f\"\nclient_secret = \"env:FABRIKAM_SECRET\"\n",
        &e,
    )
    .unwrap();
    assert_eq!(h.tenants.len(), 2);
    assert_eq!(h.posture_for(Some("contoso")).unwrap().accounts.len(), 1);
    assert!(h.posture_for(Some("fabrikam")).is_none());
    assert!(h.posture_for(None).is_none());
    let mut d = drill(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("drills/entra-bg1.toml.example"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(h.entra_for(&d).unwrap_err().contains("no [entra]"));
    d.tenant_name = Some("fabrikam".into());
    assert_eq!(
        h.entra_for(&d).unwrap().tenant_id,
        "33333333-3333-3333-3333-333333333333"
    );
    assert_eq!(
        (d.tenant_label(), d.group_key().as_str()),
        ("fabrikam", "fabrikam/break-glass")
    );
    d.tenant_name = Some("northwind".into());
    assert!(h.entra_for(&d).unwrap_err().contains("[tenants.northwind]"));
    // A tenant missing its credential is named by its table.
    let err = HostConfig::parse(
        &p,
        "[tenants.contoso]\ntenant_id = \"t\"\nclient_id = \"c\"\n",
        &e,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tenants.contoso needs client_secret"), "{err}");
}
