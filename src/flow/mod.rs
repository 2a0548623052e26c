//! Sign-in flows as data, and the runner that drives one through a browser.
//!
//! A flow file (`drills/flows/*.toml`) lists steps; each waits for its page
//! (selectors with fallbacks, optionally Entra's `window.$Config.pgid` page
//! identity or a URL fragment), then fills and clicks. The runner tells
//! three things apart, because they mean different things to a security
//! team: the identity provider *refused* the sign-in (a finding: FAIL), the
//! page no longer looks like the flow says (*flow drift*: ERROR, fix the
//! flow file), and the browser itself broke (ERROR). It polls the page with
//! one script per tick instead of many WebDriver round trips.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::authenticator::Authenticator;
use crate::browser::Browser;
use crate::config::flow::{Flow, Step};
use crate::record::SignInStep;
use crate::support::testpoint::{checkpoint, pause};

mod page;

use page::{HTML_JS, PROBE_JS, PageHtml, PageState, redact_values, slug, strip_url};

/// Values the templates may use.
#[derive(Debug, Clone)]
pub struct FlowVars {
    /// Sign-in authority base URL.
    pub authority: String,
    /// Tenant id.
    pub tenant_id: String,
    /// Account UPN.
    pub upn: String,
}

impl FlowVars {
    /// Fills `{authority}`, `{tenant_id}` and `{upn}`.
    pub(crate) fn render(&self, template: &str) -> String {
        template
            .replace("{authority}", &self.authority)
            .replace("{tenant_id}", &self.tenant_id)
            .replace("{upn}", &self.upn)
    }
}

/// Why signing out did not complete (a teardown warning, never a verdict).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignOutError {
    /// The sign-out page showed an error.
    #[error("sign-out page shows an error: {0}")]
    Refused(String),
    /// The confirmation never appeared.
    #[error("sign-out page did not confirm")]
    NotConfirmed,
    /// Cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The browser failed.
    #[error(transparent)]
    Browser(#[from] crate::browser::BrowserError),
}

/// How the flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlowOutcome {
    /// Every step done: signed in.
    SignedIn,
    /// The identity provider refused the sign-in at `step`.
    Refused {
        /// Step name.
        step: String,
        /// The error text the page showed.
        message: String,
    },
    /// The identity provider refused the attempt for a reason that says
    /// nothing about the account (the request expired: the flow file's
    /// `failure.transient`): an ERROR, to run again.
    RefusedTransient {
        /// Step name.
        step: String,
        /// The error text the page showed.
        message: String,
    },
    /// The page did not match the flow at `step`.
    Drift {
        /// Step name.
        step: String,
        /// What did not match.
        detail: String,
    },
    /// The browser failed.
    BrowserFailed(String),
    /// The ceremony was not started because what must come before it
    /// failed (journaling it, loading the credential): no sign-in attempt.
    Aborted(String),
    /// Stopped (Ctrl-C, SIGTERM, shutdown). `attempted`: the WebAuthn
    /// ceremony had been started, so a sign-in may have happened.
    Cancelled {
        /// Whether the ceremony had been started.
        attempted: bool,
    },
}

/// A file captured during the flow, for the evidence bundle.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Relative bundle path, e.g. `screenshots/01-username.png`.
    pub name: String,
    /// Bytes.
    pub bytes: Vec<u8>,
}

/// The result of running a flow.
#[derive(Debug, Clone)]
pub(crate) struct FlowRun {
    /// Outcome.
    pub outcome: FlowOutcome,
    /// Per-step records.
    pub steps: Vec<SignInStep>,
    /// Screenshots and (on drift/refusal) page HTML.
    pub captures: Vec<Capture>,
    /// The IdP's correlation id (`$Config.correlationId`), to find the
    /// sign-in log record.
    pub correlation_id: Option<String>,
    /// When the ceremony step's click was made (wall clock, and monotonic
    /// for deadlines).
    pub ceremony_at: Option<(chrono::DateTime<chrono::Utc>, tokio::time::Instant)>,
    /// Whether the credential was loaded into the browser (right before the
    /// ceremony, never earlier).
    pub armed: bool,
    /// Whether the credential was taken out of the browser after the
    /// ceremony (`None`: never loaded).
    pub credential_removed: Option<Result<(), String>>,
}

/// Whether `state` is `step`'s page.
fn arrived(step: &Step, state: &PageState) -> bool {
    let url_ok = step.url_contains.is_empty()
        || state
            .url
            .as_deref()
            .is_some_and(|u| step.url_contains.iter().any(|c| u.contains(c.as_str())));
    let el_ok = step.wait_for.is_empty() || state.matched.is_some();
    let page_ok = step.page_ids.is_empty()
        || state
            .pgid
            .as_deref()
            .is_some_and(|p| step.page_ids.iter().any(|x| x == p));
    url_ok && el_ok && page_ok
}

/// Ends a run on a stop, at `record`'s step: no action of it was made.
fn stopped(mut run: FlowRun, record: SignInStep) -> FlowRun {
    run.steps.push(record);
    run.outcome = FlowOutcome::Cancelled {
        attempted: run.ceremony_at.is_some(),
    };
    run
}

/// Drives a [`Flow`] in a [`Browser`].
pub(crate) struct FlowRunner<'a> {
    browser: &'a Browser,
    flow: &'a Flow,
    vars: &'a FlowVars,
    step_timeout: Duration,
    poll: Duration,
    authenticator: Option<&'a dyn Authenticator>,
    before_ceremony: Option<&'a (dyn Fn() -> Result<(), String> + Sync)>,
}

enum Wait {
    /// The page of the `usize`-th candidate step arrived.
    Arrived(usize, PageState),
    Refused(String),
    Timeout(PageState),
    /// The browser is gone (crashed, killed): no page will come.
    BrowserGone(String),
    Cancelled,
}

/// Whether a WebDriver error means the browser itself is gone (Chromium
/// crashed or was killed, the session or chromedriver lost), as opposed to
/// a script that failed mid-navigation, which the next poll retries.
fn browser_gone(e: &fantoccini::error::CmdError) -> Option<String> {
    use fantoccini::error::CmdError;
    let text = e.to_string();
    let lower = text.to_lowercase();
    let gone = matches!(e, CmdError::Lost(_) | CmdError::FailedC(_))
        || [
            "invalid session id",
            "chrome not reachable",
            "not connected to devtools",
            "session deleted",
            "tab crashed",
            "target crashed",
            "target window already closed",
            "no such window",
        ]
        .iter()
        .any(|p| lower.contains(p));
    gone.then(|| {
        text.lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect()
    })
}

impl<'a> FlowRunner<'a> {
    /// A runner; `step_timeout` bounds each step's wait.
    pub fn new(
        browser: &'a Browser,
        flow: &'a Flow,
        vars: &'a FlowVars,
        step_timeout: Duration,
    ) -> Self {
        Self {
            browser,
            flow,
            vars,
            step_timeout,
            poll: Duration::from_millis(25),
            authenticator: None,
            before_ceremony: None,
        }
    }

    /// Called right before the ceremony step's click: the last moment
    /// before a sign-in may happen (the drill journals it).
    pub fn before_ceremony(mut self, f: &'a (dyn Fn() -> Result<(), String> + Sync)) -> Self {
        self.before_ceremony = Some(f);
        self
    }

    /// The authenticator to ask to remove its credential from the browser
    /// as soon as the ceremony is over.
    pub fn with_authenticator(mut self, a: &'a dyn Authenticator) -> Self {
        self.authenticator = Some(a);
        self
    }

    /// One poll: the page's state, `Ok(None)` when the script failed in a
    /// way the next poll may not (mid-navigation), `Err` when the browser
    /// is gone.
    async fn probe(&self, step: &Step) -> Result<Option<PageState>, String> {
        let client = self.browser.client().map_err(|e| e.to_string())?;
        match client
            .execute(
                PROBE_JS,
                vec![
                    json!(step.wait_for),
                    json!(self.flow.failure.selectors),
                    json!(self.flow.failure.config),
                ],
            )
            .await
        {
            Ok(v) => Ok(serde_json::from_value(v).ok()),
            Err(e) => match browser_gone(&e) {
                Some(reason) => Err(reason),
                None => Ok(None),
            },
        }
    }

    /// Waits until the page of one of `steps` arrives (the first arrived
    /// wins; more than one when optional steps may be skipped), the page
    /// shows a refusal, the step times out, or the run is stopped.
    async fn wait_for(&self, steps: &[&Step], cancel: &CancellationToken) -> Wait {
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(self.step_timeout)
            .unwrap_or(now + crate::config::MAX_STEP_TIMEOUT);
        let mut last = PageState::default();
        loop {
            for (k, step) in steps.iter().enumerate() {
                let polled = match self.probe(step).await {
                    Ok(p) => p,
                    Err(reason) => return Wait::BrowserGone(reason),
                };
                let Some(state) = polled else { continue };
                if let Some(f) = &state.failure {
                    return Wait::Refused(f.clone());
                }
                if let Some(pgid) = &state.pgid
                    && self.flow.failure.page_ids.iter().any(|p| p == pgid)
                {
                    let said = state
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    return Wait::Refused(format!("error page ({pgid}){said}"));
                }
                if arrived(step, &state) {
                    return Wait::Arrived(k, state);
                }
                if k == 0 {
                    last = state;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Wait::Timeout(last);
            }
            tokio::select! {
                () = cancel.cancelled() => return Wait::Cancelled,
                () = tokio::time::sleep(self.poll) => {}
            }
        }
    }

    async fn screenshot(
        &self,
        index: usize,
        name: &str,
        suffix: &str,
        captures: &mut Vec<Capture>,
    ) -> Option<String> {
        let (bytes, ext) = self.browser.screenshot().await.ok()?;
        let file = format!(
            "screenshots/{:02}-{}{}.{ext}",
            index + 1,
            slug(name),
            suffix
        );
        captures.push(Capture {
            name: file.clone(),
            bytes,
        });
        Some(file)
    }

    /// The token values on the current page (as [`HTML_JS`] finds them).
    async fn page_tokens(&self) -> Vec<String> {
        self.page().await.map(|p| p.values).unwrap_or_default()
    }

    /// The current page, cleaned, with the token values found on it.
    async fn page(&self) -> Option<PageHtml> {
        let client = self.browser.client().ok()?;
        let v = client.execute(HTML_JS, vec![]).await.ok()?;
        serde_json::from_value::<PageHtml>(v).ok()
    }

    /// Captures the page's HTML with its tokens taken out; returns the
    /// token values found, for sweeping other text taken from the page.
    async fn page_html(
        &self,
        index: usize,
        name: &str,
        captures: &mut Vec<Capture>,
    ) -> Vec<String> {
        let Some(page) = self.page().await else {
            return Vec::new();
        };
        captures.push(Capture {
            name: format!("pages/{:02}-{}.html", index + 1, slug(name)),
            bytes: redact_values(&page.html, &page.values).into_bytes(),
        });
        page.values
    }

    /// The first element matching one of `selectors`.
    async fn find_first(
        &self,
        selectors: &[String],
    ) -> Result<Option<(fantoccini::elements::Element, String)>, String> {
        let client = self.browser.client().map_err(|e| e.to_string())?;
        for sel in selectors {
            if let Ok(el) = client.find(Locator::Css(sel)).await {
                return Ok(Some((el, sel.clone())));
            }
        }
        Ok(None)
    }

    /// Everything right before the ceremony's click, in this order: the
    /// drill journals that a sign-in may now happen, the authenticator
    /// loads the credential, and the stop is checked one last time. Any of
    /// them failing means no click.
    async fn arm_ceremony(
        &self,
        run: &mut FlowRun,
        cancel: &CancellationToken,
    ) -> Result<(), FlowOutcome> {
        if let Some(f) = self.before_ceremony {
            f().map_err(|e| {
                FlowOutcome::Aborted(format!(
                    "the ceremony could not be journaled ({e}), so it was not started"
                ))
            })?;
        }
        if let Some(a) = self.authenticator {
            run.armed = true;
            a.arm(self.browser).await.map_err(|e| {
                FlowOutcome::Aborted(format!(
                    "the credential could not be loaded into the browser: {e}"
                ))
            })?;
        }
        if cancel.is_cancelled() {
            return Err(FlowOutcome::Cancelled { attempted: false });
        }
        Ok(())
    }

    /// Runs every step from the start URL.
    pub async fn run(&self, start_url: &str, cancel: &CancellationToken) -> FlowRun {
        let mut run = self.run_steps(start_url, cancel).await;
        // However the flow ended, a loaded credential leaves the browser.
        self.after_ceremony(&mut run).await;
        run
    }

    async fn run_steps(&self, start_url: &str, cancel: &CancellationToken) -> FlowRun {
        let mut run = FlowRun {
            outcome: FlowOutcome::SignedIn,
            steps: Vec::new(),
            captures: Vec::new(),
            correlation_id: None,
            ceremony_at: None,
            armed: false,
            credential_removed: None,
        };
        let client = match self.browser.client() {
            Ok(c) => c,
            Err(e) => {
                run.outcome = FlowOutcome::BrowserFailed(e.to_string());
                return run;
            }
        };
        let url = self.vars.render(start_url);
        if let Err(e) = client.goto(&url).await {
            run.outcome =
                FlowOutcome::BrowserFailed(format!("cannot open {}: {e}", strip_url(&url)));
            return run;
        }
        let steps = &self.flow.steps;
        let mut i = 0;
        let mut previous: Option<usize> = None;
        while i < steps.len() {
            let started = crate::support::time::now();
            // An optional step's page may not come: the pages of the steps
            // up to the next mandatory one are awaited together.
            let mandatory = steps[i..]
                .iter()
                .position(|s| !s.optional)
                .map_or(steps.len() - 1, |p| i + p);
            let candidates: Vec<&Step> = steps[i..=mandatory].iter().collect();
            for c in &candidates {
                pause(&format!("step:{}:wait", c.name), cancel).await;
            }
            let waited = self.wait_for(&candidates, cancel).await;
            if let Wait::Arrived(k, _) = &waited {
                i += k;
            }
            let Some(step) = steps.get(i) else { break };
            let mut record = SignInStep {
                name: step.name.clone(),
                started,
                finished: crate::support::time::now(),
                page_id: None,
                url: None,
                screenshot: None,
            };
            let state = match waited {
                Wait::Arrived(_, s) => s,
                Wait::Cancelled => return stopped(run, record),
                Wait::BrowserGone(reason) => {
                    run.steps.push(record);
                    run.outcome = FlowOutcome::BrowserFailed(format!(
                        "the browser was lost while waiting at step {}: {reason}",
                        step.name
                    ));
                    return run;
                }
                Wait::Refused(message) => {
                    record.screenshot = self
                        .screenshot(i, &step.name, "-refused", &mut run.captures)
                        .await;
                    let tokens = self.page_html(i, &step.name, &mut run.captures).await;
                    run.steps.push(record);
                    // The error page is what the previous step's action led
                    // to (e.g. the ceremony), so that step is named.
                    let acted = previous.and_then(|p| steps.get(p)).unwrap_or(step);
                    let message = page::sweep_message(&message, &tokens);
                    let step = acted.name.clone();
                    run.outcome = if self
                        .flow
                        .failure
                        .transient
                        .iter()
                        .any(|t| message.contains(t.as_str()))
                    {
                        FlowOutcome::RefusedTransient { step, message }
                    } else {
                        FlowOutcome::Refused { step, message }
                    };
                    return run;
                }
                Wait::Timeout(last) => {
                    // Named after the step that had to come; the optional
                    // ones before it are mentioned.
                    let expected = steps.get(mandatory).unwrap_or(step);
                    let optional: Vec<&str> = candidates
                        .iter()
                        .filter(|c| c.optional)
                        .map(|c| c.name.as_str())
                        .collect();
                    let nor = if optional.is_empty() {
                        String::new()
                    } else {
                        format!(", nor the page of optional step(s) {optional:?}")
                    };
                    record.name = expected.name.clone();
                    record.page_id = last.pgid.clone();
                    record.url = last.url.as_deref().map(strip_url);
                    record.screenshot = self
                        .screenshot(mandatory, &expected.name, "-drift", &mut run.captures)
                        .await;
                    self.page_html(mandatory, &expected.name, &mut run.captures)
                        .await;
                    run.steps.push(record);
                    let seen = last
                        .pgid
                        .map(|p| format!(" (page {p})"))
                        .unwrap_or_default();
                    run.outcome = FlowOutcome::Drift {
                        step: expected.name.clone(),
                        detail: format!(
                            "none of {:?} appeared within {:?}{nor}{seen}",
                            expected.wait_for, self.step_timeout
                        ),
                    };
                    return run;
                }
            };
            self.after_ceremony(&mut run).await;
            record.page_id = state.pgid.clone();
            record.url = state.url.as_deref().map(strip_url);
            if state.correlation_id.is_some() {
                run.correlation_id = state.correlation_id.clone();
            }
            record.screenshot = self.screenshot(i, &step.name, "", &mut run.captures).await;

            // Every action below changes what the identity provider sees:
            // a stop is honoured before each one, never after.
            if checkpoint(&format!("step:{}:fill", step.name), cancel).await {
                return stopped(run, record);
            }
            if let (Some(fill), Some(idx)) = (&step.fill, state.matched) {
                let value = self.vars.render(fill);
                let selector = step.wait_for.get(idx).map_or("", String::as_str);
                if let Err(e) = self.browser.type_into(selector, &value).await {
                    run.steps.push(record);
                    run.outcome =
                        FlowOutcome::BrowserFailed(format!("typing at step {}: {e}", step.name));
                    return run;
                }
            }
            if checkpoint(&format!("step:{}:click", step.name), cancel).await {
                return stopped(run, record);
            }
            if !step.click.is_empty() {
                let found = self.find_first(&step.click).await;
                if step.ceremony
                    && let Ok(Some(_)) = &found
                    && let Err(outcome) = self.arm_ceremony(&mut run, cancel).await
                {
                    run.steps.push(record);
                    run.outcome = outcome;
                    return run;
                }
                let clicked = match found {
                    Ok(Some((el, sel))) => {
                        if step.ceremony {
                            run.ceremony_at =
                                Some((crate::support::time::now(), tokio::time::Instant::now()));
                        }
                        el.click()
                            .await
                            .map(|()| Some(sel.clone()))
                            .map_err(|e| format!("click on {sel} failed: {e}"))
                    }
                    other => other.map(|_| None),
                };
                match clicked {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        self.page_html(i, &step.name, &mut run.captures).await;
                        run.steps.push(record);
                        run.outcome = FlowOutcome::Drift {
                            step: step.name.clone(),
                            detail: format!("none of the click selectors {:?} matched", step.click),
                        };
                        return run;
                    }
                    Err(e) => {
                        run.steps.push(record);
                        run.outcome = FlowOutcome::BrowserFailed(e);
                        return run;
                    }
                }
            }
            record.finished = crate::support::time::now();
            run.steps.push(record);
            previous = Some(i);
            i += 1;
        }
        if let Some(detail) = self.missing_session().await {
            run.outcome = FlowOutcome::Drift {
                step: steps.last().map(|s| s.name.clone()).unwrap_or_default(),
                detail,
            };
        }
        run
    }

    /// The flow's `[success]` rule: after the last step, the identity
    /// provider's session cookie must be set on its host. Only cookie
    /// names are read. `Some(why)` when it is missing.
    async fn missing_session(&self) -> Option<String> {
        let rule = &self.flow.success;
        let url = self.vars.render(rule.cookie_url.as_deref()?);
        let names: Vec<String> = match self
            .browser
            .cdp("Network.getCookies", json!({ "urls": [url] }))
            .await
        {
            Ok(v) => v["cookies"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c["name"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                return Some(format!(
                    "the session cookies of {} could not be read: {e}",
                    strip_url(&url)
                ));
            }
        };
        if rule.cookies.iter().any(|c| names.contains(c)) {
            None
        } else {
            Some(format!(
                "the last page arrived, but {} holds none of the session cookies {:?}: the identity provider started no session",
                strip_url(&url),
                rule.cookies
            ))
        }
    }

    /// Once a page after the ceremony has arrived (or the flow ends), the
    /// credential has done its one job: take it out of the browser, so
    /// nothing else can use it through this session.
    async fn after_ceremony(&self, run: &mut FlowRun) {
        if !run.armed || run.credential_removed.is_some() {
            return;
        }
        let Some(a) = self.authenticator else {
            return;
        };
        let removed = a.detach(self.browser).await.map_err(|e| e.to_string());
        if let Err(e) = &removed {
            tracing::warn!(error = %e, "could not remove the credential from the browser");
        }
        run.credential_removed = Some(removed);
    }

    /// Signs out (best effort, bounded by the step timeout).
    pub(crate) async fn sign_out(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<Capture>, SignOutError> {
        let Some(so) = &self.flow.signout else {
            return Ok(None);
        };
        let client = self.browser.client()?;
        client.goto(&self.vars.render(&so.url)).await.map_err(|e| {
            crate::browser::BrowserError::Command {
                command: "go to the sign-out page".into(),
                reason: e.to_string(),
            }
        })?;
        if !so.wait_for.is_empty() {
            let step = Step {
                name: "sign out".into(),
                page_ids: vec![],
                wait_for: so.wait_for.clone(),
                url_contains: vec![],
                fill: None,
                click: vec![],
                ceremony: false,
                optional: false,
            };
            match self.wait_for(&[&step], cancel).await {
                Wait::Arrived(..) => {}
                Wait::Refused(m) => {
                    // The sign-out page's message may quote a token too.
                    let tokens = self.page_tokens().await;
                    return Err(SignOutError::Refused(page::sweep_message(&m, &tokens)));
                }
                Wait::Timeout(_) => return Err(SignOutError::NotConfirmed),
                Wait::BrowserGone(reason) => {
                    return Err(SignOutError::Browser(
                        crate::browser::BrowserError::Command {
                            command: "sign out".into(),
                            reason,
                        },
                    ));
                }
                Wait::Cancelled => return Err(SignOutError::Cancelled),
            }
        }
        let (bytes, ext) = self.browser.screenshot().await?;
        Ok(Some(Capture {
            name: format!("screenshots/99-signed-out.{ext}"),
            bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_query_and_fragment() {
        assert_eq!(
            strip_url("http://a.localhost:1/x?code=secret#frag"),
            "http://a.localhost:1/x"
        );
        assert_eq!(slug("Stay signed in?"), "stay-signed-in-");
    }

    #[test]
    fn token_values_are_swept_in_every_encoding() {
        let tok = "AQABAAEAAAD+tok/en=".to_owned();
        let ctx = "ctx-value-1234".to_owned();
        let text = format!(
            "<a href=\"/x?flowToken={}\">{}</a><p>{}</p><i>{tok}</i><b>{}</b> ok=1 short",
            url::form_urlencoded::byte_serialize(tok.as_bytes()).collect::<String>(),
            crate::support::html::esc(&tok),
            ctx,
            "AQABAAEAAAD%2Btok%2Fen%3D"
        );
        let out = redact_values(&text, &[tok.clone(), ctx.clone(), "short".into()]);
        assert!(!out.contains("AQABAAEAAAD"), "{out}");
        assert!(!out.contains(&ctx), "{out}");
        assert!(
            out.contains("ok=1 short"),
            "short values are not tokens: {out}"
        );
        assert_eq!(out.matches("[redacted]").count(), 5, "{out}");
        // Lower-case percent escapes and JavaScript string escapes too.
        let out = redact_values(
            "a=AQABAAEAAAD%2btok%2fen%3d b=\"AQABAAEAAAD\\u002btok\\/en\\u003d\"",
            &[tok],
        );
        assert!(!out.contains("AQABAAEAAAD"), "{out}");
    }
}
