#!/bin/sh
# Run the C baseline alone on generated data, for a quick look without the mesh:
#   bench/run-c.sh [peers=4] [size-per-peer=256mb] [kind=uniform] [runs=5]
# The ratio to netsort comes from `netsort bench --c`, which runs both on the
# same inputs in one session; this script is for working on the baseline itself.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
peers=${1:-4}
size=${2:-256mb}
kind=${3:-uniform}
runs=${4:-5}
netsort=${NETSORT:-"bun $root/src/cli/main.ts"}
[ -x "$here/c/sort-c" ] && [ "$here/c/sort-c" -nt "$here/c/sort.c" ] || sh "$here/c/build.sh"
dir=$(mktemp -d "${TMPDIR:-/tmp}/netsort-c-XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM
inputs=""
i=0
while [ "$i" -lt "$peers" ]; do
  $netsort gen --quiet --kind "$kind" --seed $((i + 1)) "$dir/input-$i.dat" "$size"
  cat "$dir/input-$i.dat" > /dev/null # into the page cache
  inputs="$inputs $dir/input-$i.dat"
  i=$((i + 1))
done
run=1
while [ "$run" -le "$runs" ]; do
  rm -f "$dir/output.dat"
  # shellcheck disable=SC2086 # $inputs is a list of paths without spaces
  "$here/c/sort-c" "$dir/output.dat" $inputs
  if [ "$run" -eq 1 ]; then $netsort check --quiet "$dir/output.dat" --inputs $inputs; fi
  run=$((run + 1))
done
