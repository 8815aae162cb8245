#!/bin/sh
# The figures of docs/performance.md "Partitioning: bits vs sample": netsort bench
# in four configurations, alternated round by round in one session so that every
# configuration sees the same machine (load from other work moves all of them):
#   bench/partition-ab.sh [rounds=5] [size-per-peer=256mb] [outdir=bench-partition]
# Each round runs, in turn: uniform/bits, uniform/sample, skew/sample, skew/bits,
# one `netsort bench --runs 1 --json` each (fresh inputs, same seeds, first output
# verified), into OUTDIR/<kind>-<mode>-<round>.json (a failed run is tried once
# more; its error stays in OUTDIR/<kind>-<mode>-<round>.err); bench/partition-summary.ts
# turns the directory into the medians and ratios. Build dist/netsort first
# (`bun run build`): bench runs it when present.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rounds=${1:-5}
size=${2:-256mb}
out=${3:-bench-partition}
mkdir -p "$out"
round=1
while [ "$round" -le "$rounds" ]; do
  for config in uniform:bits uniform:sample skew:sample skew:bits; do
    kind=${config%%:*}
    mode=${config#*:}
    echo "round $round: $kind --partition $mode" >&2
    name="$out/$kind-$mode-$round"
    for try in 1 2; do
      if bun "$root/src/cli/main.ts" bench --peers 4 --size "$size" --kind "$kind" --partition "$mode" \
        --runs 1 --json --quiet > "$name.json" 2>> "$name.err"; then
        break
      fi
      echo "round $round: $kind --partition $mode failed (try $try): $(tail -n 1 "$name.err")" >&2
      rm -f "$name.json"
    done
  done
  round=$((round + 1))
done
