//! The posture rules on payloads shaped as Microsoft's documented samples
//! (`fixtures/`, each file's page in `fixtures/SOURCES.md`).

use super::*;
use serde_json::json;

fn fx(name: &str) -> Value {
    let text = match name {
        "user" => include_str!("fixtures/user.json"),
        "methods" => include_str!("fixtures/auth-methods.json"),
        "phone" => include_str!("fixtures/auth-method-phone.json"),
        "tap" => include_str!("fixtures/auth-method-tap.json"),
        "app" => include_str!("fixtures/auth-method-authenticator.json"),
        "assigned" => include_str!("fixtures/role-assignment-schedules.json"),
        "eligible" => include_str!("fixtures/role-eligibility-schedules.json"),
        "member_of" => include_str!("fixtures/member-of.json"),
        "ca" => include_str!("fixtures/ca-policies.json"),
        "rule" => include_str!("fixtures/scheduled-query-rule.json"),
        "ag" => include_str!("fixtures/action-group.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(text).unwrap()
}

const GROUP: &str = "00000000-0000-0000-0000-00000000b9a0";

fn bg1() -> Account {
    Account {
        object_id: "00000000-0000-0000-0000-0000000b6e01".into(),
        upn: "breakglass1@rehearsal.onmicrosoft.com".into(),
    }
}

fn statuses(c: &[Check]) -> Vec<(&'static str, Status)> {
    c.iter().map(|c| (c.name, c.status)).collect()
}

#[test]
fn a_correct_set_up_passes_every_check() {
    let a = bg1();
    let mut all = user_checks(&a, &Fetched::Got(fx("user")));
    all.push(ga_check(
        &a,
        &Fetched::Got(fx("assigned")),
        &Fetched::Got(json!({"value": []})),
    ));
    all.push(group_check(&a, &Fetched::Got(fx("member_of")), GROUP));
    all.extend(method_checks(
        &a,
        &Fetched::Got(fx("methods")),
        &[
            "cb69481e-8ff7-4039-93ec-0a2729a154a8".into(),
            "ee882879-721c-4913-9775-3dfcce97072a".into(),
        ],
    ));
    all.push(ca_check(
        &Fetched::Got(fx("ca")),
        GROUP,
        std::slice::from_ref(&a),
    ));
    all.extend(rule_checks(
        &Fetched::Got(fx("rule")),
        std::slice::from_ref(&a),
    ));
    all.push(action_group_check(&Fetched::Got(fx("ag"))));
    assert!(all.iter().all(|c| c.status == Status::Pass), "{:#?}", all);
    // The report-only policy is listed, not failed.
    let ca = ca_check(&Fetched::Got(fx("ca")), GROUP, &[a]);
    assert!(
        ca.detail
            .contains("report-only (not enforced): Block legacy authentication"),
        "{}",
        ca.detail
    );
}

#[test]
fn a_deleted_disabled_synced_or_licensed_account_fails_naming_it() {
    let a = bg1();
    let gone = user_checks(&a, &Fetched::Missing);
    assert_eq!(gone[0].status, Status::Fail);
    assert!(gone[0].detail.contains("deleted"));
    let mut u = fx("user");
    u["accountEnabled"] = false.into();
    u["onPremisesSyncEnabled"] = true.into();
    u["assignedLicenses"] =
        json!([{ "disabledPlans": [], "skuId": "c7df2760-2c81-4ef7-b578-5b5392b571df" }]);
    u["userPrincipalName"] = "bg1@contoso.com".into();
    let c = user_checks(&a, &Fetched::Got(u));
    assert!(c.iter().all(|c| c.status == Status::Fail), "{c:#?}");
    assert_eq!(
        c[0].account.as_deref(),
        Some("breakglass1@rehearsal.onmicrosoft.com")
    );
}

#[test]
fn global_administrator_must_be_active_and_permanent() {
    let a = bg1();
    let none = Fetched::Got(json!({"value": []}));
    let eligible_only = ga_check(&a, &none, &Fetched::Got(fx("eligible")));
    assert_eq!(eligible_only.status, Status::Fail);
    assert!(
        eligible_only.detail.contains("eligible through PIM"),
        "{}",
        eligible_only.detail
    );
    let mut ending = fx("assigned");
    ending["value"][0]["scheduleInfo"]["expiration"] =
        json!({"type": "afterDateTime", "endDateTime": "2027-01-01T00:00:00Z", "duration": null});
    let c = ga_check(&a, &Fetched::Got(ending), &none);
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("2027-01-01"), "{}", c.detail);
    let denied = ga_check(&a, &Fetched::Denied("RoleManagement.Read.Directory"), &none);
    assert_eq!(denied.status, Status::Unknown);
    assert!(denied.detail.contains("RoleManagement.Read.Directory"));
}

#[test]
fn methods_need_two_keys_and_no_phishable_method_but_a_password_is_fine() {
    let a = bg1();
    let mut one = fx("methods");
    one["value"].as_array_mut().unwrap().remove(1);
    let c = method_checks(&a, &Fetched::Got(one), &[]);
    assert_eq!(c[0].status, Status::Fail);
    assert!(c[0].detail.contains("1 FIDO2 key(s)"));
    // The password in the sample is not a finding.
    let ok = method_checks(&a, &Fetched::Got(fx("methods")), &[]);
    assert!(ok.iter().all(|c| c.status == Status::Pass), "{ok:#?}");
    for (extra, name) in [
        ("phone", "no phone, SMS or Authenticator app method"),
        ("app", "no phone, SMS or Authenticator app method"),
        ("tap", "no Temporary Access Pass"),
    ] {
        let mut m = fx("methods");
        m["value"]
            .as_array_mut()
            .unwrap()
            .push(fx(extra)["value"][0].clone());
        let c = method_checks(&a, &Fetched::Got(m), &[]);
        let bad: Vec<_> = statuses(&c)
            .into_iter()
            .filter(|(_, s)| *s == Status::Fail)
            .collect();
        assert_eq!(bad, [(name, Status::Fail)], "{extra}");
    }
    // A key of a model the config does not allow.
    let c = method_checks(
        &a,
        &Fetched::Got(fx("methods")),
        &["cb69481e-8ff7-4039-93ec-0a2729a154a8".into()],
    );
    assert_eq!(c[0].status, Status::Fail);
    assert!(c[0].detail.contains("ee882879"));
}

#[test]
fn every_other_enabled_policy_must_exclude_the_group() {
    let a = bg1();
    let mut ca = fx("ca");
    ca["value"][1]["conditions"]["users"]["excludeGroups"] = json!([]);
    let c = ca_check(&Fetched::Got(ca), GROUP, std::slice::from_ref(&a));
    assert_eq!(c.status, Status::Fail);
    assert!(
        c.detail.contains("Require MFA for all users"),
        "{}",
        c.detail
    );
    // Excluding every account by id does it too.
    let mut ca = fx("ca");
    ca["value"][1]["conditions"]["users"]["excludeGroups"] = json!([]);
    ca["value"][1]["conditions"]["users"]["excludeUsers"] = json!([a.object_id]);
    assert_eq!(
        ca_check(&Fetched::Got(ca), GROUP, std::slice::from_ref(&a)).status,
        Status::Pass
    );
    // No phishing-resistant policy at all.
    let mut ca = fx("ca");
    ca["value"][0]["state"] = "disabled".into();
    let c = ca_check(&Fetched::Got(ca), GROUP, &[a]);
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("no enabled policy requires"));
}

#[test]
fn the_rule_must_name_every_account_by_object_id_or_upn() {
    let a = bg1();
    let b = Account {
        object_id: "00000000-0000-0000-0000-0000000b6e02".into(),
        upn: "breakglass2@rehearsal.onmicrosoft.com".into(),
    };
    // Microsoft's sample: `UserId == "<object id>"`.
    let q =
        "SigninLogs | project UserId | where UserId == \"00000000-0000-0000-0000-0000000B6E01\"";
    assert_eq!(query_covers(q, &a), Some(true));
    assert_eq!(query_covers(q, &b), Some(false));
    // UPNs with `in~`, any case.
    let q = "SigninLogs | where UserPrincipalName in~ (\"BreakGlass1@rehearsal.onmicrosoft.com\", 'breakglass2@rehearsal.onmicrosoft.com')";
    assert_eq!(query_covers(q, &a), Some(true));
    assert_eq!(query_covers(q, &b), Some(true));
    // A negated comparison names the account to leave it out.
    let q = "SigninLogs | where UserId != \"00000000-0000-0000-0000-0000000b6e01\"";
    assert_eq!(query_covers(q, &a), Some(false));
    // A watchlist join: glassdrill cannot see into it, and says so.
    let q = "let bg = _GetWatchlist('BreakGlass') | project ObjectId; SigninLogs | where UserId in (bg)";
    assert_eq!(query_covers(q, &a), None);
    let mut rule = fx("rule");
    rule["properties"]["criteria"]["allOf"][0]["query"] = q.into();
    let c = rule_checks(&Fetched::Got(rule), std::slice::from_ref(&a));
    assert_eq!(c[1].status, Status::Unknown);
    assert!(c[1].detail.contains("watchlist"));
    let c = rule_checks(&Fetched::Got(fx("rule")), &[a.clone(), b]);
    assert_eq!(c[1].status, Status::Fail);
    assert!(
        c[1].detail
            .contains("breakglass2@rehearsal.onmicrosoft.com")
    );
}

#[test]
fn a_disabled_muted_or_silent_pipeline_fails() {
    let a = bg1();
    let mut r = fx("rule");
    r["properties"]["enabled"] = false.into();
    assert_eq!(
        rule_checks(&Fetched::Got(r), std::slice::from_ref(&a))[0].status,
        Status::Fail
    );
    let mut r = fx("rule");
    r["properties"]["muteActionsDuration"] = "PT1D".into();
    let c = rule_checks(&Fetched::Got(r), std::slice::from_ref(&a));
    assert!(c[0].detail.contains("muted for PT1D"));
    assert_eq!(rule_checks(&Fetched::Missing, &[a])[0].status, Status::Fail);
    let mut ag = fx("ag");
    for k in ["emailReceivers", "webhookReceivers"] {
        ag["properties"][k] = json!([]);
    }
    let c = action_group_check(&Fetched::Got(ag));
    assert_eq!(c.status, Status::Fail);
    assert!(c.detail.contains("no receiver"));
    let c = action_group_check(&Fetched::Got(fx("ag")));
    assert!(
        c.detail
            .contains("2 receiver(s), 2 with the common alert schema"),
        "{}",
        c.detail
    );
    assert!(
        !failed(&[action_group_check(&Fetched::Denied("Monitoring Reader"))]),
        "UNKNOWN is never a finding"
    );
}
