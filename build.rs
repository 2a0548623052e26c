//! Names the commit a binary was built from, for `glassdrill --version`
//! ("unknown" outside a git checkout, such as a crate tarball).

use std::process::Command;

// Cargo reads the build script's stdout: println! is the protocol here.
#[allow(clippy::disallowed_macros)]
fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GLASSDRILL_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
}
