//! The HTTP client for cloud APIs (and the rehearsal tenant's), and the
//! one way glassdrill serves HTTP on a bound listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// `localhost` or a name under it (RFC 6761: always loopback).
pub(crate) fn is_localhost_name(name: &str) -> bool {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    n == "localhost" || n.ends_with(".localhost")
}

/// A host (name or address, IPv6 with or without brackets) that is
/// loopback: where plain HTTP or SMTP may go.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    is_localhost_name(h)
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Resolves `localhost` and `*.localhost` to loopback itself (RFC 6761),
/// as Chromium does, instead of trusting the system resolver to; every
/// other name goes to the system resolver.
#[derive(Debug, Clone, Copy)]
struct LoopbackAware;

impl Resolve for LoopbackAware {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let local = is_localhost_name(&host);
        Box::pin(async move {
            if local {
                let addrs: Addrs =
                    Box::new(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter());
                return Ok(addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client: `*.localhost` resolves to loopback, no proxy, bounded
/// timeouts, glassdrill's user agent.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(LoopbackAware))
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("glassdrill/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Serves `app` on an already bound `listener` in a task until `stop` is
/// cancelled (graceful: requests in flight finish). The receiver, the
/// rehearsal tenant and `/metrics` all start this way.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    })
}
