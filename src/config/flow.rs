//! Sign-in flow files as data (`drills/flows/*.toml`): steps, selectors
//! with fallbacks, page identities. [`crate::flow`] drives them.

use std::path::Path;

use serde::Deserialize;

use super::diag::{Seg, fields_of};
use super::{Problem, Problems, Source};

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
    /// What proves the sign-in completed, besides the last step's page.
    pub success: SuccessRule,
}

/// What proves the sign-in completed: the identity provider's session
/// cookie on its own host (Entra: `ESTSAUTH` or `ESTSAUTHPERSISTENT` on
/// the authority). Only the cookies' names are ever read into evidence.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SuccessRule {
    /// Template of the URL whose cookies are checked (`{authority}`).
    pub cookie_url: Option<String>,
    /// One of these cookie names must be set there.
    #[serde(default)]
    pub cookies: Vec<String>,
}

/// Page state that means refusal: `$Config` at `path` (dot-separated)
/// equals `equals`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ConfigRule {
    /// Dot-separated path under `window.$Config`.
    pub path: String,
    /// The value that means refusal.
    pub equals: serde_json::Value,
    /// What the refusal means, for the verdict.
    pub message: String,
}

/// Signs of an authentication failure.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FailureRule {
    /// Visible elements with text that mean refusal.
    #[serde(default)]
    pub selectors: Vec<String>,
    /// Page identities that mean refusal.
    #[serde(default)]
    pub page_ids: Vec<String>,
    /// `$Config` values that mean refusal.
    #[serde(default)]
    pub config: Vec<ConfigRule>,
    /// Refusals that say nothing about the account (an expired request):
    /// a refusal whose text contains one of these is an ERROR, not a FAIL.
    #[serde(default)]
    pub transient: Vec<String>,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
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
    /// The page may not come (an interrupt such as "Stay signed in?"):
    /// when the next step's page arrives instead, this step is skipped.
    #[serde(default)]
    pub optional: bool,
}

/// How to sign out after the drill.
#[derive(Debug, Clone, Deserialize)]
pub struct SignOut {
    /// Sign-out URL template.
    pub url: String,
    /// Optional confirmation selectors.
    #[serde(default)]
    pub wait_for: Vec<String>,
}

#[derive(Deserialize)]
struct RawFlow {
    name: String,
    start_url: String,
    #[serde(default)]
    failure: FailureRule,
    steps: Vec<toml::Spanned<Step>>,
    signout: Option<SignOut>,
    #[serde(default)]
    success: SuccessRule,
}

impl Flow {
    /// Parses and validates a flow file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Problems> {
        let src = Source::new(path, text);
        let raw: RawFlow = src
            .parse(&|p: &[Seg]| match p {
                [] => Some(fields_of::<RawFlow>()),
                [Seg::Key(k)] if k == "failure" => Some(fields_of::<FailureRule>()),
                [Seg::Key(k), Seg::Key(c), Seg::Index(_)] if k == "failure" && c == "config" => {
                    Some(fields_of::<ConfigRule>())
                }
                [Seg::Key(k)] if k == "success" => Some(fields_of::<SuccessRule>()),
                [Seg::Key(k), Seg::Index(_)] if k == "steps" => Some(fields_of::<Step>()),
                [Seg::Key(k)] if k == "signout" => Some(fields_of::<SignOut>()),
                _ => None,
            })
            .map_err(Problems)?;
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
            if st.optional && st.ceremony {
                problems.push(src.error(
                    at,
                    format!(
                        "step `{}` starts the ceremony, so it cannot be optional",
                        st.name
                    ),
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
        if let Some(last) = raw.steps.last()
            && last.get_ref().optional
        {
            problems.push(src.error(
                last.span().start,
                format!(
                    "the last step `{}` cannot be optional: it is how the flow knows it is done",
                    last.get_ref().name
                ),
            ));
        }
        if raw.success.cookies.is_empty() != raw.success.cookie_url.is_none() {
            problems.push(src.error(
                0,
                "[success] needs both cookie_url and cookies (or neither)",
            ));
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
            success: raw.success,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_flow_parses() {
        let f = Flow::parse(Path::new("f.toml"), crate::config::ENTRA_FLOW).unwrap();
        assert_eq!(f.steps.len(), 5);
        assert_eq!(f.steps.iter().filter(|s| s.optional).count(), 2);
        assert_eq!(f.failure.config.len(), 1);
        assert!(f.success.cookies.contains(&"ESTSAUTH".to_owned()));
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
}
