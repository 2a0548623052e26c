#!/usr/bin/env bash
# Benchmarks of the daemon (release build):
#  1. an idle `glassdrill daemon` with 100 drills configured (none due:
#     their only window is two days from now): RSS and CPU of its whole
#     process tree over 60 s, summed from /proc (goal: < 15 MiB, < 0.5 % of
#     a core);
#  2. `glassdrill status` with 10,000 drills and 100,000 runs in the state
#     database (goal: < 200 ms), with hyperfine.
# Prints Markdown.
#   bash bench/daemon.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
cargo build --release --bins -q
bin="$PWD/target/release/glassdrill"
work=$(mktemp -d)
daemon_pid=
cleanup() { [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

drills() { # N drills in $1/drills, window: the weekday two days from now
  local dir=$1 n=$2 day
  day=$(date -d "+2 days" +%a | tr 'A-Z' 'a-z')
  mkdir -p "$dir/drills"
  for ((i = 0; i < n; i++)); do
    cat > "$dir/drills/d$i.toml" <<TOML
id = "d$i"
account = "bg$i@rehearsal.onmicrosoft.com"
group = "g$((i / 2))"
tenant = "rehearsal"
flow = "flows/entra-security-key.toml"
authenticator = { kind = "virtual" }
[[alerts]]
kind = "webhook"
name = "sev0"
rule = "Break-glass account sign-in"
deadline = "15m"
[schedule]
windows = [{ days = "$day", hours = "09:00-10:00" }]
TOML
  done
}

# Whole process tree of $1: "rss_kib cpu_ticks".
tree() {
  local pids="$1" all="$1" next p
  while [ -n "$pids" ]; do
    next=
    for p in $pids; do
      next="$next $(cat /proc/"$p"/task/*/children 2>/dev/null || true)"
    done
    pids=$(echo $next)
    all="$all $pids"
  done
  local rss=0 cpu=0
  for p in $all; do
    [ -r /proc/"$p"/status ] || continue
    rss=$((rss + $(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)))
    cpu=$((cpu + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0)))
  done
  echo "$rss $cpu"
}

# 1. Idle daemon.
idle="$work/idle"
drills "$idle" 100
mkdir -p "$idle/state" "$idle/tmp"
(cd "$idle" && XDG_STATE_HOME="$idle/state" TMPDIR="$idle/tmp" exec "$bin" daemon) 2>"$idle/daemon.log" &
daemon_pid=$!
sleep 5 # start-up and the first tick (100 due times drawn)
read -r _ cpu0 < <(tree "$daemon_pid")
peak=0
for ((s = 0; s < secs; s++)); do
  read -r rss _ < <(tree "$daemon_pid")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 1
done
read -r rss_end cpu1 < <(tree "$daemon_pid")
hz=$(getconf CLK_TCK)
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=
cpu_pct=$(python3 -c "print(f'{100 * ($cpu1 - $cpu0) / $hz / $secs:.3f}')")
echo "| idle daemon, 100 drills, ${secs} s | peak RSS $((peak / 1024)) MiB ($peak KiB), at the end $((rss_end / 1024)) MiB | CPU ${cpu_pct} % of a core |"

# 2. status over 10,000 drills and 100,000 runs.
big="$work/big"
drills "$big" 10000
mkdir -p "$big/state"
(cd "$big" && XDG_STATE_HOME="$big/state" "$bin" status >/dev/null)
db="$big/state/glassdrill/state.db"
python3 - "$db" <<'PY'
import sqlite3, sys, random
c = sqlite3.connect(sys.argv[1])
verdicts = ["PASS"] * 8 + ["FAIL", "ERROR"]
rows = []
for i in range(100_000):
    d = f"d{i % 10000}"
    t = 1_700_000_000_000 + i * 60_000
    rows.append((f"r{i}", d, "daemon", t, t + 90_000, random.choice(verdicts), 1, None, f"/evidence/{d}/r{i}", 2000 + i % 500))
c.executemany("INSERT INTO runs (run_id, drill_id, origin, started_ms, ended_ms, verdict, sign_in_attempted, key_id, bundle, alert_latency_ms) VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
c.executemany("INSERT INTO drills (drill_id, due_ms) VALUES (?, ?) ON CONFLICT DO NOTHING", [(f"d{i}", 1_800_000_000_000) for i in range(10000)])
c.commit()
PY
# The summary columns, by the very statement glassdrill keeps them with.
{ cat src/state/summaries.sql; echo ";"; } | sqlite3 "$db"
cd "$big"
hyperfine --warmup 1 --runs 10 --export-json "$work/h.json" \
  -n "status, 10,000 drills, 100,000 runs" "XDG_STATE_HOME=$big/state $bin status" >&2
python3 - "$work/h.json" <<'PY'
import json, sys
for x in json.load(open(sys.argv[1]))["results"]:
    print(f"| {x['command']} | median {x['median']*1000:.0f} ms | min {x['min']*1000:.0f} ms, max {x['max']*1000:.0f} ms |")
PY
