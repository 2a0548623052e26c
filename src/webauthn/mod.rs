//! WebAuthn assertion verification for the rehearsal tenant, plus key
//! material helpers for loading credentials into Chromium's WebDriver
//! virtual authenticator.
//!
//! Verification follows WebAuthn Level 2, §7.2 "Verifying an Authentication
//! Assertion", restricted to what the rehearsal tenant needs: ES256
//! (ECDSA P-256 with SHA-256) credentials, a fixed RP ID and a list of
//! allowed origins. Everything here is pure: no I/O, no clock, no global
//! state (except the OS random number generator used for key generation).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use rand_core::OsRng;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Authenticator data flag: user present (UP).
const FLAG_USER_PRESENT: u8 = 0x01;
/// Authenticator data flag: user verified (UV).
const FLAG_USER_VERIFIED: u8 = 0x04;
/// Length of the fixed authenticator data prefix:
/// rpIdHash (32) ‖ flags (1) ‖ signCount (4).
const AUTH_DATA_MIN_LEN: usize = 37;
/// The `type` member that `navigator.credentials.get()` puts in clientDataJSON.
const CLIENT_DATA_TYPE_GET: &str = "webauthn.get";

#[cfg(test)]
/// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point:
/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }`,
/// followed by the 65-byte SEC1 uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, // SEQUENCE, 89 bytes
    0x30, 0x13, // SEQUENCE, 19 bytes
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // OID 1.2.840.10045.2.1
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // OID 1.2.840.10045.3.1.7
    0x03, 0x42, 0x00, // BIT STRING, 66 bytes, 0 unused bits
];

/// A credential registered to an account in the tenant's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCredential {
    /// The credential ID the authenticator reports (raw bytes, not base64).
    pub id: Vec<u8>,
    /// The credential's ES256 public key.
    pub public_key: VerifyingKey,
    /// The highest signature counter seen so far for this credential.
    pub sign_count: u32,
    /// The user handle (WebAuthn `user.id`) bound to this credential.
    pub user_handle: Vec<u8>,
}

/// What the relying party expects for this ceremony.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expected<'a> {
    /// The RP ID whose SHA-256 must appear at the start of the authenticator data.
    pub rp_id: &'a str,
    /// Origins allowed in clientDataJSON (exact string match, e.g. `https://login.example:8443`).
    pub origins: &'a [String],
    /// The challenge the tenant issued for this ceremony (raw bytes).
    pub challenge: &'a [u8],
    /// Whether the UV (user verified) flag is mandatory.
    pub require_user_verification: bool,
}

/// What the browser posted back (already base64url-decoded by the caller).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Assertion<'a> {
    /// `PublicKeyCredential.rawId`.
    pub credential_id: &'a [u8],
    /// `AuthenticatorAssertionResponse.authenticatorData`.
    pub authenticator_data: &'a [u8],
    /// `AuthenticatorAssertionResponse.clientDataJSON`, exactly as sent.
    pub client_data_json: &'a [u8],
    /// `AuthenticatorAssertionResponse.signature`: an ASN.1 DER ECDSA signature.
    pub signature: &'a [u8],
    /// `AuthenticatorAssertionResponse.userHandle`, if the browser sent one.
    pub user_handle: Option<&'a [u8]>,
}

/// The outcome of a successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    /// The signature counter from the authenticator data; store it as the
    /// credential's new `sign_count`.
    pub sign_count: u32,
    /// Whether the UP flag was set (always true on success).
    pub user_present: bool,
    /// Whether the UV flag was set.
    pub user_verified: bool,
    /// The origin from clientDataJSON (one of the expected origins).
    pub origin: String,
}

/// Why an assertion was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum AssertionError {
    /// The assertion's credential ID is not the stored credential's ID.
    #[error("credential ID does not match the stored credential")]
    CredentialMismatch,
    /// clientDataJSON is not a JSON object of the expected shape.
    #[error("client data is not valid JSON client data: {0}")]
    ClientDataNotJson(String),
    /// clientDataJSON `type` is not `webauthn.get`.
    #[error("client data type is {0:?}, expected \"webauthn.get\"")]
    WrongType(String),
    /// clientDataJSON `challenge` is not the expected challenge (or not base64url).
    #[error("challenge does not match the one issued")]
    ChallengeMismatch,
    /// clientDataJSON `origin` is not one of the allowed origins.
    #[error("origin {0:?} is not allowed")]
    OriginNotAllowed(String),
    /// clientDataJSON says the request came from a cross-origin iframe.
    #[error("cross-origin assertions are not accepted")]
    CrossOrigin,
    /// Authenticator data is shorter than the 37-byte fixed prefix.
    #[error("authenticator data is {0} bytes, at least 37 are required")]
    AuthenticatorDataTooShort(usize),
    /// The authenticator data's rpIdHash is not SHA-256 of the expected RP ID.
    #[error("authenticator data rpIdHash does not match the RP ID")]
    RpIdHashMismatch,
    /// The UP (user present) flag is not set.
    #[error("user presence flag is not set")]
    UserNotPresent,
    /// User verification is required but the UV flag is not set.
    #[error("user verification is required but the UV flag is not set")]
    UserNotVerified,
    /// The signature is malformed or does not verify under the stored public key.
    #[error("assertion signature is invalid")]
    BadSignature,
    /// The signature counter did not increase: the authenticator may have been cloned.
    #[error(
        "signature counter did not increase (stored {stored}, received {received}); \
         the authenticator may have been cloned"
    )]
    SignCountNotIncreased {
        /// The counter stored for the credential.
        stored: u32,
        /// The counter in the assertion's authenticator data.
        received: u32,
    },
    /// The assertion's user handle is not the stored credential's user handle.
    #[error("user handle does not match the stored credential")]
    UserHandleMismatch,
}

/// Errors from the key-material helpers. Messages never contain key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// A freshly generated key could not be encoded as PKCS#8.
    #[error("could not encode the generated P-256 key as PKCS#8 DER")]
    Encode,
    /// The input is not a PKCS#8 DER encoded EC P-256 private key.
    #[error("not a valid PKCS#8 DER encoded EC P-256 private key")]
    InvalidPkcs8,
}

/// The members of `CollectedClientData` the tenant checks. Unknown members
/// (`crossOrigin` aside, e.g. Chromium's `other_keys_can_be_added_here`,
/// `topOrigin`, `tokenBinding`) are ignored; duplicated known members are
/// rejected by serde.
#[derive(Deserialize)]
struct CollectedClientData {
    #[serde(rename = "type")]
    ty: String,
    challenge: String,
    origin: String,
    #[serde(rename = "crossOrigin", default)]
    cross_origin: Option<bool>,
}

/// Verifies a WebAuthn assertion (WebAuthn L2 §7.2) against the credential
/// stored for the account.
///
/// Checks, in order: credential ID, user handle (if sent), clientDataJSON
/// (`type`, `challenge`, `origin`, `crossOrigin`), authenticator data
/// (length, rpIdHash, UP, UV when required), the ES256 signature over
/// `authenticatorData ‖ SHA-256(clientDataJSON)`, and the signature counter.
/// On success the caller should persist [`Verified::sign_count`].
pub(crate) fn verify_assertion(
    expected: &Expected,
    stored: &StoredCredential,
    assertion: &Assertion,
) -> Result<Verified, AssertionError> {
    // §7.2 steps 5–6: the credential and its user.
    if assertion.credential_id != stored.id.as_slice() {
        return Err(AssertionError::CredentialMismatch);
    }
    if let Some(handle) = assertion.user_handle
        && handle != stored.user_handle.as_slice()
    {
        return Err(AssertionError::UserHandleMismatch);
    }

    // Steps 10–14: the client data, parsed (never byte-compared).
    let client_data = parse_client_data(assertion.client_data_json)?;
    if client_data.ty != CLIENT_DATA_TYPE_GET {
        return Err(AssertionError::WrongType(client_data.ty));
    }
    let challenge = URL_SAFE_NO_PAD
        .decode(client_data.challenge.as_bytes())
        .map_err(|_| AssertionError::ChallengeMismatch)?;
    if !crate::secret::constant_time_eq(&challenge, expected.challenge) {
        return Err(AssertionError::ChallengeMismatch);
    }
    if !expected.origins.contains(&client_data.origin) {
        return Err(AssertionError::OriginNotAllowed(client_data.origin));
    }
    if client_data.cross_origin == Some(true) {
        return Err(AssertionError::CrossOrigin);
    }

    // Steps 15–17: the authenticator data.
    let auth_data = assertion.authenticator_data;
    if auth_data.len() < AUTH_DATA_MIN_LEN {
        return Err(AssertionError::AuthenticatorDataTooShort(auth_data.len()));
    }
    let rp_id_hash = Sha256::digest(expected.rp_id.as_bytes());
    if auth_data[..32] != rp_id_hash[..] {
        return Err(AssertionError::RpIdHashMismatch);
    }
    let flags = auth_data[32];
    let user_present = flags & FLAG_USER_PRESENT != 0;
    let user_verified = flags & FLAG_USER_VERIFIED != 0;
    if !user_present {
        return Err(AssertionError::UserNotPresent);
    }
    if expected.require_user_verification && !user_verified {
        return Err(AssertionError::UserNotVerified);
    }

    // Steps 19–20: the signature over authenticatorData ‖ SHA-256(clientDataJSON).
    let signature =
        Signature::from_der(assertion.signature).map_err(|_| AssertionError::BadSignature)?;
    let client_data_hash = Sha256::digest(assertion.client_data_json);
    let mut signed = Vec::with_capacity(auth_data.len() + client_data_hash.len());
    signed.extend_from_slice(auth_data);
    signed.extend_from_slice(&client_data_hash);
    stored
        .public_key
        .verify(&signed, &signature)
        .map_err(|_| AssertionError::BadSignature)?;

    // Step 21: the signature counter.
    let received = u32::from_be_bytes([auth_data[33], auth_data[34], auth_data[35], auth_data[36]]);
    if (stored.sign_count != 0 || received != 0) && received <= stored.sign_count {
        return Err(AssertionError::SignCountNotIncreased {
            stored: stored.sign_count,
            received,
        });
    }

    Ok(Verified {
        sign_count: received,
        user_present,
        user_verified,
        origin: client_data.origin,
    })
}

/// Parses clientDataJSON, which must be a JSON object (not, say, an array
/// that serde would also map onto the struct).
fn parse_client_data(json: &[u8]) -> Result<CollectedClientData, AssertionError> {
    let first = json
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(AssertionError::ClientDataNotJson(
            "expected a JSON object".to_owned(),
        ));
    }
    serde_json::from_slice(json).map_err(|e| AssertionError::ClientDataNotJson(e.to_string()))
}

/// Entra ID's WebAuthn user handle (`user.id`) for an account: the ASCII
/// bytes `ON:`, then the tenant's GUID in .NET byte order (the first three
/// groups little-endian, as `Guid.ToByteArray` writes them), then the
/// SHA-256 of the user's object GUID in that same byte order. 51 bytes;
/// base64url on the wire.
///
/// A security key registered in Entra holds this handle, so the rehearsal
/// tenant expects it and its virtual and soft credentials carry it: a
/// rehearsal proves the flow with the handle a real key returns.
pub fn entra_user_handle(tenant_id: &str, object_id: &str) -> Result<Vec<u8>, UserHandleError> {
    let parse = |what: &'static str, v: &str| {
        uuid::Uuid::parse_str(v.trim()).map_err(|_| UserHandleError {
            what,
            value: v.to_owned(),
        })
    };
    let tenant = parse("tenant id", tenant_id)?;
    let object = parse("object id", object_id)?;
    let mut out = Vec::with_capacity(3 + 16 + 32);
    out.extend_from_slice(b"ON:");
    out.extend_from_slice(&tenant.to_bytes_le());
    out.extend_from_slice(&Sha256::digest(object.to_bytes_le()));
    Ok(out)
}

/// A tenant or object id that is not a GUID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the {what} `{value}` is not a GUID (8-4-4-4-12 hex digits)")]
pub struct UserHandleError {
    what: &'static str,
    value: String,
}

/// Generates a fresh P-256 private key from the OS random number generator
/// and returns it as PKCS#8 DER: the form WebDriver's "Add Credential"
/// command expects (base64url-encoded) in `privateKey`.
///
/// The returned bytes are secret; callers should wrap them (e.g. in
/// `secrecy::SecretSlice`) and never log them.
pub fn generate_p256_pkcs8() -> Result<Vec<u8>, KeyError> {
    let signing_key = SigningKey::random(&mut OsRng);
    let document = signing_key.to_pkcs8_der().map_err(|_| KeyError::Encode)?;
    Ok(document.as_bytes().to_vec())
}

/// Derives the ES256 public key from a PKCS#8 DER EC P-256 private key
/// (e.g. one made by [`generate_p256_pkcs8`]), for the tenant's directory.
pub(crate) fn public_key_from_pkcs8(der: &[u8]) -> Result<VerifyingKey, KeyError> {
    let signing_key = SigningKey::from_pkcs8_der(der).map_err(|_| KeyError::InvalidPkcs8)?;
    Ok(*signing_key.verifying_key())
}

#[cfg(test)]
/// Encodes a public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) block
/// with LF line endings, identical to `p256::pkcs8::EncodePublicKey::to_public_key_pem`
/// but infallible: a P-256 SPKI is a fixed prefix plus the uncompressed point.
pub(crate) fn public_key_to_spki_pem(key: &VerifyingKey) -> String {
    let point = key.to_encoded_point(false);
    let mut der = Vec::with_capacity(P256_SPKI_PREFIX.len() + point.len());
    der.extend_from_slice(&P256_SPKI_PREFIX);
    der.extend_from_slice(point.as_bytes());
    let body = base64::engine::general_purpose::STANDARD.encode(&der);

    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for (i, c) in body.chars().enumerate() {
        if i > 0 && i % 64 == 0 {
            pem.push('\n');
        }
        pem.push(c);
    }
    pem.push_str("\n-----END PUBLIC KEY-----\n");
    pem
}

#[cfg(test)]
mod tests;
