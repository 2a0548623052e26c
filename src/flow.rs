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

use std::path::Path;
use std::time::Duration;

use fantoccini::Locator;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::browser::Browser;
use crate::config::{Problem, Problems, Source};

/// A validated sign-in flow.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Flow name.
    pub name: String,
    /// Default start URL template.
    pub start_url: String,
    /// What means "the IdP refused the sign-in".
    pub failure: FailureRule,
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// How to sign out.
    pub signout: Option<SignOut>,
}

/// Signs of an authentication failure.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureRule {
    /// Visible elements with text that mean refusal.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// Page identities that mean refusal.
    #[serde(default)]
    pub page_ids: Vec<String>,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Step name (used in "flow drift at step X").
    pub name: String,
    /// Acceptable page identities (`$Config.pgid`); empty accepts any.
    #[serde(default)]
    pub page_ids: Vec<String>,
    /// The page has arrived when one of these shows a visible element.
    #[serde(default)]
    pub wait_for: Vec<String>,
    /// ...and the URL contains one of these (when given).
    #[serde(default)]
    pub url_contains: Vec<String>,
    /// Text typed into the matched `wait_for` element (`{upn}`).
    pub fill: Option<String>,
    /// Selectors of the element to click, first match wins.
    #[serde(default)]
    pub click: Vec<String>,
    /// The click starts the WebAuthn ceremony.
    #[serde(default)]
    pub ceremony: bool,
}

/// How to sign out after the drill.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignOut {
    /// Sign-out URL template.
    pub url: String,
    /// Optional confirmation selectors.
    #[serde(default)]
    pub wait_for: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    name: String,
    start_url: String,
    #[serde(default)]
    failure: FailureRule,
    steps: Vec<toml::Spanned<Step>>,
    signout: Option<SignOut>,
}

impl Flow {
    /// Parses and validates a flow file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Problems> {
        let src = Source { path, text };
        let raw: RawFlow = src.parse().map_err(Problems)?;
        let mut problems: Vec<Problem> = Vec::new();
        if raw.steps.is_empty() {
            problems.push(src.error(0, "a flow needs at least one [[steps]] entry"));
        }
        let mut names = std::collections::HashSet::new();
        let mut ceremonies = 0;
        for s in &raw.steps {
            let at = s.span().start;
            let st = s.get_ref();
            if st.name.trim().is_empty() || !names.insert(st.name.clone()) {
                problems.push(src.error(
                    at,
                    format!("step name `{}` must be non-empty and unique", st.name),
                ));
            }
            if st.wait_for.is_empty() && st.url_contains.is_empty() {
                problems.push(src.error(at, format!("step `{}` needs wait_for selectors or url_contains, or drift cannot be told from slowness", st.name)));
            }
            if st
                .wait_for
                .iter()
                .chain(&st.click)
                .any(|s| s.trim().is_empty())
            {
                problems.push(src.error(at, format!("step `{}` has an empty selector", st.name)));
            }
            if st.fill.is_some() && st.wait_for.is_empty() {
                problems.push(src.error(
                    at,
                    format!(
                        "step `{}` fills text but has no wait_for element to fill",
                        st.name
                    ),
                ));
            }
            if let Some(f) = &st.fill
                && f.replace("{upn}", "").contains('{')
            {
                problems.push(src.error(
                    at,
                    format!("step `{}`: fill may only use the template {{upn}}", st.name),
                ));
            }
            if st.ceremony {
                ceremonies += 1;
                if st.click.is_empty() {
                    problems.push(src.error(
                        at,
                        format!(
                            "step `{}` starts the ceremony, so it needs click selectors",
                            st.name
                        ),
                    ));
                }
            }
        }
        if ceremonies != 1 && !raw.steps.is_empty() {
            problems.push(src.error(0, "exactly one step must set `ceremony = true` (the click that starts the security-key sign-in)"));
        }
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        Ok(Self {
            name: raw.name,
            start_url: raw.start_url,
            failure: raw.failure,
            steps: raw
                .steps
                .into_iter()
                .map(toml::Spanned::into_inner)
                .collect(),
            signout: raw.signout,
        })
    }
}

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
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{authority}", &self.authority)
            .replace("{tenant_id}", &self.tenant_id)
            .replace("{upn}", &self.upn)
    }
}

/// What happened to one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// When the runner started waiting for the page.
    pub started: chrono::DateTime<chrono::Utc>,
    /// When the page arrived (or the step gave up).
    pub finished: chrono::DateTime<chrono::Utc>,
    /// The page identity seen.
    pub page_id: Option<String>,
    /// The page URL without query or fragment (they may carry codes).
    pub url: Option<String>,
    /// Screenshot file name in the bundle.
    pub screenshot: Option<String>,
}

/// How the flow ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowOutcome {
    /// Every step done: signed in.
    SignedIn,
    /// The identity provider refused the sign-in at `step`.
    Refused {
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
    /// Cancelled (Ctrl-C / shutdown).
    Cancelled,
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
pub struct FlowRun {
    /// Outcome.
    pub outcome: FlowOutcome,
    /// Per-step records.
    pub steps: Vec<StepRecord>,
    /// Screenshots and (on drift/refusal) page HTML.
    pub captures: Vec<Capture>,
    /// The IdP's correlation id (`$Config.correlationId`), to find the
    /// sign-in log record.
    pub correlation_id: Option<String>,
    /// When the ceremony step's click was made (wall clock, and monotonic
    /// for deadlines).
    pub ceremony_at: Option<(chrono::DateTime<chrono::Utc>, tokio::time::Instant)>,
}

/// One poll of the page.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageState {
    matched: Option<usize>,
    failure: Option<String>,
    pgid: Option<String>,
    correlation_id: Option<String>,
    url: Option<String>,
}

/// Reads the page in one round trip: which wait_for selector shows a
/// visible element, whether a failure element shows text, and Entra's page
/// identity and correlation id.
const PROBE_JS: &str = r#"
const [waitFor, failSel] = arguments;
const visible = (e) => {
  if (!e) return false;
  const r = e.getBoundingClientRect();
  const s = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none';
};
const q = (s) => { try { return document.querySelector(s); } catch (_) { return null; } };
let matched = null;
if (document.readyState !== 'loading') {
  for (let i = 0; i < waitFor.length; i++) { if (visible(q(waitFor[i]))) { matched = i; break; } }
}
let failure = null;
for (const s of failSel) {
  const e = q(s);
  if (visible(e) && e.innerText && e.innerText.trim()) { failure = e.innerText.trim().slice(0, 500); break; }
}
const cfg = window.$Config || {};
return { matched, failure, pgid: cfg.pgid || null, correlationId: cfg.correlationId || null, url: location.href };
"#;

/// Page HTML with hidden and password input values blanked, for drift
/// evidence (hidden fields carry flow tokens).
const HTML_JS: &str = r#"
const d = document.documentElement.cloneNode(true);
d.querySelectorAll('input[type=hidden],input[type=password]').forEach(e => { e.setAttribute('value', '[redacted]'); });
return '<!doctype html>\n' + d.outerHTML;
"#;

fn strip_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => String::from("(unparsable URL)"),
    }
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Drives a [`Flow`] in a [`Browser`].
pub struct FlowRunner<'a> {
    browser: &'a Browser,
    flow: &'a Flow,
    vars: &'a FlowVars,
    step_timeout: Duration,
    poll: Duration,
}

enum Wait {
    Arrived(PageState),
    Refused(String),
    Timeout(PageState),
    Cancelled,
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
        }
    }

    async fn probe(&self, step: &Step) -> Option<PageState> {
        let client = self.browser.client().ok()?;
        let v = client
            .execute(
                PROBE_JS,
                vec![json!(step.wait_for), json!(self.flow.failure.selectors)],
            )
            .await
            .ok()?; // mid-navigation the script may fail; poll again
        serde_json::from_value(v).ok()
    }

    async fn wait_for(&self, step: &Step, cancel: &CancellationToken) -> Wait {
        let deadline = tokio::time::Instant::now() + self.step_timeout;
        let mut last = PageState::default();
        loop {
            if let Some(state) = self.probe(step).await {
                if let Some(f) = &state.failure {
                    return Wait::Refused(f.clone());
                }
                if let Some(pgid) = &state.pgid
                    && self.flow.failure.page_ids.iter().any(|p| p == pgid)
                {
                    return Wait::Refused(format!("error page ({pgid})"));
                }
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
                if url_ok && el_ok && page_ok {
                    return Wait::Arrived(state);
                }
                last = state;
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

    async fn page_html(&self, index: usize, name: &str, captures: &mut Vec<Capture>) {
        if let Ok(client) = self.browser.client()
            && let Ok(Value::String(html)) = client.execute(HTML_JS, vec![]).await
        {
            captures.push(Capture {
                name: format!("pages/{:02}-{}.html", index + 1, slug(name)),
                bytes: html.into_bytes(),
            });
        }
    }

    async fn click_first(&self, selectors: &[String]) -> Result<Option<String>, String> {
        let client = self.browser.client().map_err(|e| e.to_string())?;
        for sel in selectors {
            if let Ok(el) = client.find(Locator::Css(sel)).await {
                return el
                    .click()
                    .await
                    .map(|()| Some(sel.clone()))
                    .map_err(|e| format!("click on {sel} failed: {e}"));
            }
        }
        Ok(None)
    }

    /// Runs every step from the start URL.
    pub async fn run(&self, start_url: &str, cancel: &CancellationToken) -> FlowRun {
        let mut run = FlowRun {
            outcome: FlowOutcome::SignedIn,
            steps: Vec::new(),
            captures: Vec::new(),
            correlation_id: None,
            ceremony_at: None,
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
        for (i, step) in self.flow.steps.iter().enumerate() {
            let started = chrono::Utc::now();
            let waited = self.wait_for(step, cancel).await;
            let mut record = StepRecord {
                name: step.name.clone(),
                started,
                finished: chrono::Utc::now(),
                page_id: None,
                url: None,
                screenshot: None,
            };
            let state = match waited {
                Wait::Arrived(s) => s,
                Wait::Cancelled => {
                    run.steps.push(record);
                    run.outcome = FlowOutcome::Cancelled;
                    return run;
                }
                Wait::Refused(message) => {
                    record.screenshot = self
                        .screenshot(i, &step.name, "-refused", &mut run.captures)
                        .await;
                    self.page_html(i, &step.name, &mut run.captures).await;
                    run.steps.push(record);
                    // The error page is what the previous step's action led
                    // to (e.g. the ceremony), so that step is named.
                    let acted = i
                        .checked_sub(1)
                        .and_then(|p| self.flow.steps.get(p))
                        .unwrap_or(step);
                    run.outcome = FlowOutcome::Refused {
                        step: acted.name.clone(),
                        message,
                    };
                    return run;
                }
                Wait::Timeout(last) => {
                    record.page_id = last.pgid.clone();
                    record.url = last.url.as_deref().map(strip_url);
                    record.screenshot = self
                        .screenshot(i, &step.name, "-drift", &mut run.captures)
                        .await;
                    self.page_html(i, &step.name, &mut run.captures).await;
                    run.steps.push(record);
                    let seen = last
                        .pgid
                        .map(|p| format!(" (page {p})"))
                        .unwrap_or_default();
                    run.outcome = FlowOutcome::Drift {
                        step: step.name.clone(),
                        detail: format!(
                            "none of {:?} appeared within {:?}{seen}",
                            step.wait_for, self.step_timeout
                        ),
                    };
                    return run;
                }
            };
            record.page_id = state.pgid.clone();
            record.url = state.url.as_deref().map(strip_url);
            if state.correlation_id.is_some() {
                run.correlation_id = state.correlation_id.clone();
            }
            record.screenshot = self.screenshot(i, &step.name, "", &mut run.captures).await;

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
            if !step.click.is_empty() {
                if step.ceremony {
                    run.ceremony_at = Some((chrono::Utc::now(), tokio::time::Instant::now()));
                }
                match self.click_first(&step.click).await {
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
            record.finished = chrono::Utc::now();
            run.steps.push(record);
        }
        run
    }

    /// Signs out (best effort, bounded by the step timeout).
    pub async fn sign_out(&self, cancel: &CancellationToken) -> Result<Option<Capture>, String> {
        let Some(so) = &self.flow.signout else {
            return Ok(None);
        };
        let client = self.browser.client().map_err(|e| e.to_string())?;
        client
            .goto(&self.vars.render(&so.url))
            .await
            .map_err(|e| format!("sign-out page: {e}"))?;
        if !so.wait_for.is_empty() {
            let step = Step {
                name: "sign out".into(),
                page_ids: vec![],
                wait_for: so.wait_for.clone(),
                url_contains: vec![],
                fill: None,
                click: vec![],
                ceremony: false,
            };
            match self.wait_for(&step, cancel).await {
                Wait::Arrived(_) => {}
                Wait::Refused(m) => return Err(format!("sign-out page shows an error: {m}")),
                Wait::Timeout(_) => return Err("sign-out page did not confirm".into()),
                Wait::Cancelled => return Err("cancelled".into()),
            }
        }
        let (bytes, ext) = self.browser.screenshot().await.map_err(|e| e.to_string())?;
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
    fn shipped_flow_parses() {
        let f = Flow::parse(Path::new("f.toml"), crate::config::ENTRA_FLOW).unwrap();
        assert_eq!(f.steps.len(), 5);
        assert_eq!(f.steps.iter().filter(|s| s.ceremony).count(), 1);
    }

    #[test]
    fn flow_problems_are_positioned() {
        let text = "name = \"x\"\nstart_url = \"u\"\n[[steps]]\nname = \"a\"\n[[steps]]\nname = \"a\"\nwait_for = [\"#x\"]\nfill = \"{password}\"\n";
        let err = Flow::parse(Path::new("f.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("f.toml:3:1: error: step `a` needs wait_for"),
            "{err}"
        );
        assert!(
            err.contains("step name `a` must be non-empty and unique"),
            "{err}"
        );
        assert!(
            err.contains("fill may only use the template {upn}"),
            "{err}"
        );
        assert!(
            err.contains("exactly one step must set `ceremony = true`"),
            "{err}"
        );
    }

    #[test]
    fn urls_lose_query_and_fragment() {
        assert_eq!(
            strip_url("http://a.localhost:1/x?code=secret#frag"),
            "http://a.localhost:1/x"
        );
        assert_eq!(slug("Stay signed in?"), "stay-signed-in-");
    }
}
