//! A fleet's commands: `fleet status`, `state migrate --to postgres://…`,
//! and `evidence verify` / `evidence export` over the fleet's evidence
//! (the database's bundles and log, written out and checked with the
//! single host's verifier, so every host gives the same answer).

use super::*;
use crate::state::{Backend, StateStore};

use crate::state::fleet::SILENT_AFTER;

/// `fleet status` options.
#[derive(Debug, Args)]
pub struct FleetStatusArgs {
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `state migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The fleet's database: postgres://USER@HOST:PORT/DATABASE (no
    /// password in it).
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// Its password, by reference (`file:…`, `env:…`, `credential:…`)
    /// [default: [state] password when --to is [state] url].
    #[arg(long, value_name = "REF")]
    pub password: Option<String>,
    /// TLS: disable, prefer, require, verify-ca or verify-full [default:
    /// [state] tls when --to is [state] url, else verify-full].
    #[arg(long)]
    pub tls: Option<String>,
    /// The CA of the server's certificate.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// The fleet's database named by `a`.
fn target(host: &HostConfig, a: &MigrateArgs) -> Result<crate::config::PostgresConfig, String> {
    let configured = host
        .state
        .postgres
        .as_ref()
        .filter(|p| p.url.trim_end_matches('/') == a.to.trim_end_matches('/'));
    let url = crate::config::state::database_url(&a.to, "--to", "--password")?;
    let password = match (&a.password, configured) {
        (Some(p), _) => {
            Some(crate::secret::SecretRef::parse(p).map_err(|e| format!("--password: {e}"))?)
        }
        (None, Some(c)) => c.password.clone(),
        (None, None) => None,
    };
    use crate::config::PgTls;
    let tls = match (a.tls.as_deref(), configured) {
        (Some(t), _) => {
            PgTls::parse(t).ok_or_else(|| format!("--tls {t}: one of {}", PgTls::NAMES))?
        }
        (None, Some(c)) => c.tls,
        (None, None) => PgTls::VerifyFull,
    };
    Ok(crate::config::PostgresConfig {
        url: url.to_string(),
        password,
        tls,
        tls_ca: a
            .tls_ca
            .clone()
            .or_else(|| configured.and_then(|c| c.tls_ca.clone())),
    })
}

/// `glassdrill state migrate --to postgres://…`: this host's SQLite state
/// and its evidence bundles into a fleet's database.
pub(crate) async fn migrate(host: &HostConfig, a: &MigrateArgs) -> u8 {
    let cfg = match target(host, a) {
        Ok(c) => c,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let from = match StateStore::open(&host.daemon.state_db).await {
        Ok(s) => s.named(&host.state.host, host.state.lease),
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let to = match StateStore::open_postgres(&cfg).await {
        Ok(s) => s.named(&host.state.host, host.state.lease),
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let copied = match crate::state::migrate::copy_state(&from, &to).await {
        Ok(c) => c,
        Err(e) => {
            errln!(
                "error: copying into {}: {e}; what was copied stays, and running the migration again copies the rest",
                cfg.url
            );
            return Verdict::Error.exit_code();
        }
    };
    for (table, n, kept) in &copied.tables {
        out!("{table}: {n} row(s) copied, {kept} already in the fleet (kept as they are)");
    }
    let key = match crate::evidence::SigningKey::load(&host.evidence.signing_key) {
        Ok(k) => k,
        Err(e) => {
            errln!("error: the evidence bundles were not published: {e}");
            return Verdict::Error.exit_code();
        }
    };
    match crate::state::fleet::join_and_publish(&to, host, &key, crate::support::time::now()).await
    {
        Ok(n) => out!(
            "evidence: {n} bundle(s) of {} stored in the fleet and appended to its log (fleet {}); they stay on this host too",
            host.evidence_dir().display(),
            host.state.fleet
        ),
        Err(e) => {
            errln!("error: publishing the evidence bundles: {e}");
            return Verdict::Error.exit_code();
        }
    }
    out!(
        "done: set [state] url = \"{}\" in glassdrill.toml (password by reference) and restart the daemon",
        cfg.url
    );
    from.close().await;
    to.close().await;
    0
}

/// What `fleet status` shows.
#[derive(Debug, serde::Serialize)]
struct FleetStatus {
    fleet: String,
    database: String,
    hosts: Vec<HostStatus>,
    /// Drills no live host has a key of: a finding.
    unservable: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct HostStatus {
    name: String,
    version: String,
    heartbeat: String,
    silent: bool,
    keys: Vec<KeyStatus>,
    leases: Vec<LeaseStatus>,
    drills: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct KeyStatus {
    drill: String,
    key: String,
    aaguid: Option<String>,
    credential_sha256: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct LeaseStatus {
    name: String,
    holder: String,
    since: String,
}

/// `glassdrill fleet status`.
pub(crate) async fn status(host: &HostConfig, a: &FleetStatusArgs) -> u8 {
    let store = match StateStore::open_host(host, true).await {
        Ok(s) => s,
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let now = crate::support::time::now();
    let read = async {
        Ok::<_, crate::state::StateError>((
            store.hosts().await?,
            store.host_keys().await?,
            store.locks_at(now).await?,
        ))
    };
    let (hosts, keys, locks) = match read.await {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    let (drills, _) = crate::config::drill::load_drills(&host.drills_dir);
    let st = FleetStatus {
        fleet: host.state.fleet.clone(),
        database: store.location().to_owned(),
        unservable: crate::state::fleet::unservable(
            drills.iter().map(|d| d.id.as_str()),
            &hosts,
            &keys,
            now,
        ),
        hosts: hosts
            .iter()
            .map(|h| {
                let mine: Vec<&crate::state::fleet::HostKey> =
                    keys.iter().filter(|k| k.host == h.name).collect();
                let mut served: Vec<String> = mine.iter().map(|k| k.drill_id.clone()).collect();
                served.dedup();
                HostStatus {
                    name: h.name.clone(),
                    version: h.version.clone(),
                    heartbeat: crate::support::time::rfc3339_ms(h.heartbeat),
                    silent: now - h.heartbeat >= SILENT_AFTER,
                    keys: mine
                        .iter()
                        .map(|k| KeyStatus {
                            drill: k.drill_id.clone(),
                            key: k.key_id.clone(),
                            aaguid: k.aaguid.clone(),
                            credential_sha256: k.credential_sha256.clone(),
                        })
                        .collect(),
                    leases: locks
                        .iter()
                        .filter(|l| l.host == h.name)
                        .map(|l| LeaseStatus {
                            name: l.name.clone(),
                            holder: l.holder.clone(),
                            since: crate::support::time::rfc3339_ms(l.since),
                        })
                        .collect(),
                    drills: served,
                }
            })
            .collect(),
    };
    store.close().await;
    if a.json {
        out!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        out!(
            "fleet {} ({}): {} host(s)",
            st.fleet,
            st.database,
            st.hosts.len()
        );
        for h in &st.hosts {
            out!(
                "host {} (glassdrill {}): heartbeat {}{}",
                h.name,
                h.version,
                h.heartbeat,
                if h.silent { " SILENT" } else { "" }
            );
            for k in &h.keys {
                out!(
                    "  key {} of drill {}{}",
                    k.key,
                    k.drill,
                    k.aaguid
                        .as_ref()
                        .map(|a| format!(" (AAGUID {a})"))
                        .unwrap_or_default()
                );
            }
            for l in &h.leases {
                out!("  lease {} held by {} since {}", l.name, l.holder, l.since);
            }
            out!(
                "  can serve: {}",
                if h.drills.is_empty() {
                    "no drill".to_owned()
                } else {
                    h.drills.join(", ")
                }
            );
        }
        for d in &st.unservable {
            out!(
                "FINDING: drill {d}: no live host has one of its keys attached; attach one to a drill host"
            );
        }
    }
    u8::from(!st.unservable.is_empty())
}

/// After a review or classification was recorded in this host's log
/// (`code` 0), in a fleet: mirrored into the fleet's log at once.
pub(crate) async fn published(host: &HostConfig, code: u8) -> u8 {
    if code != 0 || !fleet_mode(Some(host)) {
        return code;
    }
    let done = async {
        let store = StateStore::open_host(host, true)
            .await
            .map_err(|e| e.to_string())?;
        let n = crate::state::fleet::join_and_publish_from_file(
            &store,
            host,
            crate::support::time::now(),
        )
        .await
        .map_err(|e| e.to_string())?;
        store.close().await;
        Ok::<_, String>(n)
    };
    match done.await {
        Ok(n) => {
            out!(
                "fleet {}: {n} entr(y/ies) appended to the fleet's log",
                host.state.fleet
            );
            0
        }
        Err(e) => {
            errln!(
                "error: recorded on this host, but not in the fleet's log: {e}; the daemon mirrors it after its next run"
            );
            1
        }
    }
}

/// Whether `evidence verify`/`export` read the fleet's evidence.
pub(crate) fn fleet_mode(host: Option<&HostConfig>) -> bool {
    host.is_some_and(|h| h.state.postgres.is_some())
}

/// The fleet's evidence written out into a private temp dir.
pub(crate) async fn materialized(host: &HostConfig) -> Result<(tempfile::TempDir, usize), u8> {
    let store = StateStore::open_host(host, true).await.map_err(|e| {
        errln!("error: {e}");
        Verdict::Error.exit_code()
    })?;
    if store.backend() != Backend::Postgres {
        errln!("error: no fleet: [state] url is not set");
        return Err(EXIT_USAGE);
    }
    let dir = tempfile::Builder::new()
        .prefix(".glassdrill-fleet-")
        .tempdir()
        .map_err(|e| {
            errln!("error: a temp dir: {e}");
            Verdict::Error.exit_code()
        })?;
    let m = store
        .materialize(dir.path(), &host.state.fleet)
        .await
        .map_err(|e| {
            errln!("error: reading the fleet's evidence: {e}");
            Verdict::Error.exit_code()
        })?;
    store.close().await;
    for f in &m.findings {
        errln!("FAILED: fleet store: {f}");
    }
    Ok((dir, m.findings.len()))
}

/// `evidence verify` of the fleet's bundles and log, from the database.
pub(crate) async fn verify(host: &HostConfig, since: Option<&std::path::Path>) -> u8 {
    let (dir, findings) = match materialized(host).await {
        Ok(m) => m,
        Err(code) => return code,
    };
    out!(
        "fleet {}: the bundles and the log stored in {}",
        host.state.fleet,
        host.state.postgres.as_ref().map_or("", |p| p.url.as_str())
    );
    let code = evidence::verify_fleet_dir(
        &dir.path().join("evidence"),
        &dir.path().join("allowed_signers"),
        &host.state.fleet,
        since,
    );
    if findings > 0 { 1 } else { code }
}

/// `evidence export` of the fleet's evidence; the export is recorded in
/// the fleet's log.
pub(crate) async fn export(host: &HostConfig, a: &ExportArgs) -> u8 {
    let (dir, findings) = match materialized(host).await {
        Ok(m) => m,
        Err(code) => return code,
    };
    if findings > 0 {
        errln!(
            "error: the fleet's store has altered rows: nothing exported; run `glassdrill evidence verify`"
        );
        return 1;
    }
    let key = match crate::evidence::SigningKey::load(&host.evidence.signing_key) {
        Ok(k) => k,
        Err(e) => {
            errln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (code, manifest) = evidence::export_from(
        host,
        a,
        &dir.path().join("evidence"),
        &dir.path().join("allowed_signers"),
        &host.state.fleet,
        &key,
    );
    if let Some(m) = manifest {
        let store = match StateStore::open_host(host, true).await {
            Ok(s) => s,
            Err(e) => {
                errln!("error: the export was made but not recorded in the fleet's log: {e}");
                return 1;
            }
        };
        let mut e = crate::evidence::log::Entry::new("export");
        e.manifest_sha256 = m;
        e.note = Some(format!(
            "fleet export to {} by host {}",
            a.out.display(),
            store.host()
        ));
        let recorded = async {
            let v = crate::state::fleet::fleet_verifiers(&store, &host.state.fleet).await?;
            store.fleet_append(&e, &key, &host.state.fleet, &v).await
        };
        if let Err(e) = recorded.await {
            errln!("warning: the export was made but not recorded in the fleet's log: {e}");
        }
        store.close().await;
    }
    code
}
