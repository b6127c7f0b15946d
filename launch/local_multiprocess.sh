#!/usr/bin/env bash
# Runs COMMAND as NUM_PROCESSES cooperating JAX processes on this machine, each with
# DEVICES_PER_PROCESS fake CPU devices: a multi-host run without the hosts (launch/README.md).
set -uo pipefail

usage() {
  cat >&2 <<'EOF'
usage: launch/local_multiprocess.sh [--timeout=SECONDS] NUM_PROCESSES DEVICES_PER_PROCESS -- COMMAND [ARGS...]

Starts NUM_PROCESSES copies of COMMAND on this machine as one multi-process JAX job on CPU.
Every process gets:
  JAX_PLATFORMS=cpu
  JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT   (a free port; JAX_COORDINATOR_PORT=PORT to choose one)
  JAX_NUM_PROCESSES=NUM_PROCESSES  JAX_PROCESS_ID=0..NUM_PROCESSES-1
  JAX_NUM_CPU_DEVICES=DEVICES_PER_PROCESS, and the same count as
  --xla_force_host_platform_device_count in XLA_FLAGS
COMMAND must call path_jax.parallel.mesh.initialize_distributed() before using JAX (path_jax.main
and path_jax.parallel.multihost_check do). Output lines are prefixed with "[i] ". When one process
fails the others are stopped; the exit status is the first failure's, or 124 after the timeout
(default 1800 s, or $LAUNCH_TIMEOUT).

example:
  launch/local_multiprocess.sh 2 4 -- python -m path_jax.parallel.multihost_check --steps=3 --out=/tmp/mh.json
EOF
  exit 2
}

timeout_s="${LAUNCH_TIMEOUT:-1800}"
while [[ $# -gt 0 && "$1" == --* && "$1" != "--" ]]; do
  case "$1" in
    --timeout=*) timeout_s="${1#--timeout=}" ;;
    -h|--help) usage ;;
    *) echo "local_multiprocess.sh: unknown option $1" >&2; usage ;;
  esac
  shift
done
[[ $# -ge 4 && "$3" == "--" ]] || usage
num_processes="$1"; devices="$2"; shift 3
for v in "$num_processes" "$devices" "$timeout_s"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "local_multiprocess.sh: '$v' is not a positive integer" >&2; usage; }
done

free_port() {
  if [[ -n "${JAX_COORDINATOR_PORT:-}" ]]; then echo "$JAX_COORDINATOR_PORT"; return; fi
  local py
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' && return
    fi
  done
  # No Python on PATH: a random high port that nothing answers on.
  local port
  for _ in $(seq 50); do
    port=$(( 20000 + RANDOM % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
  echo "local_multiprocess.sh: found no free port; set JAX_COORDINATOR_PORT" >&2
  return 1
}

port="$(free_port)" || exit 1
# Replace any device-count flag already in XLA_FLAGS (tests/conftest.py sets one).
read -ra flag_words <<< "${XLA_FLAGS:-}"
xla_flags="--xla_force_host_platform_device_count=$devices"
for w in "${flag_words[@]}"; do
  [[ "$w" == --xla_force_host_platform_device_count=* ]] || xla_flags="$xla_flags $w"
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=launch/_procs.sh
source "$here/_procs.sh"
procs_init
echo "launch: $num_processes processes x $devices CPU devices, coordinator 127.0.0.1:$port" >&2
for (( i = 0; i < num_processes; i++ )); do
  JAX_PLATFORMS=cpu JAX_COORDINATOR_ADDRESS="127.0.0.1:$port" JAX_NUM_PROCESSES="$num_processes" \
    JAX_PROCESS_ID="$i" JAX_NUM_CPU_DEVICES="$devices" XLA_FLAGS="$xla_flags" \
    procs_start "$i" "$@"
done
procs_wait "$timeout_s"
status=$?
procs_cleanup
exit "$status"
