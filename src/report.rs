//! `report.html`: a human-readable page of one drill record, written into
//! the bundle (and so covered by its signature). Built from `drill.json`'s
//! value only; every string is escaped.

use serde_json::Value;

use crate::tenant::pages::esc;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => esc(s),
        Value::Null => "—".to_owned(),
        other => esc(&other.to_string()),
    }
}

/// Renders the record.
pub fn html(r: &Value) -> String {
    let verdict = s(&r["verdict"]);
    let colour = match r["verdict"].as_str() {
        Some("PASS") => "#107c10",
        Some("FAIL") => "#d13438",
        _ => "#ca5010",
    };
    let mut stages = String::new();
    for st in r["stages"].as_array().into_iter().flatten() {
        stages.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            s(&st["stage"]),
            s(&st["status"]),
            s(&st["started"]),
            s(&st["duration_ms"]),
            s(&st["detail"])
        ));
    }
    let mut alerts = String::new();
    for a in r["alerts"].as_array().into_iter().flatten() {
        alerts.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(&a["name"]),
            s(&a["matched"]["alert_id"]),
            s(&a["latency"]["signin_to_fired_ms"]),
            s(&a["latency"]["signin_to_received_ms"]),
            a["ignored"].as_array().map_or(0, Vec::len)
        ));
    }
    let mut shots = String::new();
    for st in r["sign_in"]["steps"].as_array().into_iter().flatten() {
        if let Some(f) = st["screenshot"].as_str() {
            shots.push_str(&format!(
                "<figure><img src=\"{}\" width=\"480\"><figcaption>{}</figcaption></figure>",
                esc(f),
                s(&st["name"])
            ));
        }
    }
    let reasons: String = r["reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| format!("<li>{}</li>", s(x)))
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
        id = s(&r["drill"]["id"]),
        run = s(&r["run_id"]),
        acct = s(&r["drill"]["account"]),
        tenant = s(&r["drill"]["tenant"]),
        started = s(&r["started"]),
        op = s(&r["operator"]),
        wit = s(&r["witness"]),
        auth = s(&r["authenticator"]["kind"]),
        cred = s(&r["authenticator"]["credential_id"]),
        ver = s(&r["runner"]["version"]),
    )
}
