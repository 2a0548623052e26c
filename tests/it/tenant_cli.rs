//! `glassdrill tenant` serves the rehearsal tenant on its own, prints its
//! URLs, answers on them, and stops cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};

use crate::util::World;

#[tokio::test]
async fn tenant_prints_working_urls_and_stops_on_ctrl_c() {
    let w = World::new();
    let mut child = w.spawn(&["tenant", "--listen", "127.0.0.1:0"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let mut signin = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.trim().strip_prefix("sign-in:") {
            signin = Some(u.trim().to_owned());
        }
        let done = line.starts_with("press Ctrl-C");
        printed.push(line);
        if done {
            break;
        }
    }
    let signin = signin.unwrap_or_else(|| panic!("no sign-in URL in {printed:#?}"));
    assert!(
        signin.starts_with("http://login.rehearsal.localhost:"),
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

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
