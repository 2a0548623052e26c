//! Hardware tests: a real FIDO2 key attached to this machine. Ignored by
//! default; run with
//!
//! ```sh
//! GLASSDRILL_HW=1 GLASSDRILL_HW_PIN=env:KEY_PIN KEY_PIN=… \
//!   GLASSDRILL_HW_RP_ID=login.microsoft.com cargo test -- --ignored hw_
//! ```
//!
//! The key must hold a discoverable credential for `GLASSDRILL_HW_RP_ID`
//! and have its PIN retry counter at its maximum; the assertion test asks
//! for one touch. Nothing here changes the key (a wrong PIN would: the PIN
//! is tried once, after the counter was checked).

use std::time::Duration;

use glassdrill::fido::hid::{HidKey, devices};
use glassdrill::fido::{AssertionRequest, Fido2Key as _, blocking, pin_rule};
use glassdrill::secret::SecretRef;

fn enabled() -> bool {
    std::env::var_os("GLASSDRILL_HW").is_some_and(|v| v == "1")
}

fn the_key() -> HidKey {
    let found = devices().expect("HID devices can be listed");
    assert_eq!(
        found.len(),
        1,
        "attach exactly one FIDO key for the hardware tests (found {found:?})"
    );
    HidKey::new(found.into_iter().next().expect("one"))
}

#[test]
#[ignore = "needs a FIDO2 key: GLASSDRILL_HW=1"]
fn hw_keys_list_shows_the_attached_key() {
    if !enabled() {
        return;
    }
    let w = crate::util::World::new();
    let out = w.run(["keys", "list", "--json"]);
    out.expect_exit(0);
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let first = &list[0];
    assert_eq!(first["aaguid"].as_str().map(str::len), Some(36), "{first}");
    assert!(
        first["pin_retries"].is_u64(),
        "a break-glass key has a PIN: {first}"
    );
}

#[tokio::test]
#[ignore = "needs a FIDO2 key: GLASSDRILL_HW=1, and a touch"]
async fn hw_preflight_and_a_real_assertion() {
    if !enabled() {
        return;
    }
    let rp_id =
        std::env::var("GLASSDRILL_HW_RP_ID").unwrap_or_else(|_| "login.microsoft.com".into());
    let pin = SecretRef::parse(
        &std::env::var("GLASSDRILL_HW_PIN").expect("GLASSDRILL_HW_PIN=env:NAME or file:PATH"),
    )
    .expect("a secret reference")
    .resolve()
    .expect("the PIN");
    let key = the_key();
    let k = key.clone();
    let info = blocking(
        Duration::from_secs(20),
        glassdrill::fido::KeyError::Device("timeout".into()),
        move || k.info(),
    )
    .await
    .expect("getInfo");
    assert_eq!(
        pin_rule(info.pin_retries, 8),
        None,
        "the key's PIN counter must be at its maximum"
    );
    let (k, p, rp) = (key.clone(), pin.clone(), rp_id.clone());
    let held = blocking(
        Duration::from_secs(20),
        glassdrill::fido::KeyError::Device("timeout".into()),
        move || k.credentials(&rp, &p),
    )
    .await
    .expect("credential management");
    assert!(!held.is_empty(), "the key holds no credential for {rp_id}");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), b"touch the key now\n");
    let client_data = format!(
        r#"{{"type":"webauthn.get","challenge":"AAECAwQFBgcICQoLDA0ODw","origin":"https://{rp_id}","crossOrigin":false}}"#
    );
    let (k, p, rp, id) = (key.clone(), pin.clone(), rp_id.clone(), held[0].id.clone());
    let a = blocking(
        Duration::from_secs(30),
        glassdrill::fido::KeyError::NoTouch(Duration::from_secs(30)),
        move || {
            k.get_assertion(&AssertionRequest {
                rp_id: &rp,
                client_data_json: client_data.as_bytes(),
                allow: &[id],
                pin: Some(&p),
            })
        },
    )
    .await
    .expect("an assertion");
    assert_eq!(a.flags(), (true, true), "user present and verified");
    assert_eq!(a.credential_id, held[0].id);
    let k = key.clone();
    let after = blocking(
        Duration::from_secs(20),
        glassdrill::fido::KeyError::Device("timeout".into()),
        move || k.info(),
    )
    .await
    .expect("getInfo");
    assert_eq!(
        after.pin_retries, info.pin_retries,
        "the PIN was right: the counter is unchanged"
    );
}
