//! Posture against the rehearsal tenant over real HTTP: a correct set-up
//! passes every check; each posture fault gives its finding, named.

use glassdrill::authenticator::Credential;
use glassdrill::cloud::{AppCredentials, TokenCache};
use glassdrill::posture::Status;
use glassdrill::tenant::{Fault, RP_ID, RehearsalTenant, TENANT_ID, rehearsal_user_handle};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// The rehearsal tenant with `faults`, its app secret `s3cret`.
async fn start(faults: &[Fault]) -> RehearsalTenant {
    let cred = Credential::generate(RP_ID, rehearsal_user_handle()).expect("credential");
    RehearsalTenant::start(crate::util::tenant_options(&cred, faults, "s3cret"))
        .await
        .expect("tenant")
}

async fn posture(faults: &[Fault]) -> Vec<glassdrill::posture::Check> {
    let tenant = start(faults).await;
    let urls = tenant.urls().clone();
    let tokens = std::sync::Arc::new(
        TokenCache::new(AppCredentials {
            authority: urls.authority.clone(),
            tenant_id: TENANT_ID.into(),
            client_id: "glassdrill-rehearsal".into(),
            client_secret: SecretString::from("s3cret"),
            certificate: None,
        })
        .unwrap(),
    );
    let checks = glassdrill::posture::fetch::posture(
        glassdrill::posture::fetch::Endpoints {
            graph: urls.graph.clone(),
            management: urls.management.clone(),
        },
        tokens,
        &glassdrill::tenant::posture::posture_config(),
        &CancellationToken::new(),
    )
    .await;
    tenant.shutdown().await;
    checks
}

#[tokio::test]
async fn a_correct_set_up_passes_and_each_fault_fails_its_check() {
    let all = posture(&[]).await;
    assert!(all.len() >= 12, "{all:#?}");
    assert!(all.iter().all(|c| c.status == Status::Pass), "{all:#?}");
    for (fault, check, words) in [
        (Fault::PostureLicensed, "no licences", "1 licence(s)"),
        (
            Fault::PostureEligibleGa,
            "Global Administrator, active and permanent",
            "eligible through PIM",
        ),
        (
            Fault::PostureOneKey,
            "two or more FIDO2 security keys",
            "1 FIDO2 key(s)",
        ),
        (
            Fault::PosturePhoneMethod,
            "no phone, SMS or Authenticator app method",
            "phoneAuthenticationMethod",
        ),
        (
            Fault::PostureTap,
            "no Temporary Access Pass",
            "Temporary Access Pass is present",
        ),
        (
            Fault::PostureCaNotExcluded,
            "Conditional Access",
            "Require MFA for all users",
        ),
        (
            Fault::PostureRuleMuted,
            "alert rule enabled, not muted",
            "muted for PT1D",
        ),
        (
            Fault::PostureRuleDisabled,
            "alert rule enabled, not muted",
            "disabled",
        ),
        (
            Fault::PostureEmptyActionGroup,
            "action group routes to someone",
            "no receiver",
        ),
    ] {
        let got = posture(&[fault]).await;
        let failed: Vec<_> = got.iter().filter(|c| c.status == Status::Fail).collect();
        assert_eq!(failed.len(), 1, "{fault:?}: {failed:#?}");
        assert_eq!(failed[0].name, check, "{fault:?}");
        assert!(
            failed[0].detail.contains(words),
            "{fault:?}: {}",
            failed[0].detail
        );
    }
}

/// `glassdrill uses`: a sign-in no drill made is UNREVIEWED (exit 1) until
/// `evidence classify` says what it was.
#[tokio::test(flavor = "multi_thread")]
async fn uses_lists_a_sign_in_no_drill_made_until_it_is_classified() {
    use std::os::unix::fs::OpenOptionsExt as _;
    let w = crate::util::World::new();
    let tenant = start(&[Fault::UnexpectedSignin]).await;
    let secret = w.path().join("client-secret");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)
        .unwrap();
    std::io::Write::write_all(&mut f, b"s3cret").unwrap();
    let u = tenant.urls().clone();
    std::fs::write(
        w.path().join("glassdrill.toml"),
        format!(
            "[entra]\ntenant_id = \"{TENANT_ID}\"\nauthority = \"{}\"\ngraph = \"{}\"\nclient_id = \"glassdrill-rehearsal\"\nclient_secret = \"file:{}\"\n\
             [posture]\n[[posture.accounts]]\nobject_id = \"{}\"\nupn = \"breakglass1@rehearsal.onmicrosoft.com\"\n",
            u.authority,
            u.graph,
            secret.display(),
            glassdrill::tenant::REHEARSAL_OBJECT_ID
        ),
    )
    .unwrap();
    let since = (chrono::Utc::now() - chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let run = |args: Vec<String>| {
        let w = &w;
        std::thread::scope(|s| s.spawn(move || w.run(&args)).join().unwrap())
    };
    let first = run(vec!["uses".into(), "--since".into(), since.clone()]);
    assert_eq!(first.code, Some(1), "{}\n{}", first.stdout, first.stderr);
    let line = first
        .stdout
        .lines()
        .find(|l| l.contains("UNREVIEWED"))
        .unwrap_or_else(|| panic!("{}", first.stdout));
    let id = line.split_whitespace().nth(2).unwrap().to_owned();
    assert_eq!(run(vec!["keygen".into()]).code, Some(0));
    let classified = run([
        "evidence",
        "classify",
        "--signin",
        &id,
        "--account",
        "breakglass1@rehearsal.onmicrosoft.com",
        "--as",
        "misuse",
        "--by",
        "Alice SOC",
        "--note",
        "not ours: password spray",
    ]
    .map(String::from)
    .to_vec());
    assert_eq!(classified.code, Some(0), "{}", classified.stderr);
    let after = run(vec!["uses".into(), "--since".into(), since]);
    assert_eq!(after.code, Some(0), "{}\n{}", after.stdout, after.stderr);
    assert!(
        after.stdout.contains("classified: misuse"),
        "{}",
        after.stdout
    );
    tenant.shutdown().await;
}

/// An unexpected use found by a drill stays a finding of every export
/// until it is classified.
#[test]
fn the_export_lists_unreviewed_uses_until_classified() {
    let w = crate::util::World::new();
    let r = w.run([
        "rehearse",
        "--fault",
        "unexpected-signin",
        "--progress",
        "none",
    ]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let export = |name: &str| {
        let out = w.path().join(name);
        let e = w.run([
            "evidence",
            "export",
            "--from",
            "2000-01-01",
            "--to",
            "2099-12-31",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(e.code, Some(0), "{}", e.stderr);
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("export.json")).unwrap()).unwrap();
        meta["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .filter(|f| f.starts_with("unreviewed use"))
            .collect::<Vec<_>>()
    };
    let before = export("export-1");
    assert_eq!(before.len(), 1, "{before:?}");
    // `status` lists it, and the next drill's report carries it.
    let st = w.run(["status"]);
    assert!(
        st.stdout
            .contains("UNREVIEWED USE: breakglass1@rehearsal.onmicrosoft.com"),
        "{}\n{}",
        st.stdout,
        st.stderr
    );
    let next = w.run(["rehearse", "--progress", "none"]);
    assert_eq!(next.code, Some(0), "{}", next.stdout);
    let bundle = crate::util::bundle_from_stdout(&next.stdout);
    let report = std::fs::read_to_string(bundle.join("report.html")).unwrap();
    assert!(
        report.contains("Unreviewed uses from earlier drills"),
        "the next report lists it"
    );
    let id = before[0]
        .split("(sign-in ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap()
        .to_owned();
    let c = w.run([
        "evidence",
        "classify",
        "--signin",
        &id,
        "--account",
        "breakglass1@rehearsal.onmicrosoft.com",
        "--as",
        "emergency",
        "--by",
        "Alice SOC",
        "--note",
        "planned outage test",
    ]);
    assert_eq!(c.code, Some(0), "{}", c.stderr);
    assert!(
        export("export-2").is_empty(),
        "classified: no longer a finding"
    );
    let st = w.run(["status"]);
    assert!(!st.stdout.contains("UNREVIEWED USE"), "{}", st.stdout);
}

/// Against `wiremock` with Microsoft's documented payloads: pages are
/// followed (the second key is on page 2), and a refused read is UNKNOWN
/// naming the permission, never a FAIL.
#[tokio::test]
async fn posture_follows_pages_and_a_refused_read_is_unknown_naming_the_permission() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let fx = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("src/posture/fixtures")
                    .join(name),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let server = MockServer::start().await;
    let oid = glassdrill::tenant::REHEARSAL_OBJECT_ID;
    Mock::given(method("POST"))
        .and(path("/t/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok"}),
        ))
        .mount(&server)
        .await;
    let get = |p: String, body: serde_json::Value| {
        Mock::given(method("GET"))
            .and(path(p))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    get(format!("/v1.0/users/{oid}"), fx("user.json"))
        .mount(&server)
        .await;
    let mut page1 = fx("auth-methods.json");
    let second = page1["value"].as_array_mut().unwrap().split_off(1);
    page1["@odata.nextLink"] = format!("{}/methods-page-2", server.uri()).into();
    get(format!("/v1.0/users/{oid}/authentication/methods"), page1)
        .mount(&server)
        .await;
    get(
        "/methods-page-2".into(),
        serde_json::json!({ "value": second }),
    )
    .mount(&server)
    .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/roleManagement/directory/roleAssignmentSchedules"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            serde_json::json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}),
        ))
        .mount(&server)
        .await;
    get(
        "/v1.0/roleManagement/directory/roleEligibilitySchedules".into(),
        serde_json::json!({"value": []}),
    )
    .mount(&server)
    .await;
    let tokens = std::sync::Arc::new(
        TokenCache::new(AppCredentials {
            authority: server.uri(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: SecretString::from("s"),
            certificate: None,
        })
        .unwrap(),
    );
    let mut cfg = glassdrill::tenant::posture::posture_config();
    cfg.group_id = None;
    cfg.alert_rule = None;
    let checks = glassdrill::posture::fetch::posture(
        glassdrill::posture::fetch::Endpoints {
            graph: server.uri(),
            management: server.uri(),
        },
        tokens,
        &cfg,
        &CancellationToken::new(),
    )
    .await;
    let by = |n: &str| {
        checks
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("{n}: {checks:#?}"))
    };
    assert_eq!(
        by("two or more FIDO2 security keys").status,
        Status::Pass,
        "{checks:#?}"
    );
    let ga = by("Global Administrator, active and permanent");
    assert_eq!(ga.status, Status::Unknown);
    assert!(
        ga.detail.contains("RoleManagement.Read.All"),
        "{}",
        ga.detail
    );
    assert!(!glassdrill::posture::failed(&checks), "UNKNOWN never fails");
}
