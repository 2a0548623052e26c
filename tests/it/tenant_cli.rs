//! `glassdrill tenant` serves the rehearsal tenant on its own, prints its
//! URLs, answers on them, and stops cleanly on Ctrl-C.

use std::time::Duration;

use crate::util::{Stream, World};

#[tokio::test]
async fn tenant_prints_working_urls_and_stops_on_ctrl_c() {
    let w = World::new();
    let mut run = w.spawn(&["tenant", "--listen", "127.0.0.1:0"]);
    run.line(
        |s, l| s == Stream::Stdout && l.starts_with("press Ctrl-C"),
        Duration::from_secs(60),
    );
    let printed: Vec<String> = run
        .seen
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.clone())
        .collect();
    let signin = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("sign-in:"))
        .map(|u| u.trim().to_owned());
    let signin = signin.unwrap_or_else(|| panic!("no sign-in URL in {printed:#?}"));
    assert!(
        signin.starts_with("http://login.microsoftonline.localhost:"),
        "{signin}"
    );
    let all = printed.join("\n");
    assert!(
        all.contains("graph:") && all.contains("/v1.0/auditLogs/signIns"),
        "{all}"
    );
    // The credential and client secret are written to files, not printed.
    let key = w.state().join("glassdrill/rehearsal/credential.pk8");
    assert!(key.exists(), "{all}");
    let secret =
        std::fs::read_to_string(w.state().join("glassdrill/rehearsal/client-secret")).unwrap();
    assert!(!all.contains(&secret));

    let http = glassdrill::support::http::client().unwrap();
    let page = http.get(&signin).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("id=\"i0116\"") && html.contains("\"pgid\":\"ConvergedSignIn\""),
        "{html}"
    );
    // An unknown host on the same port is refused.
    let port = signin
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let other = http
        .get(format!("http://elsewhere.localhost:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 421);

    run.signal(nix::sys::signal::Signal::SIGINT);
    assert_eq!(run.finish(Duration::from_secs(60)).code, Some(0));
}
