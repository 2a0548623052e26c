//! FIDO2 keys at the CTAP level: what a security key can tell and do
//! without a browser. [`Fido2Key`] is implemented by a real key over USB HID
//! ([`hid`], through `ctap-hid-fido2`) and by the software key ([`soft`],
//! a P-256 credential in a 0600 file) that lets CI run everything above
//! the last USB hop.
//!
//! Every call here blocks (USB I/O, a touch); callers run them through
//! [`blocking`], on a thread of their own, bounded by a deadline. The PIN
//! is only ever passed as a [`SecretString`]; no error carries it.
//!
//! [`select`] picks the configured key among those attached, never "the
//! first one"; [`pin_rule`] is the do-no-harm rule on the PIN retry
//! counter (D3).

pub mod aaguid;
pub mod hid;
pub mod soft;

use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;

pub use aaguid::{format_aaguid, parse_aaguid};

/// CTAP 2.1 §6.5.2.2: an authenticator's PIN retry counter starts at 8 when
/// a PIN is set and is reset to it by every correct PIN.
pub const DEFAULT_MAX_PIN_RETRIES: u32 = 8;

/// What a key says about itself (authenticatorGetInfo and getPINRetries);
/// no PIN needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Where it is: a hidraw path, or the soft key's state file.
    pub path: String,
    /// The device's product string (HID) or `glassdrill soft key`.
    pub product: String,
    /// AAGUID, lower-case 8-4-4-4-12.
    pub aaguid: String,
    /// The model, where the AAGUID is a known one.
    pub model: Option<String>,
    /// Firmware version as the key reports it (CTAP 2.1 `firmwareVersion`).
    pub firmware: Option<u32>,
    /// CTAP versions (`FIDO_2_0`, `FIDO_2_1`, …).
    pub versions: Vec<String>,
    /// The options that matter here: `clientPin`, `rk`, `uv`, `credMgmt`
    /// (and the key's other options as reported).
    pub options: Vec<(String, bool)>,
    /// PIN retries left (`None`: no PIN set, or the key would not say).
    pub pin_retries: Option<u32>,
}

impl KeyInfo {
    /// An option's value (`None`: not reported, i.e. not supported).
    pub fn option(&self, name: &str) -> Option<bool> {
        self.options
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// A discoverable credential held by a key for one RP id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCredential {
    /// Credential id.
    pub id: Vec<u8>,
    /// The account's user handle (WebAuthn `user.id`).
    pub user_handle: Vec<u8>,
    /// The account name stored with it, where the key keeps one.
    pub user_name: Option<String>,
}

/// One assertion, as the key made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAssertion {
    /// The credential that signed.
    pub credential_id: Vec<u8>,
    /// Authenticator data (rpIdHash ‖ flags ‖ signCount ‖ …).
    pub authenticator_data: Vec<u8>,
    /// DER ECDSA signature over authenticatorData ‖ SHA-256(clientDataJSON).
    pub signature: Vec<u8>,
    /// User handle (always present for discoverable credentials).
    pub user_handle: Option<Vec<u8>>,
}

impl KeyAssertion {
    /// The signature counter in the authenticator data.
    pub fn sign_count(&self) -> Option<u32> {
        let d = self.authenticator_data.get(33..37)?;
        Some(u32::from_be_bytes([d[0], d[1], d[2], d[3]]))
    }

    /// The UP and UV flags.
    pub fn flags(&self) -> (bool, bool) {
        let f = self.authenticator_data.get(32).copied().unwrap_or(0);
        (f & 0x01 != 0, f & 0x04 != 0)
    }
}

/// What the assertion call asks of the key.
pub struct AssertionRequest<'a> {
    /// RP id (already checked against the drill's).
    pub rp_id: &'a str,
    /// The exact clientDataJSON bytes; the key signs their SHA-256.
    pub client_data_json: &'a [u8],
    /// Credential ids the page allows (empty: discoverable).
    pub allow: &'a [Vec<u8>],
    /// The PIN (user verification); `None` only when UV is not wanted.
    pub pin: Option<&'a SecretString>,
}

/// Why a key operation failed. Never carries the PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No FIDO device is attached (or none matches).
    #[error("no FIDO security key is attached{0}")]
    NotFound(String),
    /// More than one attached key matches the selection.
    #[error(
        "{0} attached keys match the selection ({1}): configure the key by AAGUID and credential id, or by device path, so exactly one matches"
    )]
    Ambiguous(usize, String),
    /// The key went away mid-operation.
    #[error("the security key stopped answering (unplugged?): {0}")]
    Unplugged(String),
    /// CTAP2_ERR_PIN_INVALID.
    #[error("the PIN was refused by the key ({}); it is not tried again", retries_text(*.retries_left))]
    PinInvalid {
        /// What the key says is left.
        retries_left: Option<u32>,
    },
    /// CTAP2_ERR_PIN_BLOCKED: no retries left; the key must be reset.
    #[error("the key's PIN is blocked (no retries left): the key must be reset and re-registered")]
    PinBlocked,
    /// CTAP2_ERR_PIN_AUTH_BLOCKED: three wrong PINs since power-up.
    #[error(
        "the key blocks PIN entry until it is unplugged and plugged in again (three wrong PINs since power-up)"
    )]
    PinAuthBlocked,
    /// The key holds no usable credential.
    #[error("the key holds no credential for {0}")]
    NoCredential(String),
    /// Nobody touched the key in time.
    #[error("no touch within {} s", .0.as_secs())]
    NoTouch(Duration),
    /// The soft key's state file.
    #[error("soft key {path}: {reason}")]
    SoftState {
        /// The file.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Anything else the key or its driver reported.
    #[error("the security key failed: {0}")]
    Device(String),
}

fn retries_text(r: Option<u32>) -> String {
    match r {
        Some(1) => "1 retry left".into(),
        Some(n) => format!("{n} retries left"),
        None => "retries left unknown".into(),
    }
}

impl KeyError {
    /// A failure that says the key or its PIN needs a person before any
    /// further drill (never retried automatically: each try could burn a
    /// PIN retry).
    pub fn needs_person(&self) -> bool {
        matches!(
            self,
            Self::PinInvalid { .. }
                | Self::PinBlocked
                | Self::PinAuthBlocked
                | Self::NoCredential(_)
                | Self::Ambiguous(..)
                | Self::SoftState { .. }
        )
    }
}

/// A FIDO2 key. Every method blocks; see [`blocking`].
pub trait Fido2Key: Send + Sync {
    /// Whether an assertion waits for a person's touch (user presence).
    fn needs_touch(&self) -> bool;
    /// authenticatorGetInfo plus the PIN retry counter.
    fn info(&self) -> Result<KeyInfo, KeyError>;
    /// Whether the key holds credential `id` for `rp_id`, asked without the
    /// PIN and without a touch (a CTAP2 getAssertion with `up=false`, no
    /// user verification, and the id as the allow list): how a key is told
    /// from another account's key of the same model before its PIN goes
    /// anywhere.
    fn holds(&self, rp_id: &str, id: &[u8]) -> Result<bool, KeyError>;
    /// The discoverable credentials for `rp_id` (credential management,
    /// which needs the PIN).
    fn credentials(&self, rp_id: &str, pin: &SecretString)
    -> Result<Vec<HeldCredential>, KeyError>;
    /// One assertion: waits for the touch (user presence) and verifies the
    /// PIN (user verification). Called at most once per drill run.
    fn get_assertion(&self, req: &AssertionRequest<'_>) -> Result<KeyAssertion, KeyError>;
}

/// Runs a blocking key operation on a thread of its own and waits for it
/// up to `deadline`. A panic inside the driver becomes an error; an
/// operation still running at the deadline is left to finish on its own
/// thread (the key times out by itself) and reported as `on_timeout`.
pub async fn blocking<T: Send + 'static>(
    deadline: Duration,
    on_timeout: KeyError,
    f: impl FnOnce() -> Result<T, KeyError> + Send + 'static,
) -> Result<T, KeyError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("glassdrill-fido".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err(KeyError::Device("the FIDO driver panicked".into())));
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(KeyError::Device(format!("cannot start a thread: {e}")));
    }
    match tokio::time::timeout(deadline, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(KeyError::Device(
            "the FIDO thread ended without answer".into(),
        )),
        Err(_) => Err(on_timeout),
    }
}

/// How a drill names the key it uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// The key model's AAGUID (lower-case 8-4-4-4-12).
    pub aaguid: Option<String>,
    /// The credential id the key must hold for the account.
    pub credential_id: Option<Vec<u8>>,
    /// A fixed device path (`/dev/hidraw3`, or a udev symlink).
    pub device: Option<String>,
}

impl Selector {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = &self.device {
            parts.push(format!("device {d}"));
        }
        if let Some(a) = &self.aaguid {
            parts.push(format!("AAGUID {a}"));
        }
        if self.credential_id.is_some() {
            parts.push("its credential id".into());
        }
        if parts.is_empty() {
            "no selection".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Picks the one attached key the selector names. `holds(i)` answers
/// whether candidate `i` holds the selector's credential (asked only when
/// several keys share the AAGUID). Never "the first one": none or several
/// matching is an error naming them.
pub fn select(
    found: &[KeyInfo],
    sel: &Selector,
    mut holds: impl FnMut(usize) -> Result<bool, KeyError>,
) -> Result<usize, KeyError> {
    let mut candidates: Vec<usize> = (0..found.len())
        .filter(|&i| sel.device.as_deref().is_none_or(|d| found[i].path == d))
        .filter(|&i| sel.aaguid.as_deref().is_none_or(|a| found[i].aaguid == a))
        .collect();
    if candidates.len() > 1 && sel.credential_id.is_some() {
        let mut holding = Vec::new();
        for i in candidates {
            if holds(i)? {
                holding.push(i);
            }
        }
        candidates = holding;
    }
    match candidates.as_slice() {
        [one] => Ok(*one),
        [] if found.is_empty() => Err(KeyError::NotFound(String::new())),
        [] => Err(KeyError::NotFound(format!(
            " matching {} ({} attached: {})",
            sel.describe(),
            found.len(),
            found
                .iter()
                .map(|k| format!("{} at {}", k.aaguid, k.path))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(KeyError::Ambiguous(
            many.len(),
            many.iter()
                .map(|&i| found[i].path.clone())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// The do-no-harm rule on a key's PIN retry counter: a key whose counter
/// is below its maximum is not used (someone tried wrong PINs: a tamper
/// signal, or a lock-out one drill away). `Some(finding)` when the key
/// must not be used.
pub fn pin_rule(retries: Option<u32>, max: u32) -> Option<String> {
    match retries {
        None => Some(
            "the key reports no PIN retry counter (no PIN set?): a break-glass key needs a PIN"
                .into(),
        ),
        Some(0) => Some("the key's PIN is blocked (0 retries left)".into()),
        Some(n) if n < max => Some(format!(
            "the key's PIN retry counter is {n} of {max}: someone entered a wrong PIN since the last correct one (a tamper signal); the key is not used until a custodian checks it and enters the correct PIN once (`glassdrill keys check`)"
        )),
        Some(_) => None,
    }
}

/// Whether a sign counter moved as a genuine key's does: `Some(finding)`
/// when it did not increase (a cloned key, or a key reset). A key that
/// keeps no counter (always 0) is not a finding.
pub fn counter_rule(before: Option<u32>, after: Option<u32>) -> Option<String> {
    match (before, after) {
        (Some(b), Some(a)) if (b != 0 || a != 0) && a <= b => Some(format!(
            "the key's signature counter did not increase ({b} before, {a} now): the credential may have been cloned, or the key reset"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
