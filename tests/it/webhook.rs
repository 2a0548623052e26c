//! The webhook receiver under bad requests: right status codes, nothing
//! stored, and a drill under a flood of them still gets its verdict.

use std::time::Duration;

use crate::util::{Notes, World};
use chrono::Utc;
use glassdrill::alerts::{AlertCheck, AlertTarget, WebhookReceiver};
use glassdrill::drill::{Stage, Verdict};
use glassdrill::runner::{RunOptions, run_configured};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cr3t-token-for-tests";

async fn receiver() -> WebhookReceiver {
    WebhookReceiver::start(
        "127.0.0.1:0".parse().unwrap(),
        SecretString::from(TOKEN),
        4096,
    )
    .await
    .unwrap()
}

const RULE: &str = glassdrill::tenant::DEFAULT_ALERT_RULE;

fn alert(upn: &str) -> serde_json::Value {
    glassdrill::tenant::alerting::common_alert("a-1", RULE, upn, Utc::now(), Utc::now())
}

#[tokio::test]
async fn bad_requests_get_the_matching_4xx_and_change_nothing() {
    let r = receiver().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", r.addr());
    let good = format!("{base}/webhook/{TOKEN}");
    let body = serde_json::to_vec(&alert("bg1@contoso.onmicrosoft.com")).unwrap();

    let wrong = http
        .post(format!("{base}/webhook/not-the-token"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let no_token = http
        .post(format!("{base}/webhook/"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 404);
    let big = http
        .post(&good)
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let malformed = http
        .post(&good)
        .body("{\"schemaId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let other_schema = http
        .post(&good)
        .body("{\"schemaId\":\"Microsoft.Insights/activityLogs\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(other_schema.status(), 422);
    let get = http.get(&good).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert!(r.unrouted().is_empty(), "nothing bad was stored");

    let ok = http
        .post(&good)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    // No run is waiting: the delivery is kept as unrouted, not dropped.
    let got = r.unrouted();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].raw.as_ref(),
        body.as_slice(),
        "the exact bytes are kept"
    );
    // The token never shows in the printable URL.
    assert!(!r.url_redacted().contains(TOKEN));
    assert!(r.url_with_token().expose_secret().contains(TOKEN));
    r.shutdown().await;
}

#[tokio::test]
async fn check_counts_only_this_account_after_the_sign_in() {
    let r = receiver().await;
    let http = reqwest::Client::new();
    let url = r.url_with_token().expose_secret().to_owned();
    let signin = Utc::now();
    // The run attaches before anything can fire, as a drill does.
    let check = r.attach("BG1@contoso.onmicrosoft.com", None, RULE);
    let stale = glassdrill::tenant::alerting::common_alert(
        "stale",
        RULE,
        "bg1@contoso.onmicrosoft.com",
        signin,
        signin - chrono::Duration::minutes(3),
    );
    for v in [alert("bg2@contoso.onmicrosoft.com"), stale] {
        assert_eq!(http.post(&url).json(&v).send().await.unwrap().status(), 202);
    }
    let target = AlertTarget {
        upn: "BG1@contoso.onmicrosoft.com".into(),
        object_id: None,
        signin_at: signin,
        signin_id: None,
        correlation_id: None,
        deadline: tokio::time::Instant::now() + Duration::from_secs(5),
        late_until: tokio::time::Instant::now() + Duration::from_secs(5),
    };
    let c = CancellationToken::new();
    let waiter = tokio::spawn(async move { check.observe(&target, &c).await });
    // Wait until the check has seen the two ignored ones, then send the real one.
    let good = glassdrill::tenant::alerting::common_alert(
        "good",
        RULE,
        "bg1@contoso.onmicrosoft.com",
        signin,
        Utc::now(),
    );
    assert_eq!(
        http.post(&url).json(&good).send().await.unwrap().status(),
        202
    );
    let obs = waiter.await.unwrap();
    let m = obs.matched.expect("the right alert counts");
    assert!(m.alert.alert_id.ends_with("good"));
    assert_eq!(obs.ignored.len(), 2, "{:?}", obs.ignored);
    // The bg2 alert named no waiting run: also kept as unrouted.
    let unrouted = r.unrouted();
    assert_eq!(unrouted.len(), 1);
    assert_eq!(unrouted[0].alert.accounts, ["bg2@contoso.onmicrosoft.com"]);
    r.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_bad_requests_during_a_drill_does_not_change_its_verdict() {
    let w = World::new();
    let notes = std::sync::Arc::new(Notes::default());
    let drill = glassdrill::config::DrillConfig::rehearsal().unwrap();
    let opts = RunOptions {
        alert_delay: Duration::from_millis(500),
        alert_deadline: Some(Duration::from_secs(10)),
        ..RunOptions::default()
    };
    let host = w.host();
    let cancel = CancellationToken::new();
    let n = notes.clone();
    let drill_task = async {
        run_configured(&host, &drill, &opts, n.as_ref(), &cancel)
            .await
            .unwrap()
    };

    let flood = async {
        // Find the receiver's address from the progress note.
        let addr = loop {
            let found = notes.0.lock().unwrap().iter().find_map(|m| {
                m.strip_prefix("webhook receiver at http://")
                    .and_then(|r| r.split('/').next())
                    .map(str::to_owned)
            });
            if let Some(a) = found {
                break a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let http = reqwest::Client::new();
        let mut codes = std::collections::BTreeMap::new();
        // Bounded: 600 requests, 8 at a time, until the drill reaches teardown.
        let body = serde_json::to_vec(&alert("breakglass1@rehearsal.onmicrosoft.com")).unwrap();
        for round in 0..75 {
            let mut batch = Vec::new();
            for i in 0..8 {
                let req = match (round + i) % 3 {
                    0 => http
                        .post(format!("http://{addr}/webhook/guessed-token-{i}"))
                        .body(body.clone()),
                    1 => http
                        .post(format!("http://{addr}/webhook/x"))
                        .body(vec![b'{'; 300 * 1024]),
                    _ => http
                        .post(format!("http://{addr}/webhook/{round}"))
                        .body("not json"),
                };
                batch.push(req.send());
            }
            for r in futures_util::future::join_all(batch)
                .await
                .into_iter()
                .flatten()
            {
                *codes.entry(r.status().as_u16()).or_insert(0u32) += 1;
            }
            if notes.1.lock().unwrap().contains(&Stage::Teardown) {
                break;
            }
        }
        codes
    };
    let (outcome, codes) = tokio::join!(drill_task, flood);
    assert_eq!(outcome.verdict, Verdict::Pass, "{:#?}", outcome.stages);
    assert!(
        codes.keys().all(|c| [403, 413].contains(c)),
        "only 403/413 for bad tokens: {codes:?}"
    );
    assert!(codes.values().sum::<u32>() >= 8, "the flood ran: {codes:?}");
    let record = glassdrill::record::DrillRecord::from_json(
        &std::fs::read(outcome.bundle.unwrap().dir.join("drill.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        record.alerts[0].ignored.len(),
        0,
        "flood requests never reach the drill"
    );
    w.assert_clean();
}
