//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519, and
//! the checkpoints of a transparency log (<https://c2sp.org/tlog-checkpoint>)
//! they carry. A checkpoint names the log (its origin), its size and its
//! root hash; signed, it lets anyone who keeps a copy prove later that the
//! log only grew.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

/// The signature type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

/// Why a key, note or checkpoint is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key string that is not `name+hash+base64`.
    #[error("malformed note key: {0}")]
    Key(&'static str),
    /// A note that is not text, a blank line and signature lines.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// No signature by the expected key.
    #[error("the note carries no signature by {0}")]
    Unsigned(String),
    /// The signature does not verify.
    #[error("the signature by {0} does not verify: the note was changed or signed by another key")]
    BadSignature(String),
    /// A checkpoint body that is not origin, size and root hash.
    #[error("malformed checkpoint: {0}")]
    Checkpoint(&'static str),
}

/// A key name: non-empty, no spaces, no `+`.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::Key(
            "the name must be non-empty, without spaces or '+'",
        ));
    }
    Ok(())
}

/// The 4-byte key id: SHA-256(name || "\n" || 0x01 || public key)[..4].
fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// Splits `name+hash+base64` into its parts, checking the 0x01 type byte
/// and 32 bytes of key material.
fn parse_key(s: &str) -> Result<(String, [u8; 4], [u8; 32]), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hash), Some(material)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::Key("expected name+hash+key"));
    };
    check_name(name)?;
    let hash: [u8; 4] = hex::decode(hash)
        .ok()
        .filter(|_| {
            hash.len() == 8
                && hash
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
        .and_then(|h| h.try_into().ok())
        .ok_or(NoteError::Key(
            "the key hash must be 8 lowercase hex digits",
        ))?;
    let raw = B64
        .decode(material)
        .map_err(|_| NoteError::Key("the key is not base64"))?;
    match raw.split_first() {
        Some((&ED25519, key)) if key.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(key);
            Ok((name.to_owned(), hash, k))
        }
        _ => Err(NoteError::Key("not an Ed25519 key (type 0x01, 32 bytes)")),
    }
}

/// A note signer: a name and an Ed25519 key.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl NoteSigner {
    /// A signer from an Ed25519 seed.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(seed),
        })
    }

    /// A signer from `PRIVATE+KEY+name+hash+base64` (the Go `note`
    /// package's format); the hash must match the key.
    pub fn from_private_key(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::Key("a private key starts with PRIVATE+KEY+"))?;
        let (name, hash, seed) = parse_key(rest)?;
        let signer = Self::new(&name, &seed)?;
        if key_id(&name, &signer.key.verifying_key()) != hash {
            return Err(NoteError::Key("the key hash does not match the key"));
        }
        Ok(signer)
    }

    /// The verifier key an auditor pins: `name+hash+base64(0x01 || key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key();
        let mut material = vec![ED25519];
        material.extend_from_slice(public.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(key_id(&self.name, &public)),
            B64.encode(material)
        )
    }

    /// Signs `text` (non-empty, ending in a newline): the text, a blank
    /// line, and `— name base64(key id || signature)`.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if text.is_empty() || !text.ends_with('\n') {
            return Err(NoteError::Malformed("the text must end with a newline"));
        }
        if text.contains("\n\n") || text.starts_with('\n') {
            return Err(NoteError::Malformed(
                "the text must not contain a blank line",
            ));
        }
        let sig = self.key.sign(text.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            B64.encode(blob)
        ))
    }
}

/// A note verifier: a pinned `name+hash+key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, NoteError> {
        let (name, hash, raw) = parse_key(s)?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| NoteError::Key("not a valid Ed25519 public key"))?;
        if key_id(&name, &key) != hash {
            return Err(NoteError::Key("the key hash does not match the key"));
        }
        Ok(Self {
            name,
            id: hash,
            key,
        })
    }
}

impl NoteVerifier {
    /// The verifier of the Ed25519 public key `public` named `name` (an
    /// `ssh-ed25519` key from `allowed_signers`).
    pub fn from_ed25519(name: &str, public: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public)
            .map_err(|_| NoteError::Key("not a valid Ed25519 public key"))?;
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Checks the note's signature by this key; returns its text.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "the signature lines must end with a newline",
            ));
        }
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(NoteError::Malformed(
                    "a signature line starts with an em dash and a space",
                ));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed(
                    "a signature line is `— name signature`",
                ));
            };
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(blob) else {
                return Err(NoteError::Malformed("a signature is not base64"));
            };
            if blob.len() != 4 + 64 || blob[..4] != self.id {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            return self
                .key
                .verify_strict(text.as_bytes(), &sig)
                .map(|()| text)
                .map_err(|_| NoteError::BadSignature(self.name.clone()));
        }
        Err(NoteError::Unsigned(self.name.clone()))
    }
}

/// A transparency log checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (its unique name).
    pub origin: String,
    /// How many leaves.
    pub size: u64,
    /// The Merkle tree hash.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, size in decimal, root hash in base64.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a note text (extension lines after the third are ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::Checkpoint("no origin"))?;
        let size = lines
            .next()
            .filter(|s| {
                !s.is_empty()
                    && s.chars().all(|c| c.is_ascii_digit())
                    && (s.len() == 1 || !s.starts_with('0'))
            })
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(NoteError::Checkpoint("the size is not a decimal number"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Checkpoint(
                "the root is not a base64 SHA-256 hash",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The reference vector of golang.org/x/mod/sumdb/note (note_test.go):
    // Ed25519 is deterministic, so signing must reproduce it byte for byte.
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn the_go_reference_note_is_reproduced_and_verifies() {
        let signer = NoteSigner::from_private_key(SKEY).unwrap();
        assert_eq!(signer.verifier_key(), VKEY);
        let note = signer.sign(TEXT).unwrap();
        assert_eq!(note, format!("{TEXT}\n{SIG}"));
        let v: NoteVerifier = VKEY.parse().unwrap();
        assert_eq!(v.open(&note), Ok(TEXT));
        let tampered = note.replace("cryptography", "cryptographY");
        assert_eq!(
            v.open(&tampered),
            Err(NoteError::BadSignature("PeterNeumann".into()))
        );
        let other = NoteSigner::new("PeterNeumann", &[7u8; 32])
            .unwrap()
            .sign(TEXT)
            .unwrap();
        assert_eq!(
            v.open(&other),
            Err(NoteError::Unsigned("PeterNeumann".into()))
        );
        for bad in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(bad.parse::<NoteVerifier>().is_err(), "{bad}");
        }
    }

    #[test]
    fn checkpoints_round_trip_and_refuse_junk() {
        let c = Checkpoint {
            origin: "glassdrill.localhost/evidence".into(),
            size: 42,
            root: super::super::merkle::leaf_hash(b"x"),
        };
        let signer = NoteSigner::new("glassdrill.localhost/evidence", &[3u8; 32]).unwrap();
        let note = signer.sign(&c.body()).unwrap();
        let v: NoteVerifier = signer.verifier_key().parse().unwrap();
        assert_eq!(Checkpoint::parse(v.open(&note).unwrap()), Ok(c));
        for junk in ["", "o\n", "o\n01\nAAAA\n", "o\n-1\n", "o\n3\nnot base64\n"] {
            assert!(Checkpoint::parse(junk).is_err(), "{junk:?}");
        }
    }
}
