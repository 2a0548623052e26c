//! The break-glass set-up as Graph and Azure Resource Manager show it,
//! for `glassdrill posture` and the drills' posture checks: the account,
//! its methods, its role schedules, its groups, the Conditional Access
//! policies, the alert rule and its action group. Each answer is
//! Microsoft's documented sample (`src/posture/fixtures/`, pages in its
//! `SOURCES.md`) with the rehearsal's ids, correct by default; a fault
//! switch breaks one part the way a real tenant drifts.

use super::*;

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The rehearsal's break-glass group.
pub const GROUP_ID: &str = "00000000-0000-0000-0000-00000000b9a0";

/// The posture set-up of the rehearsal tenant: its account, group and
/// alert rule.
pub fn posture_config() -> crate::config::host::PostureConfig {
    crate::config::host::PostureConfig {
        accounts: vec![crate::posture::Account {
            object_id: REHEARSAL_OBJECT_ID.into(),
            upn: "breakglass1@rehearsal.onmicrosoft.com".into(),
        }],
        group_id: Some(GROUP_ID.into()),
        alert_rule: Some(alert_rule_id(DEFAULT_ALERT_RULE)),
        allowed_aaguids: Vec::new(),
    }
}

fn ok(v: Value) -> Response {
    Json(v).into_response()
}

fn gate(s: &Arc<Shared>, headers: &HeaderMap) -> Result<(), Box<Response>> {
    super::apis::gate(s, headers, "posture")
}

pub(super) async fn user(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    if !id.eq_ignore_ascii_case(&s.opts.account.id) {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "Resource does not exist.",
        );
    }
    let mut u = fixture(include_str!("../posture/fixtures/user.json"));
    u["userPrincipalName"] = s.opts.account.upn.clone().into();
    if s.has(Fault::PostureLicensed) {
        u["assignedLicenses"] =
            json!([{ "disabledPlans": [], "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df" }]);
    }
    ok(u)
}

pub(super) async fn methods(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    let mut m = fixture(include_str!("../posture/fixtures/auth-methods.json"));
    let extra = |text: &str| fixture(text)["value"][0].clone();
    if let Some(list) = m["value"].as_array_mut() {
        if s.has(Fault::PostureOneKey) {
            list.remove(1);
        }
        if s.has(Fault::PosturePhoneMethod) {
            list.push(extra(include_str!(
                "../posture/fixtures/auth-method-phone.json"
            )));
        }
        if s.has(Fault::PostureTap) {
            list.push(extra(include_str!(
                "../posture/fixtures/auth-method-tap.json"
            )));
        }
    }
    ok(m)
}

pub(super) async fn assignment_schedules(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    if s.has(Fault::PostureEligibleGa) {
        return ok(json!({ "value": [] }));
    }
    ok(fixture(include_str!(
        "../posture/fixtures/role-assignment-schedules.json"
    )))
}

pub(super) async fn eligibility_schedules(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    if s.has(Fault::PostureEligibleGa) {
        return ok(fixture(include_str!(
            "../posture/fixtures/role-eligibility-schedules.json"
        )));
    }
    ok(json!({ "value": [] }))
}

pub(super) async fn member_of(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    ok(fixture(include_str!("../posture/fixtures/member-of.json")))
}

pub(super) async fn ca_policies(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    let mut p = fixture(include_str!("../posture/fixtures/ca-policies.json"));
    if s.has(Fault::PostureCaNotExcluded) {
        p["value"][1]["conditions"]["users"]["excludeGroups"] = json!([]);
    }
    ok(p)
}

/// Azure Resource Manager reads (the alert rule, its action group),
/// matched case-insensitively as ARM does.
pub(super) async fn arm(State(s): State<Arc<Shared>>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = gate(&s, &headers) {
        return *r;
    }
    let path = uri
        .path()
        .trim_start_matches("/management")
        .to_ascii_lowercase();
    if path.contains("/providers/microsoft.insights/scheduledqueryrules/") {
        let rule = alert_rule_id(DEFAULT_ALERT_RULE).to_ascii_lowercase();
        if path.replace("%20", " ") != rule {
            return graph_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The resource was not found.",
            );
        }
        let mut r = fixture(include_str!(
            "../posture/fixtures/scheduled-query-rule.json"
        ));
        r["id"] = alert_rule_id(DEFAULT_ALERT_RULE).into();
        r["name"] = DEFAULT_ALERT_RULE.into();
        if s.has(Fault::PostureRuleDisabled) {
            r["properties"]["enabled"] = false.into();
        }
        if s.has(Fault::PostureRuleMuted) {
            r["properties"]["muteActionsDuration"] = "PT1D".into();
        }
        return ok(r);
    }
    if path.contains("/providers/microsoft.insights/actiongroups/") {
        let mut g = fixture(include_str!("../posture/fixtures/action-group.json"));
        if s.has(Fault::PostureEmptyActionGroup)
            && let Some(o) = g["properties"].as_object_mut()
        {
            for (k, v) in o.iter_mut() {
                if k.ends_with("Receivers") {
                    *v = json!([]);
                }
            }
        }
        return ok(g);
    }
    graph_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        "The resource was not found.",
    )
}
