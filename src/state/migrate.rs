//! `glassdrill state migrate --to postgres://…`: copies one host's SQLite
//! state into a fleet's PostgreSQL (both at this version's schema): every
//! row of the schedule, runs, key proofs and counters and the notification
//! outbox. A row the fleet already has (the same drill, run or
//! notification) is kept as the fleet has it and counted. Locks are not
//! copied (they belong to live processes); hosts register themselves.

use sqlx::{Column as _, Row as _, TypeInfo as _};

use super::{StateError, StateStore};

/// The tables copied, in an order that keeps every reference resolvable.
pub const TABLES: &[&str] = &[
    "drills",
    "runs",
    "key_proofs",
    "key_counters",
    "notifications",
];

/// Rows copied and already present, per table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// `(table, copied, already there)`.
    pub tables: Vec<(String, u64, u64)>,
}

/// One value, typed as its column.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

/// Copies `from`'s rows into `to`.
pub async fn copy_state(from: &StateStore, to: &StateStore) -> Result<Copied, StateError> {
    let mut out = Copied::default();
    for table in TABLES {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&from.pool)
            .await?;
        let (mut copied, mut kept) = (0, 0);
        let mut tx = to.pool.begin().await?;
        for r in &rows {
            let mut names = Vec::new();
            let mut values = Vec::new();
            for (i, c) in r.columns().iter().enumerate() {
                names.push(c.name().to_owned());
                let int = matches!(c.type_info().name(), "BIGINT" | "INTEGER" | "INT8" | "INT4");
                values.push(if int {
                    Value::Int(r.try_get::<Option<i64>, _>(i)?)
                } else {
                    Value::Text(r.try_get::<Option<String>, _>(i)?)
                });
            }
            let placeholders: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT DO NOTHING",
                names.join(", "),
                placeholders.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for v in values {
                q = match v {
                    Value::Int(i) => q.bind(i),
                    Value::Text(s) => q.bind(s),
                };
            }
            if q.execute(&mut *tx).await?.rows_affected() == 1 {
                copied += 1;
            } else {
                kept += 1;
            }
        }
        tx.commit().await?;
        out.tables.push(((*table).to_owned(), copied, kept));
    }
    to.refresh_summary(None).await?;
    Ok(out)
}
