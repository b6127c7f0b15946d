# Process-group helpers shared by local_multiprocess.sh and gpu_multihost.sh (sourced, not run).
#
#   procs_init                       temp dir, job control, signal traps
#   procs_start INDEX CMD [ARGS...]  starts CMD in its own process group, stdin from /dev/null,
#                                    every output line prefixed with "[INDEX] "; the caller
#                                    exports the per-process environment before calling
#   procs_wait TIMEOUT_S             waits for all; the first failure (or the timeout, or a
#                                    signal) stops the others; returns 0, the failing exit status,
#                                    or 124 on timeout
#
# Each process gets its own process group (set -m) so that stopping it also stops whatever it
# started (data-loader workers); the prefixer reads from a named pipe so that "$!" is the
# command's own pid and its exit status is not masked by a pipeline.

procs_init() {
  PROCS_DIR="$(mktemp -d "${TMPDIR:-/tmp}/path_jax_launch.XXXXXX")"
  PROCS_PIDS=()
  PROCS_PREFIXERS=()
  set -m
  trap 'procs_stop_all TERM; procs_cleanup; exit 130' INT
  trap 'procs_stop_all TERM; procs_cleanup; exit 143' TERM
}

procs_cleanup() {
  [[ -n "${PROCS_DIR:-}" && -d "$PROCS_DIR" ]] && rm -rf "$PROCS_DIR"
  return 0
}

procs_start() {
  local index="$1"; shift
  local fifo="$PROCS_DIR/out.$index"
  mkfifo "$fifo"
  awk -v p="[$index] " '{ print p $0; fflush() }' < "$fifo" &
  PROCS_PREFIXERS+=("$!")
  "$@" < /dev/null > "$fifo" 2>&1 &
  PROCS_PIDS+=("$!")
}

# Sends SIGNAL to the process group of every process still running, then SIGKILL after 5 s.
procs_stop_all() {
  local sig="${1:-TERM}" pid alive=0
  for pid in "${PROCS_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null
      alive=1
    fi
  done
  (( alive )) || return 0
  local waited=0
  while (( waited < 50 )); do
    alive=0
    for pid in "${PROCS_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    (( alive )) || return 0
    sleep 0.1
    waited=$(( waited + 1 ))
  done
  for pid in "${PROCS_PIDS[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}

procs_wait() {
  # bash reports every job ended by a signal ("Terminated") on stderr: the loop runs with stderr
  # hidden and prints its own messages on a copy of it.
  exec 3>&2
  _procs_wait "$@" 2>/dev/null
  local status=$?
  exec 3>&-
  return "$status"
}

_procs_wait() {
  local timeout_s="$1" status=0 deadline=$(( SECONDS + $1 )) i pid rc
  local -a done_flags=()
  local remaining=${#PROCS_PIDS[@]}
  while (( remaining > 0 )); do
    for i in "${!PROCS_PIDS[@]}"; do
      [[ -n "${done_flags[$i]:-}" ]] && continue
      pid="${PROCS_PIDS[$i]}"
      if ! kill -0 "$pid" 2>/dev/null; then
        wait "$pid"; rc=$?
        done_flags[$i]=1
        remaining=$(( remaining - 1 ))
        if (( rc == 75 && status == 0 )); then
          # Preempted with a checkpoint saved (path_jax.main's exit code 75): the other
          # processes are stopping at the same step; let them finish their part of the save.
          echo "launch: process $i was preempted (exit 75, checkpoint saved)" >&3
          status=75
        elif (( rc != 0 && (status == 0 || status == 75) )); then
          echo "launch: process $i exited with status $rc; stopping the others" >&3
          status=$rc
          procs_stop_all TERM
        fi
      fi
    done
    (( remaining > 0 )) || break
    if (( SECONDS >= deadline )); then
      echo "launch: timeout after ${timeout_s}s; stopping all processes" >&3
      procs_stop_all TERM
      for pid in "${PROCS_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
      status=124
      break
    fi
    sleep 0.2
  done
  # Let the prefixers print the last lines before returning.
  for pid in "${PROCS_PREFIXERS[@]}"; do wait "$pid" 2>/dev/null; done
  return "$status"
}
