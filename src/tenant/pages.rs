//! HTML of the rehearsal tenant's pages.
//!
//! The markup mimics what a drill's flow file relies on in Entra ID: the
//! legacy element ids (`i0116`, `idSIButton9`, `idA_PWD_SwitchToFido`,
//! `KmsiCheckboxField`, `idBtn_Back`) and `window.$Config` with `pgid` and
//! `correlationId`. It is deliberately plain otherwise.

pub(crate) use crate::support::html::esc;

/// Serialises a value for embedding in a `<script>` block: JSON with `<`
/// escaped so that no `</script>` can close the block early.
pub(crate) fn script_json(v: &serde_json::Value) -> String {
    v.to_string().replace('<', "\\u003c")
}

const STYLE: &str = "body{font-family:'Segoe UI',sans-serif;background:#f2f2f2;margin:0}\
.card{background:#fff;width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
.title{font-size:24px;font-weight:600;margin:16px 0}\
input[type=email]{width:100%;font-size:15px;padding:6px 0;border:0;border-bottom:1px solid #666}\
.btn{background:#0067b8;color:#fff;border:0;padding:6px 24px;font-size:15px;margin-top:24px;cursor:pointer}\
.btn.secondary{background:#ccc;color:#000}.error{color:#e81123;margin:8px 0}\
.tile{display:block;padding:12px;border:1px solid #ccc;margin:8px 0;color:#000;text-decoration:none}\
.banner{font-size:12px;color:#666;text-align:center}";

/// The tokens a sign-in flow's pages carry, where Entra's carry them: the
/// flow token (`sFT`, hidden `flowToken` inputs and `?flowToken=` links),
/// the request context (`sCtx`, `?ctx=` on the page's beacon) and the
/// canaries. The rehearsal plants all of them so a test can check that
/// none reaches the evidence.
#[derive(Debug, Clone)]
pub struct FlowTokens {
    /// The flow token.
    pub flow_token: String,
    /// The request context.
    pub ctx: String,
    /// The form canary.
    pub canary: String,
    /// The cross-domain canary.
    pub cross_domain_canary: String,
}

impl FlowTokens {
    /// Fresh random tokens for a new flow.
    pub(crate) fn generate() -> Self {
        let t = || crate::secret::random_token(32);
        Self {
            flow_token: t(),
            ctx: t(),
            canary: t(),
            cross_domain_canary: t(),
        }
    }

    /// Every value, for the tenant's record of what it issued.
    pub(crate) fn all(&self) -> [&str; 4] {
        [
            &self.flow_token,
            &self.ctx,
            &self.canary,
            &self.cross_domain_canary,
        ]
    }
}

/// A page with Entra's `$Config` page identity, and, inside a sign-in
/// flow, its tokens (in `$Config` and on a beacon image's query string).
pub fn page(
    title: &str,
    pgid: &str,
    correlation_id: &str,
    flow: Option<&FlowTokens>,
    body: &str,
) -> String {
    let mut config = serde_json::json!({ "pgid": pgid, "correlationId": correlation_id });
    let mut beacon = String::new();
    if let Some(f) = flow {
        config["sFT"] = f.flow_token.clone().into();
        config["sFTName"] = "flowToken".into();
        config["sCtx"] = f.ctx.clone().into();
        config["canary"] = f.canary.clone().into();
        config["sCrossDomainCanary"] = f.cross_domain_canary.clone().into();
        beacon = format!("<img hidden alt=\"\" src=\"/beacon?ctx={}\">", esc(&f.ctx));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<script>window.$Config={};</script><style>{STYLE}</style></head><body>\
<div class=\"card\"><div class=\"banner\">glassdrill rehearsal tenant — not Microsoft</div>{body}{beacon}</div></body></html>",
        esc(title),
        script_json(&config)
    )
}

/// Username page (`ConvergedSignIn`), optionally with an error under the
/// field.
pub fn username(tenant: &str, flow: &FlowTokens, corr: &str, error: Option<&str>) -> String {
    let err = error
        .map(|e| {
            format!(
                "<div id=\"usernameError\" class=\"error\" role=\"alert\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    page(
        "Sign in to your account",
        "ConvergedSignIn",
        corr,
        Some(flow),
        &format!(
            "<div class=\"title\" role=\"heading\">Sign in</div>\
<form method=\"post\" action=\"/{t}/login\" name=\"f1\">\
<input type=\"hidden\" name=\"flowToken\" value=\"{ft}\">{err}\
<input type=\"email\" name=\"loginfmt\" id=\"i0116\" placeholder=\"Email, phone, or Skype\" autocomplete=\"username\">\
<input type=\"submit\" id=\"idSIButton9\" class=\"btn\" value=\"Next\"></form>",
            t = esc(tenant),
            ft = esc(&flow.flow_token),
        ),
    )
}

/// Sign-in options. With `drift`, the security-key link has the id and
/// attributes of an imagined redesign, so no selector of the shipped flow
/// matches: that is how UI drift is rehearsed.
pub fn options(tenant: &str, flow: &FlowTokens, corr: &str, upn: &str, drift: bool) -> String {
    let link = if drift {
        format!(
            "<a class=\"tile\" id=\"idA_PWD_SwitchToPasskey\" data-value=\"PasskeyOrSecurityKey\" href=\"/{t}/passkey/start?flowToken={ft}\">Face, fingerprint, PIN or security key</a>",
            t = esc(tenant),
            ft = esc(&flow.flow_token)
        )
    } else {
        format!(
            "<a class=\"tile\" id=\"idA_PWD_SwitchToFido\" data-value=\"FidoKey\" href=\"/{t}/fido/start?flowToken={ft}\">Sign in with a security key</a>",
            t = esc(tenant),
            ft = esc(&flow.flow_token)
        )
    };
    page(
        "Sign-in options",
        "ConvergedSignInOptions",
        corr,
        Some(flow),
        &format!(
            "<div id=\"displayName\">{}</div><div class=\"title\" role=\"heading\">Sign-in options</div>{link}\
<a class=\"tile\" id=\"idA_PWD_SwitchToPassword\" href=\"#\">Use my password</a>\
<form name=\"fOptions\"><input type=\"hidden\" name=\"flowToken\" value=\"{}\"></form>",
            esc(upn),
            esc(&flow.flow_token)
        ),
    )
}

/// Security key page (`ConvergedFido`): "Next" goes to the ceremony origin.
pub(crate) fn fido(ceremony_action: &str, flow: &FlowTokens, corr: &str, upn: &str) -> String {
    page(
        "Sign in with a security key",
        "ConvergedFido",
        corr,
        Some(flow),
        &format!(
            "<div id=\"displayName\">{}</div><div class=\"title\" role=\"heading\">Sign in with a security key</div>\
<p>When you are ready to use your security key, select Next.</p>\
<form method=\"get\" action=\"{}\"><input type=\"hidden\" name=\"flowToken\" value=\"{}\">\
<input type=\"submit\" id=\"idSIButton9\" class=\"btn\" value=\"Next\"></form>",
            esc(upn),
            esc(ceremony_action),
            esc(&flow.flow_token)
        ),
    )
}

/// The WebAuthn ceremony page on the ceremony origin: calls
/// `navigator.credentials.get` and posts the assertion back to the sign-in
/// host. Entra uses discoverable credentials, so `allowCredentials` is empty.
pub fn ceremony(
    options: &serde_json::Value,
    verify_action: &str,
    flow: &FlowTokens,
    corr: &str,
) -> String {
    let script = r#"
(async () => {
  const opts = JSON.parse(document.getElementById('fidoOptions').textContent);
  const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const f = document.getElementById('fidoForm');
  try {
    const cred = await navigator.credentials.get({ publicKey: {
      challenge: dec(opts.challenge), rpId: opts.rpId, allowCredentials: [],
      userVerification: 'required', timeout: opts.timeout } });
    f.credentialId.value = enc(cred.rawId);
    f.authenticatorData.value = enc(cred.response.authenticatorData);
    f.clientDataJSON.value = enc(cred.response.clientDataJSON);
    f.signature.value = enc(cred.response.signature);
    f.userHandle.value = cred.response.userHandle ? enc(cred.response.userHandle) : '';
  } catch (e) {
    f.error.value = (e && e.name) || 'Error';
  }
  f.submit();
})();
"#;
    page(
        "Signing in with your security key",
        "ConvergedFidoGet",
        corr,
        Some(flow),
        &format!(
            "<div class=\"title\" role=\"heading\">Waiting for your security key…</div>\
<script type=\"application/json\" id=\"fidoOptions\">{}</script>\
<form id=\"fidoForm\" method=\"post\" action=\"{}\">\
<input type=\"hidden\" name=\"flowToken\" value=\"{}\"><input type=\"hidden\" name=\"credentialId\">\
<input type=\"hidden\" name=\"authenticatorData\"><input type=\"hidden\" name=\"clientDataJSON\">\
<input type=\"hidden\" name=\"signature\"><input type=\"hidden\" name=\"userHandle\"><input type=\"hidden\" name=\"error\"></form>\
<script>{script}</script>",
            script_json(options),
            esc(verify_action),
            esc(&flow.flow_token)
        ),
    )
}

/// "Stay signed in?" (`KmsiInterrupt`).
pub(crate) fn kmsi(tenant: &str, flow: &FlowTokens, corr: &str) -> String {
    page(
        "Stay signed in?",
        "KmsiInterrupt",
        corr,
        Some(flow),
        &format!(
            "<div class=\"title\" role=\"heading\">Stay signed in?</div><p>Do this to reduce the number of times you are asked to sign in.</p>\
<form method=\"post\" action=\"/{t}/kmsi\"><input type=\"hidden\" name=\"flowToken\" value=\"{ft}\">\
<label><input type=\"checkbox\" id=\"KmsiCheckboxField\" name=\"DontShowAgain\"> Don't show this again</label><br>\
<button type=\"submit\" id=\"idBtn_Back\" name=\"kmsi\" value=\"no\" class=\"btn secondary\">No</button> \
<button type=\"submit\" id=\"idSIButton9\" name=\"kmsi\" value=\"yes\" class=\"btn\">Yes</button></form>",
            t = esc(tenant),
            ft = esc(&flow.flow_token)
        ),
    )
}

/// Error page (`ConvergedError`).
pub fn error(corr: &str, flow: Option<&FlowTokens>, message: &str) -> String {
    page(
        "Sign in to your account",
        "ConvergedError",
        corr,
        flow,
        &format!(
            "<div class=\"title\" role=\"heading\">We couldn't sign you in</div><div id=\"errorText\" class=\"error\" role=\"alert\">{}</div>\
<p>Correlation ID: {}</p>",
            esc(message),
            esc(corr)
        ),
    )
}

/// The landing page on the `myaccount` host.
pub fn landing(upn: Option<&str>) -> String {
    let body = match upn {
        Some(u) => format!(
            "<main id=\"landing\"><div class=\"title\">My Account</div><p>Signed in as <span id=\"upn\">{}</span></p></main>",
            esc(u)
        ),
        None => "<main id=\"landing-anonymous\"><p>Not signed in.</p></main>".to_owned(),
    };
    page("My Account", "MyAccount", "", None, &body)
}

/// After sign-out.
pub(crate) fn signed_out() -> String {
    page(
        "Signed out",
        "SignOut",
        "",
        None,
        "<div id=\"signedOut\" class=\"title\">You signed out of your account</div>",
    )
}
