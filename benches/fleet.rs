//! The fleet benchmark (BENCHMARKS.md): 500 tenants x 2 drills on three
//! `glassdrill daemon` processes (release build) sharing one PostgreSQL (a
//! throw-away cluster, `support::pgtest`).
//!
//! 1. Idle: every drill drawn, none due (each drill's only window is two
//!    days ahead), a tick every 10 s on each host. Over the window: CPU and
//!    RSS of each daemon's whole process tree (summed from /proc), and the
//!    database's work per tick (`pg_stat_database`: transactions, rows
//!    read and written), each host's ticks counted.
//! 2. Claims: three state stores (three connection pools, three host
//!    names) race for the leases of all 1,000 drills, as the daemons'
//!    claim does (`try_lock` of the drill's group and account): latency of
//!    each attempt; exactly one lease per tenant's group is granted (its
//!    second drill waits for the group), none twice.
//! 3. `glassdrill status` and `glassdrill fleet status` across the fleet
//!    (1,000 drills), wall time of the whole process: one warm-up, then 10.
//!
//! Run: `cargo bench --bench fleet [-- WINDOW_SECONDS]`. Prints Markdown.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use glassdrill::support::pgtest::{Cluster, PASSWORD};

const TENANTS: usize = 500;
const TICK_SECS: u64 = 10;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn out(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A host's world: config, drills, state.
fn host_dir(root: &Path, name: &str, url: &str, pw: &Path) -> Res<PathBuf> {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("drills"))?;
    std::fs::create_dir_all(dir.join("state"))?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::write(
        dir.join("glassdrill.toml"),
        format!(
            "[daemon]\ntick = \"*/{TICK_SECS} * * * * *\"\n[browser]\ntemp_dir = \"tmp\"\n[evidence]\nsigner = \"glassdrill@{name}\"\n\
             [state]\nurl = \"{url}\"\npassword = \"file:{}\"\ntls = \"disable\"\nhost = \"{name}\"\nfleet = \"bench\"\n",
            pw.display()
        ),
    )?;
    let day = (chrono::Utc::now() + chrono::Duration::days(2))
        .format("%a")
        .to_string()
        .to_lowercase();
    for t in 0..TENANTS {
        for k in 1..=2 {
            std::fs::write(
                dir.join(format!("drills/t{t}-bg{k}.toml")),
                format!(
                    "id = \"t{t}-bg{k}\"\naccount = \"breakglass{k}@t{t}.onmicrosoft.com\"\ngroup = \"break-glass\"\n\
                     tenant = \"rehearsal\"\ntenant_name = \"t{t}\"\nflow = \"flows/entra-security-key.toml\"\n\
                     authenticator = {{ kind = \"virtual\" }}\n\
                     [[alerts]]\nkind = \"webhook\"\nname = \"sev0\"\nrule = \"Break-glass account sign-in\"\ndeadline = \"15m\"\n\
                     [schedule]\nwindows = [{{ days = \"{day}\", hours = \"09:00-10:00\" }}]\n"
                ),
            )?;
        }
    }
    // The flow file the drills name.
    let flows = dir.join("drills/flows");
    std::fs::create_dir_all(&flows)?;
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("drills/flows/entra-security-key.toml"),
        flows.join("entra-security-key.toml"),
    )?;
    Ok(dir)
}

fn glassdrill(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_glassdrill"));
    c.current_dir(dir)
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("TMPDIR", dir.join("tmp"))
        .env_remove("GLASSDRILL_LOG");
    c
}

/// CPU ticks and RSS (KiB) of `pid` and every descendant.
fn tree(pid: u32) -> (u64, u64) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(c) = std::fs::read_to_string(task.path().join("children")) {
                all.extend(c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
            }
        }
        i += 1;
    }
    let (mut cpu, mut rss) = (0, 0);
    for p in all {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Fields after the command's closing parenthesis.
            let rest = stat.rsplit_once(')').map_or("", |x| x.1);
            let f: Vec<&str> = rest.split_whitespace().collect();
            cpu += f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            rss += status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (cpu, rss)
}

/// The database's counters: transactions, rows read, rows written.
fn db_counters(c: &Cluster, db: &str) -> Res<[i64; 3]> {
    let line = c.psql(
        db,
        &format!(
            "SELECT pg_stat_force_next_flush(); SELECT xact_commit + xact_rollback, tup_returned + tup_fetched, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database WHERE datname = '{db}'"
        ),
    )?;
    let last = line
        .lines()
        .rev()
        .find(|l| l.contains('|'))
        .unwrap_or_default();
    let v: Vec<i64> = last
        .split('|')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    if v.len() != 3 {
        return Err(format!("pg_stat_database: {line}").into());
    }
    Ok([v[0], v[1], v[2]])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn timed(dir: &Path, args: &[&str], runs: usize) -> Res<Vec<Duration>> {
    let mut out = Vec::new();
    for i in 0..=runs {
        let start = Instant::now();
        let o = glassdrill(dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let took = start.elapsed();
        if !(o.status.success() || args == ["fleet", "status"]) {
            return Err(format!(
                "glassdrill {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            )
            .into());
        }
        if i > 0 {
            out.push(took);
        }
    }
    out.sort();
    Ok(out)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("fleet benchmark failed: {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Res<()> {
    let window: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(60);
    let cluster = Cluster::start()?;
    let url = cluster.create_db("fleet")?;
    let root = tempfile::Builder::new()
        .prefix("glassdrill-bench-fleet-")
        .tempdir()?;
    let pw = root.path().join("db-password");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pw)?;
        f.write_all(PASSWORD.as_bytes())?;
    }
    let names = ["host-1", "host-2", "host-3"];
    let dirs: Vec<PathBuf> = names
        .iter()
        .map(|n| host_dir(root.path(), n, &url, &pw))
        .collect::<Res<_>>()?;
    note(&format!(
        "{} tenants x 2 drills on {} hosts; starting the daemons",
        TENANTS,
        names.len()
    ));
    let mut daemons: Vec<Child> = Vec::new();
    for d in &dirs {
        daemons.push(
            glassdrill(d)
                .arg("daemon")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("daemon.log"))?)
                .spawn()?,
        );
    }
    let result = async {
        // Every due time drawn and every host registered with its keys.
        let start = Instant::now();
        loop {
            let n = cluster
                .psql("fleet", "SELECT (SELECT COUNT(*) FROM drills WHERE due_ms IS NOT NULL) || '/' || (SELECT COUNT(DISTINCT host) FROM host_keys)")
                .unwrap_or_default();
            if n.trim() == format!("{}/{}", TENANTS * 2, names.len()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(300) {
                return Err(format!("the daemons did not settle: {n}").into());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        note(&format!("settled after {:.1} s; measuring {window} s idle", start.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_secs(TICK_SECS)).await;
        let db0 = db_counters(&cluster, "fleet")?;
        let cpu0: Vec<u64> = daemons.iter().map(|c| tree(c.id()).0).collect();
        let mut peak = vec![0u64; daemons.len()];
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(window) {
            for (i, c) in daemons.iter().enumerate() {
                peak[i] = peak[i].max(tree(c.id()).1);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let db1 = db_counters(&cluster, "fleet")?;
        let cpu1: Vec<u64> = daemons.iter().map(|c| tree(c.id()).0).collect();
        Ok::<_, Box<dyn std::error::Error>>((db0, db1, cpu0, cpu1, peak, secs))
    }
    .await;
    for c in &mut daemons {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    for c in &mut daemons {
        let _ = c.wait();
    }
    let (db0, db1, cpu0, cpu1, peak, secs) = result?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let ticks = (secs / TICK_SECS as f64) * names.len() as f64;

    // 2. Claims: three hosts race for every drill's lease.
    let open = |name: &'static str| {
        let cfg = glassdrill::config::PostgresConfig {
            url: url.clone(),
            password: glassdrill::secret::SecretRef::parse(&format!("file:{}", pw.display())).ok(),
            tls: glassdrill::config::PgTls::Disable,
            tls_ca: None,
        };
        async move {
            glassdrill::state::StateStore::open_postgres(&cfg)
                .await
                .map(|s| s.named(name, Duration::from_secs(120)))
        }
    };
    let stores = [
        open("claim-1").await?,
        open("claim-2").await?,
        open("claim-3").await?,
    ];
    let drills: Vec<(String, String)> = (0..TENANTS)
        .flat_map(|t| {
            (1..=2).map(move |k| {
                (
                    format!("t{t}/break-glass"),
                    format!("breakglass{k}@t{t}.onmicrosoft.com"),
                )
            })
        })
        .collect();
    let claim_start = Instant::now();
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        // Each host walks the drills from its own starting point.
        let mut order = drills.clone();
        order.rotate_left(i * drills.len() / 3);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut won = 0usize;
            for (group, account) in order {
                let names = glassdrill::state::lock_names(&group, &account, None);
                let t = Instant::now();
                let got = s.try_lock(&names, "bench", chrono::Utc::now()).await;
                lat.push(t.elapsed());
                if matches!(got, Ok(Ok(_))) {
                    won += 1;
                }
            }
            (lat, won)
        }));
    }
    let mut lat = Vec::new();
    let mut won = Vec::new();
    for t in tasks {
        let (l, w) = t.await?;
        lat.extend(l);
        won.push(w);
    }
    let claim_wall = claim_start.elapsed();
    lat.sort();
    let claimed: usize = won.iter().sum();
    let held: String = cluster.psql(
        "fleet",
        "SELECT COUNT(*) FROM locks WHERE name LIKE 'group:%'",
    )?;
    for s in &stores {
        s.close().await;
    }

    // 3. status across the fleet.
    let status = timed(&dirs[0], &["status"], 10)?;
    let fleet = timed(&dirs[0], &["fleet", "status"], 10)?;

    let per = |i: usize| (db1[i] - db0[i]) as f64 / ticks;
    // CPU per tick, and what it comes to at the default tick (a minute).
    let per_tick: Vec<f64> = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| (b - a) as f64 / hz / (secs / TICK_SECS as f64))
        .collect();
    out(&format!(
        "| idle, {} tenants x 2 drills, 3 daemons, a tick every {TICK_SECS} s, {secs:.0} s | CPU per host and tick: {} ms, i.e. {} % of a core at this tick, {} % at the default tick of a minute; peak RSS per host: {} MiB | |",
        TENANTS,
        per_tick
            .iter()
            .map(|c| format!("{:.0}", c * 1000.0))
            .collect::<Vec<_>>()
            .join(", "),
        per_tick
            .iter()
            .map(|c| format!("{:.2}", 100.0 * c / TICK_SECS as f64))
            .collect::<Vec<_>>()
            .join(", "),
        per_tick
            .iter()
            .map(|c| format!("{:.2}", 100.0 * c / 60.0))
            .collect::<Vec<_>>()
            .join(", "),
        peak.iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out(&format!(
        "| database load per host tick ({ticks:.0} ticks) | {:.1} transactions, {:.0} rows read, {:.1} rows written | |",
        per(0),
        per(1),
        per(2)
    ));
    out(&format!(
        "| claims: 3 hosts race for {} drills' leases ({TENANTS} groups) | p50 {}, p95 {}, p99 {}, max {}; {} attempts in {:.2} s; granted {} (per host {:?}), group leases held {} | one per group, none twice |",
        drills.len(),
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        lat.len(),
        claim_wall.as_secs_f64(),
        claimed,
        won,
        held.trim()
    ));
    for (what, t) in [
        ("`glassdrill status`", &status),
        ("`glassdrill fleet status`", &fleet),
    ] {
        out(&format!(
            "| {what}, {} drills, from one host | median {} (min {}, max {}) | < 500 ms |",
            drills.len(),
            ms(percentile(t, 0.5)),
            ms(t.first().copied().unwrap_or_default()),
            ms(t.last().copied().unwrap_or_default())
        ));
    }
    if claimed != TENANTS || held.trim() != TENANTS.to_string() {
        return Err(format!("{claimed} leases granted, {held} held, for {TENANTS} groups").into());
    }
    Ok(())
}
