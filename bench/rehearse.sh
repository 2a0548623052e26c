#!/usr/bin/env bash
# Benchmark: `glassdrill rehearse` (alert delay 0) against its floor,
# launching Chromium through chromedriver and loading one page of the
# rehearsal tenant (examples/browser_floor.rs). Median wall time of N runs
# (hyperfine), peak RSS of glassdrill itself (/usr/bin/time -v) and peak PSS
# of the whole process tree (sampled from /proc). Prints a Markdown table.
#   apt-get install hyperfine time   # once
#   bash bench/rehearse.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "install GNU time (apt-get install time)" >&2; exit 1; }

cargo build --release --bins --examples -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_STATE_HOME="$work/state"
drill="target/release/glassdrill rehearse --alert-delay 0s --progress none"
floor="target/release/examples/browser_floor"

hyperfine --warmup 1 --runs "$runs" --export-json "$work/h.json" -n rehearse "$drill" -n floor "$floor" >&2

# Peak memory, three ways: /usr/bin/time -v's maximum RSS (the largest
# single process glassdrill waited for, i.e. a Chromium process); the peak
# RSS of glassdrill itself (VmHWM, sampled); and, every 20 ms, the sum of
# PSS (proportional set size, so shared pages count once) over all
# processes whose environment carries this run's TMPDIR (glassdrill,
# chromedriver, every Chromium process), and the peak of that sum.
max_rss() { # MiB, largest single process waited for
  /usr/bin/time -v $1 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}'
}
tree_pss() { # MiB, peak of the summed PSS of the whole process tree
  python3 - "$work/tmp" $1 <<'PY'
import os, subprocess, sys, time
marker = sys.argv[1].encode()
os.makedirs(sys.argv[1], exist_ok=True)
env = dict(os.environ, TMPDIR=sys.argv[1])
p = subprocess.Popen(sys.argv[2:], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
peak = 0
own = 0
while p.poll() is None:
    try:
        for line in open(f"/proc/{p.pid}/status"):
            if line.startswith("VmHWM:"):
                own = max(own, int(line.split()[1]))
    except OSError:
        pass
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if marker not in open(f"/proc/{pid}/environ", "rb").read():
                continue
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    peak = max(peak, total)
    time.sleep(0.02)
print(f"{round(peak / 1024)} {round(own / 1024)}")
PY
}
read -r drill_pss drill_own <<<"$(tree_pss "$drill")"
read -r floor_pss floor_own <<<"$(tree_pss "$floor")"
python3 - "$work/h.json" "$(max_rss "$drill")" "$(max_rss "$floor")" "$drill_pss" "$floor_pss" "$runs" "$drill_own" "$floor_own" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
r = {x["command"]: x for x in h["results"]}
d, f = r["rehearse"], r["floor"]
a = sys.argv
print("| what | median | min | max | max RSS (`time -v`, largest process) | peak RSS of glassdrill itself | peak PSS, whole tree |")
print("| --- | --- | --- | --- | --- | --- | --- |")
print(f"| `glassdrill rehearse --alert-delay 0s` | {d['median']:.2f} s | {d['min']:.2f} s | {d['max']:.2f} s | {a[2]} MiB | {a[7]} MiB | {a[4]} MiB |")
print(f"| floor: chromedriver + Chromium + one page | {f['median']:.2f} s | {f['min']:.2f} s | {f['max']:.2f} s | {a[3]} MiB | {a[8]} MiB | {a[5]} MiB |")
print(f"\nratio drill/floor (median, {a[6]} runs): **{d['median']/f['median']:.2f}×** (goal ≤ 1.5×)")
PY
