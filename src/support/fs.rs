//! Private, durable files: every file glassdrill writes that holds a key,
//! a record or a secret is mode 0600, fsynced, and appears atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private files.
pub(crate) const PRIVATE_FILE: u32 = 0o600;
/// Mode of private directories.
pub(crate) const PRIVATE_DIR: u32 = 0o700;

/// The directory a path lives in (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and its parents, mode 0700 for those it creates.
pub(crate) fn create_private_dirs(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// fsyncs a directory, making entries created or renamed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// How [`write_atomic`] treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Fail with `AlreadyExists` (keys: never overwrite one).
    Refuse,
    /// Replace it atomically.
    Replace,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory with `mode`, fsync, rename, fsync of the directory. A reader
/// sees the old file or the new one, never half of one.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    existing: Existing,
) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".glassdrill-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match existing {
        Existing::Refuse => {
            tmp.persist_noclobber(path).map_err(|e| e.error)?;
        }
        Existing::Replace => {
            tmp.persist(path).map_err(|e| e.error)?;
        }
    }
    sync_dir(&dir)
}

/// Creates `path`, which must not exist (no symlink is followed), writes
/// `bytes` with mode 0600 and fsyncs it; a half-written file is removed.
/// For files inside a staging directory whose rename is the atomic step.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}

/// Why [`read_capped`] gave up.
#[derive(Debug)]
pub(crate) enum ReadCappedError {
    /// The OS refused.
    Io(io::Error),
    /// Larger than the cap.
    TooLarge,
}

/// Reads a whole file, refusing one larger than `cap` bytes (without
/// reading more than `cap + 1`).
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadCappedError> {
    read_to_cap(File::open(path).map_err(ReadCappedError::Io)?, cap)
}

/// Reads an open file to its end, refusing more than `cap` bytes.
pub(crate) fn read_to_cap(f: File, cap: u64) -> Result<Vec<u8>, ReadCappedError> {
    let mut buf = Vec::new();
    f.take(cap.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(ReadCappedError::Io)?;
    if buf.len() as u64 > cap {
        return Err(ReadCappedError::TooLarge);
    }
    Ok(buf)
}

/// Why [`open_regular`] refused.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The OS refused.
    Io(io::Error),
    /// Not a regular file (a FIFO, a device, a directory).
    NotAFile,
}

/// Opens `path` for reading as a regular file, checked on the open file
/// (so nothing can be swapped in between): a FIFO cannot block the open
/// (`O_NONBLOCK` is harmless on a file), and a terminal cannot become the
/// process's controlling terminal (`O_NOCTTY`). For files whose path comes
/// from configuration: secrets, config, drill and flow files.
pub(crate) fn open_regular(path: &Path) -> Result<(File, fs::Metadata), OpenError> {
    use nix::fcntl::OFlag;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
        .open(path)
        .map_err(OpenError::Io)?;
    let meta = f.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile);
    }
    Ok((f, meta))
}

/// Every file under `dir` (not following symlinks), as paths relative to
/// it, sorted: a bundle's or an export's files.
pub(crate) fn relative_files(dir: &Path) -> io::Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                walk(base, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_private_and_refuses_or_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        write_atomic(&p, b"one", PRIVATE_FILE, Existing::Refuse).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_atomic(&p, b"two", PRIVATE_FILE, Existing::Refuse).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        write_atomic(&p, b"three", PRIVATE_FILE, Existing::Replace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn capped_read() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_capped(&p, 5).unwrap(), b"12345");
        assert!(matches!(read_capped(&p, 4), Err(ReadCappedError::TooLarge)));
    }
}
