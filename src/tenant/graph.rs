//! The token endpoint (client credentials) and Graph `/v1.0/auditLogs/signIns`.

use super::*;

pub(super) async fn token(State(s): State<Arc<Shared>>, Form(f): Form<TokenForm>) -> Response {
    if f.grant_type != "client_credentials" {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type", "error_description": "AADSTS70003: only client_credentials is supported here."}))).into_response();
    }
    let ok_id = f.client_id == s.opts.client_id;
    let ok_secret = constant_time_eq(
        f.client_secret.as_bytes(),
        s.opts.client_secret.expose_secret().as_bytes(),
    );
    if !(ok_id && ok_secret) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))).into_response();
    }
    let tok = random_token(32);
    {
        let mut inner = s.lock();
        inner.tokens.insert(
            tok.clone(),
            tokio::time::Instant::now() + Duration::from_secs(3600),
        );
        inner.issued.push(tok.clone());
    }
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})).into_response()
}

pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The subset of OData `$filter` the sign-in log needs: clauses joined by
/// `and`, each `userPrincipalName eq '...'`, `correlationId eq '...'` or
/// `createdDateTime ge <ISO 8601>`.
pub(super) fn parse_filter(f: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    for clause in f.split(" and ") {
        let mut parts = clause.trim().splitn(3, ' ');
        let (Some(field), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("Invalid filter clause: {clause}"));
        };
        let value = value.trim().trim_matches('\'').replace("''", "'");
        match (field, op) {
            ("userPrincipalName" | "userId" | "correlationId", "eq")
            | ("createdDateTime", "ge") => {
                out.push((field.to_owned(), op.to_owned(), value));
            }
            _ => return Err(format!("Unsupported filter: {field} {op}")),
        }
    }
    Ok(out)
}

pub(super) async fn graph_signins(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    let now = tokio::time::Instant::now();
    {
        let mut inner = s.lock();
        let valid = bearer
            .as_ref()
            .and_then(|b| inner.tokens.get(b))
            .is_some_and(|exp| *exp > now);
        if !valid {
            return graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token is empty or invalid.",
            );
        }
        let ms = crate::support::time::millis(s.started.elapsed());
        if s.has(Fault::GraphOutage) && inner.stats.signin_attempts > 0 {
            inner.stats.graph_requests.push((ms, 503, 0));
            return graph_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            );
        }
        if s.has(Fault::ApiThrottle) && !inner.throttled {
            inner.throttled = true;
            inner.stats.graph_requests.push((ms, 429, 0));
            let mut r = graph_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return r;
        }
    }
    let filters = match q.get("$filter").map(|f| parse_filter(f)).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return graph_error(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let top = q
        .get("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(50)
        .min(1000);
    let mut inner = s.lock();
    let mut rows: Vec<&LoggedSignIn> = inner
        .signins
        .iter()
        .filter(|l| l.visible_at <= now)
        .filter(|l| {
            filters
                .iter()
                .all(|(field, _, value)| match field.as_str() {
                    "userPrincipalName" => l.record["userPrincipalName"]
                        .as_str()
                        .is_some_and(|u| same_upn(u, value)),
                    "userId" => l.record["userId"]
                        .as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(value)),
                    "correlationId" => l.record["correlationId"].as_str() == Some(value.as_str()),
                    _ => DateTime::parse_from_rfc3339(value).is_ok_and(|t| l.created >= t),
                })
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.created));
    let value: Vec<Value> = rows
        .into_iter()
        .take(top)
        .map(|l| l.record.clone())
        .collect();
    let ms = crate::support::time::millis(s.started.elapsed());
    inner.stats.graph_requests.push((ms, 200, value.len()));
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#auditLogs/signIns", s.urls.graph),
        "value": value
    }))
    .into_response()
}

/// Graph `/beta/auditLogs/signIns/{id}`: the sign-in with its
/// `authenticationDetails`, as the beta `signIn` resource documents them
/// (<https://learn.microsoft.com/en-us/graph/api/resources/authenticationdetail?view=graph-rest-beta>).
pub(super) async fn graph_signin_beta(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = super::apis::gate(&s, &headers, "graph-beta") {
        return *r;
    }
    let inner = s.lock();
    let now = tokio::time::Instant::now();
    let Some(l) = inner
        .signins
        .iter()
        .find(|l| l.visible_at <= now && l.record["id"] == id.as_str())
    else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource not found.",
        );
    };
    let ok = l.record["status"]["errorCode"] == 0;
    Json(json!({
        "id": id,
        "authenticationDetails": [{
            "authenticationStepDateTime": l.record["createdDateTime"],
            "authenticationMethod": "FIDO2 security key",
            "authenticationMethodDetail": null,
            "succeeded": ok,
            "authenticationStepResultDetail": if ok { "MFA successfully completed" } else { "Authentication failed" },
            "authenticationStepRequirement": "Primary authentication"
        }]
    }))
    .into_response()
}

/// A sign-in record in Graph's `signIn` shape
/// (<https://learn.microsoft.com/en-us/graph/api/resources/signin>).
fn signin_json(
    s: &Shared,
    corr: &str,
    error_code: i64,
    reason: &str,
    created: DateTime<Utc>,
    interactive: bool,
) -> Value {
    let acct = &s.opts.account;
    json!({
        "id": uuid(),
        "createdDateTime": ts(created),
        "userDisplayName": acct.display_name,
        "userPrincipalName": acct.upn,
        "userId": acct.id,
        "appId": "00000000-0000-0000-0000-00000000a11d",
        "appDisplayName": "glassdrill rehearsal",
        "ipAddress": "127.0.0.1",
        "clientAppUsed": "Browser",
        "correlationId": corr,
        "conditionalAccessStatus": if error_code == 53003 { "failure" } else if error_code == 0 { "success" } else { "notApplied" },
        "isInteractive": interactive,
        "riskDetail": "none",
        "riskLevelAggregated": "none",
        "riskLevelDuringSignIn": "none",
        "riskState": "none",
        "resourceDisplayName": "My Account",
        "status": {
            "errorCode": error_code,
            "failureReason": if error_code == 0 { Value::Null } else { json!(reason) },
            "additionalDetails": if error_code == 0 { json!("MFA requirement satisfied by claim in the token") } else { Value::Null },
        },
        "deviceDetail": { "browser": "Chrome", "operatingSystem": "Linux" },
        "location": { "city": "Loopback", "countryOrRegion": "ZZ" },
    })
}

/// [`Fault::UnexpectedSignin`]: a failed, non-interactive sign-in of the
/// account ten minutes before the drill, from no drill: unexpected use.
pub(super) fn plant_unexpected(s: &Shared) {
    let created = Utc::now() - chrono::Duration::minutes(10);
    let record = signin_json(
        s,
        &uuid(),
        50126,
        "Invalid username or password or Invalid on-premise username or password.",
        created,
        false,
    );
    s.lock().signins.push(LoggedSignIn {
        record,
        created,
        visible_at: tokio::time::Instant::now(),
    });
}

/// Logs a sign-in attempt in Graph's `signIn` shape and schedules its alert.
pub(super) fn record_signin(s: &Arc<Shared>, corr: &str, error_code: i64, reason: &str) {
    {
        let mut inner = s.lock();
        inner.stats.signin_attempts += 1;
        if inner.stats.first_attempt_ms.is_none() {
            inner.stats.first_attempt_ms = Some(crate::support::time::millis(s.started.elapsed()));
        }
    }
    if error_code == 0 && s.has(Fault::SigninNotLogged) {
        return;
    }
    let (error_code, reason) = if error_code == 0 && s.has(Fault::SigninLoggedFailed) {
        (
            500121,
            "Authentication failed during strong authentication request.",
        )
    } else {
        (error_code, reason)
    };
    let created = Utc::now();
    let record = signin_json(s, corr, error_code, reason, created, true);
    let delay = if s.has(Fault::LogDelay) {
        s.opts.log_delay
    } else {
        Duration::ZERO
    };
    s.lock().signins.push(LoggedSignIn {
        record,
        created,
        visible_at: tokio::time::Instant::now() + delay,
    });
    schedule_alert(s, created);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parsing() {
        let f = parse_filter(
            "userPrincipalName eq 'a@b.c' and createdDateTime ge 2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].2, "a@b.c");
        assert!(parse_filter("status eq 0").is_err());
    }
}
