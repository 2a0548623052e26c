//! The rehearsal tenant's Entra protocol, spoken byte for byte over HTTP
//! the way the browser speaks it (the public replays of Entra's passkey
//! sign-in do the same): authorize, the username post, the cross-site
//! post to the FIDO host's `/common/fido/get`, the `type=23` assertion
//! post. A test can then do what a browser never would (replay, mix
//! sessions, forge the origin, swap the user handle's byte order) and
//! see the strict relying party refuse each. The browser paths are in
//! `faults.rs`; these are the ones Chromium itself prevents.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use glassdrill::authenticator::Credential;
use glassdrill::tenant::{
    ESTS_HOST, FIDO_HOST, Fault, RP_ID, RehearsalTenant, TENANT_ID, TenantOptions,
    rehearsal_user_handle,
};
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey as _;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Digest as _;

struct Tenant {
    tenant: RehearsalTenant,
    cred: Credential,
    http: reqwest::Client,
}

/// One sign-in in progress: the session cookies it holds and the last
/// page's `$Config`.
struct Flow {
    cookies: Vec<(String, String)>,
    config: Value,
}

/// `$Config` of a page: the JSON between `$Config=` and `;` inside the
/// CDATA block, as the public replays read it.
fn config_of(html: &str) -> Value {
    let start = html
        .find("//<![CDATA[\n$Config=")
        .expect("a CDATA $Config block")
        + 20;
    let end = html[start..].find(";\n//]]>").expect("the block's end") + start;
    serde_json::from_str(&html[start..end]).expect("$Config is JSON")
}

impl Tenant {
    async fn start(faults: &[Fault], allow_list: bool) -> Self {
        let cred = Credential::generate(RP_ID, rehearsal_user_handle()).expect("credential");
        let tenant = RehearsalTenant::start(TenantOptions {
            allow_list,
            ..crate::util::tenant_options(&cred, faults, "s")
        })
        .await
        .expect("tenant");
        // Both sites resolve to the tenant's loopback address.
        let addr: SocketAddr = tenant.addr();
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(ESTS_HOST, addr)
            .resolve(FIDO_HOST, addr)
            .build()
            .expect("client");
        Self { tenant, cred, http }
    }

    fn ests(&self) -> String {
        self.tenant.urls().authority.clone()
    }

    /// authorize, then the username: the page with the security key.
    async fn begin(&self) -> Flow {
        let r = self
            .http
            .get(format!(
                "{}/{TENANT_ID}/oauth2/v2.0/authorize?client_id=glassdrill",
                self.ests()
            ))
            .send()
            .await
            .expect("authorize");
        let set: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect();
        let esctx = set
            .iter()
            .find(|c| c.starts_with("esctx="))
            .expect("the session cookie");
        for attr in ["Secure", "HttpOnly", "SameSite=None"] {
            assert!(esctx.contains(attr), "{esctx}");
        }
        let cookies = set
            .iter()
            .filter_map(|c| c.split(';').next()?.split_once('='))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        let page = config_of(&r.text().await.expect("body"));
        assert_eq!(page["pgid"], "ConvergedSignIn");
        let mut flow = Flow {
            cookies,
            config: page,
        };
        let c = flow.config.clone();
        let r = self
            .post(
                &flow,
                "/common/login",
                &[
                    ("login", "breakglass1@rehearsal.onmicrosoft.com"),
                    ("loginfmt", "breakglass1@rehearsal.onmicrosoft.com"),
                    ("flowToken", c["sFT"].as_str().unwrap()),
                    ("ctx", c["sCtx"].as_str().unwrap()),
                    ("canary", c["canary"].as_str().unwrap()),
                    ("hpgrequestid", c["sessionId"].as_str().unwrap()),
                ],
            )
            .await;
        flow.config = config_of(&r.text().await.expect("body"));
        flow
    }

    async fn post(&self, flow: &Flow, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let cookie: Vec<String> = flow
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        self.http
            .post(format!("{}{path}", self.ests()))
            .header("cookie", cookie.join("; "))
            .form(form)
            .send()
            .await
            .expect("post")
    }

    /// The cross-site post to the FIDO host: its page's `$Config`.
    async fn fido_get(&self, flow: &Flow) -> Value {
        let c = &flow.config;
        let allow: Vec<&str> = c["oGetCredTypeResult"]["Credentials"]["FidoParams"]["AllowList"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let r = self
            .http
            .post(format!(
                "{}/common/fido/get?uiflavor=Web",
                self.tenant.urls().fido
            ))
            .form(&[
                ("allowedIdentities", "2"),
                ("canary", c["sFT"].as_str().unwrap()),
                ("ServerChallenge", c["sFidoChallenge"].as_str().unwrap()),
                ("postBackUrl", c["urlPost"].as_str().unwrap()),
                ("cancelUrl", c["urlRefresh"].as_str().unwrap()),
                ("resumeUrl", c["urlResume"].as_str().unwrap()),
                ("correlationId", c["correlationId"].as_str().unwrap()),
                ("credentialsJson", &allow.join(",")),
                ("ctx", c["sCtx"].as_str().unwrap()),
                ("username", "breakglass1@rehearsal.onmicrosoft.com"),
                ("loginCanary", c["canary"].as_str().unwrap()),
            ])
            .send()
            .await
            .expect("fido/get");
        let page = config_of(&r.text().await.expect("body"));
        assert_eq!(page["pgid"], "ConvergedFido");
        page
    }

    /// Entra's assertion JSON, signed as a key would sign it.
    fn assertion(&self, a: Assert) -> String {
        let mut auth_data = sha2::Sha256::digest(a.rp_id.as_bytes()).to_vec();
        auth_data.push(a.flags);
        auth_data.extend_from_slice(&a.counter.to_be_bytes());
        let client_data = serde_json::to_vec(&json!({
            "type": a.ty,
            "challenge": B64.encode(a.challenge.as_bytes()),
            "origin": a.origin,
            "crossOrigin": false,
        }))
        .unwrap();
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(self.cred.pkcs8.expose_secret()).unwrap();
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(&client_data));
        let sig: p256::ecdsa::Signature = key.sign(&signed);
        json!({
            "id": B64.encode(a.credential_id.unwrap_or_else(|| self.cred.id.clone())),
            "clientDataJSON": B64.encode(&client_data),
            "authenticatorData": B64.encode(&auth_data),
            "signature": B64.encode(sig.to_der().as_bytes()),
            "userHandle": B64.encode(a.user_handle),
        })
        .to_string()
    }

    /// The `type=23` post, with the FIDO page's state.
    async fn post_assertion(&self, flow: &Flow, fido: &Value, assertion: &str) -> Outcome {
        let r = self
            .post(
                flow,
                "/common/login",
                &[
                    ("type", "23"),
                    ("ps", "23"),
                    ("assertion", assertion),
                    ("lmcCanary", fido["sCrossDomainCanary"].as_str().unwrap()),
                    ("hpgrequestid", fido["sessionId"].as_str().unwrap()),
                    ("ctx", fido["sCtx"].as_str().unwrap()),
                    ("canary", fido["canary"].as_str().unwrap()),
                    ("flowToken", fido["sFT"].as_str().unwrap()),
                ],
            )
            .await;
        outcome(r).await
    }

    /// A whole sign-in whose assertion is made by `make` from the FIDO
    /// page's challenge.
    async fn sign_in(&self, make: impl Fn(&str) -> Assert<'_>) -> Outcome {
        let flow = self.begin().await;
        let fido = self.fido_get(&flow).await;
        let challenge = fido["sFidoChallenge"].as_str().unwrap().to_owned();
        let a = self.assertion(make(&challenge));
        self.post_assertion(&flow, &fido, &a).await
    }

    fn good<'a>(&self, challenge: &'a str, counter: u32) -> Assert<'a> {
        Assert {
            challenge,
            ty: "webauthn.get",
            rp_id: RP_ID,
            origin: self.tenant.urls().fido.clone(),
            flags: 0x05,
            counter,
            user_handle: rehearsal_user_handle(),
            credential_id: None,
        }
    }
}

struct Assert<'a> {
    challenge: &'a str,
    ty: &'static str,
    rp_id: &'static str,
    origin: String,
    flags: u8,
    counter: u32,
    user_handle: Vec<u8>,
    credential_id: Option<Vec<u8>>,
}

#[derive(Debug)]
enum Outcome {
    /// Redirected to the landing page with this session cookie.
    SignedIn(String),
    /// A page: its `pgid` and `strMainMessage`.
    Page(String, String),
}

async fn outcome(r: reqwest::Response) -> Outcome {
    if r.status().is_redirection() {
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|c| c.starts_with("ESTSAUTH"))
            .expect("Entra's session cookie");
        return Outcome::SignedIn(cookie);
    }
    let c = config_of(&r.text().await.expect("body"));
    Outcome::Page(
        c["pgid"].as_str().unwrap_or_default().to_owned(),
        c["strMainMessage"].as_str().unwrap_or_default().to_owned(),
    )
}

#[track_caller]
fn refused(o: &Outcome, text: &str) {
    match o {
        Outcome::Page(pgid, msg) if pgid == "ConvergedError" && msg.contains(text) => {}
        other => panic!("expected a refusal saying `{text}`, got {other:?}"),
    }
}

#[tokio::test]
async fn the_protocol_signs_in_with_entras_posts_cookies_and_user_handle() {
    let t = Tenant::start(&[], false).await;
    let flow = t.begin().await;
    let c = &flow.config;
    assert_eq!(c["pgid"], "ConvergedSignIn");
    assert_eq!(c["oGetCredTypeResult"]["Credentials"]["HasFido"], true);
    assert_eq!(c["oGetCredTypeResult"]["FlowToken"], c["sFT"]);
    for key in [
        "sFT",
        "sCtx",
        "canary",
        "sFidoChallenge",
        "urlPost",
        "urlRefresh",
        "urlResume",
        "sCrossDomainCanary",
        "sessionId",
        "correlationId",
    ] {
        assert!(c[key].is_string(), "$Config.{key} in {c}");
    }
    assert_eq!(c["urlPost"], format!("{}/common/login", t.ests()));
    let fido = t.fido_get(&flow).await;
    assert_eq!(fido["sFidoChallenge"], c["sFidoChallenge"]);
    let a = t.assertion(t.good(fido["sFidoChallenge"].as_str().unwrap(), 1));
    match t.post_assertion(&flow, &fido, &a).await {
        Outcome::SignedIn(cookie) => {
            assert!(cookie.starts_with("ESTSAUTH="), "{cookie}");
            for attr in ["Secure", "HttpOnly", "SameSite=None"] {
                assert!(cookie.contains(attr), "{cookie}");
            }
        }
        other => panic!("not signed in: {other:?}"),
    }
    let log = t.tenant.signins();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["status"]["errorCode"], 0);
    assert_eq!(log[0]["correlationId"], c["correlationId"]);

    // The same assertion again: the flow is over.
    let again = t.post_assertion(&flow, &fido, &a).await;
    refused(&again, "AADSTS50089");
    t.tenant.shutdown().await;
}

#[tokio::test]
async fn a_replayed_assertion_is_refused() {
    // "Stay signed in?" keeps the flow open after the assertion, so the
    // replay reaches the relying party, which has spent the challenge.
    let t = Tenant::start(&[Fault::Kmsi], false).await;
    let flow = t.begin().await;
    let fido = t.fido_get(&flow).await;
    let a = t.assertion(t.good(fido["sFidoChallenge"].as_str().unwrap(), 1));
    match t.post_assertion(&flow, &fido, &a).await {
        Outcome::Page(pgid, _) => assert_eq!(pgid, "KmsiInterrupt"),
        other => panic!("{other:?}"),
    }
    refused(
        &t.post_assertion(&flow, &fido, &a).await,
        "challenge was already used",
    );
    // A fresh flow, the old assertion: its challenge is not this flow's.
    let flow2 = t.begin().await;
    let fido2 = t.fido_get(&flow2).await;
    refused(
        &t.post_assertion(&flow2, &fido2, &a).await,
        "challenge does not match",
    );
    t.tenant.shutdown().await;
}

#[tokio::test]
async fn a_challenge_from_another_session_is_refused() {
    let t = Tenant::start(&[], false).await;
    let (a, b) = (t.begin().await, t.begin().await);
    let (fa, fb) = (t.fido_get(&a).await, t.fido_get(&b).await);
    assert_ne!(fa["sFidoChallenge"], fb["sFidoChallenge"]);
    // Signed over session A's challenge, posted in session B.
    let signed = t.assertion(t.good(fa["sFidoChallenge"].as_str().unwrap(), 1));
    refused(
        &t.post_assertion(&b, &fb, &signed).await,
        "challenge does not match",
    );
    // Session B's post with session A's cookie: not this browser.
    let mixed = Flow {
        cookies: a.cookies.clone(),
        config: b.config.clone(),
    };
    let fb2 = t.fido_get(&b).await;
    let signed_b = t.assertion(t.good(fb2["sFidoChallenge"].as_str().unwrap(), 2));
    refused(&t.post_assertion(&mixed, &fb2, &signed_b).await, "esctx");
    let logged = t.tenant.signins().len();
    // No session cookie at all (a SameSite=Lax cookie dropped on the
    // cross-site post back): refused, and never a sign-in.
    let c = t.begin().await;
    let fc = t.fido_get(&c).await;
    let no_cookie = Flow {
        cookies: Vec::new(),
        config: c.config.clone(),
    };
    let signed_c = t.assertion(t.good(fc["sFidoChallenge"].as_str().unwrap(), 3));
    refused(
        &t.post_assertion(&no_cookie, &fc, &signed_c).await,
        "SameSite",
    );
    assert_eq!(
        t.tenant.signins().len(),
        logged,
        "a post the session cookie does not vouch for is no sign-in attempt"
    );
    t.tenant.shutdown().await;
}

#[tokio::test]
async fn a_wrong_origin_type_rp_flag_or_counter_is_refused() {
    let t = Tenant::start(&[], false).await;
    // The ESTS origin, not the FIDO host's.
    let o = t
        .sign_in(|c| Assert {
            origin: t.ests(),
            ..t.good(c, 1)
        })
        .await;
    refused(&o, "origin");
    // A registration's client data.
    let o = t
        .sign_in(|c| Assert {
            ty: "webauthn.create",
            ..t.good(c, 1)
        })
        .await;
    refused(&o, "client data type");
    // Signed for the ESTS host as RP ID.
    let o = t
        .sign_in(|c| Assert {
            rp_id: ESTS_HOST,
            ..t.good(c, 1)
        })
        .await;
    refused(&o, "rpIdHash");
    // No user verification (UP only).
    let o = t
        .sign_in(|c| Assert {
            flags: 0x01,
            ..t.good(c, 2)
        })
        .await;
    refused(&o, "user verification");
    // No user presence.
    let o = t
        .sign_in(|c| Assert {
            flags: 0x04,
            ..t.good(c, 3)
        })
        .await;
    refused(&o, "user presence");
    // A good one at counter 7, then one that does not increase it.
    assert!(matches!(
        t.sign_in(|c| t.good(c, 7)).await,
        Outcome::SignedIn(_)
    ));
    refused(
        &t.sign_in(|c| t.good(c, 7)).await,
        "counter did not increase",
    );
    t.tenant.shutdown().await;
}

#[tokio::test]
async fn a_user_handle_in_the_wrong_byte_order_is_refused() {
    let t = Tenant::start(&[], false).await;
    // Entra's handle written with RFC 4122 (big-endian) GUID bytes.
    let tenant = uuid::Uuid::parse_str(TENANT_ID).unwrap();
    let object = uuid::Uuid::parse_str(glassdrill::tenant::REHEARSAL_OBJECT_ID).unwrap();
    let mut big_endian = b"ON:".to_vec();
    big_endian.extend_from_slice(tenant.as_bytes());
    big_endian.extend_from_slice(&sha2::Sha256::digest(object.as_bytes()));
    assert_ne!(big_endian, rehearsal_user_handle());
    let o = t
        .sign_in(|c| Assert {
            user_handle: big_endian.clone(),
            ..t.good(c, 1)
        })
        .await;
    refused(
        &o,
        "AADSTS135010: Key not found. The security key's user handle",
    );
    t.tenant.shutdown().await;
}

#[tokio::test]
async fn the_allow_list_is_offered_and_another_credential_is_key_not_found() {
    let t = Tenant::start(&[], true).await;
    let flow = t.begin().await;
    let allow = &flow.config["oGetCredTypeResult"]["Credentials"]["FidoParams"]["AllowList"];
    assert_eq!(allow, &json!([B64.encode(&t.cred.id)]));
    let fido = t.fido_get(&flow).await;
    assert_eq!(fido["arrAllowList"], *allow, "the FIDO page asks for it");
    let other = b"another-credential".to_vec();
    let o = t
        .sign_in(|c| Assert {
            credential_id: Some(other.clone()),
            ..t.good(c, 1)
        })
        .await;
    refused(&o, "AADSTS135010: Key not found");
    t.tenant.shutdown().await;
}

#[tokio::test]
async fn the_fido_host_posts_back_only_to_the_sign_in_host() {
    let t = Tenant::start(&[], false).await;
    let flow = t.begin().await;
    let c = &flow.config;
    let r = t
        .http
        .post(format!(
            "{}/common/fido/get?uiflavor=Web",
            t.tenant.urls().fido
        ))
        .form(&[
            ("canary", c["sFT"].as_str().unwrap()),
            ("ServerChallenge", c["sFidoChallenge"].as_str().unwrap()),
            ("postBackUrl", "http://evil.localhost/common/login"),
            ("ctx", c["sCtx"].as_str().unwrap()),
            ("loginCanary", c["canary"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    refused(&outcome(r).await, "postBackUrl");
    t.tenant.shutdown().await;
}
