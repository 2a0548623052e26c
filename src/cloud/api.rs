//! One way to call a cloud API: bearer token (or an API key header),
//! requests spaced to the API's documented rate limit, 429 and 5xx
//! retried as `Retry-After` asks (whole or fractional seconds) or with
//! backoff, pages followed (`@odata.nextLink`, `nextLink`), malformed
//! JSON and error bodies turned into [`CloudError`]s that name the API and
//! carry no secret. Graph, Azure Resource Manager, Log Analytics and
//! PagerDuty clients all go through it.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{CloudError, Resource, TokenCache, retry_after};
use crate::support::retry::{Attempt, Backoff, RetryError, retry};

/// How a request authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// An OAuth2 bearer token for `Resource` from the cache.
    Token(&'a TokenCache, &'a Resource),
    /// A fixed `Authorization` header value (PagerDuty's
    /// `Token token=…`).
    Header(&'a SecretString),
}

/// Keeps requests within an API's documented rate: at most [`BURST`]
/// requests in any window of `BURST × gap` (Graph's sign-in logs: 5
/// requests per 10 s per app and tenant, so `gap` = 2 s), shared by every
/// client of that API in the process; a `Retry-After` holds them all back.
pub(crate) struct RateLimit {
    window: Duration,
    /// The recent requests, oldest first, and until when everything waits.
    state: tokio::sync::Mutex<(
        std::collections::VecDeque<tokio::time::Instant>,
        tokio::time::Instant,
    )>,
}

/// Requests an API may take at once, within its window.
const BURST: u32 = 5;

impl RateLimit {
    /// The process-wide limit of `key` (an API at a base URL): every
    /// client of that API shares it, so two runs at once stay within it.
    pub(crate) fn shared(key: &str, gap: Duration) -> std::sync::Arc<Self> {
        use std::collections::HashMap;
        use std::sync::{Arc, Mutex, OnceLock};
        static LIMITS: OnceLock<Mutex<HashMap<String, Arc<RateLimit>>>> = OnceLock::new();
        let mut m = LIMITS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(key.to_owned())
            .or_insert_with(|| {
                Arc::new(Self {
                    window: gap.saturating_mul(BURST),
                    state: tokio::sync::Mutex::new((
                        std::collections::VecDeque::new(),
                        tokio::time::Instant::now(),
                    )),
                })
            })
            .clone()
    }

    /// Holds every client of the API back for `d` (a `Retry-After`: the
    /// API asked the app, not one request, to wait).
    async fn defer(&self, d: Duration) {
        let mut st = self.state.lock().await;
        let until = tokio::time::Instant::now() + d;
        if until > st.1 {
            st.1 = until;
        }
    }

    /// Waits for a slot (or the stop).
    async fn wait(&self, cancel: &CancellationToken) -> Result<(), CloudError> {
        loop {
            let at = {
                let mut st = self.state.lock().await;
                let now = tokio::time::Instant::now();
                while st.0.front().is_some_and(|t| *t + self.window <= now) {
                    st.0.pop_front();
                }
                if st.1 > now {
                    st.1
                } else if st.0.len() < BURST as usize {
                    st.0.push_back(now);
                    return Ok(());
                } else {
                    st.0.front().map_or(now, |t| *t + self.window)
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = cancel.cancelled() => return Err(CloudError::Cancelled),
            }
        }
    }
}

/// An API client: a name for messages, the hint for a refusal, the rate
/// limit.
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    /// For messages: "Graph", "Azure Resource Manager"...
    pub(crate) name: &'static str,
    /// What to do about a 401/403 (the permission to grant).
    pub(crate) hint: &'static str,
    pub(crate) limit: std::sync::Arc<RateLimit>,
    pub(crate) backoff: Backoff,
}

/// Most pages followed in one listing.
const MAX_PAGES: usize = 50;

impl Api {
    /// A client of API `name` at `base`, requests at least `gap` apart
    /// (shared by every client of that API at that base in the process).
    pub(crate) fn new(
        http: reqwest::Client,
        name: &'static str,
        base: &str,
        hint: &'static str,
        gap: Duration,
    ) -> Self {
        Self {
            http,
            name,
            hint,
            limit: RateLimit::shared(&format!("{name} {base}"), gap),
            backoff: Backoff {
                max_attempts: 5,
                ..Backoff::API
            },
        }
    }

    /// One request (GET, or POST with a JSON body), retried on 429 and
    /// 5xx; the parsed JSON body of a 2xx.
    pub(crate) async fn call(
        &self,
        url: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        cancel: &CancellationToken,
    ) -> Result<Value, CloudError> {
        let got = retry(&self.backoff, cancel, |_| async {
            if let Err(e) = self.limit.wait(cancel).await {
                return Attempt::Fail(e);
            }
            let mut req = match body {
                Some(b) => self.http.post(url).json(b),
                None => self.http.get(url),
            };
            if !query.is_empty() {
                req = req.query(query);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req = match auth {
                Auth::Token(cache, resource) => match cache.token(resource, cancel).await {
                    Ok(t) => req.bearer_auth(t.expose_secret()),
                    Err(e) => return Attempt::Fail(e),
                },
                Auth::Header(v) => req.header(reqwest::header::AUTHORIZATION, v.expose_secret()),
            };
            let resp = tokio::select! {
                r = req.send() => r,
                () = cancel.cancelled() => return Attempt::Fail(CloudError::Cancelled),
            };
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    // A connection that failed may work on the next try.
                    return Attempt::Retry {
                        error: CloudError::http(e),
                        after: None,
                    };
                }
            };
            let status = resp.status().as_u16();
            if status == 429 || (500..600).contains(&status) {
                let after = retry_after(&resp);
                tracing::info!(
                    api = self.name,
                    status,
                    ?after,
                    "throttled or unavailable; retrying"
                );
                if let Some(a) = after {
                    self.limit.defer(a).await;
                }
                return Attempt::Retry {
                    error: CloudError::Api {
                        api: self.name,
                        status,
                        code: if status == 429 {
                            "throttled"
                        } else {
                            "unavailable"
                        }
                        .into(),
                        hint: "",
                    },
                    after,
                };
            }
            let bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return Attempt::Retry {
                        error: CloudError::http(e),
                        after: None,
                    };
                }
            };
            let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
            if status == 401
                && let Auth::Token(cache, resource) = auth
            {
                // Revoked early: the next call fetches a new token.
                cache.invalidate(resource).await;
            }
            if !(200..300).contains(&status) {
                let code = parsed
                    .as_ref()
                    .ok()
                    .and_then(|v| {
                        v["error"]["code"]
                            .as_str()
                            .or_else(|| v["error"]["message"].as_str())
                            .or_else(|| v["error"].as_str())
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| "unknown".into());
                let hint = if matches!(status, 401 | 403) {
                    self.hint
                } else {
                    ""
                };
                return Attempt::Fail(CloudError::Api {
                    api: self.name,
                    status,
                    code,
                    hint,
                });
            }
            match parsed {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fail(CloudError::Api {
                    api: self.name,
                    status,
                    code: format!("malformed JSON ({e})"),
                    hint: "",
                }),
            }
        })
        .await;
        match got {
            Ok(v) => Ok(v),
            Err(RetryError::Cancelled) => Err(CloudError::Cancelled),
            Err(RetryError::Exhausted { attempts, last }) => Err(CloudError::Throttled {
                api: self.name,
                attempts,
                last: last.to_string(),
            }),
            Err(RetryError::Failed(e)) => Err(e),
        }
    }

    /// A listing: every item of `value` over every page, following
    /// `@odata.nextLink` (Graph) or `nextLink` (Azure Resource Manager).
    pub(crate) async fn list(
        &self,
        url: &str,
        query: &[(&str, String)],
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        cancel: &CancellationToken,
    ) -> Result<Vec<Value>, CloudError> {
        let mut items = Vec::new();
        let mut page = self.call(url, query, None, auth, headers, cancel).await?;
        for _ in 0..MAX_PAGES {
            let Some(values) = page["value"].as_array() else {
                return Err(CloudError::Api {
                    api: self.name,
                    status: 200,
                    code: "malformed JSON (no `value` array)".into(),
                    hint: "",
                });
            };
            items.extend(values.iter().cloned());
            let next = page["@odata.nextLink"]
                .as_str()
                .or_else(|| page["nextLink"].as_str())
                .map(str::to_owned);
            match next {
                // The link carries the whole query.
                Some(n) => page = self.call(&n, &[], None, auth, headers, cancel).await?,
                None => return Ok(items),
            }
        }
        // A cut listing may lack what is looked for: an error, never a
        // "not found".
        Err(CloudError::Api {
            api: self.name,
            status: 200,
            code: format!("more than {MAX_PAGES} pages: narrow the query"),
            hint: "",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five at once, then no sixth before the window has passed; a
    /// `Retry-After` holds everything back.
    #[tokio::test(start_paused = true)]
    async fn at_most_a_burst_per_window() {
        let l = RateLimit::shared("test api http://127.0.0.1:1", Duration::from_secs(2));
        let cancel = CancellationToken::new();
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            l.wait(&cancel).await.unwrap();
        }
        assert_eq!(t0.elapsed(), Duration::ZERO);
        l.wait(&cancel).await.unwrap();
        assert_eq!(
            t0.elapsed(),
            Duration::from_secs(10),
            "5 requests in any 10 s"
        );
        l.defer(Duration::from_secs(30)).await;
        l.wait(&cancel).await.unwrap();
        assert!(t0.elapsed() >= Duration::from_secs(40));
    }
}
