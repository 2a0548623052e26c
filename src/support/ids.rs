//! The one rule for drill ids and run ids: both name directories of the
//! evidence tree, so config validation and `evidence verify` enforce the
//! same rule through [`check`].

/// Longest id, in bytes.
pub(crate) const MAX_LEN: usize = 64;

/// Why an id is not acceptable, in words fit for an error message.
pub(crate) type IdProblem = &'static str;

/// Checks one drill or run id: 1–64 ASCII letters, digits, `-`, `_` or `.`,
/// starting with a letter or digit. That keeps it one safe path component
/// an auditor can paste into a shell or a Windows file system, and a
/// leading `.` never collides with the hidden `.<run>.partial` staging
/// directories.
pub fn check(value: &str) -> Result<(), IdProblem> {
    if value.is_empty() {
        return Err("must not be empty");
    }
    if value.len() > MAX_LEN {
        return Err("must be at most 64 characters");
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or digit");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("may hold only ASCII letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// The rule in one sentence, for messages that show how to fix an id.
pub(crate) const RULE: &str =
    "1-64 ASCII letters, digits, `-`, `_` or `.`, starting with a letter or digit";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_drill_and_run_ids() {
        for ok in [
            "bg1",
            "rehearsal",
            "entra-bg_1.v2",
            "20261124T211651Z-ce61c6",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_would_not_be_one_safe_path_component() {
        let long = "a".repeat(65);
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "..",
            "a b",
            "é",
            "a@b",
            long.as_str(),
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
