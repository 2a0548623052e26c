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
    /// Byte offsets where lines start, built on first use: positions are
    /// found by binary search, so reporting many problems stays linear.
    lines: std::cell::OnceCell<Vec<usize>>,
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// The fields a table accepts, given its path (`[]` for the root).
pub(crate) type FieldsAt = dyn Fn(&[Seg]) -> Option<&'static [&'static str]>;

impl<'a> Source<'a> {
    /// The text of `path`.
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            lines: std::cell::OnceCell::new(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let starts = self.lines.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        let offset = offset.min(self.text.len());
        let line = starts.partition_point(|&s| s <= offset).max(1);
        let start = starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |t| t.chars().count())
            + 1;
        (line, col)
    }

    /// A problem at a byte offset of this file.
    pub fn problem(
        &self,
        offset: usize,
        severity: Severity,
        message: impl Into<String>,
    ) -> Problem {
        let (line, column) = self.line_col(offset);
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
    /// Every unknown key and table of the file is reported in one pass
    /// (`serde_ignored` notes each key the types do not take; `fields`
    /// names what each table accepts, for the message). A syntax error, a
    /// missing field or a wrong type still stops the file, because serde
    /// stops there.
    pub(crate) fn parse<T: serde::de::DeserializeOwned>(
        &self,
        fields: &FieldsAt,
    ) -> Result<T, Vec<Problem>> {
        let de = toml::de::Deserializer::parse(self.text).map_err(|e| vec![self.toml_error(&e)])?;
        let mut unknown: Vec<Vec<Seg>> = Vec::new();
        let parsed: Result<T, _> =
            serde_ignored::deserialize(de, |path| unknown.push(segments(&path)));
        let mut problems = Vec::new();
        if !unknown.is_empty() {
            // Key positions are needed only to report unknown keys: the
            // document is walked for them then, and only then.
            let table =
                toml::de::DeTable::parse(self.text).map_err(|e| vec![self.toml_error(&e)])?;
            let spans = key_spans(table.get_ref());
            for path in &unknown {
                let (parent, key) = match path.split_last() {
                    Some((Seg::Key(k), parent)) => (parent, k.as_str()),
                    _ => (&path[..0], ""),
                };
                let expected = fields(parent)
                    .map(|f| {
                        let list: Vec<String> = f.iter().map(|n| format!("`{n}`")).collect();
                        format!(", expected one of {}", list.join(", "))
                    })
                    .unwrap_or_default();
                problems.push(self.error(
                    spans.get(path).copied().unwrap_or(0),
                    format!(
                        "unknown field `{key}`{expected} (check the spelling; the fields this table accepts are listed after `expected`)"
                    ),
                ));
            }
        }
        match parsed {
            Ok(v) if problems.is_empty() => Ok(v),
            Ok(_) => Err(problems),
            Err(e) => {
                problems.push(self.toml_error(&e));
                Err(problems)
            }
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> Problem {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().trim().to_owned();
        let hint = if msg.starts_with("missing field") {
            " (add it; see the commented example in deploy/ or drills/)"
        } else {
            ""
        };
        self.error(offset, format!("{msg}{hint}"))
    }
}

/// A `serde_ignored` path as segments.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Seg> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut p = path;
    loop {
        match p {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Seg::Index(*index));
                p = parent;
            }
            Path::Map { parent, key } => {
                // toml's `Spanned` is a map of private keys to serde; the
                // value inside is the table the user wrote.
                if !key.starts_with("$__serde_spanned_private") {
                    out.push(Seg::Key(key.clone()));
                }
                p = parent;
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => p = parent,
        }
    }
    out.reverse();
    out
}

/// The byte offset of every key in the document, by path: one walk.
fn key_spans(root: &toml::de::DeTable<'_>) -> std::collections::HashMap<Vec<Seg>, usize> {
    fn walk_value(
        v: &toml::de::DeValue<'_>,
        path: &mut Vec<Seg>,
        out: &mut std::collections::HashMap<Vec<Seg>, usize>,
    ) {
        match v {
            toml::de::DeValue::Table(t) => walk_table(t, path, out),
            toml::de::DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk_value(item.get_ref(), path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    fn walk_table(
        t: &toml::de::DeTable<'_>,
        path: &mut Vec<Seg>,
        out: &mut std::collections::HashMap<Vec<Seg>, usize>,
    ) {
        for (k, v) in t {
            path.push(Seg::Key(k.get_ref().to_string()));
            out.insert(path.clone(), k.span().start);
            walk_value(v.get_ref(), path, out);
            path.pop();
        }
    }
    let mut out = std::collections::HashMap::new();
    walk_table(root, &mut Vec::new(), &mut out);
    out
}

/// The field names a struct's `Deserialize` asks for, read without any
/// input: a deserializer that only listens for `deserialize_struct`. Lets
/// messages list the accepted keys straight from the types.
pub(crate) fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::Error as _;
    struct Listen(std::cell::Cell<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &Listen {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("introspection"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.set(fields);
            Err(Self::Error::custom("introspection"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let l = Listen(std::cell::Cell::new(&[]));
    let _ = T::deserialize(&l);
    l.0.get()
}

/// 1-based line and column (in characters) of a byte offset.
#[cfg(test)]
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    Source::new(Path::new(""), text).line_col(offset)
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
    use crate::support::fs::{OpenError, ReadCappedError, open_regular, read_to_cap};
    let (f, _) = open_regular(path).map_err(|e| match e {
        OpenError::Io(e) => ReadError::Io(e),
        OpenError::NotAFile => ReadError::NotAFile,
    })?;
    let bytes = read_to_cap(f, MAX_CONFIG_FILE).map_err(|e| match e {
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
