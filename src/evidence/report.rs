//! `report.html`: a human-readable page of one drill record, written into
//! the bundle (and so covered by its signature). Built from the typed
//! record with the `maud` template engine (every value escaped by it);
//! self-contained: screenshots inline as data URIs, the stage timeline as
//! inline SVG, no external URL.

use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html as page};

use crate::record::{DrillRecord, Verdict};
use crate::support::time::rfc3339_ms;

fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#107c10",
        Verdict::Fail => "#d13438",
        Verdict::Error | Verdict::Interrupted => "#ca5010",
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("—")
}

/// The stage timeline: a bar per stage, offset from the run's start.
fn timeline(r: &DrillRecord) -> Markup {
    let total: i64 = r
        .stages
        .iter()
        .map(|s| (s.finished - r.started).num_milliseconds())
        .max()
        .unwrap_or(1)
        .max(1);
    let x = |ms: i64| 120.0 + 460.0 * ms as f64 / total as f64;
    page! {
        svg viewBox={"0 0 600 " (20 * r.stages.len() + 20)} width="600" role="img" aria-label="stage timeline" {
            @for (i, s) in r.stages.iter().enumerate() {
                @let start = (s.started - r.started).num_milliseconds().max(0);
                @let y = 20 * i + 4;
                text x="0" y=(y + 12) font-size="11" { (s.stage.name()) }
                rect x=(format!("{:.1}", x(start))) y=(y) height="14"
                    width=(format!("{:.1}", (x(start + i64::try_from(s.duration_ms).unwrap_or(i64::MAX)) - x(start)).max(1.0)))
                    fill=(match s.status.name() { "passed" => "#107c10", "failed" => "#d13438", "skipped" => "#999", _ => "#ca5010" }) {
                    title { (s.stage.name()) ": " (s.status.name()) ", " (s.duration_ms) " ms" }
                }
            }
        }
    }
}

/// Renders the record; `image` gives a bundle file's bytes (screenshots
/// are inlined, the sign-in log record summarised).
pub fn html(r: &DrillRecord, image: &dyn Fn(&str) -> Option<Vec<u8>>) -> String {
    // The sign-in log record as Graph returned it (signIn resource).
    let signin: Option<serde_json::Value> = r
        .sign_in
        .log_record
        .as_deref()
        .and_then(image)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let field = |v: &serde_json::Value, path: &[&str]| -> String {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        match cur {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "—".into(),
            other => other.to_string(),
        }
    };
    let style = format!(
        "body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}.v{{font-size:2em;font-weight:bold;color:{}}}figure{{display:inline-block;margin:0 1em 1em 0}}",
        colour(r.verdict)
    );
    let markup = page! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "glassdrill " (r.drill.id) " " (r.run_id) }
                style { (PreEscaped(style)) }
            }
            body {
                h1 { "Break-glass drill " (r.drill.id) }
                p.v id="verdict" { (r.verdict) }
                @if !r.reasons.is_empty() {
                    ul id="reasons" { @for x in &r.reasons { li { (x) } } }
                }
                table {
                    tr { th { "run" } td { (r.run_id) } }
                    tr { th { "account" } td { (r.drill.account) } }
                    tr { th { "tenant" } td { (match r.drill.tenant { crate::record::TenantKind::Rehearsal => "rehearsal", crate::record::TenantKind::Entra => "entra" }) } }
                    tr { th { "started" } td { (rfc3339_ms(r.started)) } }
                    tr { th { "operator" } td { (or_dash(r.operator.as_deref())) } }
                    tr { th { "witness" } td { (or_dash(r.witness.as_deref())) } }
                    tr { th { "key" } td { (or_dash(r.key_id.as_deref())) } }
                    tr { th { "envelope seals" } td { (or_dash(r.seal_before.as_deref())) " → " (or_dash(r.seal_after.as_deref())) } }
                    tr { th { "authenticator" } td { (r.authenticator.kind) " " (r.authenticator.credential_id) } }
                    tr { th { "runner" } td { "glassdrill " (r.runner.version) ", signer " (r.runner.signer) } }
                }
                @if let Some(k) = &r.key {
                    h2 { "Security key" }
                    table id="key" {
                        tr { th { "model" } td { (or_dash(k.model.as_deref())) " (" (or_dash(k.aaguid.as_deref())) ")" } }
                        tr { th { "PIN retries" } td { (k.pin_retries_before.map_or("—".into(), |n| n.to_string())) " before, " (k.pin_retries_after.map_or("—".into(), |n| n.to_string())) " after" } }
                        tr { th { "signature counter" } td { (k.sign_count_before.map_or("—".into(), |n| n.to_string())) " before, " (k.sign_count_after.map_or("—".into(), |n| n.to_string())) " after" } }
                        @for f in &k.findings { tr { th { "finding" } td { (f) } } }
                    }
                }
                h2 { "Stages" }
                (timeline(r))
                table id="stages" {
                    tr { th { "stage" } th { "status" } th { "started" } th { "took" } th { "detail" } }
                    @for st in &r.stages {
                        tr { td { (st.stage.name()) } td { (st.status.name()) } td { (rfc3339_ms(st.started)) } td { (st.duration_ms) " ms" } td { (st.detail) } }
                    }
                }
                h2 { "Sign-in" }
                p { "Correlation id " (or_dash(r.sign_in.correlation_id.as_deref())) "; the sign-in log record is " (or_dash(r.sign_in.log_record.as_deref())) " in this bundle." }
                @if let Some(s) = &signin {
                    table id="signin" {
                        tr { th { "sign-in id" } td { (field(s, &["id"])) } }
                        tr { th { "created" } td { (field(s, &["createdDateTime"])) } }
                        tr { th { "user" } td { (field(s, &["userPrincipalName"])) } }
                        tr { th { "application" } td { (field(s, &["appDisplayName"])) } }
                        tr { th { "IP address" } td { (field(s, &["ipAddress"])) } }
                        tr { th { "result" } td { "error code " (field(s, &["status", "errorCode"])) } }
                        tr { th { "conditional access" } td { (field(s, &["conditionalAccessStatus"])) } }
                    }
                }
                h2 { "Alerts" }
                table id="alerts" {
                    tr { th { "expected" } th { "rule" } th { "matched alert" } th { "sign-in → fired" } th { "fired → delivered" } th { "sign-in → delivered" } th { "deadline" } th { "ignored" } }
                    @for a in &r.alerts {
                        tr {
                            td { (a.name) }
                            td { (or_dash(a.rule.as_deref())) }
                            td { @if let Some(m) = &a.matched { (m.alert_id) " (" (m.file) "; matched " (m.matched_by.unwrap_or(crate::record::MatchKind::ByAccount).words()) ")" } @else if a.late.is_some() { "LATE" } @else { "NOT RECEIVED" } }
                            td { @if let Some(l) = &a.latency { (l.signin_to_fired_ms) " ms" } @else { "—" } }
                            td { @if let Some(l) = &a.latency { (l.fired_to_received_ms) " ms" } @else { "—" } }
                            td { @if let Some(l) = &a.latency { (l.signin_to_received_ms) " ms" } @else { "—" } }
                            td { (a.deadline_ms) " ms" }
                            td { (a.ignored.len()) }
                        }
                    }
                }
                @for a in &r.alerts {
                    @if let Some(m) = a.matched.as_ref().filter(|m| m.matched_by.is_some_and(|k| k != crate::record::MatchKind::ByAccount)) {
                        p class="recommendation" {
                            "Recommendation: the alert of rule " code { (m.rule) } " names no account, so it was matched "
                            (m.matched_by.unwrap_or(crate::record::MatchKind::ByRuleAndWindow).words())
                            ". Split the rule by " code { "UserId" } " (a dimension) so each alert names the break-glass account it fired for."
                        }
                    }
                }
                @if !r.earlier_unreviewed_uses.is_empty() {
                    h2 { "Unreviewed uses from earlier drills" }
                    p { "Still findings until classified with " code { "glassdrill evidence classify" } ":" }
                    ul id="earlier-unreviewed" {
                        @for u in &r.earlier_unreviewed_uses { li { (u) } }
                    }
                }
                @if !r.posture.is_empty() || !r.unexpected_uses.is_empty() {
                    h2 { "Posture" }
                    p { "The break-glass set-up, checked read-only after the sign-in and the alerts (apart from them: a posture FAIL fails the drill, the sign-in and alert results above stand as they are). UNKNOWN: a permission is missing; never a finding." }
                    table id="posture" {
                        tr { th { "account" } th { "check" } th { "result" } th { "detail" } }
                        @for c in &r.posture {
                            tr {
                                td { (or_dash(c.account.as_deref())) }
                                td { (c.check) }
                                td { (c.status) }
                                td { (c.detail) }
                            }
                        }
                    }
                    @if !r.unexpected_uses.is_empty() {
                        h3 { "Unexpected use (unreviewed)" }
                        p { "Sign-ins of the accounts since the previous drill that no drill made. Each is a finding until classified: " code { "glassdrill evidence classify --signin ID --account UPN --as drill|emergency|misuse --by NAME --note TEXT" } }
                        table id="unexpected" {
                            tr { th { "account" } th { "sign-in id" } th { "created" } th { "error code" } th { "record" } }
                            @for u in &r.unexpected_uses {
                                tr { td { (u.account) } td { (u.signin_id) } td { (u.created) } td { (u.error_code) } td { (u.file) } }
                            }
                        }
                    }
                }
                h2 { "Screenshots" }
                @for st in &r.sign_in.steps {
                    @if let Some(f) = &st.screenshot {
                        figure {
                            @if let Some(bytes) = image(f) {
                                img width="480" alt=(st.name) src=(format!("data:image/{};base64,{}", if f.ends_with(".png") { "png" } else { "jpeg" }, base64::engine::general_purpose::STANDARD.encode(bytes)));
                            }
                            figcaption { (st.name) " (" (f) ")" }
                        }
                    }
                }
                p {
                    "Verify: " code { "ssh-keygen -Y verify -f allowed_signers -I SIGNER -n glassdrill-evidence-v1 -s SHA256SUMS.sig < SHA256SUMS" }
                    " and " code { "sha256sum -c --strict SHA256SUMS" } "."
                }
            }
        }
    };
    let mut out = markup.into_string();
    out.push('\n');
    out
}
