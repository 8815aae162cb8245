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
  - on this machine when its host is this machine: localhost, 127.x.x.x, ::1, this
    machine's hostname, or any name or address that resolves to one of this
    machine's addresses (`ip -o addr`, else `hostname -I`, else `ifconfig`); it runs as
    a background process in the current directory;
  - otherwise over ssh (BatchMode, no tty), as `cd <this directory> && exec netsort ...`
    in the remote login shell (which must be a POSIX shell: sh, bash, dash, zsh).
    The netsort command, the config and the data paths must exist at the same
    paths on the remote host (relative paths are taken from this directory).
Every line a peer prints is prefixed with "[peer <id>] " (stdout and stderr kept apart).

As soon as any peer exits non-zero (a remote peer that cannot start counts: ssh
exits 255 when the host is unreachable or its key unknown, the remote shell 127
when netsort is not there), every other peer is stopped and launch.sh exits,
naming that peer and its last output line. At the end one summary line per peer
gives its exit code, or says it was stopped.

Shared secret: local peers inherit NETSORT_SECRET from the environment. A remote
peer gets it over its ssh session's stdin (one line, read by the remote shell into
NETSORT_SECRET before netsort starts), never on a command line, where `ps` would
show it. `-- --secret-file F` works instead when F exists on every host.

Exit code: 0 when every peer exited 0; 2 when any peer exited 2 (bad usage, config,
input or secret; a stopped netsort exits 1) or the config is invalid; 1 otherwise.
Ctrl-C or SIGTERM stops every peer this script started (TERM, then KILL after 5 s)
and exits 130 / 143. A remote peer is stopped by closing its ssh session; one that
outlives it stops by itself when its mesh breaks (netsort's idle timeout). Note:
bash ignores SIGINT in a script started with `&` from another script, so stop such
a launch with SIGTERM.

Environment:
  NETSORT          netsort command, may be several words (e.g. "bun /repo/src/cli/main.ts").
                   Default: <repo>/dist/netsort if built, else `netsort` on PATH,
                   else "bun <repo>/src/cli/main.ts".
  NETSORT_REMOTE   netsort command to run on remote hosts (default: the same as above).
  NETSORT_SSH      ssh command, may be several words (default: ssh).
  NETSORT_SECRET   shared secret for every peer (see above); one line.
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

# ---- which peers run here ------------------------------------------------------
# A host is local when it is spelled as this machine (no fork needed) or resolves
# to one of this machine's addresses: a config that lists the machines by IP must
# not make this one ssh into itself. Addresses compare as lowercase text (IPv6 is
# not normalised: write it as `ip addr` shows it).

# This machine's addresses, one per line: `ip -o addr`, else `hostname -I`, else
# `ifconfig` (macOS, BSD, old Linux), plus the loopback ones.
this_machine_addresses() {
  local found=""
  if command -v ip >/dev/null 2>&1; then
    found=$(ip -o addr show 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "inet" || $i == "inet6") print $(i + 1) }') || found=""
  fi
  if [[ -z $found ]]; then
    found=$(hostname -I 2>/dev/null) || found=""
  fi
  if [[ -z $found ]] && command -v ifconfig >/dev/null 2>&1; then
    found=$(ifconfig -a 2>/dev/null | awk '$1 == "inet" || $1 == "inet6" { print $2 }') || found=""
  fi
  # shellcheck disable=SC2086 # split the list into words on purpose
  printf '%s\n' 127.0.0.1 ::1 $found | sed -e 's|/.*||' -e 's|%.*||' -e 's|^addr:||' | tr '[:upper:]' '[:lower:]'
}

# The addresses a host name resolves to (the hosts file, then DNS), one per line;
# nothing when it does not resolve (it is then remote, and ssh says why it fails).
resolve_host() {
  if command -v getent >/dev/null 2>&1; then
    { getent ahosts "$1" || getent hosts "$1"; } 2>/dev/null | awk '{ print $1 }' || true
  elif command -v dscacheutil >/dev/null 2>&1; then # macOS
    dscacheutil -q host -a name "$1" 2>/dev/null | awk '$1 == "ip_address:" || $1 == "ipv6_address:" { print $2 }' || true
  fi
}

# Host names compare case-insensitively; one `tr` for all of them rather than a
# fork per peer, and one resolution per distinct host (a config may list hundreds
# of peers on a few machines).
this_host=$(printf '%s' "${HOSTNAME:-$(uname -n)}" | tr '[:upper:]' '[:lower:]')
lower_hosts=()
while read -r host; do lower_hosts+=("$host"); done < <(printf '%s\n' "${hosts[@]}" | tr '[:upper:]' '[:lower:]')
my_addresses="" # newline-framed, filled on first need
local_hosts=$'\n'
while IFS= read -r host; do
  case $host in
    localhost | localhost.localdomain | ::1 | "[::1]" | 127.* | "$this_host" | "${this_host%%.*}")
      local_hosts+="$host"$'\n'
      continue
      ;;
  esac
  [[ -n $my_addresses ]] || my_addresses=$'\n'$(this_machine_addresses)$'\n'
  bare=${host#\[}
  bare=${bare%\]}
  if [[ $bare =~ ^[0-9.]+$ || $bare == *:* ]]; then
    addresses=$bare
  else
    addresses=$(resolve_host "$bare")
  fi
  for address in $addresses; do
    if [[ $address == 127.* || $my_addresses == *$'\n'"$address"$'\n'* ]]; then
      local_hosts+="$host"$'\n'
      break
    fi
  done
done < <(printf '%s\n' "${lower_hosts[@]}" | sort -u)
is_local=()
remote_count=0
for i in "${!ids[@]}"; do
  if [[ $local_hosts == *$'\n'"${lower_hosts[$i]}"$'\n'* ]]; then
    is_local[i]=1
  else
    is_local[i]=0
    remote_count=$((remote_count + 1))
  fi
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

# A remote peer reads the secret as one line from its ssh session's stdin.
secret_over_ssh=0
if [[ -n ${NETSORT_SECRET:-} && $remote_count -gt 0 ]]; then
  [[ $NETSORT_SECRET != *$'\n'* ]] || die_usage "NETSORT_SECRET must be one line to reach remote peers over ssh (or use -- --secret-file)"
  secret_over_ssh=1
fi

# Quote a word for any POSIX shell: wrap in '...', each ' becomes '\''.
shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# ---- start, stop, wait -----------------------------------------------------------
# Job control gives every background peer its own process group (pgid = its pid),
# so one kill reaches the peer, its children and its output prefixers, and a
# terminal's Ctrl-C reaches only this script, which then stops the peers itself.
set -m

pids=() # sparse: a peer's entry is removed once it is reaped
stop_grace_tenths=50 # TERM first; KILL whatever is left after 5 s
poll_interval_s=0.1  # how often the wait loop looks for a peer that has exited

# Each peer's last line on stdout and on stderr, to name it when it fails.
state_dir=$(mktemp -d "${TMPDIR:-/tmp}/netsort-launch.XXXXXX")

# Prefix every line (including a last one without a newline) with "[peer <id>] "
# and keep it as the peer's last line on this stream ($2: out or err).
# It ignores TERM so that the peer's last words (say, why it stopped) still get
# printed; it ends at end of input, or by KILL. It runs only builtins, so the
# ignored TERM is not inherited by any peer.
prefix_lines() {
  trap '' TERM
  local line last="$state_dir/last-$1.$2"
  while IFS= read -r line || [[ -n $line ]]; do
    printf '[peer %s] %s\n' "$1" "$line"
    printf '%s\n' "$line" 2>/dev/null >"$last" || true
  done
}

# Runs as the leader of the peer's own process group and exits with the peer's
# exit code once its output is all printed. Its shells catch TERM with a no-op
# (not ignore: an exec'd peer would inherit that) so a stopped peer is reaped and
# its code kept; the peer itself gets the default TERM back when it is exec'd.
# Called with the real stderr on fd 4 and its own stderr on /dev/null, which keeps
# bash's "Terminated" notices for a stopped peer out of the output.
# With $2 = 1 the command's stdin is one line holding NETSORT_SECRET, written by
# printf, a builtin: the secret is never any process's argument.
run_peer() {
  trap ':' TERM
  local id=$1 feed_secret=$2
  shift 2
  set +e
  {
    trap ':' TERM
    if [[ $feed_secret == 1 ]]; then
      printf '%s\n' "$NETSORT_SECRET" | "$@" 2>&1 1>&3 3>&- 4>&- | prefix_lines "$id" err >&4
      exit "${PIPESTATUS[1]}"
    fi
    "$@" 2>&1 1>&3 3>&- 4>&- </dev/null | prefix_lines "$id" err >&4
    exit "${PIPESTATUS[0]}"
  } 3>&1 | prefix_lines "$id" out
  exit "${PIPESTATUS[0]}"
}

start_peer() {
  local i=$1 id host input output remote word
  id=${ids[$i]}
  host=${hosts[$i]}
  input=$(input_of "$id")
  output=$(output_of "$id")
  if [[ ${is_local[$i]} == 1 ]]; then
    run_peer "$id" 0 "${netsort[@]}" "$id" "$input" "$output" "$config" ${extra[@]+"${extra[@]}"} 4>&2 2>/dev/null &
  else
    remote="cd $(shell_quote "$PWD") && exec"
    if [[ $secret_over_ssh == 1 ]]; then
      remote="if IFS= read -r NETSORT_SECRET; then export NETSORT_SECRET; else echo 'launch.sh: no NETSORT_SECRET line on stdin' >&2; exit 2; fi && $remote"
    fi
    for word in "${remote_netsort[@]}" "$id" "$input" "$output" "$config" ${extra[@]+"${extra[@]}"}; do
      remote+=" $(shell_quote "$word")"
    done
    run_peer "$id" "$secret_over_ssh" "${ssh_cmd[@]}" -o BatchMode=yes -T "$host" "$remote" 4>&2 2>/dev/null &
  fi
  pids[i]=$!
}

# Stop every peer group still running: TERM, wait up to the grace period for each
# group's leader to finish (it finishes only after its peer and output prefixers
# are gone), then KILL what is left and reap, keeping each exit code in codes[].
# shellcheck disable=SC2317 # reached from the traps below
stop_peers() {
  local i tenths=0 alive code
  [[ ${#pids[@]} -gt 0 ]] || return 0
  set +m # no "Terminated" job notices from here on
  for i in "${!pids[@]}"; do kill -TERM -- "-${pids[$i]}" 2>/dev/null || true; done
  while ((tenths < stop_grace_tenths)); do
    alive=0
    for i in "${!pids[@]}"; do
      if kill -0 "${pids[$i]}" 2>/dev/null; then alive=1; fi
    done
    ((alive)) || break
    sleep 0.1
    tenths=$((tenths + 1))
  done
  for i in "${!pids[@]}"; do kill -KILL -- "-${pids[$i]}" 2>/dev/null || true; done
  for i in "${!pids[@]}"; do
    code=0
    wait "${pids[$i]}" 2>/dev/null || code=$?
    codes[i]=$code
  done
  pids=()
}

# shellcheck disable=SC2317 # reached from the traps below
on_signal() {
  trap - INT TERM HUP
  echo "launch.sh: $1: stopping ${#pids[@]} peer(s)" >&2
  stop_peers
  exit "$2"
}

# A peer's last output line: stderr's (where errors go) if it printed any there.
last_line_of() {
  local file line=""
  for file in "$state_dir/last-$1.err" "$state_dir/last-$1.out"; do
    if [[ -s $file ]]; then
      IFS= read -r line <"$file" || true
      break
    fi
  done
  printf '%s' "$line"
}

codes=()
trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM
trap 'on_signal SIGHUP 129' HUP
# If this script dies of an error after starting peers, take them down with it.
trap 'stop_peers; rm -rf "$state_dir"' EXIT

for i in "${!ids[@]}"; do
  start_peer "$i"
done
# From here on a foreground command (the poll's sleep) stays in this script's
# process group, so a terminal's Ctrl-C still reaches this script's trap.
set +m

# Wait for every peer, but stop at the first that exits non-zero: the others
# would only wait for it until their connect timeout. No `wait -n` (bash 4.3+):
# poll whether each group leader is still there; bash reaps it and keeps its code.
first_failed=""
while [[ ${#pids[@]} -gt 0 && -z $first_failed ]]; do
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then continue; fi
    code=0
    wait "${pids[$i]}" || code=$?
    codes[i]=$code
    unset "pids[$i]"
    if [[ $code -ne 0 ]]; then
      first_failed=$i
      break
    fi
  done
  if [[ ${#pids[@]} -gt 0 && -z $first_failed ]]; then sleep "$poll_interval_s"; fi
done

stopped=()
status=0
if [[ -n $first_failed ]]; then
  code=${codes[$first_failed]}
  hint=""
  if [[ ${is_local[$first_failed]} == 0 && $code -eq 255 ]]; then
    hint=" (ssh failed: host unreachable, host key unknown, or no key-based login?)"
  elif [[ $code -eq 127 ]]; then
    hint=" (netsort command not found there: set NETSORT or NETSORT_REMOTE)"
  fi
  last=$(last_line_of "${ids[$first_failed]}")
  others=""
  if [[ ${#pids[@]} -gt 0 ]]; then
    others="; stopping the other ${#pids[@]} peer(s)"
    for i in "${!pids[@]}"; do stopped[i]=1; done
  fi
  echo "launch.sh: peer ${ids[$first_failed]} (${hosts[$first_failed]}) exited $code$hint: ${last:-(no output)}$others" >&2
  stop_peers
fi

for i in "${!ids[@]}"; do
  # Exit 2 means misconfigured (config, secret, usage): the one worth reporting.
  if [[ ${codes[$i]} -eq 2 ]]; then
    status=2
  elif [[ ${codes[$i]} -ne 0 && $status -eq 0 ]]; then
    status=1
  fi
  if [[ -n ${stopped[$i]:-} ]]; then
    echo "[launch] peer ${ids[$i]} (${hosts[$i]}): stopped (exit ${codes[$i]})"
  else
    echo "[launch] peer ${ids[$i]} (${hosts[$i]}): exit ${codes[$i]}"
  fi
done
if [[ -z $first_failed ]]; then
  echo "[launch] all $peer_count peers exited 0"
else
  echo "[launch] peer ${ids[$first_failed]} failed; ${#stopped[@]} other peer(s) stopped"
fi
exit "$status"
