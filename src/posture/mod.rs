//! Posture: is each break-glass account still set up as one, and is its
//! alert still wired to someone? Read-only checks over what Graph and
//! Azure Resource Manager return, each PASS, FAIL or UNKNOWN (glassdrill
//! may not read it: the permission is named, and UNKNOWN is never a
//! finding). The accounts are the ones the host config lists by object
//! id: nothing is inferred.
//!
//! This module is the pure half: every rule in one place, on the JSON the
//! APIs return (shapes in `fixtures/`, sources in `fixtures/SOURCES.md`).
//! Fetching, the `posture` command and the drill's posture stage build on
//! it.

use serde::Serialize;
use serde_json::Value;

/// Global Administrator's role template id.
pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";
/// The built-in "Phishing-resistant MFA" authentication strength.
pub const PHISHING_RESISTANT_STRENGTH: &str = "00000000-0000-0000-0000-000000000004";

/// A check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// As it must be.
    Pass,
    /// A finding.
    Fail,
    /// glassdrill could not read it (a permission is missing).
    Unknown,
}

/// One posture check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The account's UPN, or `None` for tenant-wide checks.
    pub account: Option<String>,
    /// What is checked.
    pub name: &'static str,
    /// The result.
    pub status: Status,
    /// Why, in words (the fix for a FAIL, the permission for an UNKNOWN).
    pub detail: String,
}

/// What an API call gave: the body, or why not.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The body.
    Got(Value),
    /// 404: the object does not exist.
    Missing,
    /// 401/403: glassdrill may not read it; the permission it needs.
    Denied(&'static str),
    /// Another failure (the API down): UNKNOWN, with the reason.
    Failed(String),
}

/// A listed account.
#[derive(Debug, Clone)]
pub struct Account {
    /// Object id (lower-case GUID).
    pub object_id: String,
    /// UPN, for people.
    pub upn: String,
}

fn check(account: Option<&Account>, name: &'static str, status: Status, detail: String) -> Check {
    Check {
        account: account.map(|a| a.upn.clone()),
        name,
        status,
        detail,
    }
}

fn unknown(account: Option<&Account>, name: &'static str, permission: &str) -> Check {
    check(
        account,
        name,
        Status::Unknown,
        format!("not readable: grant {permission}"),
    )
}

fn unreadable(account: Option<&Account>, name: &'static str, why: &str) -> Check {
    check(
        account,
        name,
        Status::Unknown,
        format!("could not be read: {why}"),
    )
}

fn items(v: &Value) -> &[Value] {
    v["value"].as_array().map_or(&[], Vec::as_slice)
}

fn eq_id(a: &Value, b: &str) -> bool {
    a.as_str().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

/// The account exists, is enabled, lives on `*.onmicrosoft.com`, is
/// cloud-only and has no licence (Graph `GET /users/{id}`).
pub fn user_checks(a: &Account, user: &Fetched) -> Vec<Check> {
    let u = match user {
        Fetched::Got(u) => u,
        Fetched::Missing => {
            return vec![check(
                Some(a),
                "exists and is enabled",
                Status::Fail,
                format!(
                    "no user has object id {}: the listed break-glass account was deleted (or the config names the wrong id)",
                    a.object_id
                ),
            )];
        }
        Fetched::Denied(p) => return vec![unknown(Some(a), "exists and is enabled", p)],
        Fetched::Failed(e) => return vec![unreadable(Some(a), "exists and is enabled", e)],
    };
    let mut out = Vec::new();
    let enabled = u["accountEnabled"].as_bool() == Some(true);
    out.push(check(
        Some(a),
        "exists and is enabled",
        if enabled { Status::Pass } else { Status::Fail },
        if enabled {
            "accountEnabled is true".into()
        } else {
            "accountEnabled is false: the break-glass account cannot sign in".into()
        },
    ));
    let upn = u["userPrincipalName"].as_str().unwrap_or_default();
    let onms = upn.to_ascii_lowercase().ends_with(".onmicrosoft.com");
    out.push(check(
        Some(a),
        "UPN on *.onmicrosoft.com",
        if onms { Status::Pass } else { Status::Fail },
        format!("userPrincipalName is {upn}"),
    ));
    let synced = u["onPremisesSyncEnabled"].as_bool() == Some(true);
    out.push(check(
        Some(a),
        "cloud-only",
        if synced { Status::Fail } else { Status::Pass },
        if synced {
            "onPremisesSyncEnabled is true: the account is synced from on-premises and falls with it".into()
        } else {
            "not synced from on-premises".into()
        },
    ));
    let licences = u["assignedLicenses"].as_array().map_or(0, Vec::len);
    out.push(check(
        Some(a),
        "no licences",
        if licences == 0 {
            Status::Pass
        } else {
            Status::Fail
        },
        format!("{licences} licence(s) assigned"),
    ));
    out
}

/// Global Administrator is assigned active and permanent: a role
/// assignment schedule of the GA role at `/`, `assignmentType` `Assigned`,
/// no expiry; eligibility through PIM does not count.
pub fn ga_check(a: &Account, assigned: &Fetched, eligible: &Fetched) -> Check {
    const NAME: &str = "Global Administrator, active and permanent";
    let (assigned, eligible) = match (assigned, eligible) {
        (Fetched::Got(x), Fetched::Got(y)) => (x, y),
        (Fetched::Denied(p), _) | (_, Fetched::Denied(p)) => return unknown(Some(a), NAME, p),
        (Fetched::Failed(e), _) | (_, Fetched::Failed(e)) => return unreadable(Some(a), NAME, e),
        _ => {
            return check(
                Some(a),
                NAME,
                Status::Fail,
                "no role schedules could be read".into(),
            );
        }
    };
    let is_ga = |s: &Value| {
        eq_id(&s["roleDefinitionId"], GLOBAL_ADMINISTRATOR) && s["directoryScopeId"] == "/"
    };
    let active: Vec<&Value> = items(assigned).iter().filter(|s| is_ga(s)).collect();
    let permanent = active.iter().any(|s| {
        s["assignmentType"] == "Assigned"
            && s["scheduleInfo"]["expiration"]["type"] == "noExpiration"
    });
    if permanent {
        return check(
            Some(a),
            NAME,
            Status::Pass,
            "active assignment with no expiry".into(),
        );
    }
    let detail = if let Some(s) = active.first() {
        format!(
            "the active assignment ends ({} {}): a break-glass account's role must never lapse",
            s["scheduleInfo"]["expiration"]["type"]
                .as_str()
                .unwrap_or("?"),
            s["scheduleInfo"]["expiration"]["endDateTime"]
                .as_str()
                .unwrap_or("")
        )
    } else if items(eligible).iter().any(is_ga) {
        "eligible through PIM only: activating needs an approval or MFA path the emergency may not have; assign it active and permanent".into()
    } else {
        "not assigned Global Administrator".into()
    };
    check(Some(a), NAME, Status::Fail, detail)
}

/// Member of the break-glass group (`transitiveMemberOf`).
pub fn group_check(a: &Account, member_of: &Fetched, group_id: &str) -> Check {
    const NAME: &str = "member of the break-glass group";
    match member_of {
        Fetched::Got(v) => {
            let member = items(v).iter().any(|g| eq_id(&g["id"], group_id));
            check(
                Some(a),
                NAME,
                if member { Status::Pass } else { Status::Fail },
                if member {
                    format!("member of {group_id}")
                } else {
                    format!(
                        "not a member of {group_id}: the Conditional Access exclusions and the alert may not cover it"
                    )
                },
            )
        }
        Fetched::Denied(p) => unknown(Some(a), NAME, p),
        Fetched::Failed(e) => unreadable(Some(a), NAME, e),
        Fetched::Missing => check(
            Some(a),
            NAME,
            Status::Fail,
            "the account does not exist".into(),
        ),
    }
}

/// Authentication methods: at least two FIDO2 keys (the spare), each of
/// an allowed AAGUID when the config lists them; a phishing-resistant
/// method exists (a password besides it is not a finding); no phone, SMS
/// or Authenticator app; no Temporary Access Pass.
pub fn method_checks(a: &Account, methods: &Fetched, allowed_aaguids: &[String]) -> Vec<Check> {
    const KEYS: &str = "two or more FIDO2 security keys";
    const WEAK: &str = "no phone, SMS or Authenticator app method";
    const TAP: &str = "no Temporary Access Pass";
    let v = match methods {
        Fetched::Got(v) => v,
        Fetched::Denied(p) => {
            return [KEYS, WEAK, TAP].map(|n| unknown(Some(a), n, p)).to_vec();
        }
        Fetched::Failed(e) => {
            return [KEYS, WEAK, TAP]
                .map(|n| unreadable(Some(a), n, e))
                .to_vec();
        }
        Fetched::Missing => {
            return vec![check(
                Some(a),
                KEYS,
                Status::Fail,
                "the account does not exist".into(),
            )];
        }
    };
    let kind = |m: &Value| m["@odata.type"].as_str().unwrap_or_default().to_owned();
    let fido: Vec<&Value> = items(v)
        .iter()
        .filter(|m| kind(m) == "#microsoft.graph.fido2AuthenticationMethod")
        .collect();
    let strong = items(v).iter().any(|m| {
        matches!(
            kind(m).as_str(),
            "#microsoft.graph.fido2AuthenticationMethod"
                | "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod"
                | "#microsoft.graph.x509CertificateAuthenticationMethod"
                | "#microsoft.graph.platformCredentialAuthenticationMethod"
        )
    });
    let foreign: Vec<String> = fido
        .iter()
        .filter_map(|m| m["aaGuid"].as_str())
        .filter(|g| {
            !allowed_aaguids.is_empty()
                && !allowed_aaguids.iter().any(|x| x.eq_ignore_ascii_case(g))
        })
        .map(str::to_owned)
        .collect();
    let mut out = vec![check(
        Some(a),
        KEYS,
        if fido.len() >= 2 && foreign.is_empty() && strong {
            Status::Pass
        } else {
            Status::Fail
        },
        if fido.len() < 2 {
            format!(
                "{} FIDO2 key(s) registered: register a spare, kept apart from the first",
                fido.len()
            )
        } else if !foreign.is_empty() {
            format!(
                "key(s) of AAGUID {} are not among the allowed models",
                foreign.join(", ")
            )
        } else {
            format!("{} FIDO2 keys registered", fido.len())
        },
    )];
    let weak: Vec<String> = items(v)
        .iter()
        .map(kind)
        .filter(|k| {
            matches!(
                k.as_str(),
                "#microsoft.graph.phoneAuthenticationMethod"
                    | "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod"
                    | "#microsoft.graph.softwareOathAuthenticationMethod"
                    | "#microsoft.graph.emailAuthenticationMethod"
            )
        })
        .collect();
    out.push(check(
        Some(a),
        WEAK,
        if weak.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        },
        if weak.is_empty() {
            "none".into()
        } else {
            format!("registered: {} (phishable; remove them)", weak.join(", "))
        },
    ));
    let tap = items(v)
        .iter()
        .any(|m| kind(m) == "#microsoft.graph.temporaryAccessPassAuthenticationMethod");
    out.push(check(
        Some(a),
        TAP,
        if tap { Status::Fail } else { Status::Pass },
        if tap {
            "a Temporary Access Pass is present: anyone holding it signs in as the break-glass account; delete it".into()
        } else {
            "none".into()
        },
    ));
    out
}

/// Conditional Access: an enabled policy requiring the phishing-resistant
/// strength includes the group; every other enabled policy excludes the
/// group or every account. Report-only policies are listed, never failed.
pub fn ca_check(policies: &Fetched, group_id: &str, accounts: &[Account]) -> Check {
    const NAME: &str = "Conditional Access";
    let v = match policies {
        Fetched::Got(v) => v,
        Fetched::Denied(p) => return unknown(None, NAME, p),
        Fetched::Failed(e) => return unreadable(None, NAME, e),
        Fetched::Missing => {
            return check(None, NAME, Status::Fail, "no policies could be read".into());
        }
    };
    let has = |list: &Value, id: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|x| eq_id(x, id)))
    };
    let mut requiring = Vec::new();
    let mut not_excluding = Vec::new();
    let mut report_only = Vec::new();
    for p in items(v) {
        let name = p["displayName"].as_str().unwrap_or("?").to_owned();
        let users = &p["conditions"]["users"];
        match p["state"].as_str() {
            Some("enabled") => {}
            Some("enabledForReportingButNotEnforced") => {
                report_only.push(name);
                continue;
            }
            _ => continue,
        }
        let strength = eq_id(
            &p["grantControls"]["authenticationStrength"]["id"],
            PHISHING_RESISTANT_STRENGTH,
        );
        let includes = has(&users["includeGroups"], group_id)
            || accounts
                .iter()
                .all(|a| has(&users["includeUsers"], &a.object_id));
        if strength && includes {
            requiring.push(name);
            continue;
        }
        let excluded = has(&users["excludeGroups"], group_id)
            || accounts
                .iter()
                .all(|a| has(&users["excludeUsers"], &a.object_id));
        if !excluded {
            not_excluding.push(name);
        }
    }
    let report = if report_only.is_empty() {
        String::new()
    } else {
        format!("; report-only (not enforced): {}", report_only.join(", "))
    };
    let status = if !requiring.is_empty() && not_excluding.is_empty() {
        Status::Pass
    } else {
        Status::Fail
    };
    let detail = match (requiring.is_empty(), not_excluding.is_empty()) {
        (false, true) => format!(
            "phishing-resistant strength required by {}; every other enabled policy excludes the group{report}",
            requiring.join(", ")
        ),
        (true, _) => format!(
            "no enabled policy requires the phishing-resistant strength for the break-glass group{}{report}",
            if not_excluding.is_empty() {
                String::new()
            } else {
                format!(
                    "; enabled policies not excluding it: {}",
                    not_excluding.join(", ")
                )
            }
        ),
        (false, false) => format!(
            "enabled policies that do not exclude the break-glass group: {} (one bad policy can lock every admin out){report}",
            not_excluding.join(", ")
        ),
    };
    check(None, NAME, status, detail)
}

/// Whether a rule's KQL names the account: its object id compared by
/// `==`, `=~` or `in`/`in~`, or its UPN likewise (any letter case); a
/// negated comparison does not count. `None` when the query reads a
/// watchlist or function glassdrill cannot see into.
pub fn query_covers(query: &str, a: &Account) -> Option<bool> {
    let q = query.to_ascii_lowercase();
    if q.contains("_getwatchlist") || q.contains("watchlist") {
        return None;
    }
    let mut covered = false;
    for needle in [a.object_id.to_ascii_lowercase(), a.upn.to_ascii_lowercase()] {
        for quote in ['"', '\''] {
            let lit = format!("{quote}{needle}{quote}");
            let mut from = 0;
            while let Some(i) = q[from..].find(&lit) {
                let at = from + i;
                // The comparison the literal belongs to: back to the
                // previous pipe or `where`.
                let before = &q[..at];
                let clause = before.rfind(['|']).map_or(before, |p| &before[p + 1..]);
                let negated = ["!=", "!~", "!in", "!has", "notin"]
                    .iter()
                    .any(|n| clause.contains(n));
                if !negated {
                    covered = true;
                }
                from = at + lit.len();
            }
        }
    }
    Some(covered)
}

/// The alert rule (ARM `scheduledQueryRules`): exists, enabled, actions
/// not muted, its query covers every listed account, and routes to
/// action groups.
pub fn rule_checks(rule: &Fetched, accounts: &[Account]) -> Vec<Check> {
    const NAME: &str = "alert rule enabled, not muted";
    const COVERS: &str = "alert rule covers every account";
    let r = match rule {
        Fetched::Got(r) => r,
        Fetched::Missing => {
            return vec![check(
                None,
                NAME,
                Status::Fail,
                "the alert rule does not exist".into(),
            )];
        }
        Fetched::Denied(p) => return vec![unknown(None, NAME, p), unknown(None, COVERS, p)],
        Fetched::Failed(e) => return vec![unreadable(None, NAME, e), unreadable(None, COVERS, e)],
    };
    let p = &r["properties"];
    let enabled = p["enabled"].as_bool() == Some(true);
    let muted = p["muteActionsDuration"]
        .as_str()
        .is_some_and(|d| !d.is_empty() && d != "PT0M" && d != "PT0S");
    let groups = p["actions"]["actionGroups"].as_array().map_or(0, Vec::len);
    let mut out = vec![check(
        None,
        NAME,
        if enabled && !muted && groups > 0 {
            Status::Pass
        } else {
            Status::Fail
        },
        if !enabled {
            "the rule is disabled: no sign-in raises an alert".into()
        } else if muted {
            format!(
                "actions are muted for {} after each alert",
                p["muteActionsDuration"].as_str().unwrap_or("?")
            )
        } else if groups == 0 {
            "the rule has no action group: its alert reaches nobody".into()
        } else {
            format!("enabled, {groups} action group(s)")
        },
    )];
    let queries: Vec<&str> = p["criteria"]["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["query"].as_str())
        .collect();
    let mut missing = Vec::new();
    let mut unsure = false;
    for a in accounts {
        match queries
            .iter()
            .map(|q| query_covers(q, a))
            .reduce(|x, y| match (x, y) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (None, _) | (_, None) => None,
                _ => Some(false),
            }) {
            Some(Some(true)) => {}
            Some(None) => unsure = true,
            _ => missing.push(a.upn.clone()),
        }
    }
    out.push(if !missing.is_empty() {
        check(
            None,
            COVERS,
            Status::Fail,
            format!(
                "the query does not name {} (by object id or UPN)",
                missing.join(", ")
            ),
        )
    } else if unsure {
        check(
            None,
            COVERS,
            Status::Unknown,
            "the query reads a watchlist: glassdrill cannot tell which accounts it names".into(),
        )
    } else {
        check(
            None,
            COVERS,
            Status::Pass,
            "the query names every account".into(),
        )
    });
    out
}

/// The action group: exists, enabled, at least one receiver; receivers
/// using the common alert schema are noted.
pub fn action_group_check(ag: &Fetched) -> Check {
    const NAME: &str = "action group routes to someone";
    let g = match ag {
        Fetched::Got(g) => g,
        Fetched::Missing => {
            return check(
                None,
                NAME,
                Status::Fail,
                "the rule's action group does not exist".into(),
            );
        }
        Fetched::Denied(p) => return unknown(None, NAME, p),
        Fetched::Failed(e) => return unreadable(None, NAME, e),
    };
    let p = &g["properties"];
    let mut receivers = 0;
    let mut common = 0;
    if let Some(o) = p.as_object() {
        for (k, v) in o {
            if k.ends_with("Receivers") {
                for r in v.as_array().into_iter().flatten() {
                    receivers += 1;
                    if r["useCommonAlertSchema"].as_bool() == Some(true) {
                        common += 1;
                    }
                }
            }
        }
    }
    let enabled = p["enabled"].as_bool() == Some(true);
    check(
        None,
        NAME,
        if enabled && receivers > 0 {
            Status::Pass
        } else {
            Status::Fail
        },
        if !enabled {
            "the action group is disabled".into()
        } else if receivers == 0 {
            "the action group has no receiver".into()
        } else {
            format!("{receivers} receiver(s), {common} with the common alert schema")
        },
    )
}

/// A posture's verdict: any FAIL fails; UNKNOWN never does.
pub fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

pub mod fetch;

#[cfg(test)]
mod tests;
