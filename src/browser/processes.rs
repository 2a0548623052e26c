//! The browser's processes, seen from outside: finding them in `/proc`,
//! reaping them, sweeping the leftovers of a glassdrill that died, and the
//! guard that kills them when glassdrill dies.

use std::process::Stdio;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{BrowserError, DIR_PREFIX};

/// A tiny shell that outlives nothing: it blocks reading a pipe whose only
/// writer is glassdrill. When glassdrill goes away, however it goes (even
/// SIGKILL, when no `Drop` runs), the kernel closes the pipe and the guard
/// kills the browser's process group and every process naming the
/// browser's private directory (Chromium's crash handler runs in a session
/// of its own). So no browser — with the drill's credential loaded behind
/// chromedriver's unauthenticated port — survives its drill. It needs no
/// `unsafe` and, unlike a parent-death signal, does not depend on which
/// thread spawned the browser.
pub(super) struct Guard {
    pub(super) child: tokio::process::Child,
    /// The write end; dropping it arms the guard.
    pipe: Option<tokio::process::ChildStdin>,
}

/// `$1`: the browser's process group; `$2`: a pattern for its directory.
pub(super) const GUARD_SH: &str =
    "read _; kill -KILL \"-$1\" 2>/dev/null; pkill -KILL -f -- \"$2\" 2>/dev/null; exit 0";

/// `s` as a literal POSIX extended regular expression (for `pkill -f`).
pub(super) fn ere_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ".[]()*+?{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Guard {
    pub(super) fn spawn(pgid: Pid, dir: &std::path::Path) -> Result<Self, BrowserError> {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(GUARD_SH)
            .arg("glassdrill-browser-guard")
            .arg(pgid.as_raw().to_string())
            .arg(ere_literal(&dir.display().to_string()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C at the terminal, or the kill of the
            // browser's group, must not take the guard with it.
            .process_group(0)
            .spawn()
            .map_err(|e| BrowserError::Start {
                what: "the browser guard (/bin/sh)",
                reason: e.to_string(),
            })?;
        let pipe = child.stdin.take();
        Ok(Self { child, pipe })
    }

    /// Disarms and ends the guard (the browser is already gone).
    pub(super) fn stop(&mut self) {
        let _ = self.child.start_kill();
        self.pipe = None;
    }
}

/// One pass over `/proc` (Linux): processes in process group `pgid`, or
/// whose command line or environment mentions `dir` (chromedriver carries
/// it in `TMPDIR`/`HOME`, Chromium in `--user-data-dir`, its crash handler
/// in `--database`).
pub(super) fn browser_processes(dir: &std::path::Path, pgid: Option<Pid>) -> Vec<Pid> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let mentions =
        |bytes: &[u8]| !needle.is_empty() && bytes.windows(needle.len()).any(|w| w == needle);
    let in_group = |stat: &str| {
        // "pid (comm) state ppid pgrp ...": comm may hold spaces and
        // parentheses, so read after the last ')'.
        let pgrp = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 1..))
            .and_then(|rest| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<i32>().ok());
        pgid.is_some_and(|g| pgrp == Some(g.as_raw()))
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            if u32::try_from(pid).is_ok_and(|p| p == std::process::id()) {
                return None;
            }
            let hit = std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| in_group(&s))
                || ["cmdline", "environ"]
                    .iter()
                    .any(|f| std::fs::read(e.path().join(f)).is_ok_and(|b| mentions(&b)));
            hit.then(|| Pid::from_raw(pid))
        })
        .collect()
}

/// Reaps those of `pids` that have exited and are our children (glassdrill
/// is a child subreaper, so Chromium's processes become its children when
/// chromedriver dies); keeps the rest for another pass. Without this, a
/// container whose PID 1 does not reap would collect zombies every drill.
pub(super) fn reap(pids: &mut Vec<Pid>) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    pids.retain(|p| {
        !matches!(
            waitpid(*p, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..))
        )
    });
}

/// Cleans up after a glassdrill that died without running its `Drop`s
/// (SIGKILL, OOM killer, power loss): for every `glassdrill-<pid>-*`
/// directory under `root` whose owner process is gone, kills the processes
/// that name it (its chromedriver, Chromium and crash handler) and removes
/// it. Directories of live owners, such as a
/// drill running in parallel, are left alone.
pub(crate) fn reap_orphans(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(owner) = name
            .strip_prefix(DIR_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if owner == std::process::id() || std::path::Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let path = e.path();
        tracing::warn!(dir = %path.display(), owner, "removing the browser leftovers of a glassdrill that did not exit cleanly");
        for p in browser_processes(&path, None) {
            let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}
