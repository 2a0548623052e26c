//! A throw-away PostgreSQL cluster for tests and benchmarks: Debian's
//! `postgresql` server binaries, `initdb` into a temp dir, the server on a
//! free loopback port with password (SCRAM) authentication, stopped and
//! removed when dropped. Run as root (CI), the server runs as `nobody`
//! through `setpriv`, since PostgreSQL refuses to run as root.
//!
//! Not used by glassdrill itself; public so the integration tests and the
//! benchmark share it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The superuser the cluster is made with.
pub const USER: &str = "glassdrill";
/// Its password (a test cluster on loopback only).
pub const PASSWORD: &str = "drill-host-test-password";

/// A running throw-away cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
    ca: Option<PathBuf>,
}

/// Where the server binaries are: `GLASSDRILL_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<n>/bin`, else `PATH`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("GLASSDRILL_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, b)) = found.pop() {
        return Ok(b);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|d| d.join("initdb").is_file())
        .ok_or_else(|| {
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run `bash deploy/setup.sh` (Debian's postgresql package) or set GLASSDRILL_PG_BIN".into()
        })
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .status_ok("openssl")
}

impl Cluster {
    /// Makes and starts a cluster (plain TCP on loopback).
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// Makes and starts a cluster that accepts TCP connections only over
    /// TLS, with a certificate for `127.0.0.1` from a CA of its own
    /// ([`ca`](Self::ca)).
    pub fn start_tls() -> Result<Self, String> {
        Self::start_with(true)
    }

    /// The CA that signed a TLS cluster's certificate (PEM).
    pub fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// A CA, a server certificate for 127.0.0.1 signed by it, and a
    /// pg_hba.conf that takes TCP only over TLS; the server options.
    fn make_tls(&mut self, data: &Path) -> Result<String, String> {
        let d = self.path().to_path_buf();
        openssl(
            &d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=glassdrill test CA",
            ],
        )?;
        openssl(
            &d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        )?;
        std::fs::write(d.join("san.ext"), "subjectAltName = IP:127.0.0.1\n")
            .map_err(|e| e.to_string())?;
        openssl(
            &d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        )?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        if self.as_nobody {
            let nobody = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .ok_or("no user `nobody`")?;
            for f in ["server.key", "server.pem"] {
                nix::unistd::chown(&d.join(f), Some(nobody.uid), Some(nobody.gid))
                    .map_err(|e| format!("chown {f}: {e}"))?;
            }
        }
        // TCP only over TLS: a client that does not ask for it is refused.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| e.to_string())?;
        self.ca = Some(d.join("ca.pem"));
        Ok(format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ))
    }

    fn start_with(tls: bool) -> Result<Self, String> {
        let bin = bin_dir()?;
        let as_nobody = nix::unistd::geteuid().is_root();
        let dir = tempfile::Builder::new()
            .prefix("glassdrill-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
        if as_nobody {
            let nobody = nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .ok_or("no user `nobody` to run PostgreSQL as")?;
            for p in [dir.path(), pwfile.as_path()] {
                nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid))
                    .map_err(|e| format!("chown {}: {e}", p.display()))?;
            }
        }
        let mut c = Self {
            dir: Some(dir),
            bin,
            port: 0,
            as_nobody,
            ca: None,
        };
        let data = c.path().join("data");
        c.tool("initdb")
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                USER,
                "-E",
                "UTF8",
                "--no-sync",
                "--auth=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .status_ok("initdb")?;
        let extra = if tls {
            c.make_tls(&data)?
        } else {
            String::new()
        };
        // A port taken between the probe and the start: try another.
        let mut last = String::new();
        for _ in 0..5 {
            c.port = free_port()?;
            let opts = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=200{extra}",
                c.port,
                c.path().display()
            );
            let started = c
                .tool("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&data)
                .args(["-o", &opts, "-l"])
                .arg(c.path().join("log"))
                .arg("start")
                .status_ok("pg_ctl start");
            match started {
                Ok(()) => return Ok(c),
                Err(e) => last = e,
            }
        }
        Err(format!(
            "{last}; server log: {}",
            std::fs::read_to_string(c.path().join("log")).unwrap_or_default()
        ))
    }

    fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// A command of the server's tools, as the cluster's owner.
    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut c = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.current_dir(self.path())
            .env("PGPASSWORD", PASSWORD)
            .env("HOME", self.path())
            .stdin(Stdio::null());
        c
    }

    /// Creates database `name`; returns its URL without the password.
    pub fn create_db(&self, name: &str) -> Result<String, String> {
        self.tool("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                name,
            ])
            .status_ok("createdb")?;
        Ok(self.url(name))
    }

    /// The URL of database `name`, without the password.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL in database `db` with psql; its output.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = self
            .tool("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(["-X", "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !out.status.success() {
            return Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

trait StatusOk {
    fn status_ok(&mut self, what: &str) -> Result<(), String>;
}

impl StatusOk for Command {
    fn status_ok(&mut self, what: &str) -> Result<(), String> {
        let out = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.path().join("data");
        let _ = self
            .tool("pg_ctl")
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .status_ok("pg_ctl stop");
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}
