#!/usr/bin/env bash
# Cloud TPU VM slices for path_jax with gcloud: create (and install the project on every worker),
# run a command on all workers, train, delete. Every worker of a slice runs the same command;
# jax finds the other workers itself (launch/README.md).
set -uo pipefail

REMOTE_DIR='~/path_jax'

usage() {
  cat >&2 <<'EOF'
usage: launch/tpu_vm.sh COMMAND ARGS...

  create NAME ZONE TYPE VERSION [--spot]
        create a TPU VM slice (e.g. TYPE v5p-16, VERSION v2-alpha-tpuv5) and run `setup`
  setup NAME ZONE
        copy this checkout's git HEAD (commit first) to every worker and
        `pip install -e '.[tpu]'` into ~/path_jax/.venv (installs Python 3.11 if needed)
  run NAME ZONE -- COMMAND [ARGS...]
        run COMMAND in ~/path_jax with the venv active on all workers at once
  train NAME ZONE GS_BUCKET CONFIG [--copy-data=LOCAL_DIR] [-- MAIN_ARGS...]
        python -m path_jax.main --config=CONFIG --workdir=GS_BUCKET/runs/NAME with the TFDS data
        dir GS_BUCKET/tfds (TFDS_DATA_DIR and --config.data_dir); --copy-data first copies it to
        LOCAL_DIR on every worker's disk and reads it there
  delete NAME ZONE
        delete the slice

Environment: TPU_PROJECT (gcloud --project; default: gcloud's configured project),
DRY_RUN=1 (print the gcloud commands instead of running them).

example:
  launch/tpu_vm.sh create path-v5p16 us-east5-a v5p-16 v2-alpha-tpuv5
  launch/tpu_vm.sh run path-v5p16 us-east5-a -- python -m path_jax.parallel.multihost_check --steps=3 --out=/tmp/mh.json
  launch/tpu_vm.sh train path-v5p16 us-east5-a gs://my-bucket/path_jax configs/vitb.py
  launch/tpu_vm.sh delete path-v5p16 us-east5-a
EOF
  exit 2
}

die() { echo "tpu_vm.sh: $*" >&2; usage; }

# Runs (or with DRY_RUN=1 prints) a command given as words.
do_cmd() {
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    printf '%q ' "$@"; echo
  else
    "$@"
  fi
}

project_flags() {
  [[ -n "${TPU_PROJECT:-}" ]] && printf '%s\n' "--project=$TPU_PROJECT"
  return 0
}

gcloud_tpu() {
  local flags
  mapfile -t flags < <(project_flags)
  do_cmd gcloud compute tpus tpu-vm "$@" "${flags[@]}"
}

# ssh_all NAME ZONE REMOTE_SHELL_COMMAND: the same command on every worker.
ssh_all() {
  gcloud_tpu ssh "$1" --zone="$2" --worker=all --command="$3"
}

# Joins words into one string that a remote shell splits back into the same words.
quote_words() {
  local out="" w
  for w in "$@"; do out+="$(printf '%q' "$w") "; done
  printf '%s' "${out% }"
}

cmd_setup() {
  local name="$1" zone="$2"
  local repo archive
  repo="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)" \
    || die "setup copies the git checkout this script lives in; none found"
  archive="$(mktemp "${TMPDIR:-/tmp}/path_jax_src.XXXXXX.tar.gz")"
  git -C "$repo" diff --quiet HEAD -- || echo "tpu_vm.sh: warning: uncommitted changes in" \
    "$repo are not copied (setup copies git HEAD); commit them and run setup again" >&2
  do_cmd git -C "$repo" archive --format=tar.gz -o "$archive" HEAD || return 1
  gcloud_tpu scp "$archive" "$name:/tmp/path_jax_src.tar.gz" --zone="$zone" --worker=all || return 1
  [[ "${DRY_RUN:-0}" == "1" ]] || rm -f "$archive"
  ssh_all "$name" "$zone" "set -e
mkdir -p $REMOTE_DIR && tar -xzf /tmp/path_jax_src.tar.gz -C $REMOTE_DIR
cd $REMOTE_DIR
PY=\$(command -v python3.12 || command -v python3.11 || true)
if [ -z \"\$PY\" ]; then
  sudo apt-get update -qq && sudo apt-get install -y -qq python3.11 python3.11-venv
  PY=python3.11
fi
[ -x .venv/bin/python ] || \$PY -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[tpu]'
.venv/bin/python -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count())'"
}

cmd_run() {
  local name="$1" zone="$2"; shift 2
  ssh_all "$name" "$zone" "cd $REMOTE_DIR && . .venv/bin/activate && $(quote_words "$@")"
}

[[ $# -ge 1 ]] || usage
action="$1"; shift
case "$action" in
  create)
    [[ $# -ge 4 ]] || die "create needs NAME ZONE TYPE VERSION"
    name="$1"; zone="$2"; type="$3"; version="$4"; shift 4
    extra=()
    for a in "$@"; do
      case "$a" in
        --spot) extra+=(--spot) ;;
        *) die "create: unknown option '$a'" ;;
      esac
    done
    gcloud_tpu create "$name" --zone="$zone" --accelerator-type="$type" --version="$version" \
      "${extra[@]}" || exit 1
    cmd_setup "$name" "$zone"
    ;;
  setup)
    [[ $# -eq 2 ]] || die "setup needs NAME ZONE"
    cmd_setup "$1" "$2"
    ;;
  run)
    [[ $# -ge 4 && "$3" == "--" ]] || die "run needs NAME ZONE -- COMMAND [ARGS...]"
    name="$1"; zone="$2"; shift 3
    cmd_run "$name" "$zone" "$@"
    ;;
  train)
    [[ $# -ge 4 ]] || die "train needs NAME ZONE GS_BUCKET CONFIG"
    name="$1"; zone="$2"; bucket="${3%/}"; config="$4"; shift 4
    [[ "$bucket" == gs://* ]] || die "GS_BUCKET must start with gs:// (got '$bucket')"
    copy_to=""
    while [[ $# -gt 0 && "$1" != "--" ]]; do
      case "$1" in
        --copy-data=*) copy_to="${1#*=}" ;;
        *) die "train: unknown option '$1' (path_jax.main's arguments go after '--')" ;;
      esac
      shift
    done
    [[ $# -eq 0 ]] || shift
    data_dir="$bucket/tfds"
    if [[ -n "$copy_to" ]]; then
      ssh_all "$name" "$zone" "mkdir -p $(quote_words "$copy_to") &&
        gcloud storage rsync -r $(quote_words "$data_dir" "$copy_to")" || exit 1
      data_dir="$copy_to"
    fi
    cmd_run "$name" "$zone" env TFDS_DATA_DIR="$data_dir" python -m path_jax.main \
      --config="$config" --workdir="$bucket/runs/$name" --config.data_dir="$data_dir" "$@"
    ;;
  delete)
    [[ $# -eq 2 ]] || die "delete needs NAME ZONE"
    gcloud_tpu delete "$1" --zone="$2" --quiet
    ;;
  -h|--help) usage ;;
  *) die "unknown command '$action'" ;;
esac
