#!/bin/sh
# Build the C baseline of `netsort bench --c`: bench/c/sort-c (gitignored).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
${CC:-cc} -O2 -Wall -Wextra -o "$here/sort-c" "$here/sort.c"
echo "built $here/sort-c"
