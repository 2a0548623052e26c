//! A fleet of drill hosts sharing one state store (DESIGN D11): the hosts
//! and the keys attached to each, every host's evidence signing key with
//! its validity window, the sealed bundles (content-addressed by the
//! SHA-256 of their `SHA256SUMS`) and the fleet's one evidence log.
//!
//! The log is the single-host log's format (`evidence::log`): the same
//! JSON lines as RFC 6962 leaves and C2SP checkpoints, under the origin
//! `glassdrill-evidence-log/<fleet>`. Appends serialise on the one row of
//! `fleet_head` (a row lock in PostgreSQL, the write lock in SQLite); each
//! checkpoint is signed by the appending host's key, as a note signer named
//! after the fleet, so a verifier trusts every key the fleet's
//! `allowed_signers` lists for the fleet's name. [`StateStore::materialize`]
//! writes it all out as an evidence directory, so `evidence verify` and
//! `evidence export` check the fleet's history with the single host's code
//! and give the same answer on every host.

use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::{StateError, StateStore, at, ms};
use crate::evidence::log::{Entry, origin};
use crate::ledger::merkle;
use crate::ledger::note::Checkpoint;

/// A registered host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    /// Its name.
    pub name: String,
    /// The glassdrill version it runs.
    pub version: String,
    /// Its daemon's pid.
    pub pid: i64,
    /// When its daemon started.
    pub started: DateTime<Utc>,
    /// Its last heartbeat (every tick).
    pub heartbeat: DateTime<Utc>,
}

/// A key attached to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The host.
    pub host: String,
    /// The drill the key is registered for.
    pub drill_id: String,
    /// The key's name in the drill file.
    pub key_id: String,
    /// Its AAGUID, when known.
    pub aaguid: Option<String>,
    /// SHA-256 of its credential id (hex), when known.
    pub credential_sha256: Option<String>,
    /// When the host last saw it.
    pub seen: DateTime<Utc>,
}

/// A host whose heartbeat is older than this is silent: its keys serve
/// no drill.
pub const SILENT_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The drills (of `drills`) no live host can serve: no key of theirs is
/// attached to a host whose heartbeat is recent.
pub fn unservable<'a>(
    drills: impl IntoIterator<Item = &'a str>,
    hosts: &[HostRow],
    keys: &[HostKey],
    now: DateTime<Utc>,
) -> Vec<String> {
    drills
        .into_iter()
        .filter(|d| {
            !keys.iter().any(|k| {
                k.drill_id == *d
                    && hosts
                        .iter()
                        .any(|h| h.name == k.host && now - h.heartbeat < SILENT_AFTER)
            })
        })
        .map(str::to_owned)
        .collect()
}

/// This machine's identity (`/etc/machine-id`, else its host name).
pub fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(crate::config::state::hostname)
}

/// The live host that speaks for the fleet (notifies fleet-wide findings
/// once): the first by name whose heartbeat is recent.
pub fn speaker(hosts: &[HostRow], now: DateTime<Utc>) -> Option<&str> {
    hosts
        .iter()
        .filter(|h| now - h.heartbeat < SILENT_AFTER)
        .map(|h| h.name.as_str())
        .min()
}

/// Why the fleet's evidence cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The database.
    #[error(transparent)]
    State(#[from] StateError),
    /// A bundle or the log.
    #[error("{0}")]
    Evidence(String),
}

impl From<sqlx::Error> for FleetError {
    fn from(e: sqlx::Error) -> Self {
        Self::State(StateError::Query(e))
    }
}

/// What [`StateStore::materialize`] wrote and found.
#[derive(Debug, Default)]
pub struct Materialized {
    /// Bundles written.
    pub bundles: usize,
    /// Log entries written.
    pub entries: usize,
    /// Rows that are not what their address says (altered in the
    /// database), each named.
    pub findings: Vec<String>,
}

/// Every file of a bundle directory with its bytes, relative paths in
/// byte order.
fn bundle_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, FleetError> {
    let read = || -> std::io::Result<Vec<(String, Vec<u8>)>> {
        crate::support::fs::relative_files(dir)?
            .into_iter()
            .map(|rel| std::fs::read(dir.join(&rel)).map(|b| (rel, b)))
            .collect()
    };
    read().map_err(|e| FleetError::Evidence(format!("reading bundle {}: {e}", dir.display())))
}

/// A relative path from the database that stays inside the directory it
/// is written to.
fn safe_rel(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

impl StateStore {
    // ---- hosts and keys ---------------------------------------------------

    /// Registers this host (at its daemon's start) or beats its heart
    /// (every tick).
    pub async fn heartbeat(&self, version: &str, now: DateTime<Utc>) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO hosts (name, version, pid, started_ms, heartbeat_ms) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET version = $2, pid = $3, heartbeat_ms = $4",
        )
        .bind(&self.host)
        .bind(version)
        .bind(i64::from(std::process::id()))
        .bind(ms(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks this host's daemon as started now, on `machine` (its
    /// `/etc/machine-id`). Refused while another machine uses this host
    /// name (its heartbeat is recent): the two would take each other's
    /// leases for dead.
    pub async fn host_started(
        &self,
        version: &str,
        machine: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let other = sqlx::query("SELECT machine, heartbeat_ms FROM hosts WHERE name = $1")
            .bind(&self.host)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = other {
            let theirs: Option<String> = r.try_get("machine").ok().flatten();
            let beat = at(r.try_get("heartbeat_ms").unwrap_or_default());
            if theirs.as_deref().is_some_and(|m| m != machine) && now - beat < SILENT_AFTER {
                return Err(StateError::Connect {
                    url: self.location.clone(),
                    reason: format!(
                        "host name {} is in use by another machine (its last heartbeat {}): give each drill host its own [state] host",
                        self.host,
                        crate::support::time::rfc3339_ms(beat)
                    ),
                });
            }
        }
        self.heartbeat(version, now).await?;
        sqlx::query("UPDATE hosts SET started_ms = $2, machine = $3 WHERE name = $1")
            .bind(&self.host)
            .bind(ms(now))
            .bind(machine)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Replaces the keys attached to this host with `keys` (one
    /// transaction: a reader never sees half a list).
    pub async fn set_host_keys(
        &self,
        keys: &[HostKey],
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM host_keys WHERE host = $1")
            .bind(&self.host)
            .execute(&mut *tx)
            .await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO host_keys (host, drill_id, key_id, aaguid, credential_sha256, seen_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (host, drill_id, key_id) DO NOTHING",
            )
            .bind(&self.host)
            .bind(&k.drill_id)
            .bind(&k.key_id)
            .bind(&k.aaguid)
            .bind(&k.credential_sha256)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every registered host.
    pub async fn hosts(&self) -> Result<Vec<HostRow>, StateError> {
        let rows = sqlx::query("SELECT * FROM hosts ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| HostRow {
                name: r.try_get("name").unwrap_or_default(),
                version: r.try_get("version").unwrap_or_default(),
                pid: r.try_get("pid").unwrap_or_default(),
                started: at(r.try_get("started_ms").unwrap_or_default()),
                heartbeat: at(r.try_get("heartbeat_ms").unwrap_or_default()),
            })
            .collect())
    }

    /// Every host's attached keys.
    pub async fn host_keys(&self) -> Result<Vec<HostKey>, StateError> {
        let rows = sqlx::query("SELECT * FROM host_keys ORDER BY host, drill_id, key_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| HostKey {
                host: r.try_get("host").unwrap_or_default(),
                drill_id: r.try_get("drill_id").unwrap_or_default(),
                key_id: r.try_get("key_id").unwrap_or_default(),
                aaguid: r.try_get("aaguid").ok().flatten(),
                credential_sha256: r.try_get("credential_sha256").ok().flatten(),
                seen: at(r.try_get("seen_ms").unwrap_or_default()),
            })
            .collect())
    }

    /// The host whose run `run_id` is, if recorded.
    pub async fn run_host(&self, run_id: &str) -> Result<Option<String>, StateError> {
        let h: Option<Option<String>> =
            sqlx::query_scalar("SELECT host FROM runs WHERE run_id = $1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(h.flatten())
    }

    // ---- signers ----------------------------------------------------------

    /// Registers this host's evidence signing key (`public_key`: the bare
    /// `ssh-ed25519 AAAA…`) under `principal`, valid from `now`; a
    /// different key this host had is retired (valid until `now`).
    pub async fn register_signer(
        &self,
        principal: &str,
        public_key: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut tx = self.pool.begin().await?;
        let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signers WHERE host = $1")
            .bind(&self.host)
            .fetch_one(&mut *tx)
            .await?;
        let first = known == 0;
        sqlx::query(
            "UPDATE signers SET valid_before_ms = $3 WHERE host = $1 AND public_key <> $2 AND valid_before_ms IS NULL",
        )
        .bind(&self.host)
        .bind(public_key)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signers (host, principal, public_key, valid_after_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (host, public_key) DO UPDATE SET principal = $2",
        )
        .bind(&self.host)
        .bind(principal)
        .bind(public_key)
        // A host's first key signed everything it made before it joined
        // (`state migrate` brings those bundles): valid from the start.
        .bind(if first { 0 } else { ms(now) })
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The fleet's `allowed_signers`: every host's keys, each under its
    /// host's principal and the fleet's name, with its validity window.
    pub async fn fleet_allowed_signers(&self, fleet: &str) -> Result<String, StateError> {
        let rows = sqlx::query("SELECT * FROM signers ORDER BY host, valid_after_ms")
            .fetch_all(&self.pool)
            .await?;
        let stamp = |t: DateTime<Utc>| t.format("%Y%m%d%H%M%SZ").to_string();
        let mut out = String::new();
        for r in rows {
            let host: String = r.try_get("host").unwrap_or_default();
            let principal: String = r.try_get("principal").unwrap_or_default();
            let key: String = r.try_get("public_key").unwrap_or_default();
            let after_ms: i64 = r.try_get("valid_after_ms").unwrap_or_default();
            let mut opts = format!("namespaces=\"{}\"", crate::evidence::NAMESPACE);
            if after_ms > 0 {
                // A minute of slack before: a bundle sealed in the second
                // the key was registered still falls inside.
                opts.push_str(&format!(
                    ",valid-after=\"{}\"",
                    stamp(at(after_ms) - chrono::Duration::minutes(1))
                ));
            }
            if let Some(b) = super::time_col(&r, "valid_before_ms") {
                opts.push_str(&format!(",valid-before=\"{}\"", stamp(b)));
            }
            out.push_str(&format!("{principal},{fleet} {opts} {key} host:{host}\n"));
        }
        Ok(out)
    }

    // ---- bundles ----------------------------------------------------------

    /// Stores a sealed bundle, addressed by `digest` (the SHA-256 of its
    /// `SHA256SUMS`, checked here). Storing it twice changes nothing.
    pub async fn store_bundle(
        &self,
        dir: &Path,
        drill_id: &str,
        run_id: &str,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<(), FleetError> {
        let files = bundle_files(dir)?;
        let sums = files
            .iter()
            .find(|(p, _)| p == "SHA256SUMS")
            .ok_or_else(|| FleetError::Evidence(format!("{} has no SHA256SUMS", dir.display())))?;
        let actual = crate::support::hash::sha256_hex(&sums.1);
        if actual != digest {
            return Err(FleetError::Evidence(format!(
                "{}: its SHA256SUMS digest is {actual}, not {digest}: not stored",
                dir.display()
            )));
        }
        let mut tx = self.pool.begin().await?;
        let new = sqlx::query(
            "INSERT INTO bundles (digest, drill_id, run_id, host, stored_ms) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(drill_id)
        .bind(run_id)
        .bind(&self.host)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if new == 1 {
            let b64 = base64::engine::general_purpose::STANDARD;
            for (path, bytes) in &files {
                sqlx::query("INSERT INTO bundle_files (digest, path, content) VALUES ($1, $2, $3)")
                    .bind(digest)
                    .bind(path)
                    .bind(b64.encode(bytes))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Digests of the stored bundles.
    pub async fn bundle_digests(&self) -> Result<Vec<String>, StateError> {
        Ok(
            sqlx::query_scalar("SELECT digest FROM bundles ORDER BY digest")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    // ---- the fleet's log --------------------------------------------------

    /// Appends `entry` to the fleet's log and signs a checkpoint over it
    /// with `key` (this host's), as note signer `fleet`. Serialised across
    /// hosts; never signs over a log that no longer matches its latest
    /// checkpoint. Returns the entry's index.
    pub async fn fleet_append(
        &self,
        entry: &Entry,
        key: &crate::evidence::SigningKey,
        fleet: &str,
        verifiers: &[crate::ledger::note::NoteVerifier],
    ) -> Result<u64, FleetError> {
        let line = serde_json::to_string(entry)
            .map_err(|e| FleetError::Evidence(format!("a log entry: {e}")))?;
        self.fleet_append_line(&line, key, fleet, verifiers).await
    }

    /// The fleet's log, line by line (each an entry's exact bytes).
    pub async fn fleet_lines(&self) -> Result<Vec<String>, StateError> {
        Ok(
            sqlx::query_scalar("SELECT line FROM fleet_log ORDER BY seq")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// [`fleet_append`](Self::fleet_append) of an entry's exact line (a
    /// host's own log entry mirrored byte for byte).
    pub async fn fleet_append_line(
        &self,
        line: &str,
        key: &crate::evidence::SigningKey,
        fleet: &str,
        verifiers: &[crate::ledger::note::NoteVerifier],
    ) -> Result<u64, FleetError> {
        let entry = match serde_json::from_str::<Entry>(line) {
            Ok(e) if !line.contains('\n') => e,
            _ => {
                return Err(FleetError::Evidence(
                    "not one log entry: nothing appended".into(),
                ));
            }
        };
        let mut tx = self.pool.begin().await?;
        // The first statement takes the head row's lock (PostgreSQL) or the
        // database's write lock (SQLite): one append at a time, fleet-wide.
        sqlx::query("UPDATE fleet_head SET size = size WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let lines: Vec<String> = sqlx::query_scalar("SELECT line FROM fleet_log ORDER BY seq")
            .fetch_all(&mut *tx)
            .await?;
        // Under the lock: what another host appended meanwhile is not
        // appended twice (the same line, or the same bundle).
        let already = lines.iter().position(|l| {
            l == line
                || (entry.kind == "bundle"
                    && serde_json::from_str::<Entry>(l).is_ok_and(|e| {
                        e.kind == "bundle" && e.manifest_sha256 == entry.manifest_sha256
                    }))
        });
        if let Some(i) = already {
            return Ok(i as u64);
        }
        let mut leaves: Vec<merkle::Hash> = lines
            .iter()
            .map(|l| merkle::leaf_hash(l.as_bytes()))
            .collect();
        let latest: Option<String> =
            sqlx::query_scalar("SELECT note FROM fleet_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        match latest {
            Some(note) => {
                let c = verifiers
                    .iter()
                    .find_map(|v| v.open(&note).ok())
                    .and_then(|t| Checkpoint::parse(t).ok());
                let matches = c.as_ref().is_some_and(|c| {
                    usize::try_from(c.size)
                        .is_ok_and(|n| n <= leaves.len() && merkle::root(&leaves[..n]) == c.root)
                });
                if !matches {
                    return Err(FleetError::Evidence(
                        "the fleet's evidence log no longer matches its latest checkpoint (edited in the database, or signed by a key the fleet does not list): nothing is appended; run `glassdrill evidence verify` on a host".into(),
                    ));
                }
            }
            None if !leaves.is_empty() => {
                return Err(FleetError::Evidence(
                    "the fleet's evidence log has entries but no checkpoint: nothing is appended; run `glassdrill evidence verify`".into(),
                ));
            }
            None => {}
        }
        let index = leaves.len() as u64;
        leaves.push(merkle::leaf_hash(line.as_bytes()));
        let line = line.to_owned();
        let size = leaves.len() as u64;
        let checkpoint = Checkpoint {
            origin: origin(fleet),
            size,
            root: merkle::root(&leaves),
        };
        let note = key
            .note_signer(fleet)
            .map_err(|e| FleetError::Evidence(e.to_string()))?
            .sign(&checkpoint.body())
            .map_err(|e| FleetError::Evidence(format!("signing the fleet checkpoint: {e}")))?;
        let seq = i64::try_from(index).unwrap_or(i64::MAX);
        sqlx::query("INSERT INTO fleet_log (seq, line, host) VALUES ($1, $2, $3)")
            .bind(seq)
            .bind(&line)
            .bind(&self.host)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO fleet_checkpoints (size, note, host) VALUES ($1, $2, $3)")
            .bind(seq + 1)
            .bind(&note)
            .bind(&self.host)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE fleet_head SET size = $1 WHERE id = 1")
            .bind(seq + 1)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(index)
    }

    /// Writes the fleet's evidence under `dir` as an evidence directory:
    /// each stored bundle as `<drill>/<run>/`, the log as `.log/entries.jsonl`
    /// and `.log/checkpoint`, and the fleet's signers as `allowed_signers`
    /// (beside, not inside, the bundles). A row whose bundle's SHA256SUMS
    /// does not hash to its address is a finding (the bundle is written as
    /// stored, for the verifier to name what else changed).
    pub async fn materialize(&self, dir: &Path, fleet: &str) -> Result<Materialized, FleetError> {
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |e: std::io::Error| FleetError::Evidence(format!("writing {what}: {e}"))
        };
        let mut out = Materialized::default();
        let b64 = base64::engine::general_purpose::STANDARD;
        let bundles = sqlx::query("SELECT digest, drill_id, run_id FROM bundles ORDER BY digest")
            .fetch_all(&self.pool)
            .await?;
        let evidence = dir.join("evidence");
        for b in bundles {
            let digest: String = b.try_get("digest").unwrap_or_default();
            let drill: String = b.try_get("drill_id").unwrap_or_default();
            let run: String = b.try_get("run_id").unwrap_or_default();
            if !safe_rel(&drill) || !safe_rel(&run) || drill.starts_with('.') {
                out.findings.push(format!(
                    "bundle row {digest}: drill {drill:?} / run {run:?} is not a name glassdrill writes (altered?)"
                ));
                continue;
            }
            let bdir = evidence.join(&drill).join(&run);
            std::fs::create_dir_all(&bdir).map_err(io(&bdir))?;
            let files = sqlx::query("SELECT path, content FROM bundle_files WHERE digest = $1")
                .bind(&digest)
                .fetch_all(&self.pool)
                .await?;
            let mut sums = None;
            for f in files {
                let path: String = f.try_get("path").unwrap_or_default();
                let content: String = f.try_get("content").unwrap_or_default();
                if !safe_rel(&path) {
                    out.findings.push(format!(
                        "bundle {drill}/{run}: a file named {path:?} (altered?)"
                    ));
                    continue;
                }
                let Ok(bytes) = b64.decode(content.as_bytes()) else {
                    out.findings.push(format!(
                        "bundle {drill}/{run}: {path} is not valid base64 in the database (altered)"
                    ));
                    continue;
                };
                if path == "SHA256SUMS" {
                    sums = Some(crate::support::hash::sha256_hex(&bytes));
                }
                let target = bdir.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(&target, &bytes).map_err(io(&target))?;
            }
            if sums.as_deref() != Some(digest.as_str()) {
                out.findings.push(format!(
                    "bundle {drill}/{run} is stored under {digest} but its SHA256SUMS hashes to {} (altered in the database)",
                    sums.as_deref().unwrap_or("nothing (missing)")
                ));
            }
            out.bundles += 1;
        }
        let log_dir = evidence.join(crate::evidence::log::LOG_DIR);
        std::fs::create_dir_all(&log_dir).map_err(io(&log_dir))?;
        let lines = self.fleet_lines().await?;
        out.entries = lines.len();
        let mut text = String::new();
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        let entries = log_dir.join("entries.jsonl");
        std::fs::write(&entries, text).map_err(io(&entries))?;
        let latest: Option<String> =
            sqlx::query_scalar("SELECT note FROM fleet_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        if let Some(note) = latest {
            let cp = log_dir.join("checkpoint");
            std::fs::write(&cp, note).map_err(io(&cp))?;
        }
        let signers = dir.join("allowed_signers");
        std::fs::write(&signers, self.fleet_allowed_signers(fleet).await?).map_err(io(&signers))?;
        Ok(out)
    }
}

/// The checkpoint verifiers of every key the fleet lists under `fleet`.
pub async fn fleet_verifiers(
    store: &StateStore,
    fleet: &str,
) -> Result<Vec<crate::ledger::note::NoteVerifier>, FleetError> {
    let text = store.fleet_allowed_signers(fleet).await?;
    let f = crate::evidence::pinned_allowed_signers(&text)
        .map_err(|e| FleetError::Evidence(format!("a temporary allowed_signers: {e}")))?;
    crate::evidence::log::log_verifiers(f.path(), fleet).map_err(FleetError::Evidence)
}

/// The kinds of a host's own log entries mirrored into the fleet's log
/// (byte for byte): what people and drills said about the evidence.
const MIRRORED: &[&str] = &[
    "review",
    "classification",
    crate::evidence::log::UNEXPECTED_USE,
];

/// The entries of the fleet's log (a line that does not parse is left out:
/// `evidence verify` names it).
pub async fn fleet_entries(store: &StateStore) -> Result<Vec<Entry>, StateError> {
    Ok(store
        .fleet_lines()
        .await?
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Publishes what the fleet's log does not hold yet from this host's
/// evidence: each bundle under `evidence_root` stored (content-addressed)
/// and appended, then this host's reviews, classifications and unexpected
/// uses, mirrored line for line; signed by `key`. Bundles stay on this
/// host too. Returns how many entries were appended.
pub async fn publish_pending(
    store: &StateStore,
    evidence_root: &Path,
    key: &crate::evidence::SigningKey,
    fleet: &str,
    now: DateTime<Utc>,
) -> Result<usize, FleetError> {
    let lines = store.fleet_lines().await?;
    let logged: std::collections::HashSet<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| e.kind == "bundle")
        .map(|e| e.manifest_sha256)
        .collect();
    let mut verifiers = None;
    let mut n = 0;
    for b in crate::evidence::log::bundles_on_disk(evidence_root) {
        let Some(digest) = b.manifest_sha256(evidence_root) else {
            continue;
        };
        if logged.contains(&digest) {
            continue;
        }
        let dir = evidence_root.join(&b.drill).join(&b.run);
        store
            .store_bundle(&dir, &b.drill, &b.run, &digest, now)
            .await?;
        if verifiers.is_none() {
            verifiers = Some(fleet_verifiers(store, fleet).await?);
        }
        store
            .fleet_append(
                &Entry::bundle(&b.drill, &b.run, &digest),
                key,
                fleet,
                verifiers.as_deref().unwrap_or_default(),
            )
            .await?;
        n += 1;
    }
    // Then what was said of them (after the bundles a review names).
    let have: std::collections::HashSet<&String> = lines.iter().collect();
    let local = crate::evidence::log::EvidenceLog::at(evidence_root)
        .lines()
        .map_err(|e| FleetError::Evidence(e.to_string()))?;
    for line in local {
        let mirrored =
            serde_json::from_str::<Entry>(&line).is_ok_and(|e| MIRRORED.contains(&e.kind.as_str()));
        if !mirrored || have.contains(&line) {
            continue;
        }
        if verifiers.is_none() {
            verifiers = Some(fleet_verifiers(store, fleet).await?);
        }
        store
            .fleet_append_line(&line, key, fleet, verifiers.as_deref().unwrap_or_default())
            .await?;
        n += 1;
    }
    Ok(n)
}

/// [`join_and_publish`] with the host's signing key read from its file
/// (a command or a run outside the daemon, which holds its key).
pub async fn join_and_publish_from_file(
    store: &StateStore,
    host: &crate::config::HostConfig,
    now: DateTime<Utc>,
) -> Result<usize, FleetError> {
    let key = crate::evidence::SigningKey::load(&host.evidence.signing_key)
        .map_err(|e| FleetError::Evidence(e.to_string()))?;
    join_and_publish(store, host, &key, now).await
}

/// Registers this host's signing key with the fleet, then publishes its
/// pending evidence (a daemon's start, a command, a run outside the
/// daemon).
pub async fn join_and_publish(
    store: &StateStore,
    host: &crate::config::HostConfig,
    key: &crate::evidence::SigningKey,
    now: DateTime<Utc>,
) -> Result<usize, FleetError> {
    let line = key.public_key_openssh();
    let bare: Vec<&str> = line.split_whitespace().take(2).collect();
    store
        .register_signer(&host.evidence.signer, &bare.join(" "), now)
        .await?;
    publish_pending(store, &host.evidence_dir(), key, &host.state.fleet, now).await
}
