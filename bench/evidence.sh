#!/usr/bin/env bash
# Benchmarks of the evidence side (release build):
#  1. `glassdrill evidence verify` (every bundle and the log) over 10,000
#     bundles of a rehearsal's size, next to one `sha256sum -c` over the
#     same files (goal: within 1.2x);
#  2. `glassdrill evidence export` of those 10,000 bundles (goal: < 30 s).
# Prints Markdown.
#   bash bench/evidence.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000}
command -v hyperfine >/dev/null || { echo "install hyperfine" >&2; exit 1; }
cargo build --release --bins -q
bin="$PWD/target/release/glassdrill"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_STATE_HOME="$work/state" XDG_CONFIG_HOME="$work/config" HOME="$work/home" TMPDIR="$work/tmp"
mkdir -p "$work/tmp"
cd "$work"
"$bin" rehearse --progress none --alert-delay 200ms >/dev/null
ev="$work/state/glassdrill/evidence"
src=$(ls -d "$ev"/rehearsal/*/ | head -1)
size=$(du -sk "$src" | cut -f1)
for ((i = 1; i < n; i++)); do
  cp -r "$src" "$ev/rehearsal/$(basename "$src")-c$i"
done
# The next start appends them to the log (one batch, one checkpoint).
"$bin" rehearse --progress none --alert-delay 200ms >/dev/null
count=$(ls -d "$ev"/rehearsal/*/ | wc -l)
# One checklist over every file of every bundle, for sha256sum.
(cd "$ev" && for b in rehearsal/*/; do sed "s|  |  $b|" "$b/SHA256SUMS"; done) > "$work/all.sums"
sync
hyperfine --warmup 1 --runs 5 --export-json "$work/v.json" \
  -n "glassdrill evidence verify ($count bundles and the log)" "$bin evidence verify" \
  -n "sha256sum -c over the same files" "cd $ev && sha256sum -c --quiet --strict $work/all.sums" >&2
hyperfine --runs 3 --export-json "$work/e.json" --prepare "rm -rf $work/export" \
  -n "glassdrill evidence export ($count bundles)" "$bin evidence export --from 2000-01-01 --to 2099-12-31 --out $work/export" >&2
python3 - "$work/v.json" "$work/e.json" "$count" "$size" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["results"]
e = json.load(open(sys.argv[2]))["results"]
print(f"{sys.argv[3]} bundles of {sys.argv[4]} KiB each")
print()
print("| what | median | min | max |")
print("| --- | --- | --- | --- |")
for x in v + e:
    print(f"| {x['command']} | {x['median']:.2f} s | {x['min']:.2f} s | {x['max']:.2f} s |")
print()
print(f"verify / sha256sum: {v[0]['median'] / v[1]['median']:.2f}x")
PY
