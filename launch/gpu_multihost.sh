#!/usr/bin/env bash
# Starts this host's share of a multi-host GPU job without SLURM: run it once on every host
# (launch/README.md). Sets the JAX_* variables that path_jax.parallel.mesh.initialize_distributed
# reads, then runs the command.
set -uo pipefail

usage() {
  cat >&2 <<'EOF'
usage: launch/gpu_multihost.sh [options] -- COMMAND [ARGS...]

One process per host (default), using all of the host's GPUs:
  --coordinator=HOST:PORT  address of process 0, reachable from every host
                           (default $JAX_COORDINATOR_ADDRESS)
  --num-processes=N        number of hosts (default $JAX_NUM_PROCESSES)
  --process-id=I           this host's index, 0..N-1; process 0 runs on the coordinator host
                           (default $JAX_PROCESS_ID)

One process per GPU (--per-gpu): this host starts one process for each of its GPUs;
  --coordinator as above, and
  --num-hosts=N            number of hosts (default $NUM_HOSTS)
  --host-index=H           this host's index, 0..N-1 (default $HOST_INDEX)
  --gpus=G                 GPUs on every host (default: counted with nvidia-smi -L)
  Process ids are H*G + g; each process sees GPU g only (JAX_LOCAL_DEVICE_IDS=g).

  --timeout=SECONDS        --per-gpu: stop the local processes after this long (default none)

example (two hosts, eight GPUs each; run on host 0, then on host 1 with --process-id=1):
  launch/gpu_multihost.sh --coordinator=10.0.0.1:12345 --num-processes=2 --process-id=0 -- \
      python -m path_jax.main --config=configs/vitb.py --workdir=/shared/runs/vitb
EOF
  exit 2
}

die() { echo "gpu_multihost.sh: $*" >&2; usage; }

coordinator="${JAX_COORDINATOR_ADDRESS:-}"
num_processes="${JAX_NUM_PROCESSES:-}"
process_id="${JAX_PROCESS_ID:-}"
num_hosts="${NUM_HOSTS:-}"
host_index="${HOST_INDEX:-}"
gpus=""
per_gpu=0
timeout_s=""
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --coordinator=*) coordinator="${1#*=}" ;;
    --num-processes=*) num_processes="${1#*=}" ;;
    --process-id=*) process_id="${1#*=}" ;;
    --num-hosts=*) num_hosts="${1#*=}" ;;
    --host-index=*) host_index="${1#*=}" ;;
    --gpus=*) gpus="${1#*=}" ;;
    --per-gpu) per_gpu=1 ;;
    --timeout=*) timeout_s="${1#*=}" ;;
    -h|--help) usage ;;
    *) die "unknown argument '$1' (options go before '--', the command after it)" ;;
  esac
  shift
done
[[ $# -ge 2 && "$1" == "--" ]] || die "missing '-- COMMAND'"
shift

[[ "$coordinator" =~ ^[^:]+:[0-9]+$ ]] || die "--coordinator=HOST:PORT is required (got '$coordinator')"
is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
is_index() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 < $2 )); }

if (( ! per_gpu )); then
  is_count "$num_processes" || die "--num-processes=N (N >= 1) is required (got '$num_processes')"
  is_index "$process_id" "$num_processes" || die "--process-id must be in 0..$((num_processes - 1)) (got '$process_id')"
  echo "gpu_multihost: process $process_id of $num_processes, coordinator $coordinator" >&2
  export JAX_COORDINATOR_ADDRESS="$coordinator" JAX_NUM_PROCESSES="$num_processes" \
    JAX_PROCESS_ID="$process_id"
  exec "$@"
fi

is_count "$num_hosts" || die "--per-gpu needs --num-hosts=N (got '$num_hosts')"
is_index "$host_index" "$num_hosts" || die "--host-index must be in 0..$((num_hosts - 1)) (got '$host_index')"
if [[ -z "$gpus" ]]; then
  command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: give --gpus=G"
  gpus="$(nvidia-smi -L | grep -c '^GPU ')"
fi
is_count "$gpus" || die "--gpus must be a positive count (got '$gpus')"
[[ -z "$timeout_s" ]] || is_count "$timeout_s" || die "--timeout must be a positive count of seconds"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=launch/_procs.sh
source "$here/_procs.sh"
procs_init
total=$(( num_hosts * gpus ))
first=$(( host_index * gpus ))
echo "gpu_multihost: host $host_index of $num_hosts, process ids $first..$(( first + gpus - 1 ))" \
  "of $total, coordinator $coordinator" >&2
for (( g = 0; g < gpus; g++ )); do
  JAX_COORDINATOR_ADDRESS="$coordinator" JAX_NUM_PROCESSES="$total" \
    JAX_PROCESS_ID="$(( first + g ))" JAX_LOCAL_DEVICE_IDS="$g" \
    procs_start "$(( first + g ))" "$@"
done
# No timeout given: a deadline far beyond any run.
procs_wait "${timeout_s:-999999999}"
status=$?
procs_cleanup
exit "$status"
