//! The WebAuthn bridge in real Chromium: the shim a page sees
//! (`instanceof`, `toJSON()`, errors, frames), on pages Chromium treats as
//! public (Local Network Access as on login.microsoft.com), served by a
//! soft key through the same code as a USB key.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::response::Html;
use axum::routing::get;
use base64::Engine as _;
use glassdrill::authenticator::{Authenticator, KeyAuthenticator, KeySettings, KeySource};
use glassdrill::browser::{Browser, BrowserOptions};
use glassdrill::fido::Fido2Key as _;
use glassdrill::fido::soft::{NewSoftKey, SoftKey};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::util::World;

const RP: &str = "bridge.localhost";

/// Pages for the shim: `/top` (frames chosen by query), `/frame`.
async fn serve_pages(other_port: u16) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/page/{kind}",
            get(move |UrlPath(kind): UrlPath<String>| async move {
                let frame = match kind.as_str() {
                    "same" => "<iframe id=f src=\"/frame\"></iframe>".to_owned(),
                    "cross" => format!(
                        "<iframe id=f src=\"http://b.{RP}:{other_port}/frame\"></iframe>"
                    ),
                    "cross-allowed" => format!(
                        "<iframe id=f allow=\"publickey-credentials-get\" src=\"http://b.{RP}:{other_port}/frame\"></iframe>"
                    ),
                    _ => String::new(),
                };
                Html(format!(
                    "<!doctype html><html><head><title>top</title><script>{COLLECT}{CALL}</script></head><body>{frame}</body></html>"
                ))
            }),
        )
        .route(
            "/frame",
            // A frame that asks for an assertion as soon as it loads.
            get(|| async {
                Html(format!(
                    "<!doctype html><html><head><script>{CALL}</script></head><body>frame<script>glassdrillCall('{RP}', '')</script></body></html>"
                ))
            }),
        )
        .route("/private", get(|| async { "private" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// Starts `navigator.credentials.get` in a document and posts what the
/// page got (as a page script sees it) to the top document's `results`.
/// A page script, not a WebDriver async script: chromedriver runs one
/// command at a time, and the bridge's own polls must get through.
const CALL: &str = r#"
function glassdrillCall(rpId, extra) {
  const opts = { publicKey: Object.assign({ challenge: new Uint8Array([1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]), userVerification: 'required', timeout: 60000 }, rpId ? { rpId } : {}) };
  if (extra === 'abort') { const c = new AbortController(); opts.signal = c.signal; setTimeout(() => c.abort(), 100); }
  if (extra === 'conditional') { opts.mediation = 'conditional'; }
  const report = (v) => window.top.postMessage({ fromPage: v }, '*');
  let settled = false;
  const p = navigator.credentials.get(opts);
  if (extra === 'conditional') { setTimeout(() => report({ pending: !settled }), 500); }
  p.then((c) => {
    settled = true;
    const dec = new TextDecoder();
    const j = c.toJSON();
    report({
      ok: true,
      isPkc: c instanceof PublicKeyCredential,
      isResponse: c.response instanceof AuthenticatorAssertionResponse,
      id: c.id,
      rawIdBytes: c.rawId.byteLength,
      type: c.type,
      attachment: c.authenticatorAttachment,
      ext: JSON.stringify(c.getClientExtensionResults()),
      jsonId: j.id, jsonType: j.type, jsonHasSig: typeof j.response.signature === 'string',
      clientData: JSON.parse(dec.decode(c.response.clientDataJSON)),
      authDataLen: c.response.authenticatorData.byteLength,
      hasUserHandle: c.response.userHandle instanceof ArrayBuffer,
    });
  }, (e) => { settled = true; if (extra !== 'conditional') report({ ok: false, name: e.name, message: e.message }); });
}
"#;

/// The top page collects what its documents report.
const COLLECT: &str = r#"window.results = []; addEventListener('message', (e) => { if (e.data && e.data.fromPage) results.push(e.data.fromPage); });"#;

struct Rig {
    _world: World,
    _dir: tempfile::TempDir,
    key: SoftKey,
    auth: KeyAuthenticator,
    browser: Browser,
    top: SocketAddr,
    _other: SocketAddr,
    private: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn new() -> Self {
        let world = World::new();
        let dir = tempfile::Builder::new()
            .prefix("glassdrill-bridge-")
            .tempdir()
            .unwrap();
        let pin = SecretString::from("482916".to_owned());
        let (key, _, _) = SoftKey::create(
            &dir.path().join("soft.json"),
            &NewSoftKey {
                rp_id: RP,
                user_handle: b"bridge-user",
                user_name: "bg1@bridge.localhost",
                pin: &pin,
            },
        )
        .unwrap();
        // The frame server first, so the top page can name its port.
        let (other, t1) = serve_pages(0).await;
        let (top, t2) = serve_pages(other.port()).await;
        // Not marked public: a loopback service a public page must not reach.
        let (private, t3) = serve_pages(0).await;
        let host = world.host();
        let browser = Browser::launch(&BrowserOptions {
            chromium: host.browser.chromium.clone(),
            chromedriver: host.browser.chromedriver.clone(),
            temp_dir: host.browser.temp_dir.clone(),
            public_address_space: vec![top, other],
        })
        .await
        .expect("browser");
        let auth = KeyAuthenticator::new(
            KeySettings {
                name: Some("soft-a".into()),
                source: KeySource::Soft(key.path().to_owned()),
                aaguid: None,
                rp_id: RP.into(),
                user_handle: Some(b"bridge-user".to_vec()),
                credential_id: None,
                pin,
                max_pin_retries: 8,
                touch_timeout: Duration::from_secs(10),
                touch_command: None,
                last_sign_count: None,
                drill_id: "bridge".into(),
                account: "bg1@bridge.localhost".into(),
                attended: false,
            },
            None,
        );
        auth.preflight().await.expect("preflight");
        auth.attach(&browser).await.expect("shim installed");
        Self {
            _world: world,
            _dir: dir,
            key,
            auth,
            browser,
            top,
            _other: other,
            private,
            tasks: vec![t1, t2, t3],
        }
    }

    async fn open(&self, kind: &str) {
        let url = format!("http://a.{RP}:{}/page/{kind}", self.top.port());
        self.browser.client().unwrap().goto(&url).await.unwrap();
    }

    /// Calls `get` in the top document and waits for what it reports.
    async fn call(&self, rp_id: Option<&str>, extra: &str) -> Value {
        let before = self.results().await.len();
        self.browser
            .client()
            .unwrap()
            .execute(
                "glassdrillCall(arguments[0], arguments[1]);",
                vec![json!(rp_id), json!(extra)],
            )
            .await
            .expect("script ran");
        self.next_result(before).await
    }

    async fn results(&self) -> Vec<Value> {
        let v = self
            .browser
            .client()
            .unwrap()
            .execute("return window.results || [];", vec![])
            .await
            .expect("results");
        v.as_array().cloned().unwrap_or_default()
    }

    /// The report after the first `seen`.
    async fn next_result(&self, seen: usize) -> Value {
        for _ in 0..300 {
            if let Some(v) = self.results().await.get(seen) {
                return v.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page reported nothing within 15 s");
    }

    async fn close(self) {
        self.auth.detach(&self.browser).await.unwrap();
        self.browser.close().await.unwrap();
        for t in self.tasks {
            t.abort();
        }
        self._world.assert_clean();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_answers_as_a_browser_would_and_signs_once() {
    let rig = Rig::new().await;
    rig.open("none").await;
    // Before arming nothing is served; the API already refuses what a
    // browser with no usable authenticator refuses.
    let created: Value = rig
        .browser
        .client()
        .unwrap()
        .execute_async(
            "const done = arguments[0]; navigator.credentials.create({publicKey: {}}).then(() => done('ok'), (e) => done(e.name));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(created, "NotAllowedError");
    let conditional = rig.call(Some(RP), "conditional").await;
    assert_eq!(conditional["pending"], true, "autofill is never answered");
    let aborted = rig.call(Some(RP), "abort").await;
    assert_eq!(aborted["name"], "AbortError", "{aborted}");

    rig.auth.arm(&rig.browser).await.unwrap();
    // Another RP id: SecurityError, and no signature made.
    let other = rig.call(Some("evil.localhost"), "").await;
    assert_eq!(other["name"], "SecurityError", "{other}");
    assert_eq!(rig.key.info().unwrap().pin_retries, Some(8));

    // The drill's RP id: a credential the page's own checks accept.
    let got = rig.call(Some(RP), "").await;
    assert_eq!(got["ok"], true, "{got}");
    assert_eq!(got["isPkc"], true);
    assert_eq!(got["isResponse"], true);
    assert_eq!(got["type"], "public-key");
    assert_eq!(got["attachment"], "cross-platform");
    assert_eq!(got["ext"], "{}");
    assert_eq!(got["jsonId"], got["id"]);
    assert_eq!(got["jsonType"], "public-key");
    assert_eq!(got["jsonHasSig"], true);
    assert_eq!(got["rawIdBytes"], 32);
    assert_eq!(got["hasUserHandle"], true);
    assert_eq!(got["authDataLen"], 37);
    let origin = format!("http://a.{RP}:{}", rig.top.port());
    assert_eq!(
        got["clientData"],
        json!({"type": "webauthn.get", "challenge": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([1u8,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]), "origin": origin, "crossOrigin": false})
    );

    // A second request in the same run: refused, never a second assertion.
    let again = rig.call(Some(RP), "").await;
    assert_eq!(again["name"], "NotAllowedError", "{again}");

    // The page is public to Chromium: a fetch to a private loopback
    // service fails (Local Network Access), while the bridge worked.
    let fetched: Value = rig
        .browser
        .client()
        .unwrap()
        .execute_async(
            "const done = arguments[1]; fetch(arguments[0]).then((r) => done('reached ' + r.status), (e) => done('blocked: ' + e.message));",
            vec![json!(format!("http://127.0.0.1:{}/private", rig.private.port()))],
        )
        .await
        .unwrap();
    assert!(
        fetched.as_str().unwrap_or_default().starts_with("blocked"),
        "a public page reached loopback: the LNA override is not in effect ({fetched})"
    );

    rig.auth.detach(&rig.browser).await.unwrap();
    let ev = rig.auth.key_evidence().unwrap();
    assert_eq!(ev.sign_count_after, Some(1), "{ev:?}");
    assert_eq!(ev.pin_retries_before, Some(8));
    assert_eq!(ev.pin_retries_after, Some(8));
    assert_eq!(ev.user_verified, Some(true));
    assert_eq!(ev.origin.as_deref(), Some(origin.as_str()));
    assert_eq!(ev.refused.len(), 2, "{:?}", ev.refused);
    assert!(ev.refused[0].contains("evil.localhost"), "{:?}", ev.refused);
    assert!(ev.refused[1].contains("once"), "{:?}", ev.refused);
    assert!(ev.findings.is_empty(), "{:?}", ev.findings);
    rig.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_never_get_an_assertion() {
    // A frame's origin is only the page's word: the bridge serves the top
    // document alone, whatever the frame or its `allow` attribute.
    let rig = Rig::new().await;
    rig.auth.arm(&rig.browser).await.unwrap();
    for page in ["cross", "cross-allowed", "same"] {
        rig.open(page).await;
        let got = rig.next_result(0).await;
        assert_eq!(got["name"], "NotAllowedError", "{page}: {got}");
        assert!(
            got["message"]
                .as_str()
                .unwrap_or_default()
                .contains("top document only"),
            "{page}: {got}"
        );
    }
    rig.auth.detach(&rig.browser).await.unwrap();
    let ev = rig.auth.key_evidence().unwrap();
    assert_eq!(ev.sign_count_after, None, "nothing was signed: {ev:?}");
    assert_eq!(rig.key.info().unwrap().pin_retries, Some(8));
    rig.close().await;
}
