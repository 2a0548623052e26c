//! Bundle verification: the input is split into SHA256SUMS,
//! SHA256SUMS.sig and allowed_signers of a bundle directory.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let mut parts = bytes.splitn(3, |&b| b == 0);
    for name in ["SHA256SUMS", "SHA256SUMS.sig", "allowed_signers"] {
        let _ = std::fs::write(dir.path().join(name), parts.next().unwrap_or_default());
    }
    assert!(glassdrill::evidence::verify_bundle_all(dir.path(), None).is_err());
});
