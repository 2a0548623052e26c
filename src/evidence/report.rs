//! `report.html`: a human-readable page of one drill record, written into
//! the bundle (and so covered by its signature). Built from the typed
//! record only; every string is escaped.

use crate::record::{DrillRecord, Verdict};
use crate::support::html::esc;
use crate::support::time::rfc3339_ms;

fn opt(v: Option<&str>) -> String {
    v.map_or_else(|| "—".to_owned(), esc)
}

/// Renders the record.
pub fn html(r: &DrillRecord) -> String {
    let colour = match r.verdict {
        Verdict::Pass => "#107c10",
        Verdict::Fail => "#d13438",
        Verdict::Error | Verdict::Interrupted => "#ca5010",
    };
    let stages: String = r
        .stages
        .iter()
        .map(|st| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
                st.stage.name(),
                st.status.name(),
                rfc3339_ms(st.started),
                st.duration_ms,
                esc(&st.detail)
            )
        })
        .collect();
    let alerts: String = r
        .alerts
        .iter()
        .map(|a| {
            let ms = |f: fn(&crate::record::AlertLatency) -> i64| {
                a.latency
                    .as_ref()
                    .map_or_else(|| "—".to_owned(), |l| f(l).to_string())
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.name),
                opt(a.matched.as_ref().map(|m| m.alert_id.as_str())),
                ms(|l| l.signin_to_fired_ms),
                ms(|l| l.signin_to_received_ms),
                a.ignored.len()
            )
        })
        .collect();
    let shots: String = r
        .sign_in
        .steps
        .iter()
        .filter_map(|st| {
            st.screenshot.as_ref().map(|f| {
                format!(
                    "<figure><img src=\"{}\" width=\"480\"><figcaption>{}</figcaption></figure>",
                    esc(f),
                    esc(&st.name)
                )
            })
        })
        .collect();
    let reasons: String = r
        .reasons
        .iter()
        .map(|x| format!("<li>{}</li>", esc(x)))
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>glassdrill {id} {run}</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
.v{{font-size:2em;font-weight:bold;color:{colour}}}figure{{display:inline-block}}</style></head><body>\
<h1>Break-glass drill {id}</h1><p class=\"v\">{verdict}</p><ul>{reasons}</ul>\
<table><tr><th>run</th><td>{run}</td></tr><tr><th>account</th><td>{acct}</td></tr><tr><th>tenant</th><td>{tenant}</td></tr>\
<tr><th>started</th><td>{started}</td></tr><tr><th>operator</th><td>{op}</td></tr><tr><th>witness</th><td>{wit}</td></tr>\
<tr><th>authenticator</th><td>{auth} {cred}</td></tr><tr><th>runner</th><td>glassdrill {ver}</td></tr></table>\
<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>started</th><th>took</th><th>detail</th></tr>{stages}</table>\
<h2>Alerts</h2><table><tr><th>expected</th><th>alert</th><th>sign-in → fired (ms)</th><th>sign-in → delivered (ms)</th><th>ignored</th></tr>{alerts}</table>\
<h2>Screenshots</h2>{shots}\
<p>Verify: <code>ssh-keygen -Y verify -f allowed_signers -I SIGNER -n glassdrill-evidence-v1 -s SHA256SUMS.sig &lt; SHA256SUMS</code> and <code>sha256sum -c --strict SHA256SUMS</code>.</p>\
</body></html>\n",
        id = esc(&r.drill.id),
        run = esc(&r.run_id),
        verdict = r.verdict,
        acct = esc(&r.drill.account),
        tenant = match r.drill.tenant {
            crate::record::TenantKind::Rehearsal => "rehearsal",
            crate::record::TenantKind::Entra => "entra",
        },
        started = rfc3339_ms(r.started),
        op = opt(r.operator.as_deref()),
        wit = opt(r.witness.as_deref()),
        auth = esc(&r.authenticator.kind),
        cred = esc(&r.authenticator.credential_id),
        ver = esc(&r.runner.version),
    )
}
