//! The polling alert checks against `wiremock` servers answering with
//! payloads shaped like the documented samples (the fixtures in
//! `src/alerts/fixtures/`, sources in its `SOURCES-*.md`): pagination,
//! 429 with `Retry-After` (whole and fractional), 5xx, malformed JSON,
//! empty results, the alert appearing only after several polls, the
//! deadline passing, Log Analytics' `PartialError`, the confirmation of an
//! alert naming no account by the rule's rows.

use std::sync::Arc;
use std::time::Duration;

use glassdrill::alerts::sources::{CloudEndpoints, log_analytics, polling_check};
use glassdrill::alerts::{AlertCheck, AlertObservation, AlertTarget, MatchKind};
use glassdrill::cloud::{AppCredentials, TokenCache};
use glassdrill::config::{AlertKind, ExpectedAlert};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const OID: &str = "00000000-0000-0000-0000-0000000b6e01";
const UPN: &str = "bg1@contoso.onmicrosoft.com";

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/alerts/fixtures")
            .join(name),
    )
    .expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().into()
}

/// A token endpoint on `server` and the cache using it.
async fn tokens(server: &MockServer) -> Arc<TokenCache> {
    Mock::given(method("POST"))
        .and(path("/tenant-1/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-1"}),
        ))
        .mount(server)
        .await;
    Arc::new(
        TokenCache::new(AppCredentials {
            authority: server.uri(),
            tenant_id: "tenant-1".into(),
            client_id: "app-1".into(),
            client_secret: SecretString::from("s3cret"),
            certificate: None,
        })
        .unwrap(),
    )
}

fn endpoints(server: &MockServer) -> CloudEndpoints {
    CloudEndpoints {
        graph: server.uri(),
        management: server.uri(),
        log_analytics: server.uri(),
        pagerduty: Some((server.uri(), SecretString::from("Token token=pd-key"))),
    }
}

/// A target signed in at `signin`, with `deadline` to wait.
fn target(signin: &str, deadline: Duration) -> AlertTarget {
    let now = tokio::time::Instant::now();
    AlertTarget {
        upn: "BG1@contoso.onmicrosoft.com".into(),
        object_id: Some(OID.into()),
        signin_at: t(signin),
        signin_id: Some("1b0e7a6c-0d3f-4a8e-9f57-6a5b4c3d2e10".into()),
        correlation_id: Some("d5a26b27-4426-4e2a-93f1-9ee6e3672892".into()),
        deadline: now + deadline,
        late_until: now + deadline,
    }
}

fn expected(kind: AlertKind, rule: &str) -> ExpectedAlert {
    let mut a = ExpectedAlert::new(kind, "sev0", rule, Duration::from_secs(30));
    a.every = Duration::from_millis(200);
    a
}

async fn observe(server: &MockServer, a: &ExpectedAlert, target: &AlertTarget) -> AlertObservation {
    let check = polling_check(a, &endpoints(server), tokens(server).await).expect("a check");
    check.observe(target, &CancellationToken::new()).await
}

#[tokio::test]
async fn graph_signin_follows_pages_and_honours_a_fractional_retry_after() {
    let server = MockServer::start().await;
    let mut page1 = fixture("graph-signins.json");
    // The first page holds another sign-in; the link leads to the second.
    page1["value"][0]["id"] = "earlier-sign-in".into();
    page1["value"][0]["createdDateTime"] = "2026-11-24T11:00:00Z".into();
    page1["@odata.nextLink"] =
        format!("{}/v1.0/auditLogs/signIns?$skiptoken=page2", server.uri()).into();
    let mut page2 = fixture("graph-signins.json");
    page2.as_object_mut().unwrap().remove("@odata.nextLink");
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .and(query_param("$skiptoken", "page2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page2))
        .mount(&server)
        .await;
    // Throttled once, with a fractional Retry-After; filtered by userId.
    let filter = format!(
        "userId eq '{OID}' and createdDateTime ge 2026-11-24T11:57:00Z and correlationId eq 'd5a26b27-4426-4e2a-93f1-9ee6e3672892'"
    );
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .and(query_param("$filter", filter.as_str()))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0.5"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .and(query_param("$filter", filter.as_str()))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page1))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let obs = observe(
        &server,
        &expected(AlertKind::GraphSignIn, "sign-in log"),
        &target("2026-11-24T11:59:00Z", Duration::from_secs(20)),
    )
    .await;
    let m = obs.matched.expect("the sign-in row");
    assert_eq!(m.alert.alert_id, "1b0e7a6c-0d3f-4a8e-9f57-6a5b4c3d2e10");
    assert_eq!(obs.matched_by, Some(MatchKind::ByAccount));
    assert!(
        obs.ignored
            .iter()
            .any(|(a, _)| a.alert.alert_id == "earlier-sign-in"),
        "the older sign-in on page 1 is kept as ignored: {:?}",
        obs.ignored
    );
    // The 429's Retry-After of 0.5 s was waited out.
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let raw: Value = serde_json::from_slice(&m.raw).unwrap();
    assert!(
        raw["appliedConditionalAccessPolicies"].is_array(),
        "the raw row is kept"
    );
}

#[tokio::test]
async fn azure_alerts_appear_after_several_polls_through_a_5xx_and_pages() {
    let server = MockServer::start().await;
    let rule = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-breakglass/providers/Microsoft.Insights/scheduledQueryRules/Break-glass account sign-in";
    let list = "/subscriptions/00000000-0000-0000-0000-0000000000aa/providers/Microsoft.AlertsManagement/alerts";
    let mut found = fixture("alerts-management-list.json");
    found["nextLink"] = format!("{}/next-page", server.uri()).into();
    // Poll 1: empty; poll 2: 503; poll 3: the alert (and a next page).
    Mock::given(method("GET"))
        .and(path(list))
        .and(query_param("alertRule", rule))
        .and(query_param("monitorCondition", "Fired"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(list))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(list))
        .respond_with(ResponseTemplate::new(200).set_body_json(found))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/next-page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &expected(AlertKind::AzureAlerts, rule),
        &target("2026-11-24T11:59:00Z", Duration::from_secs(20)),
    )
    .await;
    assert!(obs.error.is_none(), "{:?}", obs.error);
    // The documented sample's alert carries no context: it names no
    // account and has no window, so it cannot be tied to the sign-in.
    assert!(obs.matched.is_none());
    assert!(
        obs.ignored
            .iter()
            .any(|(_, r)| r.to_string() == "names no account"),
        "{:?}",
        obs.ignored
    );
    let gets = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == list)
        .count();
    assert!(
        gets >= 3,
        "polled through the empty answer and the 503: {gets}"
    );
}

#[tokio::test]
async fn azure_alerts_with_context_name_the_account() {
    let server = MockServer::start().await;
    let rule = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-breakglass/providers/Microsoft.Insights/scheduledQueryRules/Break-glass account sign-in";
    let mut found = fixture("alerts-management-list.json");
    found.as_object_mut().unwrap().remove("nextLink");
    // includeContext=true: the alert's context is the common schema's
    // alertContext (here the documented Log Alerts V2 sample's).
    let sample: Value = serde_json::from_str(include_str!(
        "../../src/alerts/fixtures/log-alerts-v2-signin.json"
    ))
    .unwrap();
    found["value"][0]["properties"]["context"] = sample["data"]["alertContext"].clone();
    Mock::given(method("GET"))
        .and(query_param("includeContext", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(found))
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &expected(AlertKind::AzureAlerts, rule),
        &target("2026-11-24T11:59:00Z", Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        obs.matched_by,
        Some(MatchKind::ByAccount),
        "{:?}",
        obs.ignored
    );
}

#[tokio::test]
async fn log_analytics_reads_the_row_and_its_ingestion_time_and_a_partial_error_is_an_error() {
    let server = MockServer::start().await;
    let a = {
        let mut a = expected(AlertKind::LogAnalytics, "Break-glass account sign-in");
        a.workspace = Some("ws-1".into());
        a
    };
    Mock::given(method("POST"))
        .and(path("/v1/workspaces/ws-1/query"))
        .and(body_string_contains(OID))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("log-analytics-query.json")))
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &a,
        &target("2026-11-24T11:59:00Z", Duration::from_secs(10)),
    )
    .await;
    let m = obs.matched.expect("the row");
    assert_eq!(m.ingested, Some(t("2026-11-24T12:01:10.5Z")));
    assert_eq!(m.alert.fired, t("2026-11-24T12:00:00.1234567Z"));

    // A PartialError inside a 200 is an error, never "no alert".
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/workspaces/ws-1/query"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("log-analytics-partial-error.json")),
        )
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &a,
        &target("2026-11-24T11:59:00Z", Duration::from_millis(700)),
    )
    .await;
    assert!(obs.matched.is_none());
    let e = obs.error.expect("an error");
    assert!(e.contains("PartialError"), "{e}");

    // Malformed JSON: an error naming the API.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/workspaces/ws-1/query"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"tables\": [}"))
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &a,
        &target("2026-11-24T11:59:00Z", Duration::from_millis(700)),
    )
    .await;
    let e = obs.error.expect("an error");
    assert!(
        e.contains("Log Analytics") && e.contains("malformed JSON"),
        "{e}"
    );
}

#[tokio::test]
async fn graph_security_matches_on_the_evidence_and_asks_for_unknown_enum_members() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1.0/security/alerts_v2"))
        .and(header("prefer", "include-unknown-enum-members"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("graph-alerts-v2.json")))
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &expected(AlertKind::GraphSecurity, "Break-glass account sign-in"),
        &target("2026-11-24T11:59:00Z", Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        obs.matched_by,
        Some(MatchKind::ByAccount),
        "{:?} {:?}",
        obs.ignored,
        obs.error
    );
    // Another title never counts, even naming the account.
    let obs = observe(
        &server,
        &expected(AlertKind::GraphSecurity, "Impossible travel"),
        &target("2026-11-24T11:59:00Z", Duration::from_millis(600)),
    )
    .await;
    assert!(obs.matched.is_none());
    assert!(
        obs.ignored
            .iter()
            .any(|(_, r)| r.to_string().contains("another rule"))
    );
}

#[tokio::test]
async fn mailbox_matches_sender_and_subject_and_ignores_resolved_mail() {
    let server = MockServer::start().await;
    let mut mail = fixture("graph-messages.json");
    let mut resolved = mail["value"][0].clone();
    resolved["subject"] = "Resolved:Sev0 Azure Monitor Alert Break-glass account sign-in".into();
    resolved["internetMessageId"] = "<resolved@mail.graph.localhost>".into();
    mail["value"].as_array_mut().unwrap().insert(0, resolved);
    Mock::given(method("GET"))
        .and(path(
            "/v1.0/users/soc@contoso.onmicrosoft.com/mailFolders/inbox/messages",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(mail))
        .mount(&server)
        .await;
    let mut a = expected(AlertKind::Mailbox, "azure-noreply@microsoft.com");
    a.mailbox = Some("soc@contoso.onmicrosoft.com".into());
    a.subject = Some("Alert Break-glass account sign-in".into());
    let obs = observe(
        &server,
        &a,
        &target("2026-11-24T11:59:00Z", Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        obs.matched_by,
        Some(MatchKind::ByAccount),
        "{:?}",
        obs.ignored
    );
    assert!(
        obs.ignored
            .iter()
            .any(|(_, r)| r.to_string().contains("Resolved"))
    );
    // Another sender: never counts.
    a.rule = "someone@contoso.onmicrosoft.com".into();
    let obs = observe(
        &server,
        &a,
        &target("2026-11-24T11:59:00Z", Duration::from_millis(500)),
    )
    .await;
    assert!(obs.matched.is_none());
}

#[tokio::test]
async fn pagerduty_reads_incidents_and_their_alert_bodies_with_its_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/incidents"))
        .and(query_param("service_ids[]", "PBGLASS"))
        .and(header("authorization", "Token token=pd-key"))
        .and(header("accept", "application/vnd.pagerduty+json;version=2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("pagerduty-incidents.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/incidents/PBG1SIN/alerts"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("pagerduty-incident-alerts.json")),
        )
        .mount(&server)
        .await;
    let obs = observe(
        &server,
        &expected(AlertKind::PagerDuty, "PBGLASS"),
        &target("2026-11-24T11:58:00Z", Duration::from_secs(10)),
    )
    .await;
    assert_eq!(
        obs.matched_by,
        Some(MatchKind::ByAccount),
        "{:?} {:?}",
        obs.ignored,
        obs.error
    );
    let raw: Value = serde_json::from_slice(&obs.matched.unwrap().raw).unwrap();
    assert_eq!(raw["incident"]["id"], "PBG1SIN");
}

#[tokio::test]
async fn no_alert_by_the_deadline_is_a_missing_alert_not_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": []})))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let obs = observe(
        &server,
        &expected(AlertKind::GraphSecurity, "Break-glass account sign-in"),
        &target("2026-11-24T11:59:00Z", Duration::from_millis(1500)),
    )
    .await;
    assert!(obs.matched.is_none() && obs.error.is_none() && !obs.cancelled);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    let polls = server.received_requests().await.unwrap().len();
    assert!(polls >= 3, "polled until the deadline: {polls} requests");
    // An API that never answers is an ERROR instead.
    let down = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"error": {"code": "Authorization_RequestDenied"}})),
        )
        .mount(&down)
        .await;
    let obs = observe(
        &down,
        &expected(AlertKind::GraphSecurity, "Break-glass account sign-in"),
        &target("2026-11-24T11:59:00Z", Duration::from_millis(500)),
    )
    .await;
    let e = obs.error.expect("an error");
    assert!(
        e.contains("SecurityAlert.Read.All"),
        "the missing permission is named: {e}"
    );
    assert!(!e.contains("tok-1") && !e.contains("s3cret"));
}

/// Microsoft's break-glass alert names no account: it counts by rule and
/// window, and where Log Analytics can be read, by the rule's rows
/// holding this sign-in.
#[tokio::test]
async fn an_alert_naming_no_account_is_confirmed_by_the_rules_rows() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/workspaces/ws-1/query"))
        .and(body_string_contains(
            "2026-11-24T11:56:00Z/2026-11-24T12:01:00Z",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("log-analytics-query.json")))
        .mount(&server)
        .await;
    let mut la = expected(AlertKind::LogAnalytics, "Break-glass account sign-in");
    la.workspace = Some("ws-1".into());
    let confirm = log_analytics(&la, &endpoints(&server), tokens(&server).await).unwrap();
    let receiver = glassdrill::alerts::WebhookReceiver::start(
        "127.0.0.1:0".parse().unwrap(),
        SecretString::from("tok"),
        65536,
    )
    .await
    .unwrap();
    let check = receiver
        .attach(UPN, Some(OID), "Break-glass account sign-in")
        .with_confirm(Box::new(confirm));
    let url = receiver.url_with_token().expose_secret().to_owned();
    let body = fixture("log-alerts-v2-no-dimensions.json");
    let http = reqwest::Client::new();
    for _ in 0..2 {
        // Delivered twice: counted once.
        assert_eq!(
            http.post(&url).json(&body).send().await.unwrap().status(),
            202
        );
    }
    let obs = check
        .observe(
            &target("2026-11-24T12:00:00.1234567Z", Duration::from_secs(5)),
            &CancellationToken::new(),
        )
        .await;
    assert_eq!(obs.matched_by, Some(MatchKind::ByRuleWindowAndSearch));
    receiver.shutdown().await;
}

/// An RSA key and a self-signed certificate made by `openssl` in `dir`:
/// (PEM with both, public key PEM, DER certificate).
pub(crate) fn openssl_cert(dir: &std::path::Path, name: &str) -> (String, String, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=glassdrill-test",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    let pubkey = run(&["x509", "-in", crt.to_str().unwrap(), "-pubkey", "-noout"]);
    let der = run(&["x509", "-in", crt.to_str().unwrap(), "-outform", "der"]);
    let pem = format!(
        "{}{}",
        std::fs::read_to_string(&crt).unwrap(),
        std::fs::read_to_string(&key).unwrap()
    );
    (pem, String::from_utf8(pubkey).unwrap(), der)
}

/// The token client with a certificate: the assertion JWT verifies with
/// the certificate's public key, names the app and the token endpoint,
/// carries the certificate's SHA-256 thumbprint, and no secret is sent.
#[tokio::test]
async fn the_token_client_signs_a_client_assertion_with_its_certificate() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let (pem, public, der) = openssl_cert(dir.path(), "app");
    for (alg, jwt_alg) in [
        (
            glassdrill::cloud::token::AssertionAlg::Ps256,
            jsonwebtoken::Algorithm::PS256,
        ),
        (
            glassdrill::cloud::token::AssertionAlg::Rs256,
            jsonwebtoken::Algorithm::RS256,
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/tenant-1/oauth2/v2.0/token"))
            .and(body_string_contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-c"}),
            ))
            .expect(1)
            .mount(&server)
            .await;
        let cert = glassdrill::cloud::token::ClientCertificate::from_pem(
            &SecretString::from(pem.clone()),
            alg,
        )
        .unwrap();
        let cache = TokenCache::new(AppCredentials {
            authority: server.uri(),
            tenant_id: "tenant-1".into(),
            client_id: "app-1".into(),
            client_secret: SecretString::from(String::new()),
            certificate: Some(cert),
        })
        .unwrap();
        let tok = cache
            .token(
                &glassdrill::cloud::Resource::LogAnalytics,
                &CancellationToken::new(),
            )
            .await
            .unwrap();
        assert_eq!(tok.expose_secret(), "tok-c");
        let req = &server.received_requests().await.unwrap()[0];
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&req.body)
                .into_owned()
                .collect();
        assert!(!form.contains_key("client_secret"));
        assert_eq!(form["scope"], "https://api.loganalytics.io/.default");
        let jwt = &form["client_assertion"];
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.alg, jwt_alg);
        assert_eq!(
            header.x5t_s256.as_deref(),
            Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(sha2::Sha256::digest(&der))
                    .as_str()
            )
        );
        let token_url = format!("{}/tenant-1/oauth2/v2.0/token", server.uri());
        let mut v = jsonwebtoken::Validation::new(jwt_alg);
        v.set_audience(&[token_url.as_str()]);
        v.set_issuer(&["app-1"]);
        let claims = jsonwebtoken::decode::<Value>(
            jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap(),
            &v,
        )
        .expect("the assertion verifies with the certificate's key");
        assert_eq!(claims.claims["sub"], "app-1");
        assert!(claims.claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let (exp, iat) = (
            claims.claims["exp"].as_i64().unwrap(),
            claims.claims["iat"].as_i64().unwrap(),
        );
        assert!(exp > iat && exp - iat <= 600);
    }
    // Another key does not verify it.
    let (_, other_public, _) = openssl_cert(dir.path(), "other");
    let cert = glassdrill::cloud::token::ClientCertificate::from_pem(
        &SecretString::from(pem),
        glassdrill::cloud::token::AssertionAlg::Ps256,
    )
    .unwrap();
    let jwt = cert.assertion("app-1", "http://127.0.0.1/t").unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
    v.set_audience(&["http://127.0.0.1/t"]);
    assert!(
        jsonwebtoken::decode::<Value>(
            &jwt,
            &jsonwebtoken::DecodingKey::from_rsa_pem(other_public.as_bytes()).unwrap(),
            &v
        )
        .is_err()
    );
    // A PEM without a key is refused, without quoting it.
    let only_cert = std::fs::read_to_string(dir.path().join("app.crt")).unwrap();
    let err = glassdrill::cloud::token::ClientCertificate::from_pem(
        &SecretString::from(only_cert),
        glassdrill::cloud::token::AssertionAlg::Ps256,
    )
    .unwrap_err();
    assert!(err.contains("no PRIVATE KEY block"), "{err}");
}

/// The JWK of the RSA key in `dir/{name}.key` (modulus from openssl).
fn jwk(dir: &std::path::Path, name: &str, kid: &str) -> Value {
    use base64::Engine as _;
    let out = std::process::Command::new("openssl")
        .args([
            "rsa",
            "-in",
            dir.join(format!("{name}.key")).to_str().unwrap(),
            "-noout",
            "-modulus",
        ])
        .output()
        .expect("openssl");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({
        "kty": "RSA", "use": "sig", "kid": kid, "e": "AQAB",
        "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    })
}

/// Azure Monitor's secure webhook: an Entra bearer token whose signature
/// is checked against the authority's JWKS, and whose issuer, audience,
/// expiry and role are validated. The plain token-in-URL form stays.
#[tokio::test]
async fn the_secure_webhook_takes_only_a_valid_entra_token() {
    use glassdrill::alerts::webhook::SecureWebhook;
    let dir = tempfile::tempdir().unwrap();
    let (pem, _, _) = openssl_cert(dir.path(), "authority");
    let (other_pem, _, _) = openssl_cert(dir.path(), "intruder");
    let jwks = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/tenant-1/discovery/v2.0/keys"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"keys": [jwk(dir.path(), "authority", "k1")]})),
        )
        .mount(&jwks)
        .await;
    let issuer = format!("{}/tenant-1/v2.0", jwks.uri());
    let receiver = glassdrill::alerts::WebhookReceiver::start_with(
        "127.0.0.1:0".parse().unwrap(),
        SecretString::from("tok"),
        65536,
        Some(SecureWebhook {
            jwks_url: format!("{}/tenant-1/discovery/v2.0/keys", jwks.uri()),
            issuers: vec![issuer.clone()],
            audiences: vec!["api://glassdrill-webhook".into()],
            role: glassdrill::alerts::webhook::SECURE_WEBHOOK_ROLE.into(),
        }),
    )
    .await
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let sign = |pem: &str, claims: Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("k1".into());
        let key_pem = pem.split("-----END CERTIFICATE-----").nth(1).unwrap();
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.trim().as_bytes()).unwrap(),
        )
        .unwrap()
    };
    // Entra access token claims (aud, iss, exp, nbf, roles, appid of
    // Azure Monitor's service principal, as Microsoft documents).
    let claims = |aud: &str, exp: i64, roles: Value| {
        json!({
            "aud": aud, "iss": issuer, "iat": now - 60, "nbf": now - 60, "exp": exp,
            "appid": "461e8683-5575-4561-ac7f-899cc907d62a", "tid": "tenant-1",
            "roles": roles,
        })
    };
    let good_roles = json!(["ActionGroupsSecureWebhook"]);
    let url = format!("http://{}/webhook", receiver.addr());
    let body = fixture("log-alerts-v2-signin.json");
    let http = reqwest::Client::new();
    let post = |token: Option<String>| {
        let mut r = http.post(&url).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    // Valid: accepted.
    let valid = sign(
        &pem,
        claims("api://glassdrill-webhook", now + 600, good_roles.clone()),
    );
    assert_eq!(status(post(Some(valid)).await.unwrap()), 202);
    // Wrong audience, expired, another key, no role, no token.
    let cases = [
        (
            sign(
                &pem,
                claims("api://someone-else", now + 600, good_roles.clone()),
            ),
            401,
        ),
        (
            sign(
                &pem,
                claims("api://glassdrill-webhook", now - 600, good_roles.clone()),
            ),
            401,
        ),
        (
            sign(
                &other_pem,
                claims("api://glassdrill-webhook", now + 600, good_roles.clone()),
            ),
            401,
        ),
        (
            sign(
                &pem,
                claims("api://glassdrill-webhook", now + 600, json!(["Other.Role"])),
            ),
            403,
        ),
        // Not valid yet.
        (
            sign(&pem, {
                let mut c = claims("api://glassdrill-webhook", now + 3600, good_roles.clone());
                c["nbf"] = (now + 1800).into();
                c
            }),
            401,
        ),
    ];
    for (token, want) in cases {
        assert_eq!(status(post(Some(token)).await.unwrap()), want);
    }
    assert_eq!(status(post(None).await.unwrap()), 401);
    assert_eq!(
        receiver.unrouted().len(),
        1,
        "only the valid post was taken"
    );
    // The plain token-in-URL form still works.
    let plain = http
        .post(receiver.url_with_token().expose_secret())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 202);
    receiver.shutdown().await;
}
