//! What the runner reads from a page: one script per poll (matched
//! selector, failure text, Entra's page identity and correlation id), the
//! page HTML for drift and refusal evidence (every token-bearing value
//! taken out), and the names it gives files.

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
    /// The page's own message (`$Config.strMainMessage`, else
    /// `strServiceExceptionMessage`).
    pub(super) message: Option<String>,
}

/// Reads the page in one round trip: which wait_for selector shows a
/// visible element, whether a failure element shows text or `$Config`
/// holds a value the flow's failure rules name, and Entra's page identity,
/// correlation id and message.
pub(super) const PROBE_JS: &str = r#"
const [waitFor, failSel, failConfig] = arguments;
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
  if (visible(e) && e.innerText && e.innerText.trim()) { failure = e.innerText.trim().slice(0, 4000); break; }
}
const cfg = window.$Config || {};
if (failure === null && document.readyState !== 'loading') {
  for (const r of failConfig || []) {
    let v = cfg;
    for (const k of String(r.path).split('.')) { v = (v && typeof v === 'object') ? v[k] : undefined; }
    if (v !== undefined && JSON.stringify(v) === JSON.stringify(r.equals)) { failure = r.message; break; }
  }
}
const said = cfg.strMainMessage || cfg.strServiceExceptionMessage;
const message = typeof said === 'string' && said.trim() ? said.trim().slice(0, 4000) : null;
return { matched, failure, pgid: cfg.pgid || null, correlationId: cfg.correlationId || null, url: location.href, message };
"#;

/// Page HTML for evidence, with every token-bearing value taken out, and
/// the values themselves (so the caller can sweep any other place they
/// occur, see [`redact_values`]).
///
/// Where sign-in pages carry tokens: hidden and password inputs, query
/// strings and fragments of URL attributes (`href`, `src`, `action`, ...;
/// Entra links carry `?flowToken=` and `?ctx=`), Entra's `window.$Config`
/// (`sFT`, `sCtx`, `canary`, `apiCanary`, `sFidoChallenge`,
/// `sCrossDomainCanary`, ...), CSP nonces, and cookies. The clone has them
/// blanked in place (script text included); cookies are never part of the
/// DOM, but their readable values join the list anyway.
pub(super) const HTML_JS: &str = r#"
const TOKEN_KEY = /^(sFT|sCtx|sFidoChallenge|state|code|ctx|session|sessionId)$|canary|token|challenge|nonce|secret|assertion/i;
const URL_ATTR = /^(href|src|srcset|action|formaction|poster|ping|cite|background|data|content|xlink:href)$|^data-/i;
const PARAM = /([?&#;][^=&#;\s"'<>]*=)([^&#;\s"'<>]*)/g;
const values = new Set();
const add = (v) => { if (typeof v === 'string' && v.length >= 8) values.add(v); };
const params = (s) => {
  for (const m of String(s).matchAll(PARAM)) {
    add(m[2]);
    try { add(decodeURIComponent(m[2].replace(/\+/g, ' '))); } catch (_) {}
  }
};
const walk = (o, depth) => {
  if (!o || typeof o !== 'object' || depth > 4) return;
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (TOKEN_KEY.test(k)) add(v);
    if (v && typeof v === 'object') walk(v, depth + 1);
  }
};
try { walk(window.$Config, 0); } catch (_) {}
const secretInput = (e) => ['hidden', 'password'].includes(String(e.getAttribute('type') || '').toLowerCase());
document.querySelectorAll('input').forEach((e) => { if (secretInput(e)) { add(e.value); add(e.getAttribute('value')); } });
document.querySelectorAll('*').forEach((e) => {
  for (const a of Array.from(e.attributes)) {
    if (URL_ATTR.test(a.name)) params(a.value);
    if (a.name === 'nonce') add(a.value);
  }
});
params(location.href);
String(document.cookie).split(';').forEach((c) => { const i = c.indexOf('='); if (i > 0) add(c.slice(i + 1).trim()); });

const d = document.documentElement.cloneNode(true);
d.querySelectorAll('input').forEach((e) => { if (secretInput(e)) e.setAttribute('value', '[redacted]'); });
d.querySelectorAll('*').forEach((e) => {
  for (const a of Array.from(e.attributes)) {
    if (a.name === 'nonce') e.setAttribute('nonce', '[redacted]');
    else if (URL_ATTR.test(a.name)) e.setAttribute(a.name, a.value.replace(PARAM, '$1[redacted]'));
  }
});
// Inline scripts carry tokens under keys no list can foresee (Entra adds
// new ones): their bodies are dropped; the page's structure is what drift
// evidence needs.
d.querySelectorAll('script').forEach((s) => {
  if (!s.hasAttribute('src')) s.textContent = '/* inline script removed by glassdrill: it may hold tokens */';
});
return { html: '<!doctype html>\n' + d.outerHTML, values: Array.from(values) };
"#;

/// What [`HTML_JS`] returns.
#[derive(Debug, Default, Deserialize)]
pub(super) struct PageHtml {
    pub(super) html: String,
    #[serde(default)]
    pub(super) values: Vec<String>,
}

/// A message taken from a page, for the record: swept of the page's
/// tokens first, then shortened to 500 characters (a token cut in half at
/// the limit would no longer be found).
pub(super) fn sweep_message(message: &str, values: &[String]) -> String {
    redact_values(message, values).chars().take(500).collect()
}

/// `%2B` → `%2b`: percent escapes in lower case.
fn lower_percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        out.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    out.push_str(rest);
    out
}

/// Replaces every occurrence of each token value in `text` (as is,
/// percent-encoded, form-encoded and HTML-escaped) with `[redacted]`,
/// longest first so no fragment of a longer token survives. Values under
/// 8 characters are not tokens (and would wreck the page).
pub(super) fn redact_values(text: &str, values: &[String]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for v in values.iter().filter(|v| v.len() >= 8) {
        let form: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
        let pct = form.replace('+', "%20");
        // ASP.NET percent-encodes in lower case; scripts escape `/` and
        // non-alphanumerics as `\/` and `\uXXXX`.
        let lower = lower_percent(&pct);
        let js: String = v
            .chars()
            .map(|c| match c {
                '/' => "\\/".to_owned(),
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' => c.to_string(),
                c => format!("\\u{:04x}", u32::from(c)),
            })
            .collect();
        for f in [
            v.clone(),
            form,
            pct,
            lower,
            js,
            crate::support::html::esc(v),
        ] {
            if !forms.contains(&f) {
                forms.push(f);
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    let mut out = text.to_owned();
    for f in &forms {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), "[redacted]");
        }
    }
    out
}

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
