//! The sign-in protocol, as Entra speaks it across its two sites.
//!
//! ESTS host (`login.microsoftonline.localhost`, standing for
//! `login.microsoftonline.com`): `authorize` (the username page, and the
//! flow's session cookie), `/common/login` (the username, then the
//! `type=23` assertion), `/appverify` (consent, `CmsiInterrupt`), `/kmsi`
//! ("Stay signed in?", `type=28`), sign-out and the token endpoint.
//!
//! FIDO host (`login.microsoft.localhost`, standing for
//! `login.microsoft.com`, a different site): `/common/fido/get`, which the
//! sign-in page reaches by a cross-site POST and whose page runs the
//! WebAuthn ceremony with itself as RP ID.
//!
//! The relying party is strict: the challenge is single-use, bound to the
//! flow and its session cookie, and expires; origin, type, rpIdHash, UP,
//! UV, the counter, the AllowList and Entra's user handle are checked.
//! Error texts carry the AADSTS codes of Microsoft's reference
//! (<https://learn.microsoft.com/entra/identity-platform/reference-error-codes>):
//! 50057 UserAccountDisabled, 50089 flow token expired, 53003
//! BlockedByConditionalAccess, 50079 UserStrongAuthEnrollmentRequired,
//! 135010 KeyNotFound, 135011 "Device used during the authentication is
//! disabled", 65004 user declined consent.

use super::*;
use pages::{CredView, PageCtx};

/// How long an issued FIDO challenge stays valid.
const CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// Attributes of the ESTS host's cookies, as Entra's: `Secure` (Chromium
/// treats `http://*.localhost` as a secure context and keeps `Secure`
/// cookies there) and `SameSite=None`, so they come back with the FIDO
/// host's cross-site POST to `/common/login`.
const COOKIE_ATTRS: &str = "Path=/; Secure; HttpOnly; SameSite=None";

fn html(body: String) -> Response {
    (StatusCode::OK, Html(body)).into_response()
}

impl Shared {
    fn ctx<'a>(&'a self, flow: &'a FlowState) -> PageCtx<'a> {
        PageCtx {
            correlation_id: &flow.correlation_id,
            session_id: &flow.session_id,
            flow: Some(&flow.tokens),
            ests: &self.urls.authority,
        }
    }

    fn error(&self, flow: Option<&FlowState>, message: &str) -> Response {
        match flow {
            Some(f) => html(pages::error(&self.ctx(f), message)),
            None => html(pages::error(&PageCtx::none(), message)),
        }
    }

    /// Refuses a sign-in attempt: logs it (every attempt reaches the
    /// sign-in log and so the alert rule, as in Entra) and shows the error
    /// page.
    fn refuse(self: &Arc<Self>, flow: &FlowState, code: i64, reason: &str, page: &str) -> Response {
        record_signin(self, &flow.correlation_id, code, reason);
        self.error(Some(flow), page)
    }
}

/// The page for a flow token that is unknown or used up.
fn expired(s: &Shared) -> Response {
    s.error(
        None,
        "AADSTS50089: Authentication failed due to flow token expired. Start the sign-in again.",
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn set_cookie(r: &mut Response, c: &str) {
    if let Ok(v) = header::HeaderValue::from_str(c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

pub(super) async fn authorize(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    if tenant != TENANT_ID {
        return s.error(
            None,
            "AADSTS90002: Tenant not found. Check the tenant id in the sign-in URL.",
        );
    }
    let flow = FlowState {
        correlation_id: uuid(),
        session_id: uuid(),
        tokens: pages::FlowTokens::generate(),
        // The flow's session cookie: the assertion post must bring it back.
        esctx: random_token(32),
        upn: None,
        challenge: None,
        lmc_canary: None,
        signed_in: false,
    };
    // A cookie the page's scripts can read, as Entra's `fpc` is.
    let fpc = random_token(24);
    {
        let mut inner = s.lock();
        inner.issued.extend(flow.tokens.all().map(str::to_owned));
        inner.issued.extend([flow.esctx.clone(), fpc.clone()]);
        inner
            .flows
            .insert(flow.tokens.flow_token.clone(), flow.clone());
    }
    let mut r = html(pages::username(&s.ctx(&flow), None));
    let attrs = if s.opts.lax_session_cookie {
        "Path=/; Secure; HttpOnly; SameSite=Lax"
    } else {
        COOKIE_ATTRS
    };
    set_cookie(&mut r, &format!("esctx={}; {attrs}", flow.esctx));
    set_cookie(&mut r, &format!("fpc={fpc}; Path=/; Secure; SameSite=None"));
    r
}

/// Every post to the ESTS host (`/common/login`, `/appverify`, `/kmsi`).
#[derive(Deserialize)]
pub(super) struct EstsPost {
    #[serde(rename = "flowToken", default)]
    flow_token: String,
    #[serde(default)]
    ctx: String,
    #[serde(default)]
    canary: String,
    #[serde(default)]
    hpgrequestid: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    loginfmt: String,
    #[serde(default)]
    assertion: String,
    #[serde(rename = "lmcCanary", default)]
    lmc_canary: String,
    #[serde(rename = "ContinueAuth", default)]
    continue_auth: String,
    #[serde(rename = "LoginOptions", default)]
    login_options: String,
}

/// The flow a post belongs to, once its flow token, context, canary,
/// request id and session cookie all match what was issued to it.
fn flow_of(s: &Arc<Shared>, headers: &HeaderMap, f: &EstsPost) -> Result<FlowState, Box<Response>> {
    let Some(flow) = s.lock().flows.get(&f.flow_token).cloned() else {
        return Err(Box::new(expired(s)));
    };
    let eq = |a: &str, b: &str| constant_time_eq(a.as_bytes(), b.as_bytes());
    if !eq(&f.ctx, &flow.tokens.ctx)
        || !eq(&f.canary, &flow.tokens.canary)
        || f.hpgrequestid != flow.session_id
    {
        return Err(Box::new(s.error(
            Some(&flow),
            "AADSTS90100: The request's ctx, canary or hpgrequestid does not belong to this sign-in. Start again.",
        )));
    }
    if !cookie(headers, "esctx").is_some_and(|c| eq(c, &flow.esctx)) {
        return Err(Box::new(s.error(
            Some(&flow),
            "The sign-in session cookie (esctx) did not come back with this request, so the sign-in \
             host cannot tell which browser is signing in: a cookie lost across sites (SameSite) or \
             to an insecure context (Secure).",
        )));
    }
    Ok(flow)
}

pub(super) async fn login(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<EstsPost>,
) -> Response {
    let flow = match flow_of(&s, &headers, &f) {
        Ok(flow) => flow,
        Err(r) => return *r,
    };
    match f.kind.as_str() {
        "23" => assertion(&s, flow, &f),
        "11" => s.refuse(
            &flow,
            50126,
            "Invalid username or password.",
            "AADSTS50126: Error validating credentials due to invalid username or password.",
        ),
        _ => username(&s, flow, &f),
    }
}

/// The username: the page learns the account's credentials (Entra's
/// `GetCredentialType`) and, with a security key, gets its challenge.
fn username(s: &Arc<Shared>, flow: FlowState, f: &EstsPost) -> Response {
    if !same_upn(&f.loginfmt, &s.opts.account.upn) {
        return html(pages::username(
            &s.ctx(&flow),
            Some(
                "This username may be incorrect. Make sure you typed it correctly. Otherwise, contact your admin.",
            ),
        ));
    }
    if s.has(Fault::AccountDisabled) {
        record_signin(
            s,
            &flow.correlation_id,
            50057,
            "The user account is disabled.",
        );
        return html(pages::username(
            &s.ctx(&flow),
            Some("AADSTS50057: Your account has been disabled. Contact your administrator."),
        ));
    }
    let has_fido = !s.has(Fault::NoFido);
    let challenge = has_fido.then(|| random_token(32));
    let flow = {
        let mut inner = s.lock();
        let Some(fl) = inner.flows.get_mut(&f.flow_token) else {
            return expired(s);
        };
        fl.upn = Some(s.opts.account.upn.clone());
        fl.challenge = challenge.clone().map(|c| (c, tokio::time::Instant::now()));
        let flow = fl.clone();
        inner.issued.extend(challenge.clone());
        flow
    };
    let allow_list: Vec<String> = if s.opts.allow_list {
        vec![B64.encode(&s.opts.account.credential.id)]
    } else {
        Vec::new()
    };
    let fido_get = format!("{}/common/fido/get?uiflavor=Web", s.urls.fido);
    html(pages::credentials(
        &s.ctx(&flow),
        &CredView {
            upn: &s.opts.account.upn,
            has_fido,
            allow_list: &allow_list,
            fido_challenge: challenge.as_deref(),
            fido_get: &fido_get,
            drift: s.has(Fault::UiDrift),
        },
    ))
}

/// What the sign-in page posts to the FIDO host.
#[derive(Deserialize)]
pub(super) struct FidoGetPost {
    #[serde(default)]
    canary: String,
    #[serde(rename = "ServerChallenge", default)]
    server_challenge: String,
    #[serde(rename = "postBackUrl", default)]
    post_back_url: String,
    #[serde(rename = "correlationId", default)]
    correlation_id: String,
    #[serde(rename = "credentialsJson", default)]
    credentials_json: String,
    #[serde(default)]
    ctx: String,
    #[serde(rename = "loginCanary", default)]
    login_canary: String,
}

/// The FIDO host's `/common/fido/get`: the page that runs the ceremony.
/// It only posts back to the ESTS host's `/common/login`, and hands out
/// the cross-domain canary (`lmcCanary`) that post must carry.
pub(super) async fn fido_get(State(s): State<Arc<Shared>>, Form(f): Form<FidoGetPost>) -> Response {
    let post_back = format!("{}/common/login", s.urls.authority);
    if f.post_back_url != post_back {
        return s.error(
            None,
            "AADSTS90100: postBackUrl is not this tenant's sign-in endpoint.",
        );
    }
    let lmc = random_token(32);
    let flow = {
        let mut inner = s.lock();
        let Some(fl) = inner.flows.get_mut(&f.canary).filter(|fl| fl.upn.is_some()) else {
            return expired(&s);
        };
        fl.lmc_canary = Some(lmc.clone());
        let flow = fl.clone();
        inner.issued.push(lmc.clone());
        flow
    };
    // The FIDO host's page state is built from what was posted to it.
    let tokens = pages::FlowTokens {
        flow_token: f.canary.clone(),
        ctx: f.ctx.clone(),
        canary: f.login_canary.clone(),
        cross_domain_canary: lmc,
    };
    let allow: Vec<String> = f
        .credentials_json
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let ctx = PageCtx {
        correlation_id: &f.correlation_id,
        session_id: &flow.session_id,
        flow: Some(&tokens),
        ests: &s.urls.authority,
    };
    html(pages::fido_get(
        &ctx,
        &f.server_challenge,
        &allow,
        &post_back,
    ))
}

/// The posted `assertion`, as Entra's FIDO page posts it.
#[derive(Deserialize)]
struct PostedAssertion {
    id: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    #[serde(rename = "authenticatorData")]
    authenticator_data: String,
    signature: String,
    #[serde(rename = "userHandle", default)]
    user_handle: Option<String>,
}

/// The `type=23` post: the assertion, checked as a strict relying party.
fn assertion(s: &Arc<Shared>, flow: FlowState, f: &EstsPost) -> Response {
    // The challenge is single-use: taken out of the flow whatever happens.
    let (challenge, lmc) = {
        let mut inner = s.lock();
        let Some(fl) = inner.flows.get_mut(&f.flow_token) else {
            return expired(s);
        };
        (fl.challenge.take(), fl.lmc_canary.take())
    };
    let Some((challenge, issued)) = challenge else {
        return s.error(
            Some(&flow),
            "This security key challenge was already used or never issued: a sign-in may answer it once. Start again.",
        );
    };
    if !lmc.is_some_and(|l| constant_time_eq(l.as_bytes(), f.lmc_canary.as_bytes())) {
        return s.error(
            Some(&flow),
            "AADSTS90100: The cross-domain canary (lmcCanary) is not the one the security key page issued.",
        );
    }
    if s.has(Fault::ChallengeExpired) || issued.elapsed() > CHALLENGE_TTL {
        return s.refuse(
            &flow,
            50089,
            "Flow token expired.",
            "AADSTS50089: Authentication failed due to flow token expired. Start the sign-in again.",
        );
    }
    let posted: PostedAssertion = match serde_json::from_str(&f.assertion) {
        Ok(a) => a,
        Err(_) => {
            return s.refuse(
                &flow,
                135011,
                "Malformed security key response.",
                "The security key response was malformed: `assertion` is not Entra's JSON of id, clientDataJSON, authenticatorData, signature and userHandle.",
            );
        }
    };
    let decode = |v: &str| B64.decode(v.trim_end_matches('='));
    let (Ok(cid), Ok(ad), Ok(cd), Ok(sig)) = (
        decode(&posted.id),
        decode(&posted.authenticator_data),
        decode(&posted.client_data_json),
        decode(&posted.signature),
    ) else {
        return s.refuse(
            &flow,
            135011,
            "Malformed security key response.",
            "The security key response was malformed (not base64url).",
        );
    };
    s.lock().stats.assertions += 1;
    let key_not_found = |why: &str| {
        s.refuse(
            &flow,
            135010,
            &format!("Key not found: {why}."),
            &format!("AADSTS135010: Key not found. {why}."),
        )
    };
    // The directory's credential: under `unknown-credential`, another one.
    let mut stored = s.opts.account.credential.clone();
    if s.has(Fault::UnknownCredential) {
        stored.id = b"a credential this browser never had".to_vec();
    }
    if cid != stored.id {
        return key_not_found("The security key is not registered to this account");
    }
    // The AllowList the page offered (with `allow_list`) is the
    // directory's credential: the check above is also the AllowList's.
    let Some(Ok(user_handle)) = posted.user_handle.as_deref().map(decode) else {
        return key_not_found("The security key returned no user handle");
    };
    if s.has(Fault::CredentialRevoked) {
        return s.refuse(
            &flow,
            135011,
            "The security key has been disabled.",
            "AADSTS135011: Device used during the authentication is disabled.",
        );
    }
    stored.user_handle = s.expected_user_handle();
    stored.sign_count = s.lock().sign_count;
    let origins = vec![s.urls.fido.clone()];
    let expected = Expected {
        rp_id: &s.urls.rp_id,
        origins: &origins,
        challenge: challenge.as_bytes(),
        require_user_verification: true,
    };
    let a = Assertion {
        credential_id: &cid,
        authenticator_data: &ad,
        client_data_json: &cd,
        signature: &sig,
        user_handle: Some(&user_handle),
    };
    match webauthn::verify_assertion(&expected, &stored, &a) {
        Ok(v) => s.lock().sign_count = v.sign_count,
        Err(webauthn::AssertionError::UserHandleMismatch) => {
            return key_not_found(
                "The security key's user handle is not this account's (Entra's \"ON:\" handle of this tenant and user)",
            );
        }
        Err(e) => {
            return s.refuse(
                &flow,
                135011,
                &format!("Security key verification failed: {e}"),
                &format!("The security key's response could not be verified: {e}."),
            );
        }
    }
    if s.has(Fault::CaBlock) {
        return s.refuse(
            &flow,
            53003,
            "Access has been blocked by Conditional Access policies.",
            "AADSTS53003: Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        );
    }
    if s.has(Fault::ProofUp) {
        record_signin(
            s,
            &flow.correlation_id,
            50079,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must enroll in multi-factor authentication.",
        );
        return html(pages::proof_up(&s.ctx(&flow)));
    }
    record_signin(s, &flow.correlation_id, 0, "");
    if let Some(fl) = s.lock().flows.get_mut(&f.flow_token) {
        fl.signed_in = true;
    }
    after_sign_in(s, &flow, Interrupt::Cmsi)
}

/// The interrupts after a sign-in, in Entra's order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Interrupt {
    Cmsi,
    Kmsi,
}

/// The next interrupt from `from` on, or the end of the sign-in.
fn after_sign_in(s: &Arc<Shared>, flow: &FlowState, from: Interrupt) -> Response {
    if from <= Interrupt::Cmsi && s.has(Fault::Cmsi) {
        return html(pages::cmsi(&s.ctx(flow)));
    }
    if from <= Interrupt::Kmsi && s.has(Fault::Kmsi) {
        return html(pages::kmsi(&s.ctx(flow)));
    }
    finish(s, flow, false)
}

/// The end of a sign-in: Entra's session cookie on the ESTS host
/// (`ESTSAUTHPERSISTENT` when the user chose to stay signed in), then the
/// landing page.
fn finish(s: &Arc<Shared>, flow: &FlowState, persistent: bool) -> Response {
    let session = random_token(24);
    let estsauth = random_token(48);
    {
        let mut inner = s.lock();
        inner.flows.remove(&flow.tokens.flow_token);
        inner
            .sessions
            .insert(session.clone(), flow.upn.clone().unwrap_or_default());
        inner.issued.extend([session.clone(), estsauth.clone()]);
    }
    let mut r = Redirect::to(&format!("{}/?session={session}", s.urls.myaccount)).into_response();
    let cookie = if persistent {
        format!("ESTSAUTHPERSISTENT={estsauth}; Max-Age=7776000; {COOKIE_ATTRS}")
    } else {
        format!("ESTSAUTH={estsauth}; {COOKIE_ATTRS}")
    };
    set_cookie(&mut r, &cookie);
    r
}

/// A post to an interrupt: the flow must have signed in.
fn signed_in_flow(
    s: &Arc<Shared>,
    headers: &HeaderMap,
    f: &EstsPost,
) -> Result<FlowState, Box<Response>> {
    let flow = flow_of(s, headers, f)?;
    if flow.signed_in {
        Ok(flow)
    } else {
        Err(Box::new(expired(s)))
    }
}

pub(super) async fn appverify(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<EstsPost>,
) -> Response {
    let flow = match signed_in_flow(&s, &headers, &f) {
        Ok(flow) => flow,
        Err(r) => return *r,
    };
    if f.continue_auth != "true" {
        return s.error(
            Some(&flow),
            "AADSTS65004: User declined to consent to access the app.",
        );
    }
    after_sign_in(&s, &flow, Interrupt::Kmsi)
}

pub(super) async fn kmsi(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<EstsPost>,
) -> Response {
    let flow = match signed_in_flow(&s, &headers, &f) {
        Ok(flow) => flow,
        Err(r) => return *r,
    };
    if f.kind != "28" {
        return s.error(Some(&flow), "AADSTS90100: The KMSI post lacks type=28.");
    }
    match f.login_options.as_str() {
        "1" => finish(&s, &flow, true),
        "3" => finish(&s, &flow, false),
        _ => s.error(
            Some(&flow),
            "AADSTS90100: LoginOptions must be 1 (stay signed in) or 3 (do not).",
        ),
    }
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
    html(pages::landing(upn.as_deref()))
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
    let mut r = html(pages::signed_out());
    for name in ["ESTSAUTH", "ESTSAUTHPERSISTENT", "esctx"] {
        set_cookie(&mut r, &format!("{name}=; Max-Age=0; {COOKIE_ATTRS}"));
    }
    r
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    pub(crate) grant_type: String,
    pub(crate) client_id: String,
    #[serde(default)]
    pub(crate) client_secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            header::HeaderValue::from_static("xesctx=no; esctx=yes; fpc=z"),
        );
        assert_eq!(cookie(&h, "esctx"), Some("yes"));
        assert_eq!(cookie(&h, "ESTSAUTH"), None);
    }
}
