//! The evidence signing key (OpenSSH Ed25519): generate, load, sign.

use super::*;

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
        // Each atomic write fsyncs the directory too.
        write_new_file_atomic(&pub_path, pub_line.as_bytes(), PUBLIC_KEY_MODE)?;
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
    pub(crate) fn load_or_generate(
        path: &Path,
        comment: &str,
    ) -> Result<(Self, bool), EvidenceError> {
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
    pub(crate) fn public_key_openssh(&self) -> String {
        self.public_openssh.clone()
    }

    /// The public key's SHA-256 fingerprint as ssh-keygen prints it:
    /// `SHA256:<unpadded base64>`.
    pub(crate) fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Signs `msg` in namespace [`NAMESPACE`] with hash sha512 and returns
    /// the armored signature (`-----BEGIN SSH SIGNATURE-----`, LF line
    /// endings, trailing newline): byte-for-byte what `ssh-keygen -Y sign`
    /// writes for the same key and message, since Ed25519 is deterministic.
    /// This key's line in an allowed_signers file, for `signer` in the
    /// evidence namespace.
    pub(crate) fn allowed_signers_line(&self, signer: &str) -> Result<String, EvidenceError> {
        Ok(format!(
            "{signer} namespaces=\"{NAMESPACE}\" {}\n",
            self.public_key_bare()?
        ))
    }

    /// The same Ed25519 key as a signed-note signer named `name` (the
    /// evidence log's checkpoints).
    pub fn note_signer(
        &self,
        name: &str,
    ) -> Result<crate::ledger::note::NoteSigner, EvidenceError> {
        let crypto = |why: String| EvidenceError::Crypto {
            action: "preparing the log checkpoint key",
            why,
        };
        let pair = self
            .key
            .key_data()
            .ed25519()
            .ok_or_else(|| crypto("the evidence key is not Ed25519".into()))?;
        crate::ledger::note::NoteSigner::new(name, &pair.private.to_bytes())
            .map_err(|e| crypto(e.to_string()))
    }

    /// The signed-note verifier of this key under `name`.
    pub fn note_verifier(
        &self,
        name: &str,
    ) -> Result<crate::ledger::note::NoteVerifier, EvidenceError> {
        self.note_signer(name)?.verifier_key().parse().map_err(
            |e: crate::ledger::note::NoteError| EvidenceError::Crypto {
                action: "preparing the log checkpoint key",
                why: e.to_string(),
            },
        )
    }

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
    pub(crate) fn public_key_bare(&self) -> Result<String, EvidenceError> {
        PublicKey::new(self.key.public_key().key_data().clone(), "")
            .to_openssh()
            .map(|s| s.trim_end().to_string())
            .map_err(|e| EvidenceError::Crypto {
                action: "encoding the public key",
                why: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::testutil::*;

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
}
