//! The webhook receiver's body parser (Azure Monitor common alert schema).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
        let _ = glassdrill::alerts::correlate::parse_common_alert(&v);
    }
});
