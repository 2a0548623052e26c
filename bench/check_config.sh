#!/usr/bin/env bash
# Benchmark: `glassdrill check-config` on hostile config files: 5,000 and
# 40,000 unknown keys (the largest fits under the 1 MiB file cap), and a
# 10 MB file (refused by the cap without being parsed). hyperfine, release
# build. Prints a Markdown table.
#   apt-get install hyperfine   # once
#   bash bench/check_config.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
command -v hyperfine >/dev/null || { echo "install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
cargo build --release --bins -q
bin="$PWD/target/release/glassdrill"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/drills"
gen() { # N unknown keys in [webhook]
  { echo "[webhook]"; for ((i = 0; i < $1; i++)); do echo "unknown_$i = $i"; done; } > "$2"
}
gen 5000 "$work/k5000.toml"
gen 40000 "$work/k40000.toml"
head -c 10000000 /dev/zero | tr '\0' '#' > "$work/big.toml"
cd "$work"
hyperfine --warmup 1 --runs "$runs" -i --export-json "$work/h.json" \
  -n "5,000 unknown keys" "$bin --config k5000.toml check-config" \
  -n "40,000 unknown keys" "$bin --config k40000.toml check-config" \
  -n "10 MB file" "$bin --config big.toml check-config" >&2
python3 - "$work/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print("| input | median | min | max |")
print("| --- | --- | --- | --- |")
for x in r:
    print(f"| {x['command']} | {x['median']*1000:.0f} ms | {x['min']*1000:.0f} ms | {x['max']*1000:.0f} ms |")
PY
