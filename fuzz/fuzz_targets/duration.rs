//! The duration parser behind every deadline and timeout setting.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let max = std::time::Duration::from_secs(86_400);
    if let Ok(d) = glassdrill::support::time::parse_bounded(text, max, true) {
        assert!(d <= max);
    }
});
