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
    /// A file (a mounted secret); trailing newlines are trimmed.
    File(PathBuf),
    /// A systemd credential (`LoadCredential=NAME:…` in the unit): the file
    /// `$CREDENTIALS_DIRECTORY/NAME`, which systemd makes readable by the
    /// service alone.
    Credential(String),
}

/// Why a secret reference is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// The text is not `env:NAME` or `file:PATH`.
    #[error(
        "secrets are given by reference, not inline: write `env:NAME` (an environment variable), `file:PATH` (a file readable only by glassdrill) or `credential:NAME` (a systemd credential)"
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
    /// `credential:` with an empty or odd name.
    #[error(
        "`credential:` needs the name given to systemd's LoadCredential= (letters, digits, `_`, `-`, `.`), like `credential:smtp-password`"
    )]
    BadCredentialName,
    /// No systemd credentials directory.
    #[error(
        "credential:{0} needs systemd's credentials ($CREDENTIALS_DIRECTORY is not set): add LoadCredential={0}:/path/to/file to the unit, or use a file: reference"
    )]
    NoCredentials(String),
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
    /// A `file:` secret that is not a regular file (a FIFO, a device, a
    /// directory): reading it could hang or never end.
    #[error(
        "secret file {0} is not a regular file: point the reference at a file holding only the secret"
    )]
    NotAFile(String),
    /// A `file:` secret owned by another user.
    #[error(
        "secret file {path} is owned by uid {owner}, not by the user glassdrill runs as (uid {me}): chown it to that user"
    )]
    WrongOwner {
        /// The file.
        path: String,
        /// Its owner.
        owner: u32,
        /// Who glassdrill runs as.
        me: u32,
    },
    /// A `file:` secret readable or writable by group or others.
    #[error(
        "secret file {path} has mode {mode:04o}: other users can read it; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A `file:` secret far larger than any secret.
    #[error(
        "secret file {path} is larger than {max} bytes; a secret reference must name a file holding only the secret"
    )]
    TooLarge {
        /// The file.
        path: String,
        /// The limit.
        max: u64,
    },
}

impl SecretError {
    /// The secret is there but unsafe to use (not a private regular file of
    /// this user, or far too large), as opposed to not provisioned yet.
    pub fn is_unsafe(&self) -> bool {
        matches!(
            self,
            Self::NotAFile(_)
                | Self::WrongOwner { .. }
                | Self::TooOpen { .. }
                | Self::TooLarge { .. }
        )
    }
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
        if let Some(name) = text.strip_prefix("credential:") {
            let ok = !name.is_empty()
                && !name.starts_with('.')
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            return if ok {
                Ok(Self::Credential(name.to_owned()))
            } else {
                Err(SecretError::BadCredentialName)
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
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        let value = match self {
            Self::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvUnset(name.clone()))?
            }
            Self::File(_) | Self::Credential(_) => String::from_utf8(self.read_file()?)
                .map_err(|_| SecretError::FileUnreadable {
                    path: self.to_string(),
                    reason: "not UTF-8 text".into(),
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
            Self::File(_) | Self::Credential(_) => self.read_file()?,
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(bytes.into())
    }
}

impl SecretRef {
    /// Reads a `file:` or `credential:` secret.
    fn read_file(&self) -> Result<Vec<u8>, SecretError> {
        match self {
            Self::File(path) => read_secret_file(path, true),
            Self::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentials(name.clone()))?;
                // systemd owns the directory and the file (mode 0400, the
                // service's user or root): ownership is systemd's to decide.
                read_secret_file(&PathBuf::from(dir).join(name), false)
            }
            Self::Env(_) => Ok(Vec::new()),
        }
    }
}

/// Displays the reference (never the value): `env:NAME` / `file:PATH`.
impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Credential(name) => write!(f, "credential:{name}"),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Largest secret file read (a client secret, a token, a PKCS#8 key are
/// all well under this).
pub const MAX_SECRET_FILE: u64 = 16 * 1024;

/// Reads a `file:` secret, refusing anything that is not a small regular
/// file owned by this user and private to it. The file is checked after
/// it is opened (on the open file), so it cannot be swapped in between.
fn read_secret_file(path: &std::path::Path, check_owner: bool) -> Result<Vec<u8>, SecretError> {
    use crate::support::fs::{OpenError, ReadCappedError, open_regular, read_to_cap};
    use std::os::unix::fs::MetadataExt as _;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| SecretError::FileUnreadable {
        path: shown.clone(),
        reason: e.kind().to_string(),
    };
    let (f, meta) = open_regular(path).map_err(|e| match e {
        OpenError::Io(e) => unreadable(e),
        OpenError::NotAFile => SecretError::NotAFile(shown.clone()),
    })?;
    let me = nix::unistd::geteuid().as_raw();
    if check_owner && meta.uid() != me {
        return Err(SecretError::WrongOwner {
            path: shown,
            owner: meta.uid(),
            me,
        });
    }
    if check_owner && meta.mode() & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: shown,
            mode: meta.mode() & 0o7777,
        });
    }
    read_to_cap(f, MAX_SECRET_FILE).map_err(|e| match e {
        ReadCappedError::Io(e) => unreadable(e),
        ReadCappedError::TooLarge => SecretError::TooLarge {
            path: shown.clone(),
            max: MAX_SECRET_FILE,
        },
    })
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
        assert_eq!(
            SecretRef::parse("credential:smtp-password"),
            Ok(SecretRef::Credential("smtp-password".into()))
        );
        assert_eq!(
            SecretRef::parse("credential:../x"),
            Err(SecretError::BadCredentialName)
        );
        assert_eq!(
            SecretRef::parse("credential:"),
            Err(SecretError::BadCredentialName)
        );
    }

    fn private(path: &std::path::Path, content: &[u8]) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn file_secrets_must_be_small_private_regular_files() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        private(&path, b"s3cret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretRef::File(path.clone()).resolve().unwrap_err();
        assert!(
            matches!(err, SecretError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"));

        private(&path, &vec![b'x'; 20_000]);
        let err = SecretRef::File(path.clone()).resolve_bytes().unwrap_err();
        assert!(matches!(err, SecretError::TooLarge { .. }), "{err}");

        // /dev/zero would read until memory runs out; a FIFO would hang.
        let err = SecretRef::File("/dev/zero".into())
            .resolve_bytes()
            .unwrap_err();
        assert!(
            matches!(
                err,
                SecretError::NotAFile(_) | SecretError::WrongOwner { .. }
            ),
            "{err}"
        );
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = SecretRef::File(fifo).resolve().unwrap_err();
        assert!(matches!(err, SecretError::NotAFile(_)), "{err}");
        let err = SecretRef::File(dir.path().to_path_buf())
            .resolve()
            .unwrap_err();
        assert!(matches!(err, SecretError::NotAFile(_)), "{err}");
    }

    #[test]
    fn file_secret_is_trimmed_and_errors_never_echo_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        private(&path, b"s3cret\n");
        let r = SecretRef::File(path.clone());
        assert_eq!(r.resolve().unwrap().expose_secret(), "s3cret");
        private(&path, b"");
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
