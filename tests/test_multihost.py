"""Launch scripts and the multi-host acceptance check.

Fast: every script parses (``bash -n``) and refuses bad arguments with its usage text; the local
launcher's environment, output prefixes, failure and timeout handling; a real two-process job
(gloo) assembling global batches from each process's rows. Slow (``-m slow``): three training
steps of a three-task PATH model on 2 processes x 4 devices equal the same steps on 1 process x
8 devices (losses and parameter digests within 1e-5), for two meshes.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from path_jax.parallel import multihost_check

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch"
SCRIPTS = ["local_multiprocess.sh", "gpu_multihost.sh", "slurm.sbatch", "tpu_vm.sh", "_procs.sh"]


def _clean_env(**extra) -> dict:
  """This environment without what conftest.py and clusters set: the launchers decide devices."""
  drop = ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
          "JAX_PROCESS_ID", "JAX_LOCAL_DEVICE_IDS", "JAX_COORDINATOR_PORT", "NUM_HOSTS",
          "HOST_INDEX")
  env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("SLURM_")}
  # The venv's python first, so that "python" in a launched command is this interpreter.
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
  env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def _run(args, timeout=120, **env):
  return subprocess.run([str(a) for a in args], cwd=ROOT, env=_clean_env(**env),
                        capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_parse(name):
  r = _run(["bash", "-n", LAUNCH / name])
  assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("args", [
    ["local_multiprocess.sh"],
    ["local_multiprocess.sh", "2", "4", "python", "x.py"],          # no '--'
    ["local_multiprocess.sh", "2", "four", "--", "true"],
    ["local_multiprocess.sh", "--bogus", "2", "4", "--", "true"],
    ["gpu_multihost.sh", "--", "python", "x.py"],                     # no coordinator
    ["gpu_multihost.sh", "--coordinator=h:1", "--num-processes=2", "--process-id=2", "--", "x"],
    ["gpu_multihost.sh", "--coordinator=h:1", "--num-processes=2", "--process-id=0"],
    ["gpu_multihost.sh", "--coordinator=h:1", "--per-gpu", "--num-hosts=2", "--", "x"],
    ["slurm.sbatch"],
    ["slurm.sbatch", "--", "--config=configs/vitb.py"],              # not inside a SLURM job
    ["slurm.sbatch", "--nodes=2", "--", "--config=configs/vitb.py"],
    ["tpu_vm.sh"],
    ["tpu_vm.sh", "create", "name", "zone"],
    ["tpu_vm.sh", "run", "name", "zone", "python"],
    ["tpu_vm.sh", "train", "name", "zone", "not-a-bucket", "configs/vitb.py"],
    ["tpu_vm.sh", "resize", "name", "zone"],
])
def test_usage_errors(args):
  r = _run(["bash", LAUNCH / args[0], *args[1:]])
  assert r.returncode != 0
  assert "usage:" in r.stderr, r.stderr


def test_gpu_multihost_exports_and_runs():
  cmd = [sys.executable, "-c", "import os; print(os.environ['JAX_COORDINATOR_ADDRESS'], "
         "os.environ['JAX_NUM_PROCESSES'], os.environ['JAX_PROCESS_ID'])"]
  r = _run(["bash", LAUNCH / "gpu_multihost.sh", "--coordinator=10.0.0.1:1234",
            "--num-processes=3", "--process-id=2", "--", *cmd])
  assert r.returncode == 0, r.stderr
  assert r.stdout.split() == ["10.0.0.1:1234", "3", "2"]
  # From the environment; --per-gpu gives ids host*G+g and one visible GPU each.
  cmd = [sys.executable, "-c", "import os; print('ids', os.environ['JAX_NUM_PROCESSES'], "
         "os.environ['JAX_PROCESS_ID'], os.environ['JAX_LOCAL_DEVICE_IDS'])"]
  r = _run(["bash", LAUNCH / "gpu_multihost.sh", "--per-gpu", "--gpus=2", "--", *cmd],
           JAX_COORDINATOR_ADDRESS="h:1", NUM_HOSTS="3", HOST_INDEX="1")
  assert r.returncode == 0, r.stderr
  lines = sorted(line for line in r.stdout.splitlines() if "ids" in line)
  assert lines == ["[2] ids 6 2 0", "[3] ids 6 3 1"]


def test_tpu_vm_dry_run_commands():
  r = _run(["bash", LAUNCH / "tpu_vm.sh", "train", "vm1", "us-east5-a", "gs://bkt/pj/",
            "configs/vitb.py", "--", "--config.train.num_steps=10"], DRY_RUN="1",
           TPU_PROJECT="proj")
  assert r.returncode == 0, r.stderr
  line = r.stdout.strip()
  assert line.startswith("gcloud compute tpus tpu-vm ssh vm1 --zone=us-east5-a --worker=all")
  assert line.endswith("--project=proj")
  for part in ("python\\ -m\\ path_jax.main", "--config=configs/vitb.py",
               "--workdir=gs://bkt/pj/runs/vm1", "--config.data_dir=gs://bkt/pj/tfds",
               "TFDS_DATA_DIR=gs://bkt/pj/tfds", "--config.train.num_steps=10"):
    assert part in line, (part, line)
  r = _run(["bash", LAUNCH / "tpu_vm.sh", "delete", "vm1", "us-east5-a"], DRY_RUN="1")
  assert r.stdout.strip() == "gcloud compute tpus tpu-vm delete vm1 --zone=us-east5-a --quiet"


_PRINT_ENV = ("import os, sys; e = os.environ; print('env', e['JAX_PROCESS_ID'], "
              "e['JAX_NUM_PROCESSES'], e['JAX_COORDINATOR_ADDRESS'], e['JAX_NUM_CPU_DEVICES'], "
              "e['JAX_PLATFORMS'], e['XLA_FLAGS']); print('to stderr', file=sys.stderr)")


def test_local_launcher_environment_and_prefixes():
  r = _run(["bash", LAUNCH / "local_multiprocess.sh", "3", "2", "--", sys.executable, "-c",
            _PRINT_ENV], XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_dummy=1")
  assert r.returncode == 0, r.stderr
  env_lines = sorted(line.split() for line in r.stdout.splitlines() if " env " in line)
  assert [w[0] for w in env_lines] == ["[0]", "[1]", "[2]"]
  assert [w[2] for w in env_lines] == ["0", "1", "2"]
  assert {w[3] for w in env_lines} == {"3"}
  assert len({w[4] for w in env_lines}) == 1 and env_lines[0][4].startswith("127.0.0.1:")
  assert {w[5] for w in env_lines} == {"2"} and {w[6] for w in env_lines} == {"cpu"}
  # The device count replaces the caller's; other XLA flags stay.
  assert {" ".join(w[7:]) for w in env_lines} == {
      "--xla_force_host_platform_device_count=2 --xla_dummy=1"}
  assert sorted(line for line in r.stdout.splitlines() if "to stderr" in line) == [
      "[0] to stderr", "[1] to stderr", "[2] to stderr"]


def test_local_launcher_failure_stops_the_others():
  script = ("import os, sys, time; i = int(os.environ['JAX_PROCESS_ID'])\n"
            "if i == 1: sys.exit(7)\n"
            "time.sleep(120)\n")
  start = time.monotonic()
  r = _run(["bash", LAUNCH / "local_multiprocess.sh", "3", "1", "--", sys.executable, "-c",
            script])
  assert r.returncode == 7
  assert time.monotonic() - start < 60
  assert "process 1 exited with status 7" in r.stderr


def test_local_launcher_timeout():
  start = time.monotonic()
  r = _run(["bash", LAUNCH / "local_multiprocess.sh", "--timeout=2", "2", "1", "--",
            sys.executable, "-c", "import time; time.sleep(120)"])
  assert r.returncode == 124
  assert time.monotonic() - start < 60
  assert "timeout" in r.stderr


@pytest.mark.parametrize("mesh", ["-1,1,1", "2,2,2"])
def test_two_processes_assemble_global_batches(tmp_path, mesh):
  """Each of 2 processes keeps only its devices' rows (round-robin device order, so the rows are
  not contiguous); the gathered global arrays equal the full NumPy batches."""
  out = tmp_path / "data.json"
  r = _run(["bash", LAUNCH / "local_multiprocess.sh", "--timeout=150", "2", "4", "--",
            sys.executable, "-m", "path_jax.parallel.multihost_check", "--data-only",
            "--interleave", "--steps=2", f"--mesh={mesh}", f"--out={out}"], timeout=180)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  result = json.loads(out.read_text())
  assert result["process_count"] == 2 and result["device_count"] == 8
  assert result["local_device_count"] == 4
  assert result["data_errors"] == []


def test_compare_reports_differences():
  base = {"losses": [{"loss": 2.0, "loss/a": 1.0}],
          "digest": {"w": {"shape": [2], "sum": 1.0, "abs_sum": 3.0, "first": [0.5, -2.5]}}}
  same = json.loads(json.dumps(base))
  same["losses"][0]["loss"] = 2.0 * (1 + 1e-7)
  assert multihost_check.compare(base, same) == []
  off = json.loads(json.dumps(base))
  off["losses"][0]["loss/a"] = 1.001
  off["digest"]["w"]["first"][1] = -2.6
  errors = multihost_check.compare(base, off)
  assert len(errors) == 2
  assert "loss/a" in errors[0] and "first[1]" in errors[1]
  # A cancelling sum (0.01 of magnitudes 3.0) is judged against the magnitudes: a difference of
  # 2e-5 (7e-6 of 3.0, though 2e-3 of the sum) passes, 1e-4 fails.
  a, b = json.loads(json.dumps(base)), json.loads(json.dumps(base))
  a["digest"]["w"]["sum"] = 0.01
  b["digest"]["w"]["sum"] = 0.01 + 2e-5
  assert multihost_check.compare(a, b, atol=0.0) == []
  b["digest"]["w"]["sum"] = 0.01 + 1e-4
  assert len(multihost_check.compare(a, b, atol=0.0)) == 1


def _train_check(tmp_path, name, mesh, optimizer, processes=None, extra=()):
  out = tmp_path / f"{name}.json"
  cmd = [sys.executable, "-m", "path_jax.parallel.multihost_check", "--steps=3",
         f"--mesh={mesh}", f"--optimizer={optimizer}", f"--out={out}", *extra]
  if processes:
    r = _run(["bash", LAUNCH / "local_multiprocess.sh", "--timeout=1200", str(processes),
              str(8 // processes), "--", *cmd], timeout=1300)
  else:
    r = _run(cmd, timeout=1300, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="8")
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("mesh,optimizer", [("-1,1,1", "sgd"), ("2,2,2", "sgd"),
                                            ("2,2,2", "path")])
def test_two_processes_train_like_one(tmp_path, mesh, optimizer):
  """Losses of every step and (SGD) the final parameters of 2 processes x 4 devices equal those of
  1 process x 8 devices; with the project's Adafactor only the losses are compared
  (multihost_check.make_tx_factory says why)."""
  multi = _train_check(tmp_path, "multi", mesh, optimizer, processes=2)
  single = _train_check(tmp_path, "single", mesh, optimizer)
  assert (multi["process_count"], multi["local_device_count"]) == (2, 4)
  assert (single["process_count"], single["local_device_count"]) == (1, 8)
  assert len(multi["datasets"]) == 3 and len(multi["losses"]) == 3
  assert all(v == v for m in multi["losses"] for v in m.values())   # no NaN
  # Training moved the model: the step-3 loss differs from the step-1 loss.
  assert multi["losses"][2]["loss"] != multi["losses"][0]["loss"]
  errors = multihost_check.compare(multi, single, rtol=1e-5, params=optimizer == "sgd")
  assert not errors, "\n".join(errors[:30])


@pytest.mark.slow
def test_two_processes_train_like_one_in_slices(tmp_path):
  """Placement 'slices' on 2 processes x 4 devices equals 1 process x 8: attributes on rows 0-1
  (process 0 only), pose on rows 2-6 (both processes), ReID on row 7 (process 1 only); each
  process runs only the programs of groups with devices on it."""
  extra = ["--rows=attributes=2,pose=5,reid=1", "--batch=20"]
  multi = _train_check(tmp_path, "multi", "-1,1,1", "sgd", processes=2, extra=extra)
  single = _train_check(tmp_path, "single", "-1,1,1", "sgd", extra=extra)
  assert (multi["process_count"], single["process_count"]) == (2, 1)
  assert multi["placement"] == "slices"
  assert multi["groups"] == {"attributes": [0, 1], "pose": [2, 3, 4, 5, 6], "reid": [7]}
  assert multi["losses"][2]["loss"] != multi["losses"][0]["loss"]
  errors = multihost_check.compare(multi, single, rtol=1e-5)
  assert not errors, "\n".join(errors[:30])


def test_slurm_one_task_per_node_uses_all_gpus():
  from path_jax.parallel.mesh import _slurm_local_devices
  per_node = {"SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NUM_NODES": "2"}
  assert _slurm_local_devices(dict(per_node, SLURM_GPUS_ON_NODE="8")) == {
      "local_device_ids": list(range(8))}
  assert _slurm_local_devices(dict(per_node, CUDA_VISIBLE_DEVICES="4,5,6")) == {
      "local_device_ids": [0, 1, 2]}
  # One task per GPU: jax's own choice (GPU SLURM_LOCALID) stands; an explicit list wins.
  assert _slurm_local_devices(dict(per_node, SLURM_STEP_NUM_TASKS="16",
                                   SLURM_GPUS_ON_NODE="8")) == {}
  assert _slurm_local_devices(dict(per_node, SLURM_GPUS_ON_NODE="8",
                                   JAX_LOCAL_DEVICE_IDS="0,1")) == {}
