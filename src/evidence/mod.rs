//! Signed evidence bundles: keygen, bundle writing and offline verification.
//!
//! A bundle is a directory `evidence/<drill>/<run-id>/` holding the drill's
//! evidence files (`drill.json`, `signin.json`, `alerts/001.json`,
//! `screenshots/01-username.png`, `report.html`, ...) plus three files that
//! make it checkable by an auditor with nothing but OpenSSH and coreutils:
//!
//! - `allowed_signers`: one line in ssh-keygen's ALLOWED SIGNERS format,
//!   `<signer> namespaces="glassdrill-evidence-v1" ssh-ed25519 AAAA...`.
//! - `SHA256SUMS`: `<64 lowercase hex>  <relative path>\n` for every file in
//!   the bundle except `SHA256SUMS` and `SHA256SUMS.sig` (so it covers
//!   `allowed_signers` too), sorted bytewise by path.
//! - `SHA256SUMS.sig`: an SSH signature (SSHSIG, Ed25519, hash sha512,
//!   namespace [`NAMESPACE`]) over the exact bytes of `SHA256SUMS`, armored
//!   exactly as `ssh-keygen -Y sign` writes it.
//!
//! The auditor runs, in the bundle directory:
//!
//! ```text
//! ssh-keygen -Y verify -f allowed_signers -I <signer> -n glassdrill-evidence-v1 \
//!     -s SHA256SUMS.sig < SHA256SUMS
//! sha256sum -c --strict SHA256SUMS
//! ```
//!
//! or [`verify_bundle`], which does both and also rejects files that are in
//! the bundle but not in `SHA256SUMS` (which `sha256sum -c` cannot notice).
//!
//! This module never re-serialises what it signs: every hash is taken over
//! the byte slice that was written to disk, and the signature is made over
//! the very `SHA256SUMS` bytes that are written. Private key material never
//! appears in errors or `Debug` output.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use sha2::{Digest, Sha256};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The SSHSIG namespace every bundle signature is made in.
///
/// A namespace binds a signature to one purpose: a signature made by the
/// same key for, say, git commits (`git`) or files (`file`) can never be
/// passed off as a glassdrill evidence signature, and vice versa.
pub(crate) const NAMESPACE: &str = "glassdrill-evidence-v1";

/// Name of the manifest file at the top of a bundle.
const MANIFEST: &str = "SHA256SUMS";
/// Name of the manifest's signature file at the top of a bundle.
const SIGNATURE: &str = "SHA256SUMS.sig";
/// Name of the bundle's own allowed signers file.
const ALLOWED_SIGNERS: &str = "allowed_signers";

/// Mode for every file glassdrill writes that holds evidence or a secret,
/// and for every directory it creates.
use crate::support::fs::{PRIVATE_DIR as DIR_MODE, PRIVATE_FILE as FILE_MODE};
/// Mode for the public half of a key: it is not secret, and ssh tooling
/// conventionally leaves `.pub` files world-readable.
const PUBLIC_KEY_MODE: u32 = 0o644;

/// Largest private key file `load` reads. An OpenSSH Ed25519 key is about
/// 400 bytes; anything huge is not a key and is refused before reading.
const MAX_KEY_FILE: u64 = 64 * 1024;
/// Largest `SHA256SUMS.sig` the verifier reads (real ones are ~300 bytes).
const MAX_SIGNATURE_FILE: u64 = 64 * 1024;
/// Largest `allowed_signers` file the verifier reads.
const MAX_ALLOWED_SIGNERS_FILE: u64 = 4 * 1024 * 1024;
/// Largest `SHA256SUMS` the verifier reads (about 300k listed files).
const MAX_MANIFEST_FILE: u64 = 64 * 1024 * 1024;
/// Longest drill id, run id or path component accepted.
const MAX_COMPONENT_LEN: usize = 255;
/// Longest signer principal accepted.
const MAX_SIGNER_LEN: usize = 256;
/// Longest key comment accepted.
const MAX_COMMENT_LEN: usize = 1024;

/// Everything that can go wrong when creating or loading a signing key or
/// writing a bundle.
///
/// Messages are shown to the operator as they are: each names the path
/// involved and, where there is one, the command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The signing key file does not exist.
    #[error(
        "signing key {} not found: create one with `glassdrill keygen --out {}`",
        path.display(),
        path.display()
    )]
    KeyNotFound {
        /// Where the key was looked for.
        path: PathBuf,
    },

    /// `generate` was asked to write over a key (or its `.pub`) that exists.
    #[error(
        "refusing to overwrite existing key {}: move it aside or choose another path",
        path.display()
    )]
    KeyExists {
        /// The file that already exists.
        path: PathBuf,
    },

    /// The key path exists but is a directory or other non-regular file.
    #[error("signing key {} is not a regular file", path.display())]
    KeyNotAFile {
        /// The offending path.
        path: PathBuf,
    },

    /// The key file can be read by group or others.
    #[error(
        "key {} has mode {mode:04o}; run `chmod 600 {}` (a signing key must be readable by its owner only)",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },

    /// The key file is protected by a passphrase.
    #[error(
        "key {} is encrypted with a passphrase, but drills sign unattended: create a dedicated \
         unencrypted key with `glassdrill keygen --out <new path>`, or remove the passphrase \
         with `ssh-keygen -p -f {}`",
        path.display(),
        path.display()
    )]
    KeyEncrypted {
        /// The key file.
        path: PathBuf,
    },

    /// The key is not an Ed25519 key.
    #[error(
        "key {} is an {algorithm} key, but evidence is signed with Ed25519 only: create one with \
         `glassdrill keygen --out <new path>`",
        path.display()
    )]
    KeyWrongAlgorithm {
        /// The key file.
        path: PathBuf,
        /// The key's algorithm name, as OpenSSH spells it.
        algorithm: String,
    },

    /// The key file could not be parsed as an OpenSSH private key.
    #[error(
        "{} is not an OpenSSH private key ({why}): create one with `glassdrill keygen --out <new path>`",
        path.display()
    )]
    KeyMalformed {
        /// The key file.
        path: PathBuf,
        /// What the parser said (never includes key material).
        why: String,
    },

    /// A key comment that cannot be written to a `.pub` line.
    #[error("invalid key comment: {why}")]
    InvalidComment {
        /// What is wrong with it.
        why: String,
    },

    /// Key generation, encoding or signing failed inside the SSH library.
    #[error("{action} failed: {why}")]
    Crypto {
        /// What was being done, e.g. "signing SHA256SUMS".
        action: &'static str,
        /// What the library said.
        why: String,
    },

    /// A filesystem operation failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "write", "create directory".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A drill id or run id that is not a safe single path component.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidId {
        /// "drill id" or "run id".
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        why: &'static str,
    },

    /// The final bundle directory already exists.
    #[error(
        "evidence bundle {} already exists: bundles are never overwritten, use a new run id",
        path.display()
    )]
    BundleExists {
        /// The existing bundle directory.
        path: PathBuf,
    },

    /// A staging directory from an earlier, interrupted run is in the way.
    #[error(
        "staging directory {} already exists: an earlier run with this id was interrupted; \
         inspect it, then remove it with `rm -r {}`",
        path.display(),
        path.display()
    )]
    StagingExists {
        /// The leftover staging directory.
        path: PathBuf,
    },

    /// A relative path given to [`BundleWriter::add`] is unsafe or unusable.
    #[error("invalid bundle path {path:?}: {why}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// Why it was rejected.
        why: &'static str,
    },

    /// A relative path that names one of the files the bundle itself owns.
    #[error(
        "bundle path {path:?} is reserved: SHA256SUMS, SHA256SUMS.sig and allowed_signers are \
         written by finish()"
    )]
    ReservedPath {
        /// The rejected path.
        path: String,
    },

    /// The same relative path was added twice.
    #[error("bundle path {path:?} was already added: each file can be added once")]
    DuplicatePath {
        /// The repeated path.
        path: String,
    },

    /// A path that is a file in one `add` and a directory in another.
    #[error(
        "bundle path {path:?} conflicts with {other:?}: one would be both a file and a directory"
    )]
    PathConflict {
        /// The rejected path.
        path: String,
        /// The earlier path it conflicts with.
        other: String,
    },

    /// A record could not be turned into bytes.
    #[error("cannot serialise {what}: {why}")]
    Serialize {
        /// Which file.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// A signer principal that cannot be written to `allowed_signers` as an
    /// exact (non-pattern) principal.
    #[error("invalid signer {signer:?}: {why}")]
    InvalidSigner {
        /// The rejected principal.
        signer: String,
        /// Why it was rejected.
        why: &'static str,
    },
}

/// Builds an [`EvidenceError::Io`]-making closure for `map_err`.
fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EvidenceError + use<> {
    let path = path.to_path_buf();
    move |source| EvidenceError::Io {
        action,
        path,
        source,
    }
}

/// `<path>.pub`, the conventional place of a private key's public half.
pub(crate) fn public_key_path(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

pub(crate) use crate::support::fs::{ReadCappedError, parent_dir, read_capped};

/// Checks a key comment: one line, bounded.
pub(crate) fn validate_comment(comment: &str) -> Result<(), EvidenceError> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(EvidenceError::InvalidComment {
            why: format!("longer than {MAX_COMMENT_LEN} bytes"),
        });
    }
    if comment.chars().any(char::is_control) {
        return Err(EvidenceError::InvalidComment {
            why: "contains a control character (e.g. a newline), which would break the .pub line"
                .to_string(),
        });
    }
    Ok(())
}

/// Creates `dir` and missing parents, mode 0700.
pub(crate) fn create_dirs(dir: &Path) -> Result<(), EvidenceError> {
    crate::support::fs::create_private_dirs(dir).map_err(io_err("create directory", dir))
}

/// fsyncs a directory, making the entries created or renamed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), EvidenceError> {
    crate::support::fs::sync_dir(dir).map_err(io_err("fsync directory", dir))
}

/// Writes a new key file atomically; an existing one is never replaced.
pub(crate) fn write_new_file_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), EvidenceError> {
    use crate::support::fs::{Existing, write_atomic};
    match write_atomic(path, bytes, mode, Existing::Refuse) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(EvidenceError::KeyExists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_err("write", path)(e)),
    }
}

/// Creates a new bundle file (mode 0600, fsynced). Bundle files are not
/// renamed one by one: the whole staging directory is renamed into place
/// at the end, and that rename is the atomic step.
pub(crate) fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), EvidenceError> {
    crate::support::fs::write_new_private(path, bytes).map_err(io_err("create", path))
}

pub(crate) use crate::support::hash::sha256_hex;

/// Checks that a drill id or run id is one safe path component.
///
/// Only ASCII letters, digits and `-_.+@` are allowed, so the id can be
/// pasted into a shell or a Windows file system by an auditor, and a
/// leading `.` is refused so that ids never collide with the hidden
/// `.<run_id>.partial` staging directories.
pub(crate) fn validate_id(what: &'static str, value: &str) -> Result<(), EvidenceError> {
    crate::support::ids::check(value).map_err(|why| EvidenceError::InvalidId {
        what,
        value: value.to_string(),
        why,
    })
}

/// Checks a bundle-relative path as used in `SHA256SUMS`: '/'-separated,
/// relative, no empty, `.` or `..` components, and nothing that
/// `sha256sum` would escape (backslash, newline) or that is otherwise a
/// control character.
pub(crate) fn validate_rel_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("must not be empty");
    }
    if path.starts_with('/') {
        return Err("must be relative, not absolute");
    }
    if path.contains('\\') {
        return Err("must not contain a backslash (use '/' to separate directories)");
    }
    if path.chars().any(char::is_control) {
        return Err("must not contain a newline or other control character");
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err("must not have empty components (\"//\" or a trailing '/')"),
            "." => return Err("must not have '.' components"),
            ".." => return Err("must not have '..' components"),
            c if c.len() > MAX_COMPONENT_LEN => {
                return Err("has a component longer than 255 bytes");
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks that `signer` can be written to `allowed_signers` as one exact
/// principal: no whitespace or quotes (field separators), no commas (list
/// separator), no `*`, `?` or `!` (pattern syntax).
pub(crate) fn validate_signer(signer: &str) -> Result<(), EvidenceError> {
    let fail = |why| {
        Err(EvidenceError::InvalidSigner {
            signer: signer.to_string(),
            why,
        })
    };
    if signer.is_empty() {
        return fail("must not be empty");
    }
    if signer.len() > MAX_SIGNER_LEN {
        return fail("longer than 256 bytes");
    }
    if !signer
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"@._+-".contains(&b))
    {
        return fail("only ASCII letters, digits and @ . _ + - are allowed");
    }
    if signer.starts_with('-') {
        return fail("must not start with '-'");
    }
    Ok(())
}

mod allowed_signers;
mod bundle;
/// The controls a break-glass drill evidences, by default (`[evidence]
/// controls` replaces them).
pub const DEFAULT_CONTROLS: &[&str] = &[
    "NIST SP 800-53 CP-4 (contingency plan testing)",
    "NIST SP 800-53 AC-2 (account management: emergency accounts)",
    "ISO/IEC 27001:2022 A.5.28 (collection of evidence)",
    "ISO/IEC 27001:2022 A.8.15 (logging)",
    "CIS Microsoft 365 Foundations: emergency access accounts defined and monitored",
];

/// `text` (allowed_signers lines) in a private temporary file, removed on
/// drop: the pinned trust a verification is told to use.
pub fn pinned_allowed_signers(text: &str) -> io::Result<tempfile::NamedTempFile> {
    use std::io::Write as _;
    let mut f = tempfile::Builder::new()
        .prefix(".glassdrill-allowed-signers-")
        .tempfile()?;
    f.write_all(text.as_bytes())?;
    Ok(f)
}

pub mod export;
mod keys;
pub mod log;
mod manifest;
pub mod recover;
pub mod report;
#[cfg(test)]
mod testutil;
mod verify;

pub(crate) use allowed_signers::*;
pub use bundle::*;
pub use keys::*;
pub(crate) use manifest::*;
pub use verify::*;
