//! `hid` and `soft`: a FIDO2 key glassdrill holds, reached by the page
//! through the WebAuthn bridge ([`crate::bridge`]).
//!
//! Preflight finds the configured key (never "the first one"), checks its
//! AAGUID, that its PIN retry counter is at its maximum (D3: a lowered
//! counter is a tamper signal and the key is not used) and, with the PIN,
//! that it holds the account's credential for the RP id. Armed, it serves
//! the page's one `navigator.credentials.get`: touch-needed raised, the
//! optional `touch_command` run, at most one assertion, bounded by
//! `touch_timeout`. Everything learnt (identity, PIN retries and signature
//! counter before and after, findings) becomes the record's `key` evidence.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::{Authenticator, AuthenticatorError, AuthenticatorIdentity};
use crate::bridge::{self, Bridge, Refusal, Signed};
use crate::browser::Browser;
use crate::fido::{self, AssertionRequest, Fido2Key, KeyError, Selector};
use crate::notify::Notifier;
use crate::record::KeyEvidence;

/// Where the key is.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A USB key, chosen among the attached ones.
    Hid(Selector),
    /// The software key's state file.
    Soft(PathBuf),
}

/// A drill's key, as configured and resolved.
pub struct KeySettings {
    /// The key's name in the drill's `schedule.keys`.
    pub name: Option<String>,
    /// Where it is.
    pub source: KeySource,
    /// The AAGUID the key must report (`None`: not checked).
    pub aaguid: Option<String>,
    /// RP id (`login.microsoft.com` for Entra).
    pub rp_id: String,
    /// The account's user handle the credential must carry.
    pub user_handle: Option<Vec<u8>>,
    /// The credential id (selects among several).
    pub credential_id: Option<Vec<u8>>,
    /// The PIN.
    pub pin: SecretString,
    /// The key's maximum PIN retries (8 for CTAP2 keys).
    pub max_pin_retries: u32,
    /// How long to wait for the touch.
    pub touch_timeout: Duration,
    /// Run when a touch is needed (an actuator), with the key's path as
    /// its last argument.
    pub touch_command: Option<Vec<String>>,
    /// The signature counter the last recorded assertion of this
    /// credential carried (from the state store).
    pub last_sign_count: Option<u32>,
    /// The drill, for touch-needed notifications.
    pub drill_id: String,
    /// The account (UPN): a credential whose stored account name differs
    /// is another account's.
    pub account: String,
    /// A person is at the key (`keys check`): the PIN may be tried on the
    /// one key of the configured model even without a credential id.
    pub attended: bool,
}

struct Shared {
    key: Option<Arc<dyn Fido2Key>>,
    evidence: KeyEvidence,
    /// A key failure during the ceremony, which decides the sign-in stage.
    failure: Option<String>,
    served: bool,
    /// The credential found in preflight.
    credential_id: Option<Vec<u8>>,
    /// Where the key found in preflight is (for `touch_command`).
    key_path: Option<String>,
    stop: Option<CancellationToken>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A FIDO2 key behind the bridge.
pub struct KeyAuthenticator {
    settings: Arc<KeySettings>,
    notifier: Option<Arc<dyn Notifier>>,
    hook: String,
    shared: Arc<Mutex<Shared>>,
}

impl std::fmt::Debug for KeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAuthenticator")
            .field("key", &self.settings.name)
            .field("source", &self.settings.source)
            .field("pin", &"[redacted]")
            .finish()
    }
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a preflight operation on the key may take (no touch involved).
const KEY_OP: Duration = Duration::from_secs(20);

impl KeyAuthenticator {
    /// A key authenticator; `notifier` receives touch-needed events.
    pub fn new(settings: KeySettings, notifier: Option<Arc<dyn Notifier>>) -> Self {
        let kind = match settings.source {
            KeySource::Hid(_) => "hid",
            KeySource::Soft(_) => "soft",
        };
        let evidence = KeyEvidence {
            kind: kind.into(),
            name: settings.name.clone(),
            sign_count_before: settings.last_sign_count,
            ..KeyEvidence::default()
        };
        Self {
            settings: Arc::new(settings),
            notifier,
            hook: bridge::hook_name(),
            shared: Arc::new(Mutex::new(Shared {
                key: None,
                evidence,
                failure: None,
                served: false,
                credential_id: None,
                key_path: None,
                stop: None,
                task: None,
            })),
        }
    }

    fn finding(&self, text: String) {
        tracing::warn!(key = ?self.settings.name, "{text}");
        lock(&self.shared).evidence.findings.push(text);
    }

    /// Finds the configured key.
    async fn find(&self) -> Result<Arc<dyn Fido2Key>, KeyError> {
        match &self.settings.source {
            KeySource::Soft(p) => Ok(Arc::new(fido::soft::SoftKey::open(p))),
            KeySource::Hid(sel) => {
                let sel = sel.clone();
                let rp_id = self.settings.rp_id.clone();
                let cred = self.settings.credential_id.clone();
                fido::blocking(
                    KEY_OP,
                    KeyError::Device("listing the keys took too long".into()),
                    move || {
                        let keys: Vec<fido::hid::HidKey> = fido::hid::devices()?
                            .into_iter()
                            .map(fido::hid::HidKey::new)
                            .collect();
                        let infos = keys
                            .iter()
                            .map(Fido2Key::info)
                            .collect::<Result<Vec<_>, _>>()?;
                        // Told apart without the PIN: it goes to one key only,
                        // the one proven to hold the drill's credential.
                        let i = fido::select(&infos, &sel, |i| match &cred {
                            Some(c) => keys[i].holds(&rp_id, c),
                            None => Ok(false),
                        })?;
                        Ok(Arc::new(keys[i].clone()) as Arc<dyn Fido2Key>)
                    },
                )
                .await
            }
        }
    }

    async fn check_key(&self) -> Result<Vec<String>, KeyError> {
        let key = self.find().await?;
        let k = key.clone();
        let info = fido::blocking(
            KEY_OP,
            KeyError::Device("the key did not answer getInfo".into()),
            move || k.info(),
        )
        .await?;
        {
            let mut s = lock(&self.shared);
            s.evidence.aaguid = Some(info.aaguid.clone());
            s.evidence.model.clone_from(&info.model);
            s.evidence.firmware = info.firmware.map(|f| f.to_string());
            s.evidence.pin_retries_before = info.pin_retries;
            s.key = Some(key.clone());
            s.key_path = Some(info.path.clone());
        }
        if let Some(want) = &self.settings.aaguid
            && *want != info.aaguid
        {
            let f = format!(
                "the key at {} reports AAGUID {}, the drill file names {want}: not the registered model",
                info.path, info.aaguid
            );
            self.finding(f.clone());
            return Err(KeyError::Device(f));
        }
        if let Some(f) = fido::pin_rule(info.pin_retries, self.settings.max_pin_retries) {
            self.finding(f.clone());
            return Err(KeyError::Device(f));
        }
        // The PIN goes only to a key proven, without it, to hold the
        // drill's credential: never to another account's key of the same
        // model (each wrong PIN costs that key a retry).
        if let KeySource::Hid(sel) = &self.settings.source {
            match &self.settings.credential_id {
                Some(id) => {
                    let (k, rp, id) = (key.clone(), self.settings.rp_id.clone(), id.clone());
                    let held = fido::blocking(
                        KEY_OP,
                        KeyError::Device("the key did not answer".into()),
                        move || k.holds(&rp, &id),
                    )
                    .await?;
                    if !held {
                        let f = format!(
                            "the key at {} does not hold the drill's credential for {}: another account's key? Its PIN was not tried",
                            info.path, self.settings.rp_id
                        );
                        self.finding(f);
                        return Err(KeyError::NoCredential(self.settings.rp_id.clone()));
                    }
                }
                None if sel.device.is_none() && !self.settings.attended => {
                    return Err(KeyError::Device(format!(
                        "key {} names no credential_id: glassdrill cannot tell it from another account's {} without trying the PIN; run `glassdrill keys check {}` (attended) and put the credential id it prints into the drill file",
                        self.settings.name.as_deref().unwrap_or("(unnamed)"),
                        info.model.as_deref().unwrap_or("key"),
                        self.settings.drill_id
                    )));
                }
                None => {}
            }
        }
        let k = key.clone();
        let rp = self.settings.rp_id.clone();
        let pin = self.settings.pin.clone();
        let held = fido::blocking(
            KEY_OP,
            KeyError::Device("the key did not list its credentials in time".into()),
            move || k.credentials(&rp, &pin),
        )
        .await?;
        let want_id = self.settings.credential_id.as_ref();
        let want_user = self.settings.user_handle.as_ref();
        let account = &self.settings.account;
        let found = held.iter().find(|h| {
            want_id.is_none_or(|id| &h.id == id)
                && want_user.is_none_or(|u| &h.user_handle == u)
                && h.user_name
                    .as_deref()
                    .is_none_or(|n| n.eq_ignore_ascii_case(account))
        });
        let Some(found) = found else {
            let f = format!(
                "the key holds {} credential(s) for {} but none for {account}{}",
                held.len(),
                self.settings.rp_id,
                if want_id.is_some() {
                    " with the configured credential id"
                } else {
                    ""
                }
            );
            self.finding(f);
            return Err(KeyError::NoCredential(format!(
                "{} and this account",
                self.settings.rp_id
            )));
        };
        {
            let mut s = lock(&self.shared);
            s.evidence.credential_id_sha256 = Some(crate::support::hash::sha256_hex(&found.id));
            s.credential_id = Some(found.id.clone());
        }
        Ok(vec![format!(
            "{} key {} ({}) at {}: PIN retries {}/{}, holds the account's credential {} for {}",
            match self.settings.source {
                KeySource::Hid(_) => "security",
                KeySource::Soft(_) => "soft",
            },
            info.aaguid,
            info.model
                .as_deref()
                .unwrap_or("model not in glassdrill's table"),
            info.path,
            info.pin_retries.unwrap_or(0),
            self.settings.max_pin_retries,
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &found.id),
            self.settings.rp_id
        )])
    }
}

/// The names of a drill's keys attached now (blocking: USB I/O): a soft
/// key's state file exists; a USB key is attached at its configured device
/// path, or one attached reports its AAGUID. For a custodian drill, which
/// starts when its key is plugged in.
pub fn attached_keys(cfg: &crate::config::drill::KeyConfig) -> Vec<String> {
    use crate::config::drill::KeyKind;
    // Each attached key with what it says of itself, listed once.
    let mut hid: Option<Vec<(fido::hid::HidKey, fido::KeyInfo)>> = None;
    let mut out = Vec::new();
    for e in &cfg.keys {
        let present = match cfg.kind {
            KeyKind::Soft => e.state.as_ref().is_some_and(|p| p.is_file()),
            KeyKind::Hid => {
                let infos = hid.get_or_insert_with(|| {
                    fido::hid::devices()
                        .unwrap_or_default()
                        .into_iter()
                        .map(fido::hid::HidKey::new)
                        .filter_map(|k| k.info().ok().map(|i| (k, i)))
                        .collect()
                });
                infos.iter().any(|(k, i)| {
                    e.device.as_deref().is_none_or(|d| d == i.path)
                        && e.aaguid.as_deref().is_none_or(|a| a == i.aaguid)
                        && e.credential_id
                            .as_ref()
                            .is_none_or(|id| k.holds(&cfg.rp_id, id).unwrap_or(false))
                })
            }
        };
        if present {
            out.push(e.name.clone());
        }
    }
    out
}

/// One served request: check, touch, sign, settle. Returns whether an
/// assertion was handed to the page.
async fn serve_one(
    bridge: &Bridge,
    req: bridge::PageRequest,
    webdriver_origin: &str,
    settings: &KeySettings,
    notifier: Option<&Arc<dyn Notifier>>,
    shared: &Mutex<Shared>,
    stop: &CancellationToken,
) {
    let already = lock(shared).served;
    let id = req.id.clone();
    let refuse = |r: Refusal| {
        let id = id.clone();
        async move {
            let _ = bridge.settle(&id, Err(&r)).await;
        }
    };
    if already {
        let r = Refusal {
            name: "NotAllowedError",
            message: "glassdrill signs once per drill run; a second request is refused".into(),
        };
        record_refusal(shared, &req.origin, &r);
        refuse(r).await;
        return;
    }
    let checked = match bridge::check(&req, &settings.rp_id, webdriver_origin) {
        Ok(c) => c,
        Err(r) => {
            record_refusal(shared, &req.origin, &r);
            refuse(r).await;
            return;
        }
    };
    let Some(key) = lock(shared).key.clone() else {
        refuse(Refusal {
            name: "NotAllowedError",
            message: "no key was found in preflight".into(),
        })
        .await;
        return;
    };
    lock(shared).served = true;
    // The page's list, or the configured credential when it names none.
    // The credential preflight found (or the configured one): the page's
    // list may narrow it, never widen it to another credential on the key.
    let found = lock(shared)
        .credential_id
        .clone()
        .or_else(|| settings.credential_id.clone());
    let allow: Vec<Vec<u8>> = match (&found, checked.allow.is_empty()) {
        (Some(f), true) => vec![f.clone()],
        (Some(f), false) if checked.allow.contains(f) => vec![f.clone()],
        (Some(_), false) => {
            let r = Refusal {
                name: "NotAllowedError",
                message: "the page does not allow the account's credential on this key".into(),
            };
            lock(shared).served = false;
            record_refusal(shared, &req.origin, &r);
            refuse(r).await;
            return;
        }
        (None, _) => checked.allow.clone(),
    };
    let needs_touch = {
        let k = key.clone();
        fido::blocking(KEY_OP, KeyError::Device("no answer".into()), move || {
            Ok(k.needs_touch())
        })
        .await
        .unwrap_or(true)
    };
    let wait = settings
        .touch_timeout
        .min(Duration::from_millis(req.timeout));
    let mut actuator = None;
    if needs_touch {
        let text = format!(
            "drill {}: touch the security key now (waiting up to {} s)",
            settings.drill_id,
            wait.as_secs()
        );
        tracing::warn!(target: "glassdrill::touch", "{text}");
        // Told in the background: a slow mail relay never eats the
        // person's time to touch the key.
        if let Some(n) = notifier.cloned() {
            let drill = settings.drill_id.clone();
            tokio::spawn(async move {
                let _ = n.touch_needed(&drill, &text).await;
            });
        }
        if let Some(cmd) = &settings.touch_command {
            let path = lock(shared).key_path.clone();
            actuator = spawn_touch_command(cmd, path.unwrap_or_else(|| key_path(settings)));
        }
    }
    let started = std::time::Instant::now();
    let k = key.clone();
    let pin = checked.user_verification.then(|| settings.pin.clone());
    let rp = checked.rp_id.clone();
    let cdj = checked.client_data_json.clone();
    let result = tokio::select! {
        r = fido::blocking(wait, KeyError::NoTouch(wait), move || {
            k.get_assertion(&AssertionRequest {
                rp_id: &rp,
                client_data_json: &cdj,
                allow: &allow,
                pin: pin.as_ref(),
            })
        }) => r,
        () = stop.cancelled() => Err(KeyError::Device("stopped while the key was waiting".into())),
    };
    if let Some(mut child) = actuator {
        let _ = child.start_kill();
    }
    let waited = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(a) => {
            let (up, uv) = a.flags();
            {
                let mut s = lock(shared);
                s.evidence.touch_wait_ms = Some(waited);
                // An earlier refused request no longer decides: it signed.
                s.failure = None;
                s.evidence.sign_count_after = a.sign_count();
                s.evidence.user_present = Some(up);
                s.evidence.user_verified = Some(uv);
                s.evidence.origin = Some(checked.origin.clone());
                s.evidence.credential_id_sha256 =
                    Some(crate::support::hash::sha256_hex(&a.credential_id));
                if let Some(f) = fido::counter_rule(s.evidence.sign_count_before, a.sign_count()) {
                    s.evidence.findings.push(f);
                }
            }
            let signed = Signed {
                credential_id: a.credential_id,
                client_data_json: checked.client_data_json,
                authenticator_data: a.authenticator_data,
                signature: a.signature,
                user_handle: a.user_handle,
            };
            match bridge.settle(&req.id, Ok(&signed)).await {
                Ok(true) => {}
                Ok(false) => {
                    lock(shared).failure = Some(
                        "the key signed, but the page's request had ended (timed out, aborted or navigated away): the assertion was not used".into(),
                    );
                }
                Err(e) => {
                    lock(shared).failure = Some(format!(
                        "the key signed, but the assertion could not be handed to the page: {e}"
                    ));
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            {
                let mut s = lock(shared);
                if e.needs_person() {
                    s.evidence.findings.push(text.clone());
                }
                s.failure = Some(text.clone());
            }
            refuse(Refusal {
                name: "NotAllowedError",
                message: "The operation either timed out or was not allowed.".into(),
            })
            .await;
        }
    }
}

/// Keeps a refused request in the evidence. Refused before any assertion,
/// it is also the ceremony's failure: the page's error that follows is
/// glassdrill's doing, not a finding about the account.
fn record_refusal(shared: &Mutex<Shared>, origin: &str, r: &Refusal) {
    tracing::warn!(origin, "bridge refused a request: {}", r.message);
    let mut s = lock(shared);
    s.evidence
        .refused
        .push(format!("{origin}: {} ({})", r.message, r.name));
    if !s.served && s.failure.is_none() {
        s.failure = Some(format!(
            "glassdrill's WebAuthn bridge refused the page's request ({}: {}); no assertion was made",
            r.name, r.message
        ));
    }
}

fn key_path(s: &KeySettings) -> String {
    match &s.source {
        KeySource::Hid(sel) => sel.device.clone().unwrap_or_default(),
        KeySource::Soft(p) => p.display().to_string(),
    }
}

/// Starts the touch actuator; its output goes to the log.
fn spawn_touch_command(cmd: &[String], path: String) -> Option<tokio::process::Child> {
    let (prog, args) = cmd.split_first()?;
    match tokio::process::Command::new(prog)
        .args(args)
        .arg(path)
        // Nothing of glassdrill's environment (secrets by `env:`, the
        // systemd credentials directory) reaches the actuator.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(command = %prog, "touch_command could not be started: {e}");
            None
        }
    }
}

#[async_trait::async_trait]
impl Authenticator for KeyAuthenticator {
    fn identity(&self) -> AuthenticatorIdentity {
        let s = lock(&self.shared);
        let credential_id = s
            .credential_id
            .as_ref()
            .or(self.settings.credential_id.as_ref())
            .map(|c| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c))
            .unwrap_or_default();
        AuthenticatorIdentity {
            kind: s.evidence.kind.clone(),
            credential_id,
            rp_id: self.settings.rp_id.clone(),
            public_key_sha256: None,
            aaguid: s
                .evidence
                .aaguid
                .clone()
                .or_else(|| self.settings.aaguid.clone()),
        }
    }

    async fn preflight(&self) -> Result<Vec<String>, AuthenticatorError> {
        self.check_key().await.map_err(|e| {
            let text = e.to_string();
            let recorded = lock(&self.shared).evidence.findings.contains(&text);
            if e.needs_person() && !matches!(e, KeyError::Device(_)) && !recorded {
                self.finding(text.clone());
            }
            AuthenticatorError::SecurityKey(text)
        })
    }

    async fn attach(&self, browser: &Browser) -> Result<(), AuthenticatorError> {
        bridge::install(browser, &self.hook).await?;
        Ok(())
    }

    async fn arm(&self, browser: &Browser) -> Result<(), AuthenticatorError> {
        let client = browser.client()?.clone();
        let bridge = Bridge::new(client, self.hook.clone());
        let stop = CancellationToken::new();
        let (settings, shared, notifier, st) = (
            self.settings.clone(),
            self.shared.clone(),
            self.notifier.clone(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = st.cancelled() => return,
                    () = tokio::time::sleep(bridge::POLL) => {}
                }
                // A stop never waits on a WebDriver call in flight.
                let taken = tokio::select! {
                    () = st.cancelled() => return,
                    t = bridge.take() => t,
                };
                match taken {
                    Ok(Some((req, origin))) => {
                        serve_one(
                            &bridge,
                            req,
                            &origin,
                            &settings,
                            notifier.as_ref(),
                            &shared,
                            &st,
                        )
                        .await;
                    }
                    Ok(None) => {}
                    // Mid-navigation the script may fail: the next poll tries again.
                    Err(e) => tracing::debug!("bridge poll: {e}"),
                }
            }
        });
        let mut s = lock(&self.shared);
        s.stop = Some(stop);
        s.task = Some(task);
        Ok(())
    }

    async fn detach(&self, _browser: &Browser) -> Result<(), AuthenticatorError> {
        let (stop, task) = {
            let mut s = lock(&self.shared);
            (s.stop.take(), s.task.take())
        };
        if let Some(stop) = stop {
            stop.cancel();
        }
        if let Some(task) = task {
            let _ = task.await;
        }
        // The retry counter after the ceremony (a wrong PIN shows here).
        let key = lock(&self.shared).key.clone();
        if let Some(k) = key {
            let after = fido::blocking(
                Duration::from_secs(5),
                KeyError::Device("the key did not answer".into()),
                move || k.info(),
            )
            .await
            .ok()
            .and_then(|i| i.pin_retries);
            lock(&self.shared).evidence.pin_retries_after = after;
        }
        Ok(())
    }

    fn key_evidence(&self) -> Option<KeyEvidence> {
        Some(lock(&self.shared).evidence.clone())
    }

    fn ceremony_failure(&self) -> Option<String> {
        lock(&self.shared).failure.clone()
    }
}
