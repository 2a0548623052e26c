//! Small helpers every layer uses, each written once: identifier rules,
//! timestamps, hashing, private atomic files, retry with backoff, and the
//! loopback-aware HTTP client. Imports nothing else of glassdrill.

pub mod fs;
pub mod hash;
pub mod html;
pub mod http;
pub mod ids;
#[doc(hidden)]
pub mod pgtest;
pub mod retry;
pub mod testpoint;
pub mod time;
