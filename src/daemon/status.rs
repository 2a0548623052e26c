//! What `glassdrill status`, `glassdrill plan` and `/metrics` show: per
//! drill, the last verdict and PASS, the next due time and why, overdue,
//! the next key and keys not proven in time, what runs now. Read from the
//! state store in a few queries whatever the number of drills.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Custody, DrillConfig};
use crate::record::Verdict;
use crate::schedule::{next_key, overdue, stale_keys};
use crate::state::{StateError, StateStore};

/// One drill's status.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrillStatus {
    /// Drill id.
    pub drill: String,
    /// Account.
    pub account: String,
    /// Group.
    pub group: String,
    /// The tenant (`tenant_name`, else `entra` or `rehearsal`).
    pub tenant: String,
    /// `attached` or `custodian`.
    pub custody: &'static str,
    /// The most recent verdict.
    pub last_verdict: Option<Verdict>,
    /// The last PASS.
    pub last_pass: Option<DateTime<Utc>>,
    /// The drawn next due time (`None`: the daemon has not drawn it yet).
    pub next_due: Option<DateTime<Utc>>,
    /// How it was drawn.
    pub due_why: Option<String>,
    /// More than `max_days` since the last PASS.
    pub overdue: bool,
    /// Why no automatic run happens until a person runs it.
    pub hold: Option<String>,
    /// Why the drill is disabled.
    pub disabled: Option<String>,
    /// The key the next run uses.
    pub next_key: Option<String>,
    /// Keys not proven within `max_days` (a finding of their own).
    pub keys_not_proven: Vec<String>,
    /// A run in progress since.
    pub running_since: Option<DateTime<Utc>>,
    /// The stage it has reached.
    pub running_stage: Option<String>,
    /// The latest alert latency, sign-in to delivery.
    pub last_alert_latency_ms: Option<i64>,
    /// Runs by verdict: PASS, FAIL, ERROR, INTERRUPTED.
    pub runs_by_verdict: [i64; 4],
}

/// What the state store says of every drill (two queries), read apart
/// from the drill files so both can be read at once.
pub struct Snapshot {
    summaries:
        std::collections::HashMap<String, (crate::state::DrillState, crate::state::RunSummary)>,
    proofs: std::collections::HashMap<String, std::collections::HashMap<String, DateTime<Utc>>>,
}

impl Snapshot {
    /// Reads it.
    pub async fn read(store: &StateStore) -> Result<Self, StateError> {
        Ok(Self {
            summaries: store.summaries().await?,
            proofs: store.all_key_proofs().await?,
        })
    }
}

/// Collects every drill's status at `now`.
pub async fn collect(
    store: &StateStore,
    drills: &[DrillConfig],
    now: DateTime<Utc>,
) -> Result<Vec<DrillStatus>, StateError> {
    Ok(rows(&Snapshot::read(store).await?, drills, now))
}

/// Every drill's status at `now` from a snapshot (pure).
pub fn rows(snap: &Snapshot, drills: &[DrillConfig], now: DateTime<Utc>) -> Vec<DrillStatus> {
    let Snapshot { summaries, proofs } = snap;
    let empty = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(drills.len());
    for d in drills {
        let (st, sum) = summaries.get(&d.id).cloned().unwrap_or_default();
        let kp = proofs.get(&d.id).unwrap_or(&empty);
        let next_key = next_key(&d.schedule.keys, kp);
        let keys_not_proven = stale_keys(&d.schedule.keys, kp, d.schedule.cadence, now);
        out.push(DrillStatus {
            drill: d.id.clone(),
            account: d.account.clone(),
            group: d.group.clone(),
            tenant: d.tenant_label().to_owned(),
            custody: match d.schedule.custody {
                Custody::Attached => "attached",
                Custody::Custodian => "custodian",
            },
            last_verdict: sum.last_verdict,
            last_pass: sum.last_pass,
            overdue: st
                .due
                .is_some_and(|due| overdue(sum.last_pass, due, d.schedule.cadence, now)),
            next_due: st.due,
            due_why: st.due_why,
            hold: st.hold,
            disabled: st.disabled,
            next_key,
            keys_not_proven,
            running_since: sum.running_since,
            running_stage: sum.running_stage,
            last_alert_latency_ms: sum.last_alert_latency_ms,
            runs_by_verdict: sum.by_verdict,
        });
    }
    out
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

/// The status table (plain text, one drill a line, then the findings).
pub fn table(rows: &[DrillStatus], undelivered: usize) -> String {
    let mut t = format!(
        "{:<20} {:<12} {:<17} {:<17} {:<8} {:<12} {}\n",
        "DRILL", "LAST", "LAST PASS", "NEXT DUE", "OVERDUE", "NEXT KEY", "NOW"
    );
    for r in rows {
        let now = if let Some(d) = &r.disabled {
            format!("DISABLED: {d}")
        } else if let Some(s) = r.running_since {
            format!(
                "running since {}{}",
                when(Some(s)),
                r.running_stage
                    .as_ref()
                    .map(|st| format!(", in {st}"))
                    .unwrap_or_default()
            )
        } else if let Some(h) = &r.hold {
            format!("ON HOLD: {h}")
        } else {
            String::new()
        };
        t.push_str(&format!(
            "{:<20} {:<12} {:<17} {:<17} {:<8} {:<12} {}\n",
            r.drill,
            r.last_verdict.map_or("-".to_owned(), |v| v.to_string()),
            when(r.last_pass),
            r.next_due
                .map_or_else(|| "not drawn".to_owned(), |d| when(Some(d))),
            if r.overdue { "OVERDUE" } else { "no" },
            r.next_key.as_deref().unwrap_or("-"),
            now
        ));
    }
    for r in rows.iter().filter(|r| !r.keys_not_proven.is_empty()) {
        t.push_str(&format!(
            "finding: drill {}: key(s) not proven within max_days: {}\n",
            r.drill,
            r.keys_not_proven.join(", ")
        ));
    }
    if undelivered > 0 {
        t.push_str(&format!(
            "{undelivered} notification(s) not delivered yet (retried; `glassdrill status --json` lists them)\n"
        ));
    }
    t
}

/// The upcoming schedule over `days`: each drill's drawn due time, then
/// the range each later drill falls in if every drill passes when due
/// (later times are drawn only when the previous drill passes).
pub fn plan(
    drills: &[DrillConfig],
    rows: &[DrillStatus],
    now: DateTime<Utc>,
    days: i64,
) -> Vec<(DateTime<Utc>, String)> {
    let end = now + chrono::Duration::days(days);
    let mut out = Vec::new();
    for d in drills {
        let row = rows.iter().find(|r| r.drill == d.id);
        let Some(due) = row.and_then(|r| r.next_due) else {
            out.push((
                now,
                format!(
                    "{}: to be drawn at the daemon's next tick (first window from now)",
                    d.id
                ),
            ));
            continue;
        };
        out.push((
            due,
            format!(
                "{}: due {} ({})",
                d.id,
                when(Some(due)),
                row.and_then(|r| r.due_why.clone()).unwrap_or_default()
            ),
        ));
        let (min, max) = (d.schedule.cadence.min, d.schedule.cadence.max);
        let mut pass = due;
        while pass + min < end {
            let (lo, hi) = (pass + min, pass + max);
            out.push((
                lo,
                format!(
                    "{}: between {} and {} (inside its windows)",
                    d.id,
                    when(Some(lo)),
                    when(Some(hi))
                ),
            ));
            pass = lo + (max - min) / 2;
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    out
}
