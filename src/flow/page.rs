//! What the runner reads from a page: one script per poll (matched
//! selector, failure text, Entra's page identity and correlation id), the
//! page HTML for drift evidence (hidden values blanked), and the names it
//! gives files.

use serde::Deserialize;

/// One poll of the page.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PageState {
    pub(super) matched: Option<usize>,
    pub(super) failure: Option<String>,
    pub(super) pgid: Option<String>,
    pub(super) correlation_id: Option<String>,
    pub(super) url: Option<String>,
}

/// Reads the page in one round trip: which wait_for selector shows a
/// visible element, whether a failure element shows text, and Entra's page
/// identity and correlation id.
pub(super) const PROBE_JS: &str = r#"
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
pub(super) const HTML_JS: &str = r#"
const d = document.documentElement.cloneNode(true);
d.querySelectorAll('input[type=hidden],input[type=password]').forEach(e => { e.setAttribute('value', '[redacted]'); });
return '<!doctype html>\n' + d.outerHTML;
"#;

pub(super) fn strip_url(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => String::from("(unparsable URL)"),
    }
}

pub(super) fn slug(name: &str) -> String {
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
