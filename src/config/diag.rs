//! Problems in configuration files: each names file:line:column, what is
//! wrong and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The file cannot be used.
    Error,
    /// Usable now, but a drill will fail (e.g. a secret not provisioned yet).
    Warning,
}

/// One problem in one file, with its position and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem is about the whole file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {sev}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {sev}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Problems found while loading configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Whether any problem is an error (warnings alone do not stop a load).
    pub(crate) fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A file's text, to turn byte spans into line:column.
pub struct Source<'a> {
    /// The file's path, as shown in messages.
    pub path: &'a Path,
    /// Its text.
    pub text: &'a str,
}

impl Source<'_> {
    /// A problem at a byte offset of this file.
    pub fn problem(
        &self,
        offset: usize,
        severity: Severity,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = line_col(self.text, offset);
        Problem {
            file: self.path.to_path_buf(),
            line,
            column,
            severity,
            message: message.into(),
        }
    }

    /// An error at a byte offset.
    pub fn error(&self, offset: usize, message: impl Into<String>) -> Problem {
        self.problem(offset, Severity::Error, message)
    }

    /// Parses TOML into `T`, turning serde's errors into positioned
    /// problems with a hint for the usual mistakes.
    ///
    /// serde stops at the first error. So that every misspelt key is
    /// reported at once, an unknown key on a `key = value` line of its own
    /// is commented out (same length, so positions stay true) and the text
    /// parsed again; any other error ends the search.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, Vec<Problem>> {
        let mut text = self.text.to_owned();
        let mut problems = Vec::new();
        // Bounded: each pass removes one line.
        for _ in 0..=self.text.lines().count() {
            let e = match toml::from_str::<T>(&text) {
                Ok(v) if problems.is_empty() => return Ok(v),
                Ok(_) => return Err(problems),
                Err(e) => e,
            };
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            let msg = e.message().trim().to_owned();
            let unknown = msg.starts_with("unknown field");
            let hint = if unknown {
                " (check the spelling; the fields this table accepts are listed after `expected`)"
            } else if msg.starts_with("missing field") {
                " (add it; see the commented example in deploy/ or drills/)"
            } else {
                ""
            };
            problems.push(self.error(offset, format!("{msg}{hint}")));
            if !unknown || !comment_out_key_line(&mut text, offset) {
                break;
            }
        }
        Err(problems)
    }
}

/// Comments out the line holding the key at `offset` when that line is a
/// plain `key = value` whose key starts there; false when it cannot (an
/// inline table, a table header), so the caller stops instead of causing
/// follow-on errors.
fn comment_out_key_line(text: &mut String, offset: usize) -> bool {
    let start = text
        .get(..offset)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = text
        .get(offset..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| offset + i);
    let Some(line) = text.get(start..line_end) else {
        return false;
    };
    let indent = line.len() - line.trim_start().len();
    let multi_line_value = line.contains("\"\"\"")
        || line.contains("\'\'\'")
        || (line.contains('[') && !line.contains(']'));
    if start + indent != offset
        || line.trim_start().starts_with('[')
        || line.contains('{')
        || multi_line_value
    {
        return false;
    }
    // Replace the key's first character with `#` plus padding, so every
    // later byte offset stays where it was.
    let Some(first) = text.get(offset..).and_then(|t| t.chars().next()) else {
        return false;
    };
    let width = first.len_utf8();
    text.replace_range(
        offset..offset + width,
        &format!("#{}", " ".repeat(width - 1)),
    );
    true
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Largest config, drill or flow file read (real ones are a few KiB).
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// Why a configuration file could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The OS refused (missing, permissions).
    Io(std::io::Error),
    /// Not a regular file.
    NotAFile,
    /// Larger than [`MAX_CONFIG_FILE`].
    TooLarge,
    /// Not UTF-8.
    NotText,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::NotAFile => f.write_str("not a regular file"),
            Self::TooLarge => write!(
                f,
                "larger than {} KiB, far more than any real one",
                MAX_CONFIG_FILE / 1024
            ),
            Self::NotText => f.write_str("not UTF-8 text"),
        }
    }
}

/// Reads a configuration file: a regular file, at most
/// [`MAX_CONFIG_FILE`], UTF-8.
pub(crate) fn read_text(path: &Path) -> Result<String, ReadError> {
    use crate::support::fs::{ReadCappedError, read_capped};
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    let bytes = read_capped(path, MAX_CONFIG_FILE).map_err(|e| match e {
        ReadCappedError::Io(e) => ReadError::Io(e),
        ReadCappedError::TooLarge => ReadError::TooLarge,
    })?;
    String::from_utf8(bytes).map_err(|_| ReadError::NotText)
}

/// [`read_text`], with a whole-file problem naming `what` and the fix.
pub(crate) fn read_config(path: &Path, what: &str, fix: &str) -> Result<String, Problems> {
    read_text(path).map_err(|e| {
        Problems(vec![Problem {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            severity: Severity::Error,
            message: format!("cannot read the {what} ({e}){fix}"),
        }])
    })
}
