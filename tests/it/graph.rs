//! The Graph sign-in log client against a Graph-shaped server (wiremock on
//! loopback): client-credentials token, the `$filter` it sends, Retry-After
//! on 429, and errors that name the fix without echoing the secret.

use chrono::{TimeZone, Utc};
use std::sync::Arc;

use glassdrill::cloud::{AppCredentials, CloudError as GraphError, GraphClient, TokenCache};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const SECRET: &str = "client-secret-that-must-not-leak";

async fn token_ok(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=app-1"))
        .and(body_string_contains(format!(
            "scope={}",
            urlencode(&format!("{}/.default", server.uri()))
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"token_type": "Bearer", "expires_in": 3599, "access_token": "tok-1"}),
        ))
        .expect(1)
        .mount(server)
        .await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn client(server: &MockServer) -> GraphClient {
    let tokens = TokenCache::new(AppCredentials {
        authority: server.uri(),
        tenant_id: TENANT.into(),
        client_id: "app-1".into(),
        client_secret: SecretString::from(SECRET),
        certificate: None,
    })
    .unwrap();
    GraphClient::new(&server.uri(), Arc::new(tokens))
}

/// The sign-ins of bg1 since now, with no cancellation.
async fn bg1_sign_ins(server: &MockServer) -> Result<Vec<serde_json::Value>, GraphError> {
    client(server)
        .sign_ins(
            "bg1@contoso.onmicrosoft.com",
            None,
            Utc::now(),
            None,
            &CancellationToken::new(),
        )
        .await
}

#[tokio::test]
async fn fetches_sign_ins_with_the_expected_filter_and_honours_retry_after() {
    let server = MockServer::start().await;
    token_ok(&server).await;
    let since = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let filter = "userPrincipalName eq 'o''brien@contoso.onmicrosoft.com' and createdDateTime ge 2026-11-24T12:00:00Z and correlationId eq 'corr-1'";
    // First answer: throttled with Retry-After: 1; then the record.
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .and(header("authorization", "Bearer tok-1"))
        .and(query_param("$filter", filter))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .and(query_param("$filter", filter))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [{"id": "s-1", "correlationId": "corr-1", "status": {"errorCode": 0}}]})))
        .expect(1)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let rows = client(&server)
        .sign_ins(
            "o'brien@contoso.onmicrosoft.com",
            None,
            since,
            Some("corr-1"),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], "s-1");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn refused_token_names_the_fix_and_never_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/{TENANT}/oauth2/v2.0/token")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})))
        .mount(&server)
        .await;
    let err = bg1_sign_ins(&server).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, GraphError::TokenRefused { status: 401, .. }),
        "{text}"
    );
    assert!(
        text.contains("invalid_client") && text.contains("client_secret"),
        "{text}"
    );
    assert!(!text.contains(SECRET), "{text}");
}

#[tokio::test]
async fn forbidden_graph_says_which_permission_is_missing() {
    let server = MockServer::start().await;
    token_ok(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}})))
        .mount(&server)
        .await;
    let err = bg1_sign_ins(&server).await.unwrap_err().to_string();
    assert!(
        err.contains("403")
            && err.contains("Authorization_RequestDenied")
            && err.contains("AuditLog.Read.All"),
        "{err}"
    );
}

#[tokio::test]
async fn cancellation_stops_a_throttled_wait() {
    let server = MockServer::start().await;
    token_ok(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/auditLogs/signIns"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&server)
        .await;
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let watched = &server;
    // Stop once the throttled request has been answered (polled, not
    // guessed with a sleep): the client is then in its 30 s wait.
    let stop = async move {
        loop {
            let throttled = watched
                .received_requests()
                .await
                .unwrap_or_default()
                .iter()
                .any(|r| r.url.path() == "/v1.0/auditLogs/signIns");
            if throttled {
                c.cancel();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let graph = client(&server);
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(
        graph.sign_ins(
            "bg1@contoso.onmicrosoft.com",
            None,
            Utc::now(),
            None,
            &cancel
        ),
        stop
    );
    let err = result.unwrap_err();
    assert!(matches!(err, GraphError::Cancelled), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
