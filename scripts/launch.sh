#!/usr/bin/env bash
# Start every peer of a netsort cluster, prefix their output, wait, report.
# Run `scripts/launch.sh --help` for usage. Written for bash 3.2+ (macOS ships 3.2):
# no associative arrays, no mapfile, no ${var,,}.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/launch.sh <config> <input-pattern> <output-pattern> [-- extra netsort flags]

Starts one netsort peer per server listed in <config> and waits for all of them.
In the patterns, {id} is replaced by each peer's serverId, e.g.
  scripts/launch.sh cluster.yaml 'data/input-{id}.dat' 'data/output-{id}.dat' -- --verbose
  scripts/launch.sh cluster.yaml 'in-{id}' 'out-{id}' -- --validate
    (--validate: every peer checks the global result in the same run; peer 0
    prints the verdict, and every peer exits 1 if it is wrong)

Peer i runs `netsort <i> <input> <output> <config> [extra flags]`:
  - on this machine when its host is localhost, 127.x.x.x, ::1 or this machine's
    hostname, as a background process in the current directory;
  - otherwise over ssh (BatchMode, no tty), as `cd <this directory> && netsort ...`.
    The netsort command, the config and the data paths must exist at the same
    paths on the remote host (relative paths are taken from this directory).
Every line a peer prints is prefixed with "[peer <id>] " (stdout and stderr kept apart).
At the end one summary line per peer gives its exit code.

Exit code: 0 when every peer exited 0; 2 when any peer exited 2 (bad usage, config
or input) or the config is invalid; 1 otherwise. Ctrl-C or SIGTERM stops every peer
this script started (TERM, then KILL after 5 s) and exits 130 / 143. A remote peer
is stopped by closing its ssh session; one that outlives it stops by itself when
its mesh breaks (netsort's idle timeout). Note: bash ignores SIGINT in a script
started with `&` from another script, so stop such a launch with SIGTERM.

Environment:
  NETSORT          netsort command, may be several words (e.g. "bun /repo/src/cli/main.ts").
                   Default: <repo>/dist/netsort if built, else `netsort` on PATH,
                   else "bun <repo>/src/cli/main.ts".
  NETSORT_REMOTE   netsort command to run on remote hosts (default: the same as above).
  NETSORT_SSH      ssh command, may be several words (default: ssh).
EOF
}

die_usage() {
  echo "launch.sh: $*" >&2
  echo "see scripts/launch.sh --help" >&2
  exit 2
}

# ---- arguments -------------------------------------------------------------
if [[ $# -ge 1 && ($1 == "--help" || $1 == "-h") ]]; then
  usage
  exit 0
fi
[[ $# -ge 3 ]] || die_usage "expected <config> <input-pattern> <output-pattern>, got $# argument(s)"
config=$1
in_pattern=$2
out_pattern=$3
shift 3
extra=()
if [[ $# -gt 0 ]]; then
  [[ $1 == "--" ]] || die_usage "unexpected argument '$1' (netsort flags go after --)"
  shift
  extra=("$@")
fi
[[ -n $config && -n $in_pattern && -n $out_pattern ]] || die_usage "arguments must not be empty"

# ---- the netsort command -----------------------------------------------------
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
netsort=()
if [[ -n ${NETSORT:-} ]]; then
  read -r -a netsort <<<"$NETSORT"
elif [[ -x $repo/dist/netsort ]]; then
  netsort=("$repo/dist/netsort")
elif command -v netsort >/dev/null 2>&1; then
  netsort=(netsort)
else
  netsort=(bun "$repo/src/cli/main.ts")
fi
remote_netsort=("${netsort[@]}")
if [[ -n ${NETSORT_REMOTE:-} ]]; then
  read -r -a remote_netsort <<<"$NETSORT_REMOTE"
fi
ssh_cmd=()
read -r -a ssh_cmd <<<"${NETSORT_SSH:-ssh}"

# ---- the peer list (netsort validates the config; we only read its --lines) ----
peer_lines=""
config_status=0
peer_lines=$("${netsort[@]}" config "$config" --lines </dev/null) || config_status=$?
if [[ $config_status -ne 0 ]]; then
  # netsort already printed the reason on stderr.
  if [[ $config_status -eq 2 ]]; then exit 2; fi
  echo "launch.sh: '${netsort[*]} config' failed with exit code $config_status" >&2
  exit 1
fi

ids=()
hosts=()
while read -r id host port rest; do
  [[ -z ${id:-} ]] && continue
  if [[ ! $id =~ ^[0-9]+$ || -z ${host:-} || ! ${port:-} =~ ^[0-9]+$ || -n ${rest:-} ]]; then
    echo "launch.sh: cannot read peer line '$id ${host:-} ${port:-} ${rest:-}' from netsort config --lines" >&2
    exit 1
  fi
  ids+=("$id")
  hosts+=("$host")
done <<<"$peer_lines"
peer_count=${#ids[@]}
if [[ $peer_count -eq 0 ]]; then
  echo "launch.sh: netsort config --lines listed no peers" >&2
  exit 1
fi

# Which peers run here. Host names compare case-insensitively; one `tr` for all
# of them rather than a fork per peer (a config may list hundreds).
this_host=$(printf '%s' "${HOSTNAME:-$(uname -n)}" | tr '[:upper:]' '[:lower:]')
lower_hosts=()
while read -r host; do lower_hosts+=("$host"); done < <(printf '%s\n' "${hosts[@]}" | tr '[:upper:]' '[:lower:]')
is_local=()
for i in "${!ids[@]}"; do
  case ${lower_hosts[$i]} in
    localhost | localhost.localdomain | ::1 | "[::1]" | 127.* | "$this_host" | "${this_host%%.*}") is_local[i]=1 ;;
    *) is_local[i]=0 ;;
  esac
done

input_of() { printf '%s' "${in_pattern//\{id\}/$1}"; }
output_of() { printf '%s' "${out_pattern//\{id\}/$1}"; }

# Two peers on one machine writing the same output path would overwrite each other.
clash=$(
  for i in "${!ids[@]}"; do
    if [[ ${is_local[$i]} == 1 ]]; then where="(local)"; else where=${lower_hosts[$i]}; fi
    printf '%s %s\n' "$where" "${out_pattern//\{id\}/${ids[$i]}}"
  done | sort | uniq -d | head -n 1
)
[[ -z $clash ]] || die_usage "several peers on one host would write the same output: $clash (put {id} in the output pattern)"

# Quote a word for any POSIX shell: wrap in '...', each ' becomes '\''.
shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# ---- start, stop, wait -----------------------------------------------------------
# Job control gives every background peer its own process group (pgid = its pid),
# so one kill reaches the peer, its children and its output prefixers, and a
# terminal's Ctrl-C reaches only this script, which then stops the peers itself.
set -m

pids=()
stop_grace_tenths=50 # TERM first; KILL whatever is left after 5 s

# Prefix every line (including a last one without a newline) with "[peer <id>] ".
# It ignores TERM so that the peer's last words (say, why it stopped) still get
# printed; it ends at end of input, or by KILL. It runs only builtins, so the
# ignored TERM is not inherited by any peer.
prefix_lines() {
  trap '' TERM
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    printf '[peer %s] %s\n' "$1" "$line"
  done
}

# Runs as the leader of the peer's own process group and exits with the peer's
# exit code once its output is all printed. Its shells catch TERM with a no-op
# (not ignore: an exec'd peer would inherit that) so a stopped peer is reaped and
# its code kept; the peer itself gets the default TERM back when it is exec'd.
# Called with the real stderr on fd 4 and its own stderr on /dev/null, which keeps
# bash's "Terminated" notices for a stopped peer out of the output.
run_peer() {
  trap ':' TERM
  local id=$1
  shift
  set +e
  {
    trap ':' TERM
    "$@" 2>&1 1>&3 3>&- 4>&- </dev/null | prefix_lines "$id" >&4
    exit "${PIPESTATUS[0]}"
  } 3>&1 | prefix_lines "$id"
  exit "${PIPESTATUS[0]}"
}

start_peer() {
  local i=$1 id host input output remote word
  id=${ids[$i]}
  host=${hosts[$i]}
  input=$(input_of "$id")
  output=$(output_of "$id")
  if [[ ${is_local[$i]} == 1 ]]; then
    run_peer "$id" "${netsort[@]}" "$id" "$input" "$output" "$config" ${extra[@]+"${extra[@]}"} 4>&2 2>/dev/null &
  else
    remote="cd $(shell_quote "$PWD") &&"
    for word in "${remote_netsort[@]}" "$id" "$input" "$output" "$config" ${extra[@]+"${extra[@]}"}; do
      remote+=" $(shell_quote "$word")"
    done
    run_peer "$id" "${ssh_cmd[@]}" -o BatchMode=yes -T "$host" "$remote" 4>&2 2>/dev/null &
  fi
  pids[i]=$!
}

# Stop every peer group: TERM, wait up to the grace period for each group's
# leader to finish (it finishes only after its peer and output prefixers are
# gone), then KILL what is left and reap.
# shellcheck disable=SC2317 # reached from the traps below
stop_peers() {
  local pid tenths=0 alive
  [[ ${#pids[@]} -gt 0 ]] || return 0
  set +m # no "Terminated" job notices from here on
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  while ((tenths < stop_grace_tenths)); do
    alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || break
    sleep 0.1
    tenths=$((tenths + 1))
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# shellcheck disable=SC2317 # reached from the traps below
on_signal() {
  trap - INT TERM HUP
  echo "launch.sh: $1: stopping ${#pids[@]} peer(s)" >&2
  stop_peers
  exit "$2"
}
trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM
trap 'on_signal SIGHUP 129' HUP
# If this script dies of an error after starting peers, take them down with it.
trap 'stop_peers' EXIT

for i in "${!ids[@]}"; do
  start_peer "$i"
done

codes=()
for i in "${!ids[@]}"; do
  code=0
  wait "${pids[$i]}" || code=$?
  codes[i]=$code
done
pids=() # all reaped: nothing left for the EXIT trap to stop

status=0
failed=0
for i in "${!ids[@]}"; do
  code=${codes[$i]}
  echo "[launch] peer ${ids[$i]} (${hosts[$i]}): exit $code"
  if [[ $code -ne 0 ]]; then
    failed=$((failed + 1))
    if [[ $code -eq 2 ]]; then
      status=2
    elif [[ $status -eq 0 ]]; then
      status=1
    fi
  fi
done
if [[ $failed -eq 0 ]]; then
  echo "[launch] all $peer_count peers exited 0"
else
  echo "[launch] $failed of $peer_count peers failed"
fi
exit "$status"
