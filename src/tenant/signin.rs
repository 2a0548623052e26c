//! The sign-in pages: authorize, username, sign-in options, the FIDO
//! ceremony and its verification, KMSI, landing, sign-out.

use super::*;

/// The page for a flow token that is unknown or used up.
pub(super) fn expired() -> Response {
    error_page(
        "",
        None,
        "AADSTS90100: The sign-in session expired. Start again.",
    )
}

/// Refuses a sign-in attempt: logs it (every attempt reaches the sign-in
/// log and so the alert rule, as in Entra) and shows the error page, which
/// carries the flow's tokens as Entra's do.
pub(super) fn refuse(
    s: &Arc<Shared>,
    flow: &FlowState,
    code: i64,
    reason: &str,
    page: &str,
) -> Response {
    record_signin(s, &flow.correlation_id, code, reason);
    error_page(&flow.correlation_id, Some(&flow.tokens), page)
}

pub(super) fn error_page(corr: &str, flow: Option<&pages::FlowTokens>, msg: &str) -> Response {
    (StatusCode::OK, Html(pages::error(corr, flow, msg))).into_response()
}

pub(super) async fn authorize(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    if tenant != TENANT_ID {
        return error_page(
            "",
            None,
            "AADSTS90002: Tenant not found. Check the tenant id in the sign-in URL.",
        );
    }
    let tokens = pages::FlowTokens::generate();
    let corr = uuid();
    // Entra's session cookies: one only the server sees, one the page's
    // scripts can read. Neither may ever reach the evidence.
    let estsauth = random_token(32);
    let esctx = random_token(32);
    {
        let mut inner = s.lock();
        inner.issued.extend(tokens.all().map(str::to_owned));
        inner.issued.extend([estsauth.clone(), esctx.clone()]);
        inner.flows.insert(
            tokens.flow_token.clone(),
            FlowState {
                correlation_id: corr.clone(),
                tokens: tokens.clone(),
                upn: None,
                challenge: None,
                signed_in: false,
            },
        );
    }
    let mut r = Html(pages::username(&tenant, &tokens, &corr, None)).into_response();
    for c in [
        format!("ESTSAUTH={estsauth}; Path=/; HttpOnly; SameSite=Lax"),
        format!("esctx={esctx}; Path=/; SameSite=Lax"),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(rename = "flowToken")]
    flow_token: String,
    loginfmt: String,
}

pub(super) async fn login(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(f): Form<LoginForm>,
) -> Response {
    let Some(flow) = s.lock().flows.get(&f.flow_token).cloned() else {
        return expired();
    };
    let corr = flow.correlation_id.clone();
    if !same_upn(&f.loginfmt, &s.opts.account.upn) {
        return Html(pages::username(
            &tenant,
            &flow.tokens,
            &corr,
            Some("This username may be incorrect. Make sure you typed it correctly."),
        ))
        .into_response();
    }
    if s.has(Fault::AccountDisabled) {
        record_signin(&s, &corr, 50057, "The user account is disabled.");
        return Html(pages::username(
            &tenant,
            &flow.tokens,
            &corr,
            Some("AADSTS50057: Your account has been disabled. Contact your administrator."),
        ))
        .into_response();
    }
    if let Some(fl) = s.lock().flows.get_mut(&f.flow_token) {
        fl.upn = Some(s.opts.account.upn.clone());
    }
    Html(pages::options(
        &tenant,
        &flow.tokens,
        &corr,
        &s.opts.account.upn,
        s.has(Fault::UiDrift),
    ))
    .into_response()
}

pub(super) async fn fido_start(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(q): Query<FlowQuery>,
) -> Response {
    let token = q.flow_token.unwrap_or_default();
    let Some(flow) = s
        .lock()
        .flows
        .get(&token)
        .cloned()
        .filter(|f| f.upn.is_some())
    else {
        return expired();
    };
    let action = format!("{}/{tenant}/fido/get", s.urls.ceremony);
    Html(pages::fido(
        &action,
        &flow.tokens,
        &flow.correlation_id,
        &s.opts.account.upn,
    ))
    .into_response()
}

pub(super) async fn ceremony(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(q): Query<FlowQuery>,
) -> Response {
    let token = q.flow_token.unwrap_or_default();
    let challenge = random_bytes(32);
    let flow = {
        let mut inner = s.lock();
        let Some(flow) = inner.flows.get_mut(&token).filter(|f| f.upn.is_some()) else {
            return expired();
        };
        flow.challenge = Some(challenge.clone());
        let flow = flow.clone();
        inner.issued.push(B64.encode(&challenge));
        flow
    };
    let options =
        json!({ "challenge": B64.encode(&challenge), "rpId": s.urls.rp_id, "timeout": 60000 });
    let action = format!("{}/{tenant}/fido/verify", s.urls.authority);
    Html(pages::ceremony(
        &options,
        &action,
        &flow.tokens,
        &flow.correlation_id,
    ))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct VerifyForm {
    #[serde(rename = "flowToken")]
    flow_token: String,
    #[serde(rename = "credentialId", default)]
    credential_id: String,
    #[serde(rename = "authenticatorData", default)]
    authenticator_data: String,
    #[serde(rename = "clientDataJSON", default)]
    client_data_json: String,
    #[serde(default)]
    signature: String,
    #[serde(rename = "userHandle", default)]
    user_handle: String,
    #[serde(default)]
    error: String,
}

pub(super) async fn fido_verify(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(f): Form<VerifyForm>,
) -> Response {
    // The challenge is single-use: taken out of the flow whatever happens.
    let (flow, challenge) = {
        let mut inner = s.lock();
        let Some(flow) = inner.flows.get_mut(&f.flow_token) else {
            return expired();
        };
        let c = flow.challenge.take();
        (flow.clone(), c)
    };
    let corr = flow.correlation_id.clone();
    let Some(challenge) = challenge else {
        return error_page(
            &corr,
            Some(&flow.tokens),
            "AADSTS135004: The security key request is no longer valid. Start again.",
        );
    };
    if !f.error.is_empty() {
        return refuse(
            &s,
            &flow,
            135011,
            "The security key ceremony did not complete.",
            &format!(
                "AADSTS135011: Your security key could not be used ({}).",
                f.error
            ),
        );
    }
    let decode = |v: &str| B64.decode(v.trim_end_matches('='));
    let (Ok(cid), Ok(ad), Ok(cd), Ok(sig)) = (
        decode(&f.credential_id),
        decode(&f.authenticator_data),
        decode(&f.client_data_json),
        decode(&f.signature),
    ) else {
        return refuse(
            &s,
            &flow,
            135011,
            "Malformed security key response.",
            "AADSTS135011: The security key response was malformed.",
        );
    };
    s.lock().stats.assertions += 1;
    let uh = if f.user_handle.is_empty() {
        None
    } else {
        decode(&f.user_handle).ok()
    };
    if s.has(Fault::CredentialRevoked) {
        return refuse(
            &s,
            &flow,
            135010,
            "The security key has been revoked.",
            "AADSTS135010: The security key used to sign in has been revoked for this account.",
        );
    }
    let mut stored = s.opts.account.credential.clone();
    stored.sign_count = s.lock().sign_count;
    let origins = vec![s.urls.ceremony.clone()];
    let expected = Expected {
        rp_id: &s.urls.rp_id,
        origins: &origins,
        challenge: &challenge,
        require_user_verification: true,
    };
    let assertion = Assertion {
        credential_id: &cid,
        authenticator_data: &ad,
        client_data_json: &cd,
        signature: &sig,
        user_handle: uh.as_deref(),
    };
    match webauthn::verify_assertion(&expected, &stored, &assertion) {
        Ok(v) => {
            s.lock().sign_count = v.sign_count;
        }
        Err(e) => {
            return refuse(
                &s,
                &flow,
                135011,
                &format!("Security key verification failed: {e}"),
                &format!("AADSTS135011: The security key could not be verified ({e})."),
            );
        }
    }
    if s.has(Fault::CaBlock) {
        return refuse(
            &s,
            &flow,
            53003,
            "Access has been blocked by Conditional Access policies.",
            "AADSTS53003: Access has been blocked by Conditional Access policies.",
        );
    }
    record_signin(&s, &corr, 0, "");
    if let Some(fl) = s.lock().flows.get_mut(&f.flow_token) {
        fl.signed_in = true;
    }
    Html(pages::kmsi(&tenant, &flow.tokens, &corr)).into_response()
}

pub(super) async fn kmsi(State(s): State<Arc<Shared>>, Form(f): Form<FlowQuery>) -> Response {
    let token = f.flow_token.unwrap_or_default();
    let session = random_token(24);
    {
        let mut inner = s.lock();
        let Some(flow) = inner.flows.remove(&token).filter(|f| f.signed_in) else {
            return expired();
        };
        inner
            .sessions
            .insert(session.clone(), flow.upn.unwrap_or_default());
        inner.issued.push(session.clone());
    }
    Redirect::to(&format!("{}/?session={session}", s.urls.myaccount)).into_response()
}

#[derive(Deserialize)]
pub(super) struct LandingQuery {
    session: Option<String>,
}

pub(super) async fn landing(
    State(s): State<Arc<Shared>>,
    Query(q): Query<LandingQuery>,
) -> Response {
    let upn = q.session.and_then(|t| s.lock().sessions.get(&t).cloned());
    Html(pages::landing(upn.as_deref())).into_response()
}

/// The pages' beacon image (it only carries `?ctx=`, as Entra's
/// telemetry requests do).
pub(super) async fn beacon() -> StatusCode {
    StatusCode::NO_CONTENT
}

pub(super) async fn logout(State(s): State<Arc<Shared>>) -> Response {
    // The drill's browser profile is thrown away; ending every session of
    // the rehearsal account is the tenant-side half of signing out.
    s.lock().sessions.clear();
    Html(pages::signed_out()).into_response()
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    pub(crate) grant_type: String,
    pub(crate) client_id: String,
    #[serde(default)]
    pub(crate) client_secret: String,
}
