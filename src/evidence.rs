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
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use sha2::{Digest, Sha256};
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// The SSHSIG namespace every bundle signature is made in.
///
/// A namespace binds a signature to one purpose: a signature made by the
/// same key for, say, git commits (`git`) or files (`file`) can never be
/// passed off as a glassdrill evidence signature, and vice versa.
pub const NAMESPACE: &str = "glassdrill-evidence-v1";

/// Name of the manifest file at the top of a bundle.
const MANIFEST: &str = "SHA256SUMS";
/// Name of the manifest's signature file at the top of a bundle.
const SIGNATURE: &str = "SHA256SUMS.sig";
/// Name of the bundle's own allowed signers file.
const ALLOWED_SIGNERS: &str = "allowed_signers";

/// Mode for every file glassdrill writes that holds evidence or a secret.
const FILE_MODE: u32 = 0o600;
/// Mode for every directory glassdrill creates.
const DIR_MODE: u32 = 0o700;
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

/// An Ed25519 SSH key that signs bundles, together with the file it came
/// from.
///
/// `Debug` prints the path and fingerprint only, so a key can be logged or
/// put in an error without leaking it.
pub struct SigningKey {
    key: PrivateKey,
    path: PathBuf,
    /// `ssh-ed25519 AAAA... comment`, computed once when the key is loaded
    /// so that the accessors below cannot fail.
    public_openssh: String,
    /// `SHA256:...`, computed once for the same reason.
    fingerprint: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("path", &self.path)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new Ed25519 key and writes it to `path` (OpenSSH private
    /// key format, mode 0600) and `<path>.pub` (OpenSSH public key line).
    ///
    /// Never overwrites: if either file exists, returns
    /// [`EvidenceError::KeyExists`]. Missing parent directories are created
    /// with mode 0700. Each file is written to a temporary file in the same
    /// directory, fsynced, and moved into place with a no-replace rename, so
    /// a crash leaves either no key or a complete one, and a key created
    /// concurrently by someone else is never clobbered.
    pub fn generate(path: &Path, comment: &str) -> Result<Self, EvidenceError> {
        validate_comment(comment)?;
        let pub_path = public_key_path(path);
        for p in [path, pub_path.as_path()] {
            match fs::symlink_metadata(p) {
                Ok(_) => {
                    return Err(EvidenceError::KeyExists {
                        path: p.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("inspect", p)(e)),
            }
        }
        let parent = parent_dir(path);
        create_dirs(&parent)?;

        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(|e| {
            EvidenceError::Crypto {
                action: "generating an Ed25519 key",
                why: e.to_string(),
            }
        })?;
        key.set_comment(comment);
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| EvidenceError::Crypto {
                action: "encoding the private key",
                why: e.to_string(),
            })?;
        let loaded = Self::from_private_key(key, path.to_path_buf())?;

        write_new_file_atomic(path, pem.as_bytes(), FILE_MODE)?;
        let mut pub_line = loaded.public_openssh.clone();
        pub_line.push('\n');
        write_new_file_atomic(&pub_path, pub_line.as_bytes(), PUBLIC_KEY_MODE)?;
        sync_dir(&parent)?;
        Ok(loaded)
    }

    /// Loads an OpenSSH private key from `path`.
    ///
    /// Refuses (with a message saying how to fix it) a missing file, a file
    /// readable by group or others (as ssh itself does: a signing key others
    /// can read proves nothing), a passphrase-protected key (drills run
    /// unattended, so there is nobody to type it), and any algorithm other
    /// than Ed25519.
    pub fn load(path: &Path) -> Result<Self, EvidenceError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(EvidenceError::KeyNotFound {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io_err("inspect", path)(e)),
        };
        if !meta.is_file() {
            return Err(EvidenceError::KeyNotAFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(EvidenceError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = read_capped(path, MAX_KEY_FILE).map_err(|e| match e {
            ReadCappedError::Io(source) => EvidenceError::Io {
                action: "read",
                path: path.to_path_buf(),
                source,
            },
            ReadCappedError::TooLarge => EvidenceError::KeyMalformed {
                path: path.to_path_buf(),
                why: format!("file is larger than {MAX_KEY_FILE} bytes"),
            },
        })?;
        let key = PrivateKey::from_openssh(&bytes).map_err(|e| EvidenceError::KeyMalformed {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        drop(bytes);
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(EvidenceError::KeyWrongAlgorithm {
                path: path.to_path_buf(),
                algorithm: key.algorithm().as_str().to_string(),
            });
        }
        if key.is_encrypted() {
            return Err(EvidenceError::KeyEncrypted {
                path: path.to_path_buf(),
            });
        }
        Self::from_private_key(key, path.to_path_buf())
    }

    /// Loads the key at `path`, or generates one there if no file exists.
    ///
    /// The `bool` is `true` when the key was created by this call, so the
    /// caller can tell the operator to publish the new public key. Any other
    /// problem with an existing key (permissions, encryption, ...) is an
    /// error, never a reason to make a new key.
    pub fn load_or_generate(path: &Path, comment: &str) -> Result<(Self, bool), EvidenceError> {
        match Self::load(path) {
            Ok(key) => Ok((key, false)),
            Err(EvidenceError::KeyNotFound { .. }) => Ok((Self::generate(path, comment)?, true)),
            Err(e) => Err(e),
        }
    }

    fn from_private_key(key: PrivateKey, path: PathBuf) -> Result<Self, EvidenceError> {
        let public_openssh = key
            .public_key()
            .to_openssh()
            .map_err(|e| EvidenceError::Crypto {
                action: "encoding the public key",
                why: e.to_string(),
            })?;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        Ok(Self {
            key,
            path,
            public_openssh,
            fingerprint,
        })
    }

    /// The private key file this key was loaded from or written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public key as one OpenSSH line: `ssh-ed25519 AAAA... comment`.
    pub fn public_key_openssh(&self) -> String {
        self.public_openssh.clone()
    }

    /// The public key's SHA-256 fingerprint as ssh-keygen prints it:
    /// `SHA256:<unpadded base64>`.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Signs `msg` in namespace [`NAMESPACE`] with hash sha512 and returns
    /// the armored signature (`-----BEGIN SSH SIGNATURE-----`, LF line
    /// endings, trailing newline): byte-for-byte what `ssh-keygen -Y sign`
    /// writes for the same key and message, since Ed25519 is deterministic.
    pub fn sign(&self, msg: &[u8]) -> Result<String, EvidenceError> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, msg)
            .map_err(|e| EvidenceError::Crypto {
                action: "signing",
                why: e.to_string(),
            })?;
        let mut pem = sig
            .to_pem(LineEnding::LF)
            .map_err(|e| EvidenceError::Crypto {
                action: "encoding the signature",
                why: e.to_string(),
            })?;
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        Ok(pem)
    }

    /// The public key without its comment, as written into
    /// `allowed_signers` (the comment is free text and has no business in a
    /// trust file).
    fn public_key_bare(&self) -> Result<String, EvidenceError> {
        PublicKey::new(self.key.public_key().key_data().clone(), "")
            .to_openssh()
            .map(|s| s.trim_end().to_string())
            .map_err(|e| EvidenceError::Crypto {
                action: "encoding the public key",
                why: e.to_string(),
            })
    }
}

/// `<path>.pub`, the conventional place of a private key's public half.
fn public_key_path(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn validate_comment(comment: &str) -> Result<(), EvidenceError> {
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

/// Creates `dir` and any missing parents with mode 0700. Existing
/// directories are left as they are.
fn create_dirs(dir: &Path) -> Result<(), EvidenceError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err("create directory", dir))
}

/// fsyncs a directory, making the entries created or renamed in it durable.
fn sync_dir(dir: &Path) -> Result<(), EvidenceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Writes `bytes` to a new file at `path`: temporary file in the same
/// directory, fsync, then a rename that fails instead of replacing an
/// existing `path`.
fn write_new_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), EvidenceError> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".glassdrill-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)
        .map_err(io_err("create a temporary file in", &dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("write", tmp.path()))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Err(EvidenceError::KeyExists {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(io_err("write", path)(e.error)),
    }
}

/// Creates `path`, which must not exist (no symlink is followed), writes
/// `bytes` to it with mode 0600 and fsyncs it.
///
/// Bundle files are written this way rather than via rename because the
/// whole staging directory is renamed into place at the end: that rename is
/// the atomic step.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), EvidenceError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err("create", path))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        // Best effort: a half-written file must not linger in the staging
        // directory; the write error is what gets reported.
        let _ = fs::remove_file(path);
        return Err(io_err("write", path)(e));
    }
    Ok(())
}

enum ReadCappedError {
    Io(io::Error),
    TooLarge,
}

/// Reads a whole file, refusing files larger than `cap` bytes.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadCappedError> {
    let f = File::open(path).map_err(ReadCappedError::Io)?;
    let mut buf = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(ReadCappedError::Io)?;
    if buf.len() as u64 > cap {
        return Err(ReadCappedError::TooLarge);
    }
    Ok(buf)
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks that a drill id or run id is one safe path component.
///
/// Only ASCII letters, digits and `-_.+@` are allowed, so the id can be
/// pasted into a shell or a Windows file system by an auditor, and a
/// leading `.` is refused so that ids never collide with the hidden
/// `.<run_id>.partial` staging directories.
fn validate_id(what: &'static str, value: &str) -> Result<(), EvidenceError> {
    let fail = |why| {
        Err(EvidenceError::InvalidId {
            what,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() {
        return fail("must not be empty");
    }
    if value.len() > MAX_COMPONENT_LEN {
        return fail("longer than 255 bytes");
    }
    if value.starts_with('.') {
        return fail("must not start with '.'");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.+@".contains(&b))
    {
        return fail("only ASCII letters, digits and - _ . + @ are allowed");
    }
    Ok(())
}

/// Checks a bundle-relative path as used in `SHA256SUMS`: '/'-separated,
/// relative, no empty, `.` or `..` components, and nothing that
/// `sha256sum` would escape (backslash, newline) or that is otherwise a
/// control character.
fn validate_rel_path(path: &str) -> Result<(), &'static str> {
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
fn validate_signer(signer: &str) -> Result<(), EvidenceError> {
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

/// Writes one bundle into a hidden staging directory and, on
/// [`finish`](BundleWriter::finish), seals and renames it into place.
///
/// A bundle therefore appears at its final path complete and signed, or not
/// at all. A writer dropped without `finish` or [`abandon`](Self::abandon)
/// leaves its staging directory behind for inspection; [`create`](Self::create)
/// refuses to reuse it.
#[derive(Debug)]
pub struct BundleWriter {
    staging: PathBuf,
    final_dir: PathBuf,
    drill_dir: PathBuf,
    /// Relative path -> sha256 hex of the exact bytes written. A `BTreeMap`
    /// over `String` iterates in bytewise order, which is the manifest order.
    files: BTreeMap<String, String>,
    /// Every directory prefix of an added path, relative to the staging
    /// directory (used to catch file/directory conflicts and to fsync).
    dirs: BTreeSet<String>,
}

impl BundleWriter {
    /// Starts a bundle for run `run_id` of drill `drill_id` under
    /// `evidence_root`, staging it in `<root>/<drill_id>/.<run_id>.partial`
    /// (mode 0700; missing parents are created 0700 too).
    ///
    /// Both ids must be safe single path components (ASCII letters, digits,
    /// `-_.+@`, not starting with `.`). Fails if the final bundle directory
    /// `<root>/<drill_id>/<run_id>` already exists, or if a staging directory
    /// from an interrupted run is in the way.
    pub fn create(
        evidence_root: &Path,
        drill_id: &str,
        run_id: &str,
    ) -> Result<Self, EvidenceError> {
        validate_id("drill id", drill_id)?;
        validate_id("run id", run_id)?;
        let drill_dir = evidence_root.join(drill_id);
        let final_dir = drill_dir.join(run_id);
        let staging = drill_dir.join(format!(".{run_id}.partial"));
        create_dirs(&drill_dir)?;
        match fs::symlink_metadata(&final_dir) {
            Ok(_) => return Err(EvidenceError::BundleExists { path: final_dir }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &final_dir)(e)),
        }
        match DirBuilder::new().mode(DIR_MODE).create(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(EvidenceError::StagingExists { path: staging });
            }
            Err(e) => return Err(io_err("create directory", &staging)(e)),
        }
        Ok(Self {
            staging,
            final_dir,
            drill_dir,
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
        })
    }

    /// Adds one file to the bundle: writes exactly `bytes` to
    /// `<staging>/<rel_path>` (mode 0600, creating subdirectories 0700),
    /// fsyncs it, and records the sha256 of those same bytes for
    /// `SHA256SUMS`.
    ///
    /// `rel_path` is '/'-separated, e.g. `screenshots/01-username.png`.
    /// Rejected: absolute paths, `.`/`..`/empty components, backslashes,
    /// newlines and other control characters (`sha256sum` would escape them
    /// and the manifest would no longer be plain), the reserved top-level
    /// names `SHA256SUMS`, `SHA256SUMS.sig` and `allowed_signers`, paths
    /// already added, and paths that would make a file also a directory.
    pub fn add(&mut self, rel_path: &str, bytes: &[u8]) -> Result<(), EvidenceError> {
        validate_rel_path(rel_path).map_err(|why| EvidenceError::InvalidPath {
            path: rel_path.to_string(),
            why,
        })?;
        if [MANIFEST, SIGNATURE, ALLOWED_SIGNERS].contains(&rel_path) {
            return Err(EvidenceError::ReservedPath {
                path: rel_path.to_string(),
            });
        }
        self.check_new_path(rel_path)?;

        let prefixes = dir_prefixes(rel_path);
        if let Some(parent) = prefixes.last() {
            create_dirs(&self.staging.join(parent))?;
        }
        write_new_file(&self.staging.join(rel_path), bytes)?;
        self.dirs.extend(prefixes.into_iter().map(str::to_string));
        self.files.insert(rel_path.to_string(), sha256_hex(bytes));
        Ok(())
    }

    /// Refuses a path already added, or one that is a file where another
    /// path needs a directory (or the other way round).
    fn check_new_path(&self, rel_path: &str) -> Result<(), EvidenceError> {
        if self.files.contains_key(rel_path) {
            return Err(EvidenceError::DuplicatePath {
                path: rel_path.to_string(),
            });
        }
        for prefix in dir_prefixes(rel_path) {
            if self.files.contains_key(prefix) {
                return Err(EvidenceError::PathConflict {
                    path: rel_path.to_string(),
                    other: prefix.to_string(),
                });
            }
        }
        if self.dirs.contains(rel_path) {
            let below = format!("{rel_path}/");
            let other = self
                .files
                .range(below.clone()..)
                .next()
                .map(|(k, _)| k.clone())
                .filter(|k| k.starts_with(&below))
                .unwrap_or(below);
            return Err(EvidenceError::PathConflict {
                path: rel_path.to_string(),
                other,
            });
        }
        Ok(())
    }

    /// Seals the bundle: writes `allowed_signers` (binding `signer` to the
    /// key's public half in namespace [`NAMESPACE`]), `SHA256SUMS` (every
    /// file, sorted bytewise) and `SHA256SUMS.sig` (the signature over the
    /// exact `SHA256SUMS` bytes written), fsyncs everything, renames the
    /// staging directory to `<root>/<drill_id>/<run_id>` and fsyncs the
    /// drill directory so the rename is durable.
    ///
    /// `signer` is the principal the auditor passes to `ssh-keygen -Y verify
    /// -I`; it must be a plain name (letters, digits, `@._+-`), never a
    /// pattern.
    ///
    /// The rename is refused if the final directory appeared meanwhile; a
    /// non-empty one can never be replaced (the kernel refuses), and an
    /// empty one is only replaced in a narrow race, losing nothing.
    pub fn finish(mut self, key: &SigningKey, signer: &str) -> Result<SealedBundle, EvidenceError> {
        validate_signer(signer)?;
        let allowed = format!(
            "{signer} namespaces=\"{NAMESPACE}\" {}\n",
            key.public_key_bare()?
        );
        write_new_file(&self.staging.join(ALLOWED_SIGNERS), allowed.as_bytes())?;
        self.files
            .insert(ALLOWED_SIGNERS.to_string(), sha256_hex(allowed.as_bytes()));

        let mut manifest = String::new();
        for (path, hash) in &self.files {
            manifest.push_str(hash);
            manifest.push_str("  ");
            manifest.push_str(path);
            manifest.push('\n');
        }
        let manifest = manifest.into_bytes();
        // Sign the very buffer that is written next: nothing is re-encoded
        // between signing and writing.
        let signature = key.sign(&manifest)?;
        write_new_file(&self.staging.join(MANIFEST), &manifest)?;
        write_new_file(&self.staging.join(SIGNATURE), signature.as_bytes())?;

        // Deepest directories first, so each fsync covers entries whose own
        // contents are already durable.
        for dir in self.dirs.iter().rev() {
            sync_dir(&self.staging.join(dir))?;
        }
        sync_dir(&self.staging)?;

        match fs::symlink_metadata(&self.final_dir) {
            Ok(_) => {
                return Err(EvidenceError::BundleExists {
                    path: self.final_dir.clone(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspect", &self.final_dir)(e)),
        }
        fs::rename(&self.staging, &self.final_dir).map_err(|e| {
            if matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
            ) {
                EvidenceError::BundleExists {
                    path: self.final_dir.clone(),
                }
            } else {
                io_err("rename staging directory to", &self.final_dir)(e)
            }
        })?;
        sync_dir(&self.drill_dir)?;

        Ok(SealedBundle {
            dir: self.final_dir,
            manifest_sha256: sha256_hex(&manifest),
            files: std::mem::take(&mut self.files).into_keys().collect(),
        })
    }

    /// Discards the bundle: removes the staging directory and everything
    /// added to it. Use when a run is cancelled before there is anything
    /// worth keeping.
    pub fn abandon(self) -> Result<(), EvidenceError> {
        fs::remove_dir_all(&self.staging).map_err(io_err("remove", &self.staging))
    }

    /// The hidden staging directory files are written into until `finish`.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }
}

/// The directory prefixes of a relative path, shortest first:
/// `"a/b/c.json"` -> `["a", "a/b"]`.
fn dir_prefixes(rel_path: &str) -> Vec<&str> {
    rel_path
        .match_indices('/')
        .map(|(i, _)| &rel_path[..i])
        .collect()
}

/// A bundle that `finish` sealed and moved into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBundle {
    /// The final bundle directory, `<root>/<drill_id>/<run_id>`.
    pub dir: PathBuf,
    /// Lowercase hex sha256 of the `SHA256SUMS` bytes: one short value that
    /// pins the whole bundle (e.g. to record in a ticket or log).
    pub manifest_sha256: String,
    /// Every file listed in `SHA256SUMS`, in its (bytewise sorted) order,
    /// including `allowed_signers`.
    pub files: Vec<String>,
}

/// One problem found while verifying a bundle. Messages name the exact
/// file concerned.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The path is not a directory, or has neither `SHA256SUMS` nor
    /// `SHA256SUMS.sig`.
    #[error("{} is not an evidence bundle: {why}", dir.display())]
    NotABundle {
        /// The directory given.
        dir: PathBuf,
        /// What is missing.
        why: String,
    },

    /// `SHA256SUMS` is missing although `SHA256SUMS.sig` is present.
    #[error("{} is missing: the bundle's manifest was deleted", path.display())]
    ManifestMissing {
        /// Where `SHA256SUMS` should be.
        path: PathBuf,
    },

    /// `SHA256SUMS.sig` is missing although `SHA256SUMS` is present.
    #[error("{} is missing: the bundle is not signed", path.display())]
    SignatureMissing {
        /// Where `SHA256SUMS.sig` should be.
        path: PathBuf,
    },

    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A file is larger than the verifier is willing to read into memory.
    #[error("{} is larger than {limit} bytes; it cannot be a genuine bundle file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },

    /// A line of `SHA256SUMS` is not `<64 lowercase hex>  <relative path>`,
    /// or the lines are not sorted and unique.
    #[error("{} line {line}: {why}", path.display())]
    ManifestMalformed {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },

    /// `SHA256SUMS.sig` is not an armored SSH signature.
    #[error("{} is not an SSH signature: {why}", path.display())]
    SignatureMalformed {
        /// The signature file.
        path: PathBuf,
        /// What the parser said.
        why: String,
    },

    /// The signature does not verify over `SHA256SUMS` (the manifest or the
    /// signature was changed), or it was made for another namespace.
    #[error("signature {} does not verify over SHA256SUMS: {why}", path.display())]
    SignatureInvalid {
        /// The signature file.
        path: PathBuf,
        /// Why.
        why: String,
    },

    /// A line of the allowed signers file cannot be parsed.
    #[error("{} line {line}: {why}", path.display())]
    AllowedSignersMalformed {
        /// The allowed signers file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        why: String,
    },

    /// The key that made the signature is not in the allowed signers file
    /// for namespace [`NAMESPACE`] (or not at this time).
    #[error(
        "the bundle was signed by key {fingerprint}, which {} does not allow to sign \
         glassdrill evidence",
        allowed_signers.display()
    )]
    SignerUnknown {
        /// Fingerprint (`SHA256:...`) of the key in the signature.
        fingerprint: String,
        /// The allowed signers file consulted.
        allowed_signers: PathBuf,
    },

    /// A listed file's contents do not match its hash in `SHA256SUMS`.
    #[error(
        "{} was modified after signing: its sha256 is {actual}, SHA256SUMS lists {expected}",
        path.display()
    )]
    FileModified {
        /// The file.
        path: PathBuf,
        /// Hash listed in `SHA256SUMS`.
        expected: String,
        /// Hash of the file as found.
        actual: String,
    },

    /// A file listed in `SHA256SUMS` does not exist.
    #[error("{} is listed in SHA256SUMS but missing", path.display())]
    FileMissing {
        /// The missing file.
        path: PathBuf,
    },

    /// A listed path is not a regular file (a symlink, a directory, or
    /// reached through a symlinked directory).
    #[error("{} is listed in SHA256SUMS but {why}", path.display())]
    FileNotRegular {
        /// The offending path.
        path: PathBuf,
        /// What it is instead.
        why: String,
    },

    /// A file or symlink in the bundle that `SHA256SUMS` does not list.
    #[error("{} is in the bundle but not listed in SHA256SUMS (added after signing?)", path.display())]
    FileUnlisted {
        /// The unlisted file.
        path: PathBuf,
    },
}

/// A bundle that passed every check in [`verify_bundle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// The principal(s) of the allowed signers line that matched the
    /// signing key, as written there.
    pub signer: String,
    /// Fingerprint (`SHA256:...`) of the signing key.
    pub fingerprint: String,
    /// Every file listed in `SHA256SUMS`, in manifest order.
    pub files: Vec<String>,
    /// Lowercase hex sha256 of the `SHA256SUMS` bytes.
    pub manifest_sha256: String,
}

/// Verifies a bundle offline and returns the first problem found.
///
/// Same checks and order as [`verify_bundle_all`]; see there.
pub fn verify_bundle(
    dir: &Path,
    allowed_signers: Option<&Path>,
) -> Result<VerifiedBundle, VerifyError> {
    verify_bundle_all(dir, allowed_signers).map_err(|mut errs| {
        if errs.is_empty() {
            // verify_bundle_all never returns an empty list; be safe anyway.
            VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "verification failed".to_string(),
            }
        } else {
            errs.swap_remove(0)
        }
    })
}

/// Verifies a bundle offline and lists every problem found.
///
/// Checks, in this order:
///
/// 1. the SSH signature `SHA256SUMS.sig` over the exact bytes of
///    `SHA256SUMS`, in namespace [`NAMESPACE`], made by a key that the
///    allowed signers file permits for that namespace (what
///    `ssh-keygen -Y verify` checks);
/// 2. that `SHA256SUMS` is well formed (lowercase hex, two spaces, safe
///    relative paths, sorted, no duplicates) and every listed file exists,
///    is a regular file, and has the listed sha256 (what
///    `sha256sum -c --strict` checks);
/// 3. that no file or symlink anywhere in the bundle is missing from
///    `SHA256SUMS`, other than `SHA256SUMS` and `SHA256SUMS.sig` themselves
///    (which `sha256sum` cannot check).
///
/// `allowed_signers` is the auditor's own allowed signers file, listing the
/// key(s) they trust. With `None`, the bundle's own `allowed_signers` is
/// used: that proves only that the bundle is intact and self-consistent
/// (integrity), NOT who made it (origin), since whoever forged a bundle
/// would ship their own key in it. To prove origin, the auditor must pin the
/// expected key in a file they obtained independently, or compare the
/// returned fingerprint with the published one.
///
/// Problems are reported in check order; later checks run even after an
/// earlier one fails, so the list is complete.
pub fn verify_bundle_all(
    dir: &Path,
    allowed_signers: Option<&Path>,
) -> Result<VerifiedBundle, Vec<VerifyError>> {
    let mut errs = Vec::new();

    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(vec![VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "not a directory".to_string(),
            }]);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(vec![VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "no such directory".to_string(),
            }]);
        }
        Err(source) => {
            return Err(vec![VerifyError::Unreadable {
                path: dir.to_path_buf(),
                source,
            }]);
        }
    }

    let manifest_path = dir.join(MANIFEST);
    let sig_path = dir.join(SIGNATURE);
    let manifest = read_bundle_file(&manifest_path, MAX_MANIFEST_FILE);
    let sig = read_bundle_file(&sig_path, MAX_SIGNATURE_FILE);
    let (manifest, sig) = match (manifest, sig) {
        (Err(ReadBundleError::Missing), Err(ReadBundleError::Missing)) => {
            return Err(vec![VerifyError::NotABundle {
                dir: dir.to_path_buf(),
                why: "it has neither SHA256SUMS nor SHA256SUMS.sig".to_string(),
            }]);
        }
        (m, s) => (
            m.map_err(|e| e.into_verify_error(&manifest_path, ManifestOrSig::Manifest)),
            s.map_err(|e| e.into_verify_error(&sig_path, ManifestOrSig::Signature)),
        ),
    };

    // 1. Signature.
    let signer = match (&manifest, sig) {
        (Ok(manifest), Ok(sig)) => {
            let allowed_path = allowed_signers
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.join(ALLOWED_SIGNERS));
            match check_signature(manifest, &sig, &sig_path, &allowed_path, dir) {
                Ok(s) => Some(s),
                Err(mut e) => {
                    errs.append(&mut e);
                    None
                }
            }
        }
        (Ok(_), Err(e)) => {
            errs.push(e);
            None
        }
        (Err(_), Err(e)) => {
            // The manifest error is reported below with the other manifest
            // problems; the signature's own problem comes first.
            errs.push(e);
            None
        }
        (Err(_), Ok(_)) => None,
    };

    // 2. Manifest and listed files.
    let mut listed: Vec<String> = Vec::new();
    let mut manifest_sha256 = String::new();
    match manifest {
        Ok(manifest) => {
            manifest_sha256 = sha256_hex(&manifest);
            let (entries, mut malformed) = parse_manifest(&manifest, &manifest_path);
            errs.append(&mut malformed);
            for (rel, expected) in &entries {
                if let Err(e) = check_listed_file(dir, rel, expected) {
                    errs.push(e);
                }
            }
            listed = entries.into_iter().map(|(p, _)| p).collect();
        }
        Err(e) => errs.push(e),
    }

    // 3. Unlisted files.
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let mut found = Vec::new();
    walk_bundle(dir, "", &mut found, &mut errs);
    found.sort();
    for rel in found {
        if rel == MANIFEST || rel == SIGNATURE || listed_set.contains(rel.as_str()) {
            continue;
        }
        errs.push(VerifyError::FileUnlisted {
            path: dir.join(&rel),
        });
    }

    match signer {
        Some((signer, fingerprint)) if errs.is_empty() => Ok(VerifiedBundle {
            dir: dir.to_path_buf(),
            signer,
            fingerprint,
            files: listed,
            manifest_sha256,
        }),
        _ if errs.is_empty() => Err(vec![VerifyError::SignatureInvalid {
            path: sig_path,
            why: "signature could not be checked".to_string(),
        }]),
        _ => Err(errs),
    }
}

enum ReadBundleError {
    Missing,
    TooLarge(u64),
    Io(io::Error),
}

#[derive(Clone, Copy)]
enum ManifestOrSig {
    Manifest,
    Signature,
}

impl ReadBundleError {
    fn into_verify_error(self, path: &Path, which: ManifestOrSig) -> VerifyError {
        let path = path.to_path_buf();
        match (self, which) {
            (Self::Missing, ManifestOrSig::Manifest) => VerifyError::ManifestMissing { path },
            (Self::Missing, ManifestOrSig::Signature) => VerifyError::SignatureMissing { path },
            (Self::TooLarge(limit), _) => VerifyError::TooLarge { path, limit },
            (Self::Io(source), _) => VerifyError::Unreadable { path, source },
        }
    }
}

/// Reads one of the bundle's own small files (which must be regular files,
/// not symlinks pointing elsewhere).
fn read_bundle_file(path: &Path, cap: u64) -> Result<Vec<u8>, ReadBundleError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(ReadBundleError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "not a regular file",
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadBundleError::Missing),
        Err(e) => return Err(ReadBundleError::Io(e)),
    }
    read_capped(path, cap).map_err(|e| match e {
        ReadCappedError::Io(e) => ReadBundleError::Io(e),
        ReadCappedError::TooLarge => ReadBundleError::TooLarge(cap),
    })
}

/// Verifies `sig` over `manifest` and finds the allowed signers line that
/// permits its key. Returns (principals, fingerprint).
fn check_signature(
    manifest: &[u8],
    sig: &[u8],
    sig_path: &Path,
    allowed_path: &Path,
    bundle_dir: &Path,
) -> Result<(String, String), Vec<VerifyError>> {
    let sig = SshSig::from_pem(sig).map_err(|e| {
        vec![VerifyError::SignatureMalformed {
            path: sig_path.to_path_buf(),
            why: e.to_string(),
        }]
    })?;
    if sig.namespace() != NAMESPACE {
        return Err(vec![VerifyError::SignatureInvalid {
            path: sig_path.to_path_buf(),
            why: format!(
                "it was made for namespace {:?}, not {NAMESPACE:?}",
                sig.namespace()
            ),
        }]);
    }
    let signing_key = PublicKey::new(sig.public_key().clone(), "");
    let fingerprint = signing_key.fingerprint(HashAlg::Sha256).to_string();
    if let Err(e) = signing_key.verify(NAMESPACE, manifest, &sig) {
        return Err(vec![VerifyError::SignatureInvalid {
            path: sig_path.to_path_buf(),
            why: format!("{e} (SHA256SUMS or SHA256SUMS.sig was changed after signing)"),
        }]);
    }

    let allowed = match read_allowed_signers(allowed_path, bundle_dir) {
        Ok(b) => b,
        Err(e) => return Err(vec![e]),
    };
    let allowed = String::from_utf8_lossy(&allowed);
    let (entries, malformed) = parse_allowed_signers(&allowed, allowed_path);
    let now = chrono::Utc::now();
    let hit = entries.into_iter().find(|entry| {
        !entry.cert_authority
            && entry.key.key_data() == sig.public_key()
            && entry
                .namespaces
                .as_deref()
                .is_none_or(|pats| match_pattern_list(NAMESPACE, pats))
            && entry.valid_after.is_none_or(|t| now >= t)
            && entry.valid_before.is_none_or(|t| now <= t)
    });
    match hit {
        Some(entry) => Ok((entry.principals, fingerprint)),
        None => {
            let mut errs = malformed;
            errs.push(VerifyError::SignerUnknown {
                fingerprint,
                allowed_signers: allowed_path.to_path_buf(),
            });
            Err(errs)
        }
    }
}

/// Reads the allowed signers file. The bundle's own copy must be a regular
/// file inside the bundle; an auditor's file elsewhere may be a symlink (as
/// dotfiles often are).
fn read_allowed_signers(path: &Path, bundle_dir: &Path) -> Result<Vec<u8>, VerifyError> {
    let in_bundle = path == bundle_dir.join(ALLOWED_SIGNERS);
    let result = if in_bundle {
        read_bundle_file(path, MAX_ALLOWED_SIGNERS_FILE)
    } else {
        read_capped(path, MAX_ALLOWED_SIGNERS_FILE).map_err(|e| match e {
            ReadCappedError::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                ReadBundleError::Missing
            }
            ReadCappedError::Io(e) => ReadBundleError::Io(e),
            ReadCappedError::TooLarge => ReadBundleError::TooLarge(MAX_ALLOWED_SIGNERS_FILE),
        })
    };
    result.map_err(|e| {
        let path = path.to_path_buf();
        match e {
            ReadBundleError::Missing => VerifyError::Unreadable {
                path,
                source: io::Error::new(io::ErrorKind::NotFound, "allowed signers file not found"),
            },
            ReadBundleError::TooLarge(limit) => VerifyError::TooLarge { path, limit },
            ReadBundleError::Io(source) => VerifyError::Unreadable { path, source },
        }
    })
}

/// One parsed line of an allowed signers file.
struct AllowedSigner {
    principals: String,
    cert_authority: bool,
    namespaces: Option<String>,
    valid_after: Option<chrono::DateTime<chrono::Utc>>,
    valid_before: Option<chrono::DateTime<chrono::Utc>>,
    key: PublicKey,
}

/// Parses an allowed signers file (ssh-keygen(1), ALLOWED SIGNERS):
/// `principals [options] keytype base64-key [comment]`, with `#` comments
/// and blank lines ignored. Lines that do not parse are returned as errors;
/// the lines that do still count.
fn parse_allowed_signers(text: &str, path: &Path) -> (Vec<AllowedSigner>, Vec<VerifyError>) {
    let mut entries = Vec::new();
    let mut errs = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_allowed_signer_line(line) {
            Ok(entry) => entries.push(entry),
            Err(why) => errs.push(VerifyError::AllowedSignersMalformed {
                path: path.to_path_buf(),
                line: i + 1,
                why,
            }),
        }
    }
    (entries, errs)
}

fn parse_allowed_signer_line(line: &str) -> Result<AllowedSigner, String> {
    let (principals, rest) = split_field(line)?;
    let principals = principals.trim_matches('"').to_string();
    if principals.is_empty() {
        return Err("empty principals".to_string());
    }
    let rest = rest.trim_start();
    // Either "keytype base64 [comment]" follows directly, or an options
    // field comes first (as ssh-keygen decides: try the key, else options).
    let (options, key) = match PublicKey::from_openssh(rest) {
        Ok(key) => ("", key),
        Err(_) => {
            let (options, key_text) = split_field(rest)?;
            let key = PublicKey::from_openssh(key_text.trim_start())
                .map_err(|e| format!("cannot parse the public key: {e}"))?;
            (options, key)
        }
    };
    let mut entry = AllowedSigner {
        principals,
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        key,
    };
    if options.is_empty() {
        return Ok(entry);
    }
    for opt in split_options(options)? {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => {
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| format!("option {n} needs a quoted value"))?;
                (n, Some(v))
            }
            None => (opt, None),
        };
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cert-authority", None) => entry.cert_authority = true,
            ("namespaces", Some(v)) => entry.namespaces = Some(v.to_string()),
            ("valid-after", Some(v)) => entry.valid_after = Some(parse_ssh_time(v)?),
            ("valid-before", Some(v)) => entry.valid_before = Some(parse_ssh_time(v)?),
            _ => return Err(format!("unsupported option {opt:?}")),
        }
    }
    Ok(entry)
}

/// Splits off the first whitespace-delimited field; double quotes protect
/// whitespace inside it.
fn split_field(s: &str) -> Result<(&str, &str), String> {
    let mut in_quotes = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => return Ok((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if in_quotes {
        Err("unterminated quote".to_string())
    } else {
        Ok((s, ""))
    }
}

/// Splits an options field on commas outside double quotes.
fn split_options(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unterminated quote in options".to_string());
    }
    out.push(&s[start..]);
    if out.iter().any(|o| o.is_empty()) {
        return Err("empty option".to_string());
    }
    Ok(out)
}

/// Parses ssh-keygen's `YYYYMMDD[HHMM[SS]][Z]` time: UTC with `Z`, local
/// time without.
fn parse_ssh_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let bad = || format!("invalid time {s:?} (expected YYYYMMDD[HHMM[SS]][Z])");
    let (digits, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(d) => (d, true),
        None => (s, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive = match digits.len() {
        8 => NaiveDate::parse_from_str(digits, "%Y%m%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
        12 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M").ok(),
        14 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").ok(),
        _ => None,
    }
    .ok_or_else(bad)?;
    if utc {
        Ok(chrono::Utc.from_utc_datetime(&naive))
    } else {
        chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc))
            .ok_or_else(bad)
    }
}

/// OpenSSH `match_pattern_list`: comma-separated patterns with `*` and `?`;
/// a matching negated (`!`) pattern rejects outright.
fn match_pattern_list(s: &str, list: &str) -> bool {
    let mut matched = false;
    for pat in list.split(',') {
        let (negated, pat) = match pat.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pat),
        };
        if match_pattern(s.as_bytes(), pat.as_bytes()) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// Glob match with `*` (any run) and `?` (any one byte).
fn match_pattern(s: &[u8], pat: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pat.len() && (pat[pi] == b'?' || pat[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < pat.len() && pat[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    pat[pi..].iter().all(|&c| c == b'*')
}

/// Parses `SHA256SUMS`. Returns the well-formed entries (path, hash) and an
/// error for each malformed line.
fn parse_manifest(bytes: &[u8], path: &Path) -> (Vec<(String, String)>, Vec<VerifyError>) {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut errs = Vec::new();
    let malformed = |line: usize, why: String| VerifyError::ManifestMalformed {
        path: path.to_path_buf(),
        line,
        why,
    };
    if bytes.is_empty() {
        errs.push(malformed(1, "SHA256SUMS is empty".to_string()));
        return (entries, errs);
    }
    if !bytes.ends_with(b"\n") {
        let line = bytes.split(|&b| b == b'\n').count();
        errs.push(malformed(
            line,
            "last line does not end with a newline".to_string(),
        ));
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut seen = BTreeSet::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let Ok(line) = std::str::from_utf8(raw) else {
            errs.push(malformed(n, "not valid UTF-8".to_string()));
            continue;
        };
        let Some((hash, rel)) = line.split_at_checked(64) else {
            errs.push(malformed(
                n,
                "expected `<64 hex digits>  <path>`".to_string(),
            ));
            continue;
        };
        if !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            errs.push(malformed(
                n,
                "hash is not 64 lowercase hex digits".to_string(),
            ));
            continue;
        }
        let Some(rel) = rel.strip_prefix("  ") else {
            errs.push(malformed(
                n,
                "hash must be followed by two spaces and the path".to_string(),
            ));
            continue;
        };
        if let Err(why) = validate_rel_path(rel) {
            errs.push(malformed(n, format!("path {rel:?} {why}")));
            continue;
        }
        if rel == MANIFEST || rel == SIGNATURE {
            errs.push(malformed(n, format!("{rel} cannot list itself")));
            continue;
        }
        if !seen.insert(rel.to_string()) {
            errs.push(malformed(n, format!("{rel} is listed twice")));
            continue;
        }
        if let Some((prev, _)) = entries.last()
            && prev.as_str() > rel
        {
            errs.push(malformed(
                n,
                format!("{rel} is out of order (lines must be sorted by path)"),
            ));
        }
        entries.push((rel.to_string(), hash.to_string()));
    }
    (entries, errs)
}

/// Checks one listed file: every component up to it is a real directory,
/// it is a regular file, and its sha256 is `expected`.
fn check_listed_file(dir: &Path, rel: &str, expected: &str) -> Result<(), VerifyError> {
    let full = dir.join(rel);
    for prefix in dir_prefixes(rel) {
        let p = dir.join(prefix);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(VerifyError::FileNotRegular {
                    path: full,
                    why: format!("is reached through the symlink {}", p.display()),
                });
            }
            Ok(_) => {
                return Err(VerifyError::FileMissing { path: full });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VerifyError::FileMissing { path: full });
            }
            Err(source) => return Err(VerifyError::Unreadable { path: p, source }),
        }
    }
    match fs::symlink_metadata(&full) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            let what = if m.file_type().is_symlink() {
                "is a symlink"
            } else if m.is_dir() {
                "is a directory"
            } else {
                "is not a regular file"
            };
            return Err(VerifyError::FileNotRegular {
                path: full,
                why: what.to_string(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(VerifyError::FileMissing { path: full });
        }
        Err(source) => return Err(VerifyError::Unreadable { path: full, source }),
    }
    let actual = File::open(&full)
        .and_then(|mut f| {
            let mut h = Sha256::new();
            io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .map_err(|source| VerifyError::Unreadable {
            path: full.clone(),
            source,
        })?;
    if actual != expected {
        return Err(VerifyError::FileModified {
            path: full,
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Collects the '/'-joined relative path of every non-directory entry
/// (files, symlinks, anything else) under `dir/rel`, without following
/// symlinks.
fn walk_bundle(root: &Path, rel: &str, found: &mut Vec<String>, errs: &mut Vec<VerifyError>) {
    let here = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let rd = match fs::read_dir(&here) {
        Ok(rd) => rd,
        Err(source) => {
            errs.push(VerifyError::Unreadable { path: here, source });
            return;
        }
    };
    let mut entries = Vec::new();
    for entry in rd {
        match entry {
            Ok(e) => entries.push(e),
            Err(source) => {
                errs.push(VerifyError::Unreadable {
                    path: here.clone(),
                    source,
                });
                return;
            }
        }
    }
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_bundle(root, &child, found, errs),
            Ok(_) => found.push(child),
            Err(source) => errs.push(VerifyError::Unreadable {
                path: entry.path(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use tempfile::TempDir;

    const SIGNER: &str = "drills@example.org";

    /// The files every test bundle holds besides the three `finish` adds.
    const FILES: &[(&str, &[u8])] = &[
        ("drill.json", b"{\"drill\":\"bg-1\"}\n"),
        ("signin.json", b"{\"ok\":true}"),
        ("alerts/001.json", b"{\"alert\":1}\n"),
        (
            "screenshots/01-username.png",
            b"\x89PNG\r\n\x1a\n\x00\x01binary\xff",
        ),
        ("report.html", b"<!doctype html><title>r</title>\n"),
        ("a b/with space.txt", b"spaces are fine\n"),
    ];

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Runs a command, returning (success, stdout+stderr).
    fn run(cmd: &mut Command) -> (bool, String) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is openssh-client installed?): {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ssh_keygen_verify(bundle: &Path, allowed: &Path) -> (bool, String) {
        let manifest = File::open(bundle.join(MANIFEST));
        let stdin = match manifest {
            Ok(f) => Stdio::from(f),
            Err(_) => Stdio::null(),
        };
        run(Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(allowed)
            .args(["-I", SIGNER, "-n", NAMESPACE, "-s", SIGNATURE])
            .current_dir(bundle)
            .stdin(stdin))
    }

    fn sha256sum_check(bundle: &Path) -> (bool, String) {
        run(Command::new("sha256sum")
            .args(["-c", "--strict", MANIFEST])
            .current_dir(bundle))
    }

    struct Fixture {
        tmp: TempDir,
        key: SigningKey,
        bundle: SealedBundle,
    }

    fn fixture() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let key =
            SigningKey::generate(&tmp.path().join("keys/evidence"), "glassdrill test").unwrap();
        let bundle = make_bundle(tmp.path(), &key, "run-1");
        Fixture { tmp, key, bundle }
    }

    fn make_bundle(root: &Path, key: &SigningKey, run_id: &str) -> SealedBundle {
        let mut w = BundleWriter::create(&root.join("evidence"), "bg-1", run_id).unwrap();
        for (p, b) in FILES {
            w.add(p, b).unwrap();
        }
        w.finish(key, SIGNER).unwrap()
    }

    fn flip_byte(path: &Path) {
        let mut bytes = fs::read(path).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 0x01;
        fs::write(path, bytes).unwrap();
    }

    // ---- keys ----

    #[test]
    fn generate_writes_private_key_0600_and_pub() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("a/b/key");
        let key = SigningKey::generate(&path, "ops@example.org").unwrap();
        assert_eq!(key.path(), path);
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&tmp.path().join("a")), 0o700);
        assert_eq!(mode_of(&tmp.path().join("a/b")), 0o700);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let pub_text = fs::read_to_string(tmp.path().join("a/b/key.pub")).unwrap();
        assert_eq!(pub_text, format!("{}\n", key.public_key_openssh()));
        assert!(pub_text.starts_with("ssh-ed25519 AAAA"));
        assert!(pub_text.trim_end().ends_with(" ops@example.org"));
        assert!(key.fingerprint().starts_with("SHA256:"));
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // ssh-keygen reads our key and derives the same public key and
        // fingerprint.
        let (ok, out) = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path));
        assert!(ok, "{out}");
        assert!(key.public_key_openssh().starts_with(out.trim()), "{out}");
        let (ok, out) = run(Command::new("ssh-keygen").arg("-l").arg("-f").arg(&path));
        assert!(ok, "{out}");
        assert!(out.contains(&key.fingerprint()), "{out}");
    }

    #[test]
    fn generate_refuses_to_overwrite() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("key");
        SigningKey::generate(&path, "c").unwrap();
        let before = fs::read(&path).unwrap();
        let err = SigningKey::generate(&path, "c").unwrap_err();
        assert!(
            matches!(&err, EvidenceError::KeyExists { path: p } if *p == path),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("refusing to overwrite existing key"),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), before);

        // A stray .pub is not overwritten either.
        let other = tmp.path().join("other");
        fs::write(tmp.path().join("other.pub"), "keep me\n").unwrap();
        let err = SigningKey::generate(&other, "c").unwrap_err();
        assert!(
            matches!(&err, EvidenceError::KeyExists { path: p } if p.ends_with("other.pub")),
            "{err:?}"
        );
        assert!(!other.exists());
        assert_eq!(
            fs::read_to_string(tmp.path().join("other.pub")).unwrap(),
            "keep me\n"
        );
    }

    #[test]
    fn generate_rejects_comment_with_newline() {
        let tmp = TempDir::new().unwrap();
        let err = SigningKey::generate(&tmp.path().join("k"), "a\nb").unwrap_err();
        assert!(
            matches!(err, EvidenceError::InvalidComment { .. }),
            "{err:?}"
        );
        assert!(!tmp.path().join("k").exists());
    }

    #[test]
    fn load_round_trips_and_debug_hides_secret() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("key");
        let made = SigningKey::generate(&path, "c").unwrap();
        let loaded = SigningKey::load(&path).unwrap();
        assert_eq!(made.fingerprint(), loaded.fingerprint());
        assert_eq!(made.public_key_openssh(), loaded.public_key_openssh());

        let dbg = format!("{loaded:?}");
        assert!(dbg.contains(&loaded.fingerprint()), "{dbg}");
        assert!(dbg.contains(&path.display().to_string()), "{dbg}");
        let seed = loaded.key.key_data().ed25519().unwrap().private.to_bytes();
        assert!(!dbg.contains(&hex::encode(seed)), "{dbg}");
        assert!(
            !dbg.to_lowercase()
                .contains(&format!("{:?}", &seed[..4])[1..]),
            "{dbg}"
        );
        let pem = fs::read_to_string(&path).unwrap();
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!dbg.contains(line), "{dbg}");
        }
    }

    #[test]
    fn load_missing_key_says_how_to_create_one() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("nope");
        let err = SigningKey::load(&path).unwrap_err();
        assert!(matches!(err, EvidenceError::KeyNotFound { .. }), "{err:?}");
        let p = path.display();
        assert_eq!(
            err.to_string(),
            format!("signing key {p} not found: create one with `glassdrill keygen --out {p}`")
        );
    }

    #[test]
    fn load_rejects_group_or_world_readable_key() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("key");
        SigningKey::generate(&path, "c").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = SigningKey::load(&path).unwrap_err();
            assert!(
                matches!(err, EvidenceError::KeyPermissions { mode: m, .. } if m == mode),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("has mode {mode:04o}")), "{msg}");
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        SigningKey::load(&path).unwrap();
    }

    #[test]
    fn load_rejects_encrypted_and_non_ed25519_and_garbage() {
        let tmp = TempDir::new().unwrap();
        let enc = tmp.path().join("enc");
        let (ok, out) = run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "secret passphrase",
                "-C",
                "x",
                "-f",
            ])
            .arg(&enc));
        assert!(ok, "{out}");
        let err = SigningKey::load(&enc).unwrap_err();
        assert!(matches!(err, EvidenceError::KeyEncrypted { .. }), "{err:?}");
        assert!(err.to_string().contains("passphrase"), "{err}");

        let ecdsa = tmp.path().join("ecdsa");
        let (ok, out) = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
            .arg(&ecdsa));
        assert!(ok, "{out}");
        let err = SigningKey::load(&ecdsa).unwrap_err();
        assert!(
            matches!(&err, EvidenceError::KeyWrongAlgorithm { algorithm, .. } if algorithm.starts_with("ecdsa")),
            "{err:?}"
        );

        let junk = tmp.path().join("junk");
        fs::write(&junk, "not a key\n").unwrap();
        fs::set_permissions(&junk, fs::Permissions::from_mode(0o600)).unwrap();
        let err = SigningKey::load(&junk).unwrap_err();
        assert!(matches!(err, EvidenceError::KeyMalformed { .. }), "{err:?}");

        let err = SigningKey::load(tmp.path()).unwrap_err();
        assert!(matches!(err, EvidenceError::KeyNotAFile { .. }), "{err:?}");
    }

    #[test]
    fn ssh_keygen_generated_ed25519_key_loads() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("k");
        let (ok, out) = run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "from ssh-keygen",
                "-f",
            ])
            .arg(&path));
        assert!(ok, "{out}");
        let key = SigningKey::load(&path).unwrap();
        let pub_text = fs::read_to_string(tmp.path().join("k.pub")).unwrap();
        assert_eq!(key.public_key_openssh(), pub_text.trim_end());
    }

    #[test]
    fn load_or_generate_creates_once() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("key");
        let (a, created) = SigningKey::load_or_generate(&path, "c").unwrap();
        assert!(created);
        let (b, created) = SigningKey::load_or_generate(&path, "c").unwrap();
        assert!(!created);
        assert_eq!(a.fingerprint(), b.fingerprint());
        // A bad existing key is an error, never replaced.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SigningKey::load_or_generate(&path, "c").unwrap_err();
        assert!(
            matches!(err, EvidenceError::KeyPermissions { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn sign_is_byte_identical_to_ssh_keygen() {
        let tmp = TempDir::new().unwrap();
        let path = tmp.path().join("key");
        let key = SigningKey::generate(&path, "c").unwrap();
        let msg = b"some bytes\nto sign\n";
        let ours = key.sign(msg).unwrap();
        assert!(
            ours.starts_with("-----BEGIN SSH SIGNATURE-----\n"),
            "{ours}"
        );
        assert!(ours.ends_with("-----END SSH SIGNATURE-----\n"), "{ours}");
        assert!(!ours.contains('\r'));

        let msg_path = tmp.path().join("msg");
        fs::write(&msg_path, msg).unwrap();
        let (ok, out) = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", NAMESPACE, "-f"])
            .arg(&path)
            .arg(&msg_path));
        assert!(ok, "{out}");
        let theirs = fs::read_to_string(tmp.path().join("msg.sig")).unwrap();
        assert_eq!(ours, theirs);
    }

    // ---- writing bundles ----

    #[test]
    fn round_trip_generate_bundle_verify() {
        let f = fixture();
        let dir = f.tmp.path().join("evidence/bg-1/run-1");
        assert_eq!(f.bundle.dir, dir);
        assert!(!f.tmp.path().join("evidence/bg-1/.run-1.partial").exists());

        let mut expected: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        expected.push(ALLOWED_SIGNERS.to_string());
        expected.sort();
        assert_eq!(f.bundle.files, expected);

        // Exact bytes were written.
        for (p, b) in FILES {
            assert_eq!(fs::read(dir.join(p)).unwrap(), *b, "{p}");
            assert_eq!(mode_of(&dir.join(p)), 0o600, "{p}");
        }
        for name in [MANIFEST, SIGNATURE, ALLOWED_SIGNERS] {
            assert_eq!(mode_of(&dir.join(name)), 0o600, "{name}");
        }
        for d in ["", "alerts", "screenshots", "a b"] {
            assert_eq!(mode_of(&dir.join(d)), 0o700, "{d:?}");
        }

        let manifest = fs::read(dir.join(MANIFEST)).unwrap();
        assert_eq!(f.bundle.manifest_sha256, sha256_hex(&manifest));
        let text = String::from_utf8(manifest).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), expected.len());
        for (line, path) in lines.iter().zip(&expected) {
            assert_eq!(&line[66..], path);
            assert_eq!(&line[64..66], "  ");
        }
        assert!(text.contains(&format!(
            "{}  drill.json\n",
            sha256_hex(b"{\"drill\":\"bg-1\"}\n")
        )));

        let allowed = fs::read_to_string(dir.join(ALLOWED_SIGNERS)).unwrap();
        let public = f.key.public_key_openssh();
        let bare: Vec<&str> = public.split(' ').take(2).collect();
        assert_eq!(
            allowed,
            format!("{SIGNER} namespaces=\"{NAMESPACE}\" {}\n", bare.join(" "))
        );

        let v = verify_bundle(&dir, None).unwrap();
        assert_eq!(v.signer, SIGNER);
        assert_eq!(v.fingerprint, f.key.fingerprint());
        assert_eq!(v.files, expected);
        assert_eq!(v.manifest_sha256, f.bundle.manifest_sha256);
        assert_eq!(v.dir, dir);

        // Pinned: an auditor's own allowed signers file.
        let pinned = f.tmp.path().join("auditor_allowed_signers");
        fs::write(
            &pinned,
            format!(
                "# auditor's trust file\n\nsomeone@else ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKN8zaTYvpJ5wwyH7sbxYqcw7QN2S2TVrXt02FW8U1rr\n\
                 ops@example.org,{SIGNER} namespaces=\"git,glassdrill-*\" {}\n",
                f.key.public_key_openssh()
            ),
        )
        .unwrap();
        let v = verify_bundle(&dir, Some(&pinned)).unwrap();
        assert_eq!(v.signer, format!("ops@example.org,{SIGNER}"));
    }

    #[test]
    fn bundle_passes_ssh_keygen_and_sha256sum() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let (ok, out) = ssh_keygen_verify(dir, &dir.join(ALLOWED_SIGNERS));
        assert!(ok, "ssh-keygen -Y verify failed: {out}");
        assert!(out.contains(SIGNER), "{out}");
        let (ok, out) = sha256sum_check(dir);
        assert!(ok, "sha256sum -c failed: {out}");
        assert_eq!(out.lines().count(), f.bundle.files.len(), "{out}");
    }

    #[test]
    fn ssh_keygen_signature_verifies_with_our_code() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let ours = fs::read(dir.join(SIGNATURE)).unwrap();
        fs::remove_file(dir.join(SIGNATURE)).unwrap();
        let (ok, out) = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", NAMESPACE, "-f"])
            .arg(f.key.path())
            .arg(MANIFEST)
            .current_dir(dir));
        assert!(ok, "{out}");
        assert_eq!(fs::read(dir.join(SIGNATURE)).unwrap(), ours);
        verify_bundle(dir, None).unwrap();

        // And a signature over the manifest made by ssh-keygen with another
        // namespace is refused.
        fs::remove_file(dir.join(SIGNATURE)).unwrap();
        let (ok, out) = run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(f.key.path())
            .arg(MANIFEST)
            .current_dir(dir));
        assert!(ok, "{out}");
        let err = verify_bundle(dir, None).unwrap_err();
        assert!(
            matches!(&err, VerifyError::SignatureInvalid { why, .. } if why.contains("namespace")),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_bad_rel_paths() {
        let tmp = TempDir::new().unwrap();
        let mut w = BundleWriter::create(tmp.path(), "d", "r").unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/..",
            "./a",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\nb",
            "a\rb",
            "tab\there",
        ] {
            let err = w.add(bad, b"x").unwrap_err();
            assert!(
                matches!(err, EvidenceError::InvalidPath { .. }),
                "{bad:?}: {err:?}"
            );
        }
        for reserved in [MANIFEST, SIGNATURE, ALLOWED_SIGNERS] {
            let err = w.add(reserved, b"x").unwrap_err();
            assert!(matches!(err, EvidenceError::ReservedPath { .. }), "{err:?}");
        }
        w.add("a/b.json", b"1").unwrap();
        let err = w.add("a/b.json", b"2").unwrap_err();
        assert!(
            matches!(err, EvidenceError::DuplicatePath { .. }),
            "{err:?}"
        );
        let err = w.add("a", b"x").unwrap_err();
        assert!(
            matches!(&err, EvidenceError::PathConflict { other, .. } if other == "a/b.json"),
            "{err:?}"
        );
        let err = w.add("a/b.json/c", b"x").unwrap_err();
        assert!(matches!(err, EvidenceError::PathConflict { .. }), "{err:?}");
        // Nested reserved names are ordinary files.
        w.add("alerts/SHA256SUMS", b"x").unwrap();
        // Nothing stray was written for the rejected paths.
        let mut names: Vec<_> = fs::read_dir(w.staging_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "alerts"]);
        assert_eq!(fs::read(w.staging_dir().join("a/b.json")).unwrap(), b"1");
    }

    #[test]
    fn rejects_bad_ids_and_signers() {
        let tmp = TempDir::new().unwrap();
        for bad in ["", ".", "..", "a/b", ".hidden", "a b", "x\n", "ü"] {
            let err = BundleWriter::create(tmp.path(), bad, "r").unwrap_err();
            assert!(
                matches!(
                    err,
                    EvidenceError::InvalidId {
                        what: "drill id",
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
            let err = BundleWriter::create(tmp.path(), "d", bad).unwrap_err();
            assert!(
                matches!(err, EvidenceError::InvalidId { what: "run id", .. }),
                "{bad:?}: {err:?}"
            );
        }
        BundleWriter::create(tmp.path(), "bg-1", "2025-01-02T03-04-05Z_ab.c+d@e").unwrap();

        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        for bad in ["", "a b", "a,b", "*", "a?", "!a", "\"q\"", "-x", "a\nb"] {
            let w = BundleWriter::create(tmp.path(), "d", "r").unwrap();
            let err = w.finish(&key, bad).unwrap_err();
            assert!(
                matches!(err, EvidenceError::InvalidSigner { .. }),
                "{bad:?}: {err:?}"
            );
            assert!(!tmp.path().join("d/r").exists());
            fs::remove_dir_all(tmp.path().join("d/.r.partial")).unwrap();
        }
    }

    #[test]
    fn create_refuses_existing_bundle_and_leftover_staging() {
        let f = fixture();
        let root = f.tmp.path().join("evidence");
        let err = BundleWriter::create(&root, "bg-1", "run-1").unwrap_err();
        assert!(matches!(err, EvidenceError::BundleExists { .. }), "{err:?}");

        let w = BundleWriter::create(&root, "bg-1", "run-2").unwrap();
        assert_eq!(w.staging_dir(), root.join("bg-1/.run-2.partial"));
        assert_eq!(mode_of(w.staging_dir()), 0o700);
        let err = BundleWriter::create(&root, "bg-1", "run-2").unwrap_err();
        assert!(
            matches!(err, EvidenceError::StagingExists { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("rm -r"), "{err}");
        w.abandon().unwrap();
        assert!(!root.join("bg-1/.run-2.partial").exists());
        BundleWriter::create(&root, "bg-1", "run-2").unwrap();

        // finish refuses if the final directory appeared meanwhile.
        let w = BundleWriter::create(&root, "bg-1", "run-3").unwrap();
        fs::create_dir(root.join("bg-1/run-3")).unwrap();
        fs::write(root.join("bg-1/run-3/x"), "x").unwrap();
        let err = w.finish(&f.key, SIGNER).unwrap_err();
        assert!(matches!(err, EvidenceError::BundleExists { .. }), "{err:?}");
        assert_eq!(fs::read_to_string(root.join("bg-1/run-3/x")).unwrap(), "x");
    }

    #[test]
    fn empty_bundle_still_verifies() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        let b = BundleWriter::create(tmp.path(), "d", "r")
            .unwrap()
            .finish(&key, SIGNER)
            .unwrap();
        assert_eq!(b.files, [ALLOWED_SIGNERS]);
        verify_bundle(&b.dir, None).unwrap();
    }

    // ---- tampering ----

    #[test]
    fn changing_any_byte_of_any_file_is_caught() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        let mut all: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        all.extend([ALLOWED_SIGNERS, MANIFEST, SIGNATURE].map(String::from));
        for (i, rel) in all.iter().enumerate() {
            let b = make_bundle(tmp.path(), &key, &format!("run-{i}"));
            let pinned = tmp.path().join(format!("pinned-{i}"));
            fs::copy(b.dir.join(ALLOWED_SIGNERS), &pinned).unwrap();
            let target = b.dir.join(rel);
            flip_byte(&target);

            let err = verify_bundle(&b.dir, None).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&target.display().to_string()), "{rel}: {msg}");
            match rel.as_str() {
                MANIFEST | SIGNATURE => {
                    assert!(
                        matches!(
                            err,
                            VerifyError::SignatureInvalid { .. }
                                | VerifyError::SignatureMalformed { .. }
                        ),
                        "{rel}: {err:?}"
                    );
                    let (ok, out) = ssh_keygen_verify(&b.dir, &pinned);
                    assert!(!ok, "ssh-keygen accepted tampered {rel}: {out}");
                }
                ALLOWED_SIGNERS => {
                    assert!(
                        matches!(
                            err,
                            VerifyError::SignerUnknown { .. }
                                | VerifyError::AllowedSignersMalformed { .. }
                        ),
                        "{rel}: {err:?}"
                    );
                    // With the auditor's pinned copy, the signature is fine
                    // and the changed file is reported as modified.
                    let err = verify_bundle(&b.dir, Some(&pinned)).unwrap_err();
                    assert!(
                        matches!(&err, VerifyError::FileModified { path, .. } if *path == target),
                        "{rel}: {err:?}"
                    );
                    let (ok, _) = sha256sum_check(&b.dir);
                    assert!(!ok, "sha256sum accepted tampered {rel}");
                }
                _ => {
                    assert!(
                        matches!(&err, VerifyError::FileModified { path, .. } if *path == target),
                        "{rel}: {err:?}"
                    );
                    let (ok, out) = sha256sum_check(&b.dir);
                    assert!(!ok, "sha256sum accepted tampered {rel}: {out}");
                    let (ok, out) = ssh_keygen_verify(&b.dir, &pinned);
                    assert!(ok, "signature itself is still fine: {out}");
                }
            }
        }
    }

    #[test]
    fn deleting_any_file_is_caught() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        let mut all: Vec<String> = FILES.iter().map(|(p, _)| p.to_string()).collect();
        all.extend([ALLOWED_SIGNERS, MANIFEST, SIGNATURE].map(String::from));
        for (i, rel) in all.iter().enumerate() {
            let b = make_bundle(tmp.path(), &key, &format!("run-{i}"));
            let pinned = tmp.path().join(format!("pinned-{i}"));
            fs::copy(b.dir.join(ALLOWED_SIGNERS), &pinned).unwrap();
            let target = b.dir.join(rel);
            fs::remove_file(&target).unwrap();

            let err = verify_bundle(&b.dir, Some(&pinned)).unwrap_err();
            assert!(
                err.to_string().contains(&target.display().to_string()),
                "{rel}: {err}"
            );
            match rel.as_str() {
                MANIFEST => {
                    assert!(
                        matches!(err, VerifyError::ManifestMissing { .. }),
                        "{err:?}"
                    );
                }
                SIGNATURE => {
                    assert!(
                        matches!(err, VerifyError::SignatureMissing { .. }),
                        "{err:?}"
                    );
                    let (ok, _) = ssh_keygen_verify(&b.dir, &pinned);
                    assert!(!ok);
                }
                _ => {
                    assert!(
                        matches!(&err, VerifyError::FileMissing { path } if *path == target),
                        "{rel}: {err:?}"
                    );
                    let (ok, _) = sha256sum_check(&b.dir);
                    assert!(!ok, "sha256sum accepted missing {rel}");
                }
            }
        }
        // Without a pinned file, a deleted allowed_signers is reported too.
        let b = make_bundle(tmp.path(), &key, "run-x");
        fs::remove_file(b.dir.join(ALLOWED_SIGNERS)).unwrap();
        let err = verify_bundle(&b.dir, None).unwrap_err();
        assert!(err.to_string().contains(ALLOWED_SIGNERS), "{err}");
    }

    #[test]
    fn unlisted_files_are_caught() {
        let tmp = TempDir::new().unwrap();
        let key = SigningKey::generate(&tmp.path().join("k"), "c").unwrap();
        for (i, extra) in [
            "extra.txt",
            "alerts/002.json",
            "new/dir/deep.txt",
            ".hidden",
        ]
        .iter()
        .enumerate()
        {
            let b = make_bundle(tmp.path(), &key, &format!("run-{i}"));
            let target = b.dir.join(extra);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(&target, "sneaky").unwrap();
            let err = verify_bundle(&b.dir, None).unwrap_err();
            assert!(
                matches!(&err, VerifyError::FileUnlisted { path } if *path == target),
                "{extra}: {err:?}"
            );
            assert!(err.to_string().contains(&target.display().to_string()));
            // The standard tools alone do not notice this.
            assert!(sha256sum_check(&b.dir).0);
        }

        // A symlink counts as a file, even a dangling one.
        let b = make_bundle(tmp.path(), &key, "run-link");
        std::os::unix::fs::symlink("/etc/passwd", b.dir.join("alerts/link")).unwrap();
        let err = verify_bundle(&b.dir, None).unwrap_err();
        assert!(
            matches!(&err, VerifyError::FileUnlisted { path } if path.ends_with("alerts/link")),
            "{err:?}"
        );

        // An empty directory holds no evidence and is not an error.
        let b = make_bundle(tmp.path(), &key, "run-emptydir");
        fs::create_dir(b.dir.join("empty")).unwrap();
        verify_bundle(&b.dir, None).unwrap();
    }

    #[test]
    fn listed_file_replaced_by_symlink_is_caught() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let outside = f.tmp.path().join("outside.json");
        fs::write(&outside, b"{\"ok\":true}").unwrap();
        fs::remove_file(dir.join("signin.json")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("signin.json")).unwrap();
        let err = verify_bundle(dir, None).unwrap_err();
        assert!(
            matches!(&err, VerifyError::FileNotRegular { path, .. } if path.ends_with("signin.json")),
            "{err:?}"
        );
    }

    #[test]
    fn verify_all_lists_every_problem() {
        let f = fixture();
        let dir = &f.bundle.dir;
        flip_byte(&dir.join("drill.json"));
        fs::remove_file(dir.join("report.html")).unwrap();
        fs::write(dir.join("screenshots/99-extra.png"), "x").unwrap();
        let errs = verify_bundle_all(dir, None).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(
            matches!(&errs[0], VerifyError::FileModified { path, .. } if path.ends_with("drill.json"))
        );
        assert!(
            matches!(&errs[1], VerifyError::FileMissing { path } if path.ends_with("report.html"))
        );
        assert!(
            matches!(&errs[2], VerifyError::FileUnlisted { path } if path.ends_with("screenshots/99-extra.png"))
        );
        let first = verify_bundle(dir, None).unwrap_err();
        assert_eq!(first.to_string(), errs[0].to_string());
    }

    #[test]
    fn resigned_bundle_is_rejected_by_pinned_key_only() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let pinned = f.tmp.path().join("pinned");
        fs::copy(dir.join(ALLOWED_SIGNERS), &pinned).unwrap();

        // A forger rebuilds the bundle with altered evidence and their own key.
        let forger = SigningKey::generate(&f.tmp.path().join("forger"), "evil").unwrap();
        let forged_root = f.tmp.path().join("forged");
        let mut w = BundleWriter::create(&forged_root, "bg-1", "run-1").unwrap();
        for (p, b) in FILES {
            let b: &[u8] = if *p == "signin.json" {
                b"{\"ok\":false}"
            } else {
                b
            };
            w.add(p, b).unwrap();
        }
        let forged = w.finish(&forger, SIGNER).unwrap();

        // Integrity-only check (the bundle's own allowed_signers) passes...
        let v = verify_bundle(&forged.dir, None).unwrap();
        assert_eq!(v.fingerprint, forger.fingerprint());
        assert_ne!(v.fingerprint, f.key.fingerprint());
        // ...but the auditor's pinned key rejects it, naming the key.
        let err = verify_bundle(&forged.dir, Some(&pinned)).unwrap_err();
        assert!(
            matches!(&err, VerifyError::SignerUnknown { fingerprint, .. } if *fingerprint == forger.fingerprint()),
            "{err:?}"
        );
        assert!(err.to_string().contains(&pinned.display().to_string()));
        let (ok, _) = ssh_keygen_verify(&forged.dir, &pinned);
        assert!(!ok);
    }

    #[test]
    fn allowed_signers_options_are_honoured() {
        let f = fixture();
        let dir = &f.bundle.dir;
        let pk = f.key.public_key_openssh();
        let allowed = f.tmp.path().join("allowed");
        let check = |content: String| {
            fs::write(&allowed, content).unwrap();
            verify_bundle(dir, Some(&allowed))
        };
        check(format!("{SIGNER} {pk}\n")).unwrap();
        check(format!(
            "\"{SIGNER}\" cert-authority,namespaces=\"x\" {pk}\n{SIGNER} {pk}\n"
        ))
        .unwrap();
        check(format!(
            "{SIGNER} valid-after=\"20000101\",valid-before=\"29991231Z\" {pk}\n"
        ))
        .unwrap();
        check(format!("{SIGNER} NAMESPACES=\"*\" {pk}\n")).unwrap();
        for bad in [
            format!("{SIGNER} namespaces=\"git,file\" {pk}\n"),
            format!("{SIGNER} namespaces=\"*,!glassdrill-*\" {pk}\n"),
            format!("{SIGNER} valid-before=\"20000101\" {pk}\n"),
            format!("{SIGNER} valid-after=\"29990101\" {pk}\n"),
            format!("{SIGNER} cert-authority {pk}\n"),
            String::new(),
        ] {
            let err = check(bad.clone()).unwrap_err();
            assert!(
                matches!(err, VerifyError::SignerUnknown { .. }),
                "{bad}: {err:?}"
            );
        }
        // A broken line is reported (with its line number) when no other
        // line allows the key.
        let errs = {
            fs::write(&allowed, format!("# c\n{SIGNER} bogus=\"1\" {pk}\n")).unwrap();
            verify_bundle_all(dir, Some(&allowed)).unwrap_err()
        };
        assert!(
            matches!(
                &errs[0],
                VerifyError::AllowedSignersMalformed { line: 2, .. }
            ),
            "{errs:?}"
        );
        assert!(
            matches!(&errs[1], VerifyError::SignerUnknown { .. }),
            "{errs:?}"
        );

        // Missing auditor file.
        let err = verify_bundle(dir, Some(&f.tmp.path().join("nope"))).unwrap_err();
        assert!(matches!(err, VerifyError::Unreadable { .. }), "{err:?}");
    }

    #[test]
    fn malformed_manifests_are_reported_by_line() {
        let (entries, errs) = parse_manifest(
            format!(
                "{h}  b\n{H}  c\n{h} *d\n{h}  /abs\n{h}  a\n{h}  b\n{h}  SHA256SUMS\nshort\n{h}  e",
                h = "a".repeat(64),
                H = "A".repeat(64)
            )
            .as_bytes(),
            Path::new("SHA256SUMS"),
        );
        let lines: Vec<usize> = errs
            .iter()
            .map(|e| match e {
                VerifyError::ManifestMalformed { line, .. } => *line,
                other => panic!("{other:?}"),
            })
            .collect();
        // Line 9 lacks its newline (reported first), 2 uppercase, 3 binary
        // mode, 4 absolute, 5 out of order, 6 duplicate, 7 self, 8 short.
        assert_eq!(lines, [9, 2, 3, 4, 5, 6, 7, 8]);
        let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["b", "a", "e"]);

        let (_, errs) = parse_manifest(b"", Path::new("SHA256SUMS"));
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn not_a_bundle() {
        let tmp = TempDir::new().unwrap();
        let err = verify_bundle(tmp.path(), None).unwrap_err();
        assert!(matches!(err, VerifyError::NotABundle { .. }), "{err:?}");
        let err = verify_bundle(&tmp.path().join("missing"), None).unwrap_err();
        assert!(matches!(err, VerifyError::NotABundle { .. }), "{err:?}");
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let err = verify_bundle(&file, None).unwrap_err();
        assert!(matches!(err, VerifyError::NotABundle { .. }), "{err:?}");
    }

    #[test]
    fn allowed_signer_lines_parse() {
        let pk = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKN8zaTYvpJ5wwyH7sbxYqcw7QN2S2TVrXt02FW8U1rr";
        let e = parse_allowed_signer_line(&format!("a@b {pk} trailing comment")).unwrap();
        assert_eq!(e.principals, "a@b");
        assert!(e.namespaces.is_none() && !e.cert_authority);
        assert_eq!(
            e.key.to_openssh().unwrap(),
            format!("{pk} trailing comment")
        );

        let e = parse_allowed_signer_line(&format!(
            "\"a b,c\" cert-authority,namespaces=\"x,y\",valid-after=\"20240102Z\",valid-before=\"202401021530Z\" {pk}"
        ))
        .unwrap();
        assert_eq!(e.principals, "a b,c");
        assert!(e.cert_authority);
        assert_eq!(e.namespaces.as_deref(), Some("x,y"));
        assert_eq!(
            e.valid_after.unwrap().to_rfc3339(),
            "2024-01-02T00:00:00+00:00"
        );
        assert_eq!(
            e.valid_before.unwrap().to_rfc3339(),
            "2024-01-02T15:30:00+00:00"
        );

        for bad in [
            format!("a {pk}x"),
            format!("a namespaces=x {pk}"),
            format!("a namespaces=\"x {pk}"),
            format!("a valid-after=\"2024\" {pk}"),
            format!("a unknown {pk}"),
            "a".to_string(),
        ] {
            assert!(parse_allowed_signer_line(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pinned_allowed_signers_may_be_a_symlink() {
        let f = fixture();
        let real = f.tmp.path().join("real_allowed");
        fs::copy(f.bundle.dir.join(ALLOWED_SIGNERS), &real).unwrap();
        let link = f.tmp.path().join("link_allowed");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        verify_bundle(&f.bundle.dir, Some(&link)).unwrap();
    }

    #[test]
    fn pattern_matching() {
        assert!(match_pattern_list(
            "glassdrill-evidence-v1",
            "glassdrill-evidence-v1"
        ));
        assert!(match_pattern_list(
            "glassdrill-evidence-v1",
            "git,glassdrill-*"
        ));
        assert!(match_pattern_list(
            "glassdrill-evidence-v1",
            "glass?rill-*-v?"
        ));
        assert!(match_pattern_list("glassdrill-evidence-v1", "*"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", "git"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", "*,!*-v1"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", "glassdrill"));
        assert!(!match_pattern_list("glassdrill-evidence-v1", ""));
    }
}
