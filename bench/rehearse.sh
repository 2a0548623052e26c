#!/usr/bin/env bash
# Benchmark: `glassdrill rehearse` (alert delay 0) against its floor,
# launching Chromium through chromedriver and loading one page of the
# rehearsal tenant (examples/browser_floor.rs). Median wall time of N runs
# (hyperfine) and peak RSS (/usr/bin/time -v). Prints a Markdown table.
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

rss() { # peak RSS in MiB of the largest process /usr/bin/time saw
  /usr/bin/time -v $1 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}'
}
python3 - "$work/h.json" "$(rss "$drill")" "$(rss "$floor")" "$runs" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
r = {x["command"]: x for x in h["results"]}
d, f = r["rehearse"], r["floor"]
print(f"| what | median | min | max | peak RSS |")
print(f"| --- | --- | --- | --- | --- |")
print(f"| `glassdrill rehearse --alert-delay 0s` | {d['median']:.2f} s | {d['min']:.2f} s | {d['max']:.2f} s | {sys.argv[2]} MiB |")
print(f"| floor: chromedriver + Chromium + one page | {f['median']:.2f} s | {f['min']:.2f} s | {f['max']:.2f} s | {sys.argv[3]} MiB |")
print(f"\nratio drill/floor (median, {sys.argv[4]} runs): **{d['median']/f['median']:.2f}×** (goal ≤ 1.5×)")
PY
