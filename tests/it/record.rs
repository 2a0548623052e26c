//! The drill record is a typed, versioned schema: the committed JSON
//! Schema is the one the types generate, a fresh record validates against
//! it, and a record written by glassdrill 0.1.0 (before `schema_version`)
//! still loads.

use std::path::PathBuf;
use std::time::Duration;

use crate::util::{World, rehearse};
use glassdrill::record::{DrillRecord, SCHEMA_VERSION, Stage, Verdict, json_schema};

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/drill-record.v1.json")
}

fn committed_schema() -> serde_json::Value {
    let text = std::fs::read_to_string(schema_path()).expect("schema/drill-record.v1.json");
    serde_json::from_str(&text).expect("schema is JSON")
}

#[test]
fn committed_json_schema_matches_the_types() {
    let generated = json_schema();
    if std::env::var_os("GLASSDRILL_WRITE_SCHEMA").is_some() {
        let mut text = serde_json::to_string_pretty(&generated).unwrap();
        text.push('\n');
        std::fs::write(schema_path(), text).unwrap();
    }
    assert!(
        committed_schema() == generated,
        "schema/drill-record.v1.json is stale: regenerate it with `GLASSDRILL_WRITE_SCHEMA=1 cargo test committed_json_schema`"
    );
}

fn validate(instance: &serde_json::Value) {
    let validator = jsonschema::validator_for(&committed_schema()).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "record does not validate: {errors:#?}");
}

#[test]
fn a_record_of_glassdrill_0_1_0_still_loads_and_validates() {
    let bytes = include_bytes!("fixtures/drill-0.1.0-pass.json");
    let r = DrillRecord::from_json(bytes).expect("old record loads");
    assert_eq!(r.schema_version, 1, "absent version reads as 1");
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.stages[0].stage, Stage::Preflight);
    assert_eq!(r.sign_in.steps.len(), 5);
    assert_eq!(r.alerts[0].latency.as_ref().unwrap().signin_to_fired_ms, 4);
    validate(&serde_json::from_slice(bytes).unwrap());
}

#[test]
fn a_newer_schema_version_is_refused_with_the_fix() {
    let mut v: serde_json::Value =
        serde_json::from_slice(include_bytes!("fixtures/drill-0.1.0-pass.json")).unwrap();
    v["schema_version"] = (SCHEMA_VERSION + 1).into();
    let err = DrillRecord::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("upgrade glassdrill"), "{err}");
    v["schema_version"] = 1.into();
    v["verdict"] = "MAYBE".into();
    let err = DrillRecord::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(err.to_string().contains("schema"), "{err}");
}

#[tokio::test]
async fn a_fresh_record_validates_and_round_trips() {
    let w = World::new();
    let o = rehearse(&w, &[], Duration::from_secs(10), Duration::from_secs(60)).await;
    assert_eq!(o.verdict, Verdict::Pass, "{:#?}", o.stages);
    let bytes = std::fs::read(o.bundle.as_ref().unwrap().dir.join("drill.json")).unwrap();
    validate(&serde_json::from_slice(&bytes).unwrap());
    let r = DrillRecord::from_json(&bytes).unwrap();
    assert_eq!(r.schema_version, SCHEMA_VERSION);
    assert_eq!(
        Some(&r),
        o.record.as_ref(),
        "what was written is what the run reported"
    );
    // Timestamps are RFC 3339 UTC with milliseconds.
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains(&format!(
        "\"started\": \"{}\"",
        glassdrill::support::time::rfc3339_ms(r.started)
    )));
    w.assert_clean();
}
