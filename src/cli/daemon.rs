//! `daemon`, `status`, `plan`, `state rebuild`.

use std::sync::Arc;

use super::*;
use crate::daemon::{Daemon, DaemonOptions, SystemClock, status};
use crate::state::StateStore;

/// `glassdrill daemon`: runs until `cancel`.
pub(crate) async fn daemon(host: HostConfig, cancel: CancellationToken) -> u8 {
    for w in &host.warnings {
        errln!("{w}");
    }
    let d = match Daemon::start(
        host,
        Arc::new(SystemClock),
        DaemonOptions::default(),
        cancel,
    )
    .await
    {
        Ok(d) => Arc::new(d),
        Err(e) => {
            errln!("error: {e}");
            return Verdict::Error.exit_code();
        }
    };
    match d.run().await {
        Ok(()) => 0,
        Err(e) => {
            errln!("error: {e}");
            Verdict::Error.exit_code()
        }
    }
}

async fn open(host: &HostConfig) -> Result<StateStore, u8> {
    StateStore::open_host(host, true).await.map_err(|e| {
        errln!("error: {e}");
        Verdict::Error.exit_code()
    })
}

/// The valid drills; problems of the others are summed up on stderr.
fn drills(host: &HostConfig) -> Vec<DrillConfig> {
    summed_up(host, crate::config::drill::load_drills(&host.drills_dir))
}

fn summed_up(
    host: &HostConfig,
    (drills, problems): (Vec<DrillConfig>, crate::config::Problems),
) -> Vec<DrillConfig> {
    let errors = problems
        .0
        .iter()
        .filter(|p| p.severity == crate::config::Severity::Error)
        .count();
    if errors > 0 {
        errln!(
            "{errors} problem(s) in the drill files under {}: those drills are disabled; `glassdrill check-config` lists them",
            host.drills_dir.display()
        );
    }
    drills
}

/// What `status` and `plan` show: the database, the valid drills, their
/// status, and when.
type Current = (
    StateStore,
    Vec<DrillConfig>,
    Vec<status::DrillStatus>,
    chrono::DateTime<chrono::Utc>,
);

/// The state database, the valid drills and their status now.
async fn current(host: &HostConfig) -> Result<Current, u8> {
    // The drill files and the database are read at once.
    let dir = host.drills_dir.clone();
    let loading = tokio::task::spawn_blocking(move || crate::config::drill::load_drills(&dir));
    let store = open(host).await?;
    let snap = status::Snapshot::read(&store).await;
    let drills = match loading.await {
        Ok(loaded) => summed_up(host, loaded),
        Err(_) => drills(host),
    };
    let now = crate::support::time::now();
    match snap {
        Ok(snap) => {
            let rows = status::rows(&snap, &drills, now);
            Ok((store, drills, rows, now))
        }
        Err(e) => {
            errln!("error: {e}");
            Err(Verdict::Error.exit_code())
        }
    }
}

/// `glassdrill status`.
pub(crate) async fn status(host: &HostConfig, a: StatusArgs) -> u8 {
    let (store, _, mut rows, _) = match current(host).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(t) = &a.tenant {
        rows.retain(|r| &r.tenant == t);
        if rows.is_empty() {
            errln!(
                "error: no drill of tenant {t} (a drill file's tenant_name; `glassdrill status --json` lists each drill's tenant)"
            );
            store.close().await;
            return EXIT_USAGE;
        }
    }
    let undelivered = store.undelivered().await.unwrap_or_default();
    let locks = store.locks().await.unwrap_or_default();
    // Unexpected uses of the accounts no one has classified yet.
    // In a fleet, the fleet's log (every host's drills, everyone's
    // classifications); else this host's.
    let uses = if store.backend() == crate::state::Backend::Postgres {
        crate::evidence::log::open_uses(
            &crate::state::fleet::fleet_entries(&store)
                .await
                .unwrap_or_default(),
        )
    } else {
        crate::evidence::log::EvidenceLog::at(&host.evidence_dir()).open_uses()
    };
    if a.json {
        let v = serde_json::json!({
            "drills": rows,
            "undelivered_notifications": undelivered.iter().map(|n| serde_json::json!({
                "id": n.id, "drill": n.drill_id, "channel": n.channel, "kind": n.kind,
                "subject": n.subject, "attempts": n.attempts, "last_error": n.last_error,
                "queued": crate::support::time::rfc3339_ms(n.created),
            })).collect::<Vec<_>>(),
            "unreviewed_uses": uses.iter().map(|u| serde_json::json!({
                "account": u.account, "signin": u.signin, "created": u.created, "found_by": u.found_by,
            })).collect::<Vec<_>>(),
            "locks": locks.iter().map(|l| serde_json::json!({
                "name": l.name, "holder": l.holder, "host": l.host, "pid": l.pid,
                "since": crate::support::time::rfc3339_ms(l.since),
            })).collect::<Vec<_>>(),
        });
        out!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let mut t = status::table(&rows, undelivered.len());
        for l in &locks {
            t.push_str(&format!(
                "running: {} (host {}) holds {} since {}\n",
                l.holder,
                l.host,
                l.name,
                crate::support::time::rfc3339_ms(l.since)
            ));
        }
        for u in &uses {
            t.push_str(&format!(
                "UNREVIEWED USE: {}; classify it: {}\n",
                u.words(),
                u.fix()
            ));
        }
        out!("{}", t.trim_end());
    }
    store.close().await;
    0
}

/// `glassdrill plan`.
pub(crate) async fn plan(host: &HostConfig, a: PlanArgs) -> u8 {
    let (store, drills, rows, now) = match current(host).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let plan = status::plan(&drills, &rows, now, a.days);
    if a.json {
        let v: Vec<serde_json::Value> = plan
            .iter()
            .map(|(t, what)| serde_json::json!({"at": crate::support::time::rfc3339_ms(*t), "what": what}))
            .collect();
        out!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for (_, what) in &plan {
            out!("{what}");
        }
    }
    store.close().await;
    0
}

/// `glassdrill state rebuild`.
pub(crate) async fn rebuild(host: &HostConfig) -> u8 {
    // A fleet's database holds every host's runs; this host's bundles are
    // a part of them: a rebuild from them would drop the others'.
    if let Some(pg) = &host.state.postgres {
        errln!(
            "error: the state is the fleet's database ({}), shared by every host: a rebuild from this host's bundles would drop the others' runs; restore the database from its backup (the fleet's bundles and log are in it: `glassdrill evidence verify` checks them)",
            pg.url
        );
        return EXIT_USAGE;
    }
    let store = match open(host).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match crate::state::rebuild(&store, &host.evidence_dir()).await {
        Ok(r) => {
            out!(
                "indexed {} bundle(s) from {}",
                r.indexed,
                host.evidence_dir().display()
            );
            for (dir, why) in &r.skipped {
                errln!("skipped {}: {why}", dir.display());
            }
            store.close().await;
            0
        }
        Err(e) => {
            errln!("error: {e}");
            Verdict::Error.exit_code()
        }
    }
}
