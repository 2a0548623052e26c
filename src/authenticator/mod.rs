//! Authenticators: what presents the FIDO2 credential during the sign-in.
//!
//! [`Authenticator`] is the seam: `virtual` (here) loads a credential into
//! Chromium's W3C WebDriver virtual authenticator; `hid` (a real key through
//! ctap-hid-fido2 and a WebAuthn bridge) and `native` plug in behind the
//! same trait. An authenticator never sees the flow or the page; it only
//! prepares the browser and describes itself for evidence.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::json;

use crate::browser::{Browser, BrowserError};
use crate::webauthn;

pub mod key;
pub use key::{KeyAuthenticator, KeySettings, KeySource};

pub use crate::record::AuthenticatorIdentity;

/// A credential for the virtual authenticator: from a drill file's
/// PKCS#8 key, or generated for a rehearsal (never written to disk then).
pub struct Credential {
    /// Credential id.
    pub id: Vec<u8>,
    /// PKCS#8 DER P-256 private key.
    pub pkcs8: SecretSlice<u8>,
    /// RP id.
    pub rp_id: String,
    /// User handle.
    pub user_handle: Vec<u8>,
}

impl Credential {
    /// A fresh credential for `rp_id` and the account's `user_handle`.
    pub fn generate(rp_id: &str, user_handle: Vec<u8>) -> Result<Self, webauthn::KeyError> {
        Ok(Self {
            id: crate::secret::random_bytes(16),
            pkcs8: webauthn::generate_p256_pkcs8()?.into(),
            rp_id: rp_id.to_owned(),
            user_handle,
        })
    }
}

/// Authenticator failures: set-up problems are ERRORs of the drill.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticatorError {
    /// The credential key cannot be used.
    #[error("credential private key is unusable: {0}")]
    Key(String),
    /// The browser refused the authenticator's set-up.
    #[error("the authenticator could not be set up in the browser: {0}")]
    Browser(#[from] BrowserError),
    /// The security key (`hid`, `soft`) is not ready or failed.
    #[error("security key: {0}")]
    SecurityKey(String),
}

/// Presents a credential during a drill.
#[async_trait::async_trait]
pub trait Authenticator: Send + Sync {
    /// Identity for evidence and progress.
    fn identity(&self) -> AuthenticatorIdentity;
    /// Checks before anything touches the account (key present, healthy).
    async fn preflight(&self) -> Result<Vec<String>, AuthenticatorError>;
    /// Prepares the browser session so the page's WebAuthn call can reach
    /// it, without the credential yet (preflight: proves it works).
    async fn attach(&self, browser: &Browser) -> Result<(), AuthenticatorError>;
    /// Loads the credential, right before the ceremony and never earlier:
    /// until then no page can get an assertion from it.
    async fn arm(&self, browser: &Browser) -> Result<(), AuthenticatorError>;
    /// Takes the credential out of the browser again, as soon as the
    /// ceremony is over: nothing else may use it through this session.
    async fn detach(&self, browser: &Browser) -> Result<(), AuthenticatorError>;
    /// What the run learnt about its key, for the record (`None`: no key,
    /// as for `virtual`).
    fn key_evidence(&self) -> Option<crate::record::KeyEvidence> {
        None
    }
    /// A failure on glassdrill's side during the ceremony (a wrong PIN, no
    /// touch in time, the bridge refusing the page's request), which
    /// decides the sign-in stage whatever the page then showed.
    fn ceremony_failure(&self) -> Option<String> {
        None
    }
}

/// The W3C WebDriver virtual authenticator with one resident credential.
pub struct VirtualAuthenticator {
    credential_id: Vec<u8>,
    pkcs8: SecretSlice<u8>,
    rp_id: String,
    user_handle: Vec<u8>,
    public_key_sha256: String,
    /// The virtual authenticator's id in the browser, once attached.
    attached: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for VirtualAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualAuthenticator")
            .field("credential_id", &B64.encode(&self.credential_id))
            .field("rp_id", &self.rp_id)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl VirtualAuthenticator {
    /// From a PKCS#8 DER P-256 key (checked here, so a bad key fails in
    /// preflight, not mid-sign-in).
    pub fn new(
        credential_id: Vec<u8>,
        pkcs8: SecretSlice<u8>,
        rp_id: String,
        user_handle: Vec<u8>,
    ) -> Result<Self, AuthenticatorError> {
        let pk = webauthn::public_key_from_pkcs8(pkcs8.expose_secret())
            .map_err(|e| AuthenticatorError::Key(e.to_string()))?;
        let spki = p256::pkcs8::EncodePublicKey::to_public_key_der(&pk)
            .map_err(|e| AuthenticatorError::Key(e.to_string()))?;
        Ok(Self {
            credential_id,
            pkcs8,
            rp_id,
            user_handle,
            public_key_sha256: crate::support::hash::sha256_hex(spki.as_bytes()),
            attached: std::sync::Mutex::new(None),
        })
    }
}

#[async_trait::async_trait]
impl Authenticator for VirtualAuthenticator {
    fn identity(&self) -> AuthenticatorIdentity {
        AuthenticatorIdentity {
            kind: "virtual".into(),
            credential_id: B64.encode(&self.credential_id),
            rp_id: self.rp_id.clone(),
            public_key_sha256: Some(self.public_key_sha256.clone()),
            aaguid: None,
        }
    }

    async fn preflight(&self) -> Result<Vec<String>, AuthenticatorError> {
        Ok(vec![format!(
            "virtual credential {} for {}",
            B64.encode(&self.credential_id),
            self.rp_id
        )])
    }

    async fn attach(&self, browser: &Browser) -> Result<(), AuthenticatorError> {
        let v = browser
            .session_command(
                http::Method::POST,
                "webauthn/authenticator",
                Some(json!({
                    "protocol": "ctap2",
                    "transport": "usb",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserConsenting": true,
                    "isUserVerified": true
                })),
            )
            .await?;
        let Some(id) = v.as_str().map(str::to_owned) else {
            return Err(AuthenticatorError::Key(format!(
                "chromedriver returned no authenticator id ({v})"
            )));
        };
        *self
            .attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(id);
        Ok(())
    }

    async fn arm(&self, browser: &Browser) -> Result<(), AuthenticatorError> {
        let id = self
            .attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                AuthenticatorError::Key("the virtual authenticator is not attached".into())
            })?;
        browser
            .session_command(
                http::Method::POST,
                &format!("webauthn/authenticator/{id}/credential"),
                Some(json!({
                    "credentialId": B64.encode(&self.credential_id),
                    "isResidentCredential": true,
                    "rpId": self.rp_id,
                    "privateKey": B64.encode(self.pkcs8.expose_secret()),
                    "userHandle": B64.encode(&self.user_handle),
                    "signCount": 0
                })),
            )
            .await
            .map_err(|e| match e {
                // The command's body holds the key; never let it into text.
                BrowserError::Command { command, .. } => {
                    AuthenticatorError::Key(format!("{command} was refused"))
                }
                other => AuthenticatorError::Browser(other),
            })?;
        Ok(())
    }

    async fn detach(&self, browser: &Browser) -> Result<(), AuthenticatorError> {
        let id = self
            .attached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(id) = id else { return Ok(()) };
        // Removing the virtual authenticator removes its credentials with it.
        browser
            .session_command(
                http::Method::DELETE,
                &format!("webauthn/authenticator/{id}"),
                None,
            )
            .await?;
        Ok(())
    }
}
