use secrecy::SecretString;

use super::soft::{NewSoftKey, SoftKey};
use super::*;

fn info(path: &str, aaguid: &str) -> KeyInfo {
    KeyInfo {
        path: path.into(),
        product: "key".into(),
        aaguid: aaguid.into(),
        model: None,
        firmware: None,
        versions: vec![],
        options: vec![],
        pin_retries: Some(8),
    }
}

const A: &str = "ee882879-721c-4913-9775-3dfcce97072a";
const B: &str = "cb69481e-8ff7-4039-93ec-0a2729a154a8";

#[test]
fn selection_never_takes_the_first_of_several() {
    let found = vec![
        info("/dev/hidraw1", A),
        info("/dev/hidraw2", A),
        info("/dev/hidraw3", B),
    ];
    let by_model = |a: &str| Selector {
        aaguid: Some(a.into()),
        ..Selector::default()
    };
    // One of its model: taken.
    assert_eq!(select(&found, &by_model(B), |_| Ok(false)), Ok(2));
    // Two of the model and no credential id: ambiguous, naming both.
    match select(&found, &by_model(A), |_| Ok(false)) {
        Err(KeyError::Ambiguous(2, paths)) => {
            assert!(paths.contains("/dev/hidraw1") && paths.contains("/dev/hidraw2"));
        }
        other => panic!("{other:?}"),
    }
    // The credential id decides between keys of one model.
    let sel = Selector {
        aaguid: Some(A.into()),
        credential_id: Some(vec![7]),
        device: None,
    };
    assert_eq!(select(&found, &sel, |i| Ok(i == 1)), Ok(1));
    // Neither holds it: not found, naming what is attached.
    match select(&found, &sel, |_| Ok(false)) {
        Err(KeyError::NotFound(m)) => assert!(m.contains("/dev/hidraw3"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Both hold it: still ambiguous.
    assert!(matches!(
        select(&found, &sel, |_| Ok(true)),
        Err(KeyError::Ambiguous(2, _))
    ));
    // A device path is exact.
    let dev = Selector {
        device: Some("/dev/hidraw2".into()),
        ..Selector::default()
    };
    assert_eq!(select(&found, &dev, |_| Ok(false)), Ok(1));
    // Nothing attached at all.
    assert_eq!(
        select(&[], &by_model(A), |_| Ok(false)),
        Err(KeyError::NotFound(String::new()))
    );
    // A wrong PIN while telling keys apart stops the selection.
    assert!(matches!(
        select(&found, &sel, |_| Err(KeyError::PinInvalid {
            retries_left: Some(7)
        })),
        Err(KeyError::PinInvalid { .. })
    ));
}

#[test]
fn a_pin_counter_below_its_maximum_keeps_the_key_out_of_drills() {
    assert_eq!(pin_rule(Some(8), 8), None);
    let f = pin_rule(Some(7), 8).unwrap();
    assert!(f.contains("7 of 8") && f.contains("tamper"), "{f}");
    assert!(pin_rule(Some(0), 8).unwrap().contains("blocked"));
    assert!(pin_rule(None, 8).unwrap().contains("no PIN"));
    // A key whose maximum is not 8.
    assert_eq!(pin_rule(Some(3), 3), None);
}

#[test]
fn a_counter_that_does_not_increase_is_a_finding() {
    assert_eq!(counter_rule(None, Some(5)), None);
    assert_eq!(counter_rule(Some(4), Some(5)), None);
    assert!(counter_rule(Some(5), Some(5)).is_some());
    assert!(counter_rule(Some(9), Some(2)).is_some());
    // Keys without a counter (always 0) are not flagged.
    assert_eq!(counter_rule(Some(0), Some(0)), None);
}

#[test]
fn failures_that_need_a_person_are_never_retried() {
    assert!(
        KeyError::PinInvalid {
            retries_left: Some(7)
        }
        .needs_person()
    );
    assert!(KeyError::PinBlocked.needs_person());
    assert!(KeyError::PinAuthBlocked.needs_person());
    assert!(!KeyError::NoTouch(std::time::Duration::from_secs(30)).needs_person());
    assert!(!KeyError::Unplugged("x".into()).needs_person());
    let m = KeyError::PinInvalid {
        retries_left: Some(7),
    }
    .to_string();
    assert!(
        m.contains("7 retries left") && m.contains("not tried again"),
        "{m}"
    );
}

fn soft(dir: &tempfile::TempDir, pin: &str) -> (SoftKey, Vec<u8>, p256::ecdsa::VerifyingKey) {
    SoftKey::create(
        &dir.path().join("k.json"),
        &NewSoftKey {
            rp_id: "login.example.localhost",
            user_handle: b"user-handle",
            user_name: "bg1@example",
            pin: &SecretString::from(pin.to_owned()),
        },
    )
    .unwrap()
}

#[test]
fn the_soft_key_keeps_its_secrets_in_a_private_file_and_never_overwrites_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (key, _, _) = soft(&dir, "123456");
    let mode = std::fs::metadata(key.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(key.path()).unwrap();
    assert!(!text.contains("123456"), "the PIN is stored hashed");
    // Creating again refuses.
    assert!(matches!(
        SoftKey::create(
            key.path(),
            &NewSoftKey {
                rp_id: "x",
                user_handle: b"u",
                user_name: "n",
                pin: &SecretString::from("1".to_owned()),
            },
        ),
        Err(KeyError::SoftState { .. })
    ));
    // Readable by others: refused, naming the fix.
    std::fs::set_permissions(key.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    match key.info() {
        Err(KeyError::SoftState { reason, .. }) => {
            assert!(reason.contains("chmod 600"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_soft_key_signs_as_a_ctap2_key_does() {
    let dir = tempfile::tempdir().unwrap();
    let (key, id, public_key) = soft(&dir, "123456");
    let pin = SecretString::from("123456".to_owned());
    let held = key.credentials("login.example.localhost", &pin).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, id);
    assert_eq!(held[0].user_handle, b"user-handle");
    let cdj = br#"{"type":"webauthn.get","challenge":"AAAAAAAAAAAAAAAAAAAAAA","origin":"https://login.example.localhost","crossOrigin":false}"#;
    let req = AssertionRequest {
        rp_id: "login.example.localhost",
        client_data_json: cdj,
        allow: &[],
        pin: Some(&pin),
    };
    let a1 = key.get_assertion(&req).unwrap();
    let a2 = key.get_assertion(&req).unwrap();
    assert_eq!(a1.sign_count(), Some(1));
    assert_eq!(a2.sign_count(), Some(2));
    assert_eq!(a1.flags(), (true, true));
    // The relying party's verification accepts it.
    let stored = crate::webauthn::StoredCredential {
        id: id.clone(),
        public_key,
        sign_count: 1,
        user_handle: b"user-handle".to_vec(),
    };
    let origins = vec!["https://login.example.localhost".to_owned()];
    let v = crate::webauthn::verify_assertion(
        &crate::webauthn::Expected {
            rp_id: "login.example.localhost",
            origins: &origins,
            challenge: &[0; 16],
            require_user_verification: true,
        },
        &stored,
        &crate::webauthn::Assertion {
            credential_id: &a2.credential_id,
            authenticator_data: &a2.authenticator_data,
            client_data_json: cdj,
            signature: &a2.signature,
            user_handle: a2.user_handle.as_deref(),
        },
    )
    .unwrap();
    assert_eq!(v.sign_count, 2);
    // No credential for another RP id.
    let other = AssertionRequest {
        rp_id: "evil.localhost",
        ..req
    };
    assert!(matches!(
        key.get_assertion(&other),
        Err(KeyError::NoCredential(_))
    ));
    // Without UV the flag is clear.
    key.tamper(|k| k.set_performs_uv(false)).unwrap();
    assert_eq!(key.get_assertion(&req).unwrap().flags(), (true, false));
}

#[test]
fn a_wrong_pin_costs_one_retry_and_the_key_blocks_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _, _) = soft(&dir, "123456");
    let wrong = SecretString::from("000000".to_owned());
    let right = SecretString::from("123456".to_owned());
    let req = |pin| AssertionRequest {
        rp_id: "login.example.localhost",
        client_data_json: b"{}",
        allow: &[],
        pin: Some(pin),
    };
    assert_eq!(
        key.get_assertion(&req(&wrong)).unwrap_err(),
        KeyError::PinInvalid {
            retries_left: Some(7)
        }
    );
    assert_eq!(key.info().unwrap().pin_retries, Some(7));
    // The right PIN resets the counter, as CTAP2 keys do.
    key.get_assertion(&req(&right)).unwrap();
    assert_eq!(key.info().unwrap().pin_retries, Some(8));
    key.tamper(|k| k.set_pin_retries(1)).unwrap();
    assert_eq!(
        key.get_assertion(&req(&wrong)).unwrap_err(),
        KeyError::PinBlocked
    );
    assert_eq!(
        key.get_assertion(&req(&right)).unwrap_err(),
        KeyError::PinBlocked
    );
}

#[tokio::test]
async fn blocking_calls_end_at_their_deadline_and_survive_a_panic() {
    let slow = blocking(
        std::time::Duration::from_millis(50),
        KeyError::NoTouch(std::time::Duration::from_secs(1)),
        || {
            #[allow(clippy::disallowed_methods)] // on blocking()'s own thread
            std::thread::sleep(std::time::Duration::from_millis(500));
            Ok(())
        },
    )
    .await;
    assert_eq!(
        slow,
        Err(KeyError::NoTouch(std::time::Duration::from_secs(1)))
    );
    let panicked: Result<(), KeyError> = blocking(
        std::time::Duration::from_secs(5),
        KeyError::Device("timeout".into()),
        || panic!("driver bug"),
    )
    .await;
    assert!(matches!(panicked, Err(KeyError::Device(m)) if m.contains("panicked")));
}
