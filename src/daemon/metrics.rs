//! Prometheus `/metrics` on a loopback address: per drill, the last PASS,
//! the next due time, overdue, the latest alert latency, and results by
//! verdict (text exposition format 0.0.4).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::status::DrillStatus;
use super::{Daemon, DaemonError};

/// A running metrics server.
pub struct MetricsServer {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl MetricsServer {
    /// Stops serving.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A drill's labels: the drill, its tenant, and the host reporting it (in
/// a fleet, every host reports every drill; `host` tells them apart).
fn labels(r: &DrillStatus, host: &str) -> String {
    format!(
        "drill=\"{}\",tenant=\"{}\",host=\"{}\"",
        label(&r.drill),
        label(&r.tenant),
        label(host)
    )
}

/// The exposition text for `rows`, reported by `host` (pure).
pub fn render(rows: &[DrillStatus], host: &str) -> String {
    let mut t = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        t.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for l in lines {
            t.push_str(&l);
            t.push('\n');
        }
    };
    let secs = |d: chrono::DateTime<chrono::Utc>| d.timestamp_millis() as f64 / 1000.0;
    family(
        "glassdrill_last_pass_timestamp_seconds",
        "gauge",
        "When the drill last passed (Unix time); absent if it never did.",
        rows.iter()
            .filter_map(|r| {
                r.last_pass.map(|p| {
                    format!(
                        "glassdrill_last_pass_timestamp_seconds{{{}}} {}",
                        labels(r, host),
                        secs(p)
                    )
                })
            })
            .collect(),
    );
    family(
        "glassdrill_next_due_timestamp_seconds",
        "gauge",
        "When the drill is next due (Unix time); absent until drawn.",
        rows.iter()
            .filter_map(|r| {
                r.next_due.map(|d| {
                    format!(
                        "glassdrill_next_due_timestamp_seconds{{{}}} {}",
                        labels(r, host),
                        secs(d)
                    )
                })
            })
            .collect(),
    );
    family(
        "glassdrill_overdue",
        "gauge",
        "1 when more than max_days have passed since the drill's last PASS.",
        rows.iter()
            .map(|r| {
                format!(
                    "glassdrill_overdue{{{}}} {}",
                    labels(r, host),
                    u8::from(r.overdue)
                )
            })
            .collect(),
    );
    family(
        "glassdrill_alert_latency_seconds",
        "gauge",
        "The latest drill's alert latency, sign-in to delivery.",
        rows.iter()
            .filter_map(|r| {
                r.last_alert_latency_ms.map(|ms| {
                    format!(
                        "glassdrill_alert_latency_seconds{{{}}} {}",
                        labels(r, host),
                        ms as f64 / 1000.0
                    )
                })
            })
            .collect(),
    );
    family(
        "glassdrill_drill_results_total",
        "counter",
        "Drill runs by verdict.",
        rows.iter()
            .flat_map(|r| {
                ["PASS", "FAIL", "ERROR", "INTERRUPTED"]
                    .iter()
                    .zip(r.runs_by_verdict)
                    .map(|(v, n)| {
                        format!(
                            "glassdrill_drill_results_total{{{},verdict=\"{v}\"}} {n}",
                            labels(r, host)
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
    );
    t
}

async fn metrics(State(d): State<Arc<Daemon>>) -> impl IntoResponse {
    match d.status().await {
        Ok(rows) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(&rows, d.store().host()),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// Binds `addr` first, then serves `/metrics`.
pub async fn serve(addr: SocketAddr, daemon: Arc<Daemon>) -> Result<MetricsServer, DaemonError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| DaemonError::Config(format!("daemon.metrics_listen {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| DaemonError::Config(format!("daemon.metrics_listen: {e}")))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(daemon);
    let cancel = CancellationToken::new();
    let task = crate::support::http::serve(listener, app, cancel.clone());
    tracing::info!(%addr, "serving /metrics");
    Ok(MetricsServer { cancel, task, addr })
}
