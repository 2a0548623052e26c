//! The HTTP client for cloud APIs (and the rehearsal tenant's).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves `localhost` and `*.localhost` to loopback itself (RFC 6761),
/// as Chromium does, instead of trusting the system resolver to; every
/// other name goes to the system resolver.
#[derive(Debug, Clone, Copy)]
struct LoopbackAware;

impl Resolve for LoopbackAware {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
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
