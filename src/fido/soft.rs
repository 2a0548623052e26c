//! The software key (`soft`): a P-256 discoverable credential, its counter
//! and a PIN (hashed, with a retry counter) in a 0600 JSON file. It behaves
//! as a CTAP2 key does where a drill can tell: a wrong PIN lowers the
//! retry counter and is never retried, 0 retries blocks it, every assertion
//! increments the signature counter, UP and UV flags are set only when
//! performed. It exists so the whole bridge runs in CI through real
//! Chromium; it is not a break-glass credential (its private key is a file).
//!
//! Writes are atomic (a temp file renamed over the state), so a crash never
//! leaves half a state file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    AssertionRequest, DEFAULT_MAX_PIN_RETRIES, Fido2Key, HeldCredential, KeyAssertion, KeyError,
    KeyInfo,
};

/// The soft key's AAGUID (random, v4; no hardware model uses it).
pub const SOFT_AAGUID: &str = "6c0a4b8e-5d2f-4a61-9b3e-8f1c2d7e9a40";

/// The state file. The private key is PKCS#8 DER, base64url: the file is
/// a secret and kept 0600.
#[derive(Serialize, Deserialize)]
struct State {
    /// Format marker.
    format: String,
    aaguid: String,
    /// LEFT(SHA-256(PIN), 16), hex, as CTAP2 keys store it.
    pin_hash: String,
    pin_retries: u32,
    /// Whether the key performs user verification (tests turn it off to
    /// show the tenant refusing a sign-in without UV).
    #[serde(default = "yes")]
    performs_uv: bool,
    /// Whether an assertion waits for a "touch": the file `<state>.touch`
    /// appearing (what a `touch_command` actuator makes), as a USB key
    /// waits for its button.
    #[serde(default)]
    wait_for_touch: bool,
    credentials: Vec<StoredCredential>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize, Deserialize)]
struct StoredCredential {
    rp_id: String,
    id: String,
    user_handle: String,
    user_name: Option<String>,
    private_key: String,
    sign_count: u32,
}

const FORMAT: &str = "glassdrill-soft-key-v1";

/// A software FIDO2 key backed by a state file.
pub struct SoftKey {
    path: PathBuf,
    /// One operation at a time, as a key does.
    lock: Mutex<()>,
}

impl std::fmt::Debug for SoftKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftKey").field("path", &self.path).finish()
    }
}

/// What a new soft key holds.
pub struct NewSoftKey<'a> {
    /// RP id of its one credential.
    pub rp_id: &'a str,
    /// The account's user handle.
    pub user_handle: &'a [u8],
    /// The account name.
    pub user_name: &'a str,
    /// Its PIN.
    pub pin: &'a SecretString,
}

fn pin_hash(pin: &SecretString) -> String {
    hex::encode(&Sha256::digest(pin.expose_secret().as_bytes())[..16])
}

impl SoftKey {
    /// Opens an existing state file (checked on every use, not here).
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            lock: Mutex::new(()),
        }
    }

    /// Creates a new soft key with one fresh credential; returns it, the
    /// credential id and its public key. Refuses to overwrite a file.
    pub fn create(
        path: &Path,
        new: &NewSoftKey<'_>,
    ) -> Result<(Self, Vec<u8>, p256::ecdsa::VerifyingKey), KeyError> {
        let pkcs8 = crate::webauthn::generate_p256_pkcs8().map_err(|e| KeyError::SoftState {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let signing =
            SigningKey::from_pkcs8_der(&pkcs8).map_err(|e| soft_err(path, &e.to_string()))?;
        let id = crate::secret::random_bytes(32);
        let state = State {
            format: FORMAT.into(),
            aaguid: SOFT_AAGUID.into(),
            pin_hash: pin_hash(new.pin),
            pin_retries: DEFAULT_MAX_PIN_RETRIES,
            performs_uv: true,
            wait_for_touch: false,
            credentials: vec![StoredCredential {
                rp_id: new.rp_id.into(),
                id: B64.encode(&id),
                user_handle: B64.encode(new.user_handle),
                user_name: Some(new.user_name.into()),
                private_key: B64.encode(&pkcs8),
                sign_count: 0,
            }],
        };
        let text = serde_json::to_vec_pretty(&state)
            .map_err(|e| soft_err(path, &format!("cannot be encoded ({e})")))?;
        crate::support::fs::write_atomic(path, &text, 0o600, crate::support::fs::Existing::Refuse)
            .map_err(|e| {
                soft_err(
                    path,
                    &format!("cannot be created ({e}); an existing key file is never overwritten"),
                )
            })?;
        let key = Self::open(path);
        Ok((key, id, *signing.verifying_key()))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<State, KeyError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| {
            soft_err(
                &self.path,
                &format!("cannot be read ({e}); create one with `glassdrill keys soft-new`"),
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            if meta.mode() & 0o077 != 0 {
                return Err(soft_err(
                    &self.path,
                    &format!(
                        "mode {:o} lets other users read the key: chmod 600 it",
                        meta.mode() & 0o777
                    ),
                ));
            }
        }
        let text = std::fs::read(&self.path)
            .map_err(|e| soft_err(&self.path, &format!("cannot be read ({e})")))?;
        let state: State = serde_json::from_slice(&text).map_err(|e| {
            // serde's message names the line and column (and may quote a
            // value of the wrong type: this file is a secret only its owner reads).
            soft_err(&self.path, &format!("is not a soft key state file ({e})"))
        })?;
        if state.format != FORMAT {
            return Err(soft_err(
                &self.path,
                &format!("format {:?} is not {FORMAT:?}", state.format),
            ));
        }
        Ok(state)
    }

    fn save(&self, state: &State) -> Result<(), KeyError> {
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| soft_err(&self.path, &format!("cannot be encoded ({e})")))?;
        crate::support::fs::write_atomic(
            &self.path,
            &text,
            0o600,
            crate::support::fs::Existing::Replace,
        )
        .map_err(|e| soft_err(&self.path, &format!("cannot be written ({e})")))
    }

    /// Checks the PIN as a CTAP2 key does: a wrong one costs a retry.
    fn verify_pin(&self, state: &mut State, pin: &SecretString) -> Result<(), KeyError> {
        if state.pin_retries == 0 {
            return Err(KeyError::PinBlocked);
        }
        if crate::secret::constant_time_eq(pin_hash(pin).as_bytes(), state.pin_hash.as_bytes()) {
            if state.pin_retries != DEFAULT_MAX_PIN_RETRIES {
                state.pin_retries = DEFAULT_MAX_PIN_RETRIES;
                self.save(state)?;
            }
            Ok(())
        } else {
            state.pin_retries -= 1;
            self.save(state)?;
            if state.pin_retries == 0 {
                Err(KeyError::PinBlocked)
            } else {
                Err(KeyError::PinInvalid {
                    retries_left: Some(state.pin_retries),
                })
            }
        }
    }

    /// The path whose appearance is the soft key's "touch".
    pub fn touch_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".touch");
        PathBuf::from(p)
    }

    /// Waits for the touch file (taken away again once seen), up to five
    /// minutes; the caller's own deadline is usually shorter.
    fn wait_for_touch(&self) -> Result<(), KeyError> {
        let touch = self.touch_path();
        let limit = std::time::Duration::from_secs(300);
        let start = std::time::Instant::now();
        while start.elapsed() < limit {
            if std::fs::remove_file(&touch).is_ok() {
                return Ok(());
            }
            // On the key's own thread (see `fido::blocking`), never the runtime.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(KeyError::NoTouch(limit))
    }

    /// The public side of its credential for `rp_id` (id, user handle,
    /// public key): what a registration gives the relying party.
    pub fn registered(
        &self,
        rp_id: &str,
    ) -> Result<(Vec<u8>, Vec<u8>, p256::ecdsa::VerifyingKey), KeyError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.load()?;
        let c = state
            .credentials
            .iter()
            .find(|c| c.rp_id == rp_id)
            .ok_or_else(|| KeyError::NoCredential(rp_id.to_owned()))?;
        let pkcs8 = B64
            .decode(&c.private_key)
            .map_err(|_| soft_err(&self.path, "the private key is not base64url"))?;
        let signing = SigningKey::from_pkcs8_der(&pkcs8)
            .map_err(|_| soft_err(&self.path, "the private key is not a P-256 PKCS#8 key"))?;
        let id = B64
            .decode(&c.id)
            .map_err(|_| soft_err(&self.path, "a credential id is not base64url"))?;
        let uh = B64
            .decode(&c.user_handle)
            .map_err(|_| soft_err(&self.path, "a user handle is not base64url"))?;
        Ok((id, uh, *signing.verifying_key()))
    }

    /// Test and drill-host helper: changes the stored state with `f`
    /// (lower the PIN counter, turn UV off, set the signature counter).
    pub fn tamper(&self, f: impl FnOnce(&mut SoftKeyKnobs<'_>)) -> Result<(), KeyError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.load()?;
        let mut knobs = SoftKeyKnobs { state: &mut state };
        f(&mut knobs);
        self.save(&state)
    }
}

/// What [`SoftKey::tamper`] may change.
pub struct SoftKeyKnobs<'a> {
    state: &'a mut State,
}

impl SoftKeyKnobs<'_> {
    /// Sets the PIN retry counter.
    pub fn set_pin_retries(&mut self, n: u32) {
        self.state.pin_retries = n;
    }
    /// Makes the key skip (or perform) user verification.
    pub fn set_performs_uv(&mut self, uv: bool) {
        self.state.performs_uv = uv;
    }
    /// Makes assertions wait for `<state>.touch` to appear.
    pub fn set_wait_for_touch(&mut self, wait: bool) {
        self.state.wait_for_touch = wait;
    }
    /// Sets every credential's signature counter.
    pub fn set_sign_count(&mut self, n: u32) {
        for c in &mut self.state.credentials {
            c.sign_count = n;
        }
    }
}

fn soft_err(path: &Path, reason: &str) -> KeyError {
    KeyError::SoftState {
        path: path.display().to_string(),
        reason: reason.to_owned(),
    }
}

impl Fido2Key for SoftKey {
    fn needs_touch(&self) -> bool {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.load().is_ok_and(|s| s.wait_for_touch)
    }

    fn info(&self) -> Result<KeyInfo, KeyError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.load()?;
        Ok(KeyInfo {
            path: self.path.display().to_string(),
            product: "glassdrill soft key".into(),
            model: Some("glassdrill soft key (software, not for break-glass use)".into()),
            aaguid: state.aaguid,
            firmware: None,
            versions: vec!["FIDO_2_0".into(), "FIDO_2_1".into()],
            options: vec![
                ("rk".into(), true),
                ("up".into(), true),
                ("clientPin".into(), true),
                ("credMgmt".into(), true),
            ],
            pin_retries: Some(state.pin_retries),
        })
    }

    fn holds(&self, rp_id: &str, id: &[u8]) -> Result<bool, KeyError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.load()?;
        Ok(state
            .credentials
            .iter()
            .any(|c| c.rp_id == rp_id && B64.decode(&c.id).is_ok_and(|x| x == id)))
    }

    fn credentials(
        &self,
        rp_id: &str,
        pin: &SecretString,
    ) -> Result<Vec<HeldCredential>, KeyError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.load()?;
        self.verify_pin(&mut state, pin)?;
        state
            .credentials
            .iter()
            .filter(|c| c.rp_id == rp_id)
            .map(|c| {
                Ok(HeldCredential {
                    id: B64
                        .decode(&c.id)
                        .map_err(|_| soft_err(&self.path, "a credential id is not base64url"))?,
                    user_handle: B64
                        .decode(&c.user_handle)
                        .map_err(|_| soft_err(&self.path, "a user handle is not base64url"))?,
                    user_name: c.user_name.clone(),
                })
            })
            .collect()
    }

    fn get_assertion(&self, req: &AssertionRequest<'_>) -> Result<KeyAssertion, KeyError> {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self.load()?;
        let uv = match req.pin {
            Some(pin) if state.performs_uv => {
                self.verify_pin(&mut state, pin)?;
                true
            }
            _ => false,
        };
        let _guard = if state.wait_for_touch {
            // Waiting for the touch holds no lock: the key still answers
            // getInfo meanwhile, as a USB key does.
            drop(guard);
            self.wait_for_touch()?;
            let g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            state = self.load()?;
            g
        } else {
            guard
        };
        let allowed = |id: &[u8]| req.allow.is_empty() || req.allow.iter().any(|a| a == id);
        let Some(cred) = state
            .credentials
            .iter_mut()
            .find(|c| c.rp_id == req.rp_id && B64.decode(&c.id).is_ok_and(|id| allowed(&id)))
        else {
            return Err(KeyError::NoCredential(req.rp_id.to_owned()));
        };
        let pkcs8 = B64
            .decode(&cred.private_key)
            .map_err(|_| soft_err(&self.path, "the private key is not base64url"))?;
        let signing = SigningKey::from_pkcs8_der(&pkcs8)
            .map_err(|_| soft_err(&self.path, "the private key is not a P-256 PKCS#8 key"))?;
        cred.sign_count = cred.sign_count.wrapping_add(1);
        let mut auth_data = Sha256::digest(req.rp_id.as_bytes()).to_vec();
        auth_data.push(0x01 | if uv { 0x04 } else { 0 });
        auth_data.extend_from_slice(&cred.sign_count.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(req.client_data_json));
        let signature: Signature = signing.sign(&signed);
        let out = KeyAssertion {
            credential_id: B64
                .decode(&cred.id)
                .map_err(|_| soft_err(&self.path, "a credential id is not base64url"))?,
            authenticator_data: auth_data,
            signature: signature.to_der().as_bytes().to_vec(),
            user_handle: B64.decode(&cred.user_handle).ok(),
        };
        // The counter is kept before the assertion leaves the key.
        self.save(&state)?;
        Ok(out)
    }
}
