//! Secret references: `env:NAME` or `file:PATH`, never the secret inline.
//!
//! Config files name where a secret lives; the value is read only when a
//! drill needs it and is held in a [`SecretString`], whose `Debug` prints
//! `[REDACTED]`. Nothing here ever formats a secret value into an error.

use std::fmt;
use std::path::PathBuf;

use secrecy::SecretString;

/// Where a secret lives.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the glassdrill process.
    Env(String),
    /// A file (systemd credentials, a mounted secret); trailing newlines are
    /// trimmed.
    File(PathBuf),
}

/// Why a secret reference is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The text is not `env:NAME` or `file:PATH`.
    #[error(
        "secrets are given by reference, not inline: write `env:NAME` (an environment variable) or `file:PATH` (a file readable only by glassdrill)"
    )]
    NotAReference,
    /// `env:` with an empty or odd name.
    #[error(
        "`env:` needs a variable name made of letters, digits and `_`, like `env:GLASSDRILL_CLIENT_SECRET`"
    )]
    BadEnvName,
    /// `file:` with an empty path.
    #[error("`file:` needs a path, like `file:/etc/glassdrill/client-secret`")]
    EmptyPath,
    /// The variable is not set.
    #[error(
        "environment variable {0} is not set: export it for the glassdrill process (for systemd, use an EnvironmentFile or LoadCredential)"
    )]
    EnvUnset(String),
    /// The file cannot be read.
    #[error(
        "secret file {path} cannot be read ({reason}): create it, readable only by the glassdrill user (chmod 600)"
    )]
    FileUnreadable {
        /// The file.
        path: String,
        /// The OS error, which never contains the content.
        reason: String,
    },
    /// The secret is empty.
    #[error("secret from {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Parses `env:NAME` or `file:PATH`. Anything else is refused, so a
    /// pasted secret never sits in a config file.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        if let Some(name) = text.strip_prefix("env:") {
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            return if ok {
                Ok(Self::Env(name.to_owned()))
            } else {
                Err(SecretError::BadEnvName)
            };
        }
        if let Some(path) = text.strip_prefix("file:") {
            return if path.is_empty() {
                Err(SecretError::EmptyPath)
            } else {
                Ok(Self::File(PathBuf::from(path)))
            };
        }
        Err(SecretError::NotAReference)
    }

    /// Reads the secret now.
    pub(crate) fn resolve(&self) -> Result<SecretString, SecretError> {
        let value = match self {
            Self::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvUnset(name.clone()))?
            }
            Self::File(path) => std::fs::read_to_string(path)
                .map_err(|e| SecretError::FileUnreadable {
                    path: path.display().to_string(),
                    reason: e.kind().to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(SecretString::from(value))
    }

    /// Reads raw bytes (for key files such as a PKCS#8 credential).
    pub(crate) fn resolve_bytes(&self) -> Result<secrecy::SecretSlice<u8>, SecretError> {
        let bytes = match self {
            Self::Env(name) => std::env::var(name)
                .map_err(|_| SecretError::EnvUnset(name.clone()))?
                .into_bytes(),
            Self::File(path) => std::fs::read(path).map_err(|e| SecretError::FileUnreadable {
                path: path.display().to_string(),
                reason: e.kind().to_string(),
            })?,
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(bytes.into())
    }
}

/// Displays the reference (never the value): `env:NAME` / `file:PATH`.
impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `n` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    b
}

/// A random token of `n` bytes, base64url without padding: webhook path
/// tokens, flow tokens, client secrets of the rehearsal tenant.
pub(crate) fn random_token(n: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// Compares secrets without returning early at the first difference, so
/// response timing does not reveal how much of a guess was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn parses_references_and_refuses_inline_values() {
        assert_eq!(
            SecretRef::parse("env:A_B1"),
            Ok(SecretRef::Env("A_B1".into()))
        );
        assert_eq!(
            SecretRef::parse("file:/x/y"),
            Ok(SecretRef::File("/x/y".into()))
        );
        assert_eq!(SecretRef::parse("hunter2"), Err(SecretError::NotAReference));
        assert_eq!(SecretRef::parse("env:"), Err(SecretError::BadEnvName));
        assert_eq!(SecretRef::parse("env:A-B"), Err(SecretError::BadEnvName));
        assert_eq!(SecretRef::parse("file:"), Err(SecretError::EmptyPath));
    }

    #[test]
    fn file_secret_is_trimmed_and_errors_never_echo_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "s3cret\n").unwrap();
        let r = SecretRef::File(path.clone());
        assert_eq!(r.resolve().unwrap().expose_secret(), "s3cret");
        std::fs::write(&path, "").unwrap();
        let err = r.resolve().unwrap_err().to_string();
        assert!(err.contains("empty"));
        let missing = SecretRef::File(dir.path().join("nope"));
        let err = missing.resolve().unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn tokens_are_random_and_comparisons_exact() {
        assert_ne!(random_token(16), random_token(16));
        assert_eq!(random_token(24).len(), 32);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn debug_shows_the_reference_only() {
        let r = SecretRef::Env("GD_TEST_SECRET".into());
        assert_eq!(format!("{r:?}"), "env:GD_TEST_SECRET");
    }
}
