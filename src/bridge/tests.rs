use super::*;

fn req(origin: &str, rp_id: Option<&str>) -> PageRequest {
    PageRequest {
        id: "1.1".into(),
        challenge: "AAECAwQFBgcICQoLDA0ODw".into(),
        rp_id: rp_id.map(str::to_owned),
        allow_credentials: vec![],
        user_verification: "required".into(),
        timeout: 60_000,
        origin: origin.into(),
    }
}

#[test]
fn client_data_is_what_chromium_writes() {
    let r = req("https://login.microsoft.com", Some("login.microsoft.com"));
    let c = check(&r, "login.microsoft.com", "https://login.microsoft.com").unwrap();
    assert_eq!(
        String::from_utf8(c.client_data_json).unwrap(),
        r#"{"type":"webauthn.get","challenge":"AAECAwQFBgcICQoLDA0ODw","origin":"https://login.microsoft.com","crossOrigin":false}"#
    );
    assert!(c.user_verification);
}

#[test]
fn a_page_can_never_make_glassdrill_sign_for_another_rp_id() {
    let drill = "login.microsoft.com";
    let at = |o: &str, rp: Option<&str>| check(&req(o, rp), drill, o);
    // Another RP id, even from its own origin.
    let e = at("https://evil.localhost", Some("evil.localhost")).unwrap_err();
    assert_eq!(e.name, "SecurityError");
    // The drill's RP id claimed by an origin that is not under it.
    let e = at("https://login.microsoft.com.evil.localhost", Some(drill)).unwrap_err();
    assert_eq!(e.name, "SecurityError");
    let e = at("https://evillogin.microsoft.com", Some(drill)).unwrap_err();
    assert_eq!(e.name, "SecurityError");
    // A subdomain may use its parent as RP id; no rpId means the host.
    assert!(at("https://a.login.microsoft.com", Some(drill)).is_ok());
    assert!(at("https://login.microsoft.com", None).is_ok());
    assert_eq!(
        at("https://a.login.microsoft.com", None).unwrap_err().name,
        "SecurityError"
    );
    // Plain HTTP only on loopback names.
    assert_eq!(
        at("http://login.microsoft.com", Some(drill))
            .unwrap_err()
            .name,
        "SecurityError"
    );
    assert!(
        check(
            &req("http://login.microsoft.localhost:8080", None),
            "login.microsoft.localhost",
            "http://login.microsoft.localhost:8080"
        )
        .is_ok()
    );
}

#[test]
fn the_top_origin_comes_from_webdriver_not_from_the_page() {
    let r = req("https://login.microsoft.com", None);
    let e = check(&r, "login.microsoft.com", "https://phish.localhost").unwrap_err();
    assert_eq!(e.name, "SecurityError");
    assert!(e.message.contains("phish.localhost"), "{}", e.message);
}

#[test]
fn malformed_requests_are_refused() {
    let mut r = req("https://login.microsoft.com", None);
    r.challenge = "***".into();
    assert_eq!(
        check(&r, "login.microsoft.com", "https://login.microsoft.com")
            .unwrap_err()
            .name,
        "NotAllowedError"
    );
    let r = req("not a url", None);
    assert_eq!(check(&r, "x", "x").unwrap_err().name, "SecurityError");
}

#[test]
fn the_shim_is_named_per_run() {
    let a = hook_name();
    let b = hook_name();
    assert_ne!(a, b);
    let s = shim(&a);
    assert!(s.contains(&a) && !s.contains(HOOK_PLACEHOLDER));
}
