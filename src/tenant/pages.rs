//! HTML of the rehearsal tenant's pages, shaped as Entra's.
//!
//! Each page carries its state as Entra's do: a classic script with
//! `$Config={…};` between `//<![CDATA[` and `//]]>`, with Entra's keys
//! (`pgid`, `sFT`, `sCtx`, `canary`, `sFidoChallenge`, `urlPost`,
//! `urlRefresh`, `urlResume`, `sCrossDomainCanary`, `sessionId`,
//! `correlationId`, `oGetCredTypeResult`, `strMainMessage`,
//! `strServiceExceptionMessage`). The markup keeps the legacy element ids a
//! flow file relies on (`i0116`, `idSIButton9`, `idA_PWD_SwitchToFido`,
//! `KmsiCheckboxField`, `idBtn_Back`) and is deliberately plain otherwise.
//!
//! Sources for the keys and the posts (no Microsoft page documents them):
//! public write-ups that replay Entra's passkey sign-in outside a browser,
//! e.g. nathanmcnulty/nathanmcnulty `Entra/passkeys` and the
//! `Invoke-PasskeyLogin`-style scripts derived from XDRInternals, which
//! read `$Config.sFidoChallenge`, `oGetCredTypeResult.Credentials.HasFido`
//! and `FidoParams.AllowList`, post the `/common/fido/get` fields and the
//! `type=23` assertion, then handle `CmsiInterrupt` (`/appverify`) and
//! `KmsiInterrupt` (`/kmsi`, `type=28`) and look for `ESTSAUTH*` cookies.

use serde_json::{Value, json};

pub(crate) use crate::support::html::esc;

/// Serialises a value for embedding in a `<script>` block: JSON with `<`
/// escaped so that no `</script>` (nor a `]]>`) can close the block early.
pub(crate) fn script_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace(">", "\\u003e")
}

const STYLE: &str = "body{font-family:'Segoe UI',sans-serif;background:#f2f2f2;margin:0}\
.card{background:#fff;width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
.title{font-size:24px;font-weight:600;margin:16px 0}\
input[type=email],input[type=password]{width:100%;font-size:15px;padding:6px 0;border:0;border-bottom:1px solid #666}\
.btn{background:#0067b8;color:#fff;border:0;padding:6px 24px;font-size:15px;margin-top:24px;cursor:pointer}\
.btn.secondary{background:#ccc;color:#000}.error{color:#e81123;margin:8px 0}\
.tile{display:block;padding:12px;border:1px solid #ccc;margin:8px 0;color:#000;text-decoration:none}\
.banner{font-size:12px;color:#666;text-align:center}";

/// The tokens a sign-in flow's pages carry, where Entra's carry them: the
/// flow token (`sFT`, hidden `flowToken` inputs), the request context
/// (`sCtx`, hidden `ctx` inputs and `?ctx=` on the page's beacon) and the
/// canaries. The rehearsal plants all of them so a test can check that
/// none reaches the evidence.
#[derive(Debug, Clone)]
pub struct FlowTokens {
    /// The flow token (`sFT`).
    pub flow_token: String,
    /// The request context (`sCtx`).
    pub ctx: String,
    /// The form canary (`canary`).
    pub canary: String,
    /// The cross-domain canary (`sCrossDomainCanary`).
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

    /// The hidden inputs Entra's forms post with every step.
    fn hidden(&self, hpgrequestid: &str) -> String {
        hidden(&[
            ("flowToken", &self.flow_token),
            ("ctx", &self.ctx),
            ("canary", &self.canary),
            ("hpgrequestid", hpgrequestid),
        ])
    }
}

/// Hidden inputs.
fn hidden(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(n, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                esc(n),
                esc(v)
            )
        })
        .collect()
}

/// What every page of a flow shares: its correlation id, the ESTS session
/// id, and (inside a flow) its tokens and URLs.
pub struct PageCtx<'a> {
    /// `correlationId`.
    pub correlation_id: &'a str,
    /// `sessionId` (posted back as `hpgrequestid`).
    pub session_id: &'a str,
    /// The flow's tokens, when inside one.
    pub flow: Option<&'a FlowTokens>,
    /// The ESTS origin, for `urlPost` and friends.
    pub ests: &'a str,
}

/// A page: `$Config` with the page identity and the flow's state (and any
/// `extra` keys), in a CDATA-wrapped classic script as Entra's pages have.
pub fn page(title: &str, pgid: &str, p: &PageCtx, extra: Value, body: &str) -> String {
    let mut config = json!({
        "pgid": pgid,
        "correlationId": p.correlation_id,
        "sessionId": p.session_id,
    });
    let mut beacon = String::new();
    if let Some(f) = p.flow {
        config["sFT"] = f.flow_token.clone().into();
        config["sFTName"] = "flowToken".into();
        config["sCtx"] = f.ctx.clone().into();
        config["canary"] = f.canary.clone().into();
        config["sCrossDomainCanary"] = f.cross_domain_canary.clone().into();
        config["urlPost"] = format!("{}/common/login", p.ests).into();
        config["urlRefresh"] = format!("{}/common/reprocess?ctx={}", p.ests, f.ctx).into();
        config["urlResume"] = format!("{}/common/resume?ctx={}", p.ests, f.ctx).into();
        beacon = format!("<img hidden alt=\"\" src=\"/beacon?ctx={}\">", esc(&f.ctx));
    }
    if let (Some(c), Value::Object(extra)) = (config.as_object_mut(), extra) {
        c.extend(extra);
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
<script type=\"text/javascript\">//<![CDATA[\n$Config={};\n//]]></script><style>{STYLE}</style></head><body>\
<div class=\"card\"><div class=\"banner\">glassdrill rehearsal tenant — not Microsoft</div>{body}{beacon}</div></body></html>",
        esc(title),
        script_json(&config)
    )
}

/// `ConvergedSignIn`, before the username: the username box, posted to
/// `urlPost` with the flow's hidden fields. `error` shows under the box.
pub fn username(p: &PageCtx, error: Option<&str>) -> String {
    let err = error
        .map(|e| {
            format!(
                "<div id=\"usernameError\" class=\"error\" role=\"alert\">{}</div>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let fields = p.flow.map(|f| f.hidden(p.session_id)).unwrap_or_default();
    let extra = match error {
        Some(e) => json!({ "strMainMessage": e }),
        None => json!({}),
    };
    page(
        "Sign in to your account",
        "ConvergedSignIn",
        p,
        extra,
        &format!(
            "<div class=\"title\" role=\"heading\">Sign in</div>\
<form method=\"post\" action=\"/common/login\" name=\"f1\">{fields}{err}\
<input type=\"hidden\" name=\"login\" id=\"login\">\
<input type=\"email\" name=\"loginfmt\" id=\"i0116\" placeholder=\"Email, phone, or Skype\" autocomplete=\"username\" \
oninput=\"document.getElementById('login').value=this.value\">\
<input type=\"submit\" id=\"idSIButton9\" class=\"btn\" value=\"Next\"></form>"
        ),
    )
}

/// What the sign-in page knows of the account's credentials after the
/// username (Entra's `GetCredentialType` result, which Entra also embeds
/// in `$Config.oGetCredTypeResult` on a reload).
pub struct CredView<'a> {
    /// The UPN typed.
    pub upn: &'a str,
    /// `Credentials.HasFido`.
    pub has_fido: bool,
    /// `Credentials.FidoParams.AllowList` (base64url credential ids).
    pub allow_list: &'a [String],
    /// `sFidoChallenge` (absent without FIDO).
    pub fido_challenge: Option<&'a str>,
    /// The FIDO host's `/common/fido/get` URL.
    pub fido_get: &'a str,
    /// The sign-in options changed shape (rehearsing flow drift).
    pub drift: bool,
}

/// `ConvergedSignIn` after the username: with a security key, the
/// "sign in with a security key" tile, whose click posts Entra's fields to
/// the FIDO host (a cross-site, top-level POST); without one, the
/// password box.
pub fn credentials(p: &PageCtx, v: &CredView) -> String {
    let Some(f) = p.flow else {
        return error(p, "AADSTS90100: The sign-in request is incomplete.");
    };
    let mut creds = json!({ "PrefCredential": if v.has_fido { 7 } else { 1 }, "HasPassword": true, "HasFido": v.has_fido });
    if v.has_fido {
        creds["FidoParams"] = json!({ "AllowList": v.allow_list });
    }
    let mut extra = json!({
        "oGetCredTypeResult": {
            "Username": v.upn,
            "Display": v.upn,
            "IfExistsResult": 0,
            "Credentials": creds,
            "FlowToken": f.flow_token,
        },
    });
    if let Some(c) = v.fido_challenge {
        extra["sFidoChallenge"] = c.into();
    }
    let body = if v.has_fido {
        let (id, value) = if v.drift {
            ("idA_PWD_SwitchToPasskey", "PasskeyOrSecurityKey")
        } else {
            ("idA_PWD_SwitchToFido", "FidoKey")
        };
        // Entra's fields for `/common/fido/get`, as the public replays post
        // them: `canary` and `loginCanary` carry the flow token and the
        // form canary; `ServerChallenge` the FIDO challenge.
        let fields = hidden(&[
            ("allowedIdentities", "2"),
            ("canary", &f.flow_token),
            ("ServerChallenge", v.fido_challenge.unwrap_or_default()),
            ("postBackUrl", &format!("{}/common/login", p.ests)),
            (
                "cancelUrl",
                &format!("{}/common/reprocess?ctx={}", p.ests, f.ctx),
            ),
            (
                "resumeUrl",
                &format!("{}/common/resume?ctx={}", p.ests, f.ctx),
            ),
            ("correlationId", p.correlation_id),
            ("credentialsJson", &v.allow_list.join(",")),
            ("ctx", &f.ctx),
            ("username", v.upn),
            ("loginCanary", &f.canary),
        ]);
        format!(
            "<div id=\"displayName\">{upn}</div><div class=\"title\" role=\"heading\">Sign in</div>\
<a class=\"tile\" id=\"{id}\" data-value=\"{value}\" role=\"link\" href=\"#\" \
onclick=\"document.getElementById('fidoForm').submit();return false;\">Sign in with a security key</a>\
<a class=\"tile\" id=\"idA_PWD_SwitchToPassword\" href=\"#\">Use my password</a>\
<form id=\"fidoForm\" method=\"post\" action=\"{action}\">{fields}</form>",
            upn = esc(v.upn),
            action = esc(v.fido_get),
        )
    } else {
        format!(
            "<div id=\"displayName\">{upn}</div><div class=\"title\" role=\"heading\">Enter password</div>\
<form method=\"post\" action=\"/common/login\">{fields}\
<input type=\"hidden\" name=\"type\" value=\"11\"><input type=\"hidden\" name=\"login\" value=\"{upn}\">\
<input type=\"password\" name=\"passwd\" id=\"i0118\" autocomplete=\"current-password\">\
<input type=\"submit\" id=\"idSIButton9\" class=\"btn\" value=\"Sign in\"></form>",
            upn = esc(v.upn),
            fields = f.hidden(p.session_id),
        )
    };
    page(
        "Sign in to your account",
        "ConvergedSignIn",
        p,
        extra,
        &body,
    )
}

/// The FIDO host's page (`/common/fido/get`): runs the WebAuthn ceremony
/// at once, with challenge = the ASCII bytes of `sFidoChallenge` and the
/// FIDO host as RP ID, then posts `type=23`, `ps=23` and the `assertion`
/// (compact JSON of `id`, `clientDataJSON`, `authenticatorData`,
/// `signature`, `userHandle`, base64url) with `lmcCanary`, `hpgrequestid`,
/// `ctx`, `canary` and `flowToken` to `urlPost` on the ESTS host. A failed
/// ceremony shows its error here (`#fidoError`): Entra never sees an
/// assertion then.
pub fn fido_get(p: &PageCtx, challenge: &str, allow_list: &[String], post_back: &str) -> String {
    let Some(f) = p.flow else {
        return error(p, "AADSTS90100: The security key request is incomplete.");
    };
    let script = r#"
(async () => {
  const c = window.$Config;
  const dec = (s) => Uint8Array.from(atob(s.replace(/-/g, '+').replace(/_/g, '/')), (x) => x.charCodeAt(0));
  const enc = (b) => btoa(String.fromCharCode(...new Uint8Array(b))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const f = document.getElementById('fidoPost');
  try {
    const cred = await navigator.credentials.get({ publicKey: {
      challenge: new TextEncoder().encode(c.sFidoChallenge), rpId: location.hostname,
      allowCredentials: (c.arrAllowList || []).map((id) => ({ type: 'public-key', id: dec(id) })),
      userVerification: 'required', timeout: 120000 } });
    f.assertion.value = JSON.stringify({
      id: enc(cred.rawId),
      clientDataJSON: enc(cred.response.clientDataJSON),
      authenticatorData: enc(cred.response.authenticatorData),
      signature: enc(cred.response.signature),
      userHandle: cred.response.userHandle ? enc(cred.response.userHandle) : null });
    f.submit();
  } catch (e) {
    const el = document.getElementById('fidoError');
    el.textContent = "We couldn't sign you in with your security key (" + ((e && e.name) || 'Error') + '). Try again, or use another sign-in method.';
    el.hidden = false;
  }
})();
"#;
    let fields = hidden(&[
        ("type", "23"),
        ("ps", "23"),
        ("assertion", ""),
        ("lmcCanary", &f.cross_domain_canary),
        ("hpgrequestid", p.session_id),
        ("ctx", &f.ctx),
        ("canary", &f.canary),
        ("flowToken", &f.flow_token),
    ]);
    page(
        "Sign in with a security key",
        "ConvergedFido",
        p,
        json!({ "sFidoChallenge": challenge, "arrAllowList": allow_list, "urlPost": post_back }),
        &format!(
            "<div class=\"title\" role=\"heading\">Waiting for your security key…</div>\
<div id=\"fidoError\" class=\"error\" role=\"alert\" hidden></div>\
<form id=\"fidoPost\" method=\"post\" action=\"{}\">{fields}</form><script>{script}</script>",
            esc(post_back)
        ),
    )
}

/// "Permissions requested" (`CmsiInterrupt`): Accept posts to `/appverify`.
pub(crate) fn cmsi(p: &PageCtx) -> String {
    let fields = p.flow.map(|f| f.hidden(p.session_id)).unwrap_or_default();
    page(
        "Permissions requested",
        "CmsiInterrupt",
        p,
        json!({}),
        &format!(
            "<div class=\"title\" role=\"heading\">Permissions requested</div>\
<p>glassdrill rehearsal needs permission to sign you in and read your profile.</p>\
<form method=\"post\" action=\"/appverify\">{fields}\
<input type=\"hidden\" name=\"iscsrfspeedbump\" value=\"false\"><input type=\"hidden\" name=\"i19\" value=\"2041\">\
<button type=\"submit\" id=\"idBtn_Back\" name=\"ContinueAuth\" value=\"false\" class=\"btn secondary\">Cancel</button> \
<button type=\"submit\" id=\"idSIButton9\" name=\"ContinueAuth\" value=\"true\" class=\"btn\">Accept</button></form>"
        ),
    )
}

/// "Stay signed in?" (`KmsiInterrupt`): posts `LoginOptions` (1 yes, 3 no)
/// with `type=28` to `/kmsi`.
pub(crate) fn kmsi(p: &PageCtx) -> String {
    let fields = p.flow.map(|f| f.hidden(p.session_id)).unwrap_or_default();
    page(
        "Stay signed in?",
        "KmsiInterrupt",
        p,
        json!({}),
        &format!(
            "<div class=\"title\" role=\"heading\">Stay signed in?</div><p>Do this to reduce the number of times you are asked to sign in.</p>\
<form method=\"post\" action=\"/kmsi\">{fields}<input type=\"hidden\" name=\"type\" value=\"28\">\
<label><input type=\"checkbox\" id=\"KmsiCheckboxField\" name=\"DontShowAgain\"> Don't show this again</label><br>\
<button type=\"submit\" id=\"idBtn_Back\" name=\"LoginOptions\" value=\"3\" class=\"btn secondary\">No</button> \
<button type=\"submit\" id=\"idSIButton9\" name=\"LoginOptions\" value=\"1\" class=\"btn\">Yes</button></form>"
        ),
    )
}

/// "More information required" (`ConvergedProofUpRedirect`): Entra wants
/// the account to register more methods before it lets it in.
pub(crate) fn proof_up(p: &PageCtx) -> String {
    const TEXT: &str = "More information required. Your organization needs more information to keep your account secure.";
    page(
        "More information required",
        "ConvergedProofUpRedirect",
        p,
        json!({ "strMainMessage": TEXT }),
        &format!(
            "<div class=\"title\" role=\"heading\" id=\"idDiv_SAOTCS_Title\">More information required</div><p>{}</p>\
<input type=\"submit\" id=\"idSubmit_ProofUp_Redirect\" class=\"btn\" value=\"Next\">",
            esc(TEXT)
        ),
    )
}

/// Error page (`ConvergedError`): the message in `strMainMessage` (and the
/// AADSTS text in `strServiceExceptionMessage`) and on the page.
pub fn error(p: &PageCtx, message: &str) -> String {
    let service = message.starts_with("AADSTS").then_some(message);
    page(
        "Sign in to your account",
        "ConvergedError",
        p,
        json!({ "strMainMessage": message, "strServiceExceptionMessage": service, "iErrorCode": aadsts_code(message) }),
        &format!(
            "<div class=\"title\" role=\"heading\">We couldn't sign you in</div><div id=\"errorText\" class=\"error\" role=\"alert\">{}</div>\
<p>Correlation ID: {}</p>",
            esc(message),
            esc(p.correlation_id)
        ),
    )
}

/// The numeric code of an `AADSTS…:` message.
fn aadsts_code(message: &str) -> Option<u64> {
    message
        .strip_prefix("AADSTS")?
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
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
    page(
        "My Account",
        "MyAccount",
        &PageCtx::none(),
        json!({}),
        &body,
    )
}

/// After sign-out.
pub(crate) fn signed_out() -> String {
    page(
        "Signed out",
        "SignOut",
        &PageCtx::none(),
        json!({}),
        "<div id=\"signedOut\" class=\"title\">You signed out of your account</div>",
    )
}

impl PageCtx<'_> {
    /// A page outside any flow.
    pub fn none() -> PageCtx<'static> {
        PageCtx {
            correlation_id: "",
            session_id: "",
            flow: None,
            ests: "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sits_in_a_cdata_block_and_cannot_close_it() {
        let p = PageCtx::none();
        let html = page(
            "t",
            "X",
            &p,
            json!({ "strMainMessage": "</script>]]>" }),
            "",
        );
        assert!(html.contains("//<![CDATA[\n$Config={"), "{html}");
        assert!(html.contains("};\n//]]></script>"));
        assert_eq!(html.matches("</script>").count(), 1);
        assert_eq!(html.matches("]]>").count(), 1);
    }

    #[test]
    fn error_codes_are_read_from_the_message() {
        assert_eq!(aadsts_code("AADSTS53003: Access blocked"), Some(53003));
        assert_eq!(aadsts_code("no code"), None);
    }
}
