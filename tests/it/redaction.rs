//! Tokens from the sign-in pages never reach the evidence. The rehearsal
//! tenant plants every kind Entra's pages carry (hidden `flowToken`,
//! `ctx` and `canary` inputs, the fields the sign-in page posts across
//! sites to the FIDO host, a `?ctx=` image source, `$Config`'s `sFT`,
//! `sCtx`, `canary` and `sCrossDomainCanary`, session cookies, the
//! `?session=` landing URL, Graph access tokens) and tells the test every
//! value it issued; no file of the bundle may contain any of them, for
//! drift and refusal captures alike.

use crate::util::{MANUAL_SECRET, Manual, World, files};
use glassdrill::drill::{Quiet, Verdict};
use glassdrill::tenant::Fault;
use tokio_util::sync::CancellationToken;

/// What every flow page's capture shows instead of its tokens: the
/// beacon's query redacted, and the inline `$Config` script (with `sFT`,
/// `sCtx`, `canary`, `sCrossDomainCanary`) removed.
const EVERY_PAGE: [&str; 2] = [
    "/beacon?ctx=[redacted]",
    "inline script removed by glassdrill",
];
/// A hidden input, on the pages that have a form.
const HIDDEN_INPUT: &str = "name=\"canary\" value=\"[redacted]\"";

#[tokio::test]
async fn no_token_or_cookie_reaches_the_evidence_of_a_drift_or_a_refusal() {
    for (fault, verdict) in [
        (Fault::UiDrift, Verdict::Error),
        (Fault::AccountDisabled, Verdict::Fail),
        (Fault::CredentialRevoked, Verdict::Fail),
        (Fault::CaBlock, Verdict::Fail),
    ] {
        let w = World::new();
        let m = Manual::start_with(&w, &[fault]).await;
        let checks = m.checks();
        let o = glassdrill::drill::run(
            m.plan(MANUAL_SECRET, checks),
            &m.sinks(),
            &Quiet,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(o.verdict, verdict, "{fault:?}: {:#?}", o.stages);
        let dir = o.bundle.as_ref().expect("a bundle").dir.clone();
        let listed = files(&dir);
        let pages: Vec<&String> = listed.iter().filter(|f| f.starts_with("pages/")).collect();
        assert_eq!(pages.len(), 1, "{fault:?}: one page captured: {listed:?}");
        let html = std::fs::read_to_string(dir.join(pages[0])).expect("page");
        let mut kinds = EVERY_PAGE.to_vec();
        if matches!(fault, Fault::UiDrift | Fault::AccountDisabled) {
            kinds.push(HIDDEN_INPUT);
        }
        if fault == Fault::UiDrift {
            // The cross-site post's fields, the flow token among them.
            kinds.push("name=\"ServerChallenge\" value=\"[redacted]\"");
        }
        for kind in kinds {
            assert!(
                html.contains(kind),
                "{fault:?}: `{kind}` is not in the captured page:\n{html}"
            );
        }
        assert!(!html.contains("\"sFT\""), "{fault:?}: no $Config survives");

        let mut secrets = m.tenant.issued_secrets();
        assert!(
            secrets.len() >= 7,
            "{fault:?}: flow tokens, contexts, canaries, cookies and an access token were issued: {}",
            secrets.len()
        );
        secrets.push(MANUAL_SECRET.to_owned());
        for f in &listed {
            let bytes = std::fs::read(dir.join(f)).expect("bundle file");
            for s in &secrets {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "{fault:?}: {f} contains a token the tenant issued"
                );
            }
        }
        m.shutdown().await;
        w.assert_clean();
    }
}
