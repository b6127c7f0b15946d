"""Operator-facing behaviour: config errors before anything is written (naming the key), the
missing-data and wrong-data-kind messages, the command line (--help, short errors, exit codes),
bounded exit after SIGTERM when the main thread is stuck, and the quiet console."""
import logging
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _demo(arg="pretrain", **overrides):
  from configs import demo
  cfg = demo.get_config(arg)
  for key, value in overrides.items():
    node = cfg
    *path, last = key.split(".")
    for p in path:
      node = node[p]
    node[last] = value
  return cfg


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory):
  d = tmp_path_factory.mktemp("mini_op") / "tfds"
  from data.humanbench_mini import build_all
  build_all.build_all(str(d), size="tiny", only=("mini_market", "mini_coco"))
  return str(d)


def _main(*args, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "path_jax.main", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


# ---- Config errors ------------------------------------------------------------------------------


def test_every_field_problem_listed_at_once_naming_the_key(tmp_path):
  from path_jax import config_check, train
  cfg = _demo(**{"datasets.mini_coco.batch_size": 0, "datasets.mini_market.images_per_identity": 3,
                 "datasets.mini_lip.task": "parsng", "train.keep_checkpoints": 0,
                 "datasets.mini_pa100k.flip_prob": 1.5, "optimizer.peak_lr": -1.0,
                 "model.backbone.dtype": "bf16", "input.num_workers": -1})
  from path_jax.parallel import mesh as mesh_lib
  mesh = mesh_lib.from_config(cfg.mesh)
  with pytest.raises(config_check.ConfigError) as e:
    train.check_config(cfg, mesh, check_data=False)
  text = str(e.value)
  for key in ("config.datasets.mini_coco.batch_size=0",
              "config.datasets.mini_market.batch_size=32 is not a multiple of "
              "config.datasets.mini_market.images_per_identity=3",
              "config.datasets.mini_lip.task='parsng'", "did you mean 'parsing'",
              "config.train.keep_checkpoints=0", "config.datasets.mini_pa100k.flip_prob=1.5",
              "config.optimizer.peak_lr=-1.0", "config.model.backbone.dtype='bf16'",
              "config.input.num_workers=-1"):
    assert key in text, (key, text)
  assert len(e.value.problems) == 8, e.value.problems


def test_a_valid_config_has_no_field_problems():
  from path_jax import config_check
  for arg in ("pretrain", "finetune"):
    assert config_check.field_problems(_demo(arg)) == []
  from configs import vitb
  assert config_check.field_problems(vitb.get_config("")) == []


def test_bad_batch_size_and_task_fail_before_the_workdir_exists(tmp_path):
  workdir = tmp_path / "run"
  r = _main("--config=configs/demo.py", f"--workdir={workdir}",
            "--config.datasets.mini_coco.batch_size=0", "--config.datasets.mini_market.task=foo")
  assert r.returncode == 2, r.stderr[-2000:]
  assert "config.datasets.mini_coco.batch_size=0" in r.stderr
  assert "config.datasets.mini_market.task='foo'" in r.stderr and "'reid'" in r.stderr
  assert "Traceback" not in r.stderr
  assert not workdir.exists()


def test_mistyped_override_is_one_short_line():
  r = _main("--config=configs/demo.py", "--workdir=/nonexistent/x", "--config.train.num_stepz=3")
  assert r.returncode == 2
  assert "Traceback" not in r.stderr and 'Did you mean "num_steps"' in r.stderr
  r = _main("--config=configs/demo.py:nonsense", "--workdir=/nonexistent/x")
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert "takes 'pretrain' or 'finetune'" in r.stderr


def test_help_exits_zero_and_lists_modes_and_configs():
  r = _main("--help")
  assert r.returncode == 0, r.stderr
  for word in ("pretrain", "finetune", "evaluate", "export", "configs/vitb.py",
               "configs/finetune/", "--print_config", "75"):
    assert word in r.stdout, word
  r = _main("--config=configs/demo.py:finetune", "--print_config",
            "--config.train.num_steps=7")
  assert r.returncode == 0 and "num_steps: 7" in r.stdout


def test_missing_data_one_line_per_dataset_with_the_right_command(tmp_path):
  from path_jax import train
  lines = train.data_problems(_demo(data_dir=str(tmp_path / "none")))
  missing = [ln for ln in lines if "is not prepared" in ln]
  assert len(missing) == 5   # one per dataset, not one per split
  assert any(f"python -m data.humanbench_mini.build_all --data_dir={tmp_path / 'none'}" in ln
             for ln in lines)
  assert any("--config.data_dir" in ln for ln in lines)
  from configs.finetune import market1501
  real = market1501.get_config()
  real.data_dir = str(tmp_path / "none")
  lines = train.data_problems(real)
  assert any("python data/build.py reid/market1501" in ln for ln in lines), lines


def test_pretraining_needs_evaluation_splits_only_when_it_evaluates(tmp_path):
  """configs/vitb.py's ReID row is evaluated on Market-1501's query/gallery (another prepared
  dataset): a pretraining run that never evaluates must not demand it."""
  from path_jax import train
  from configs import vitb
  cfg = vitb.get_config()
  cfg.data_dir = str(tmp_path / "none")
  quiet = [ln for ln in train.data_problems(cfg) if "reid/market1501" in ln]
  assert quiet == []
  cfg.train.metrics_every = 100
  loud = [ln for ln in train.data_problems(cfg) if "reid/market1501" in ln]
  assert any("config.datasets.reid_4sets: 'reid/market1501' is not prepared" in ln
             for ln in loud), loud


def test_mini_data_refused_under_a_real_config_and_the_reverse(mini_data, tmp_path):
  from path_jax import train
  from configs.finetune import market1501
  real = market1501.get_config()
  real.data_dir = mini_data
  lines = train.data_problems(real)
  assert any("holds humanbench_mini data" in ln and "config.data_kind='real'" in ln
             for ln in lines), lines
  mini = _demo()
  for name in ("mini_lip", "mini_pa100k", "mini_crowdhuman"):
    del mini.datasets[name]
  mini.data_dir = mini_data
  assert train.data_problems(mini) == []
  # The same folder marked as a publisher build: refused under the mini config.
  from data import build as build_lib
  from path_jax.input import sources
  folder = sources.dataset_dir("pose/coco", mini_data)
  report = os.path.join(folder, "build_report.json")
  import json
  with open(report) as f:
    rec = json.load(f)
  assert rec["source"] == "humanbench_mini"
  rec["source"] = "publisher"
  with open(report, "w") as f:
    json.dump(rec, f)
  try:
    assert build_lib.built_source(folder) == "publisher"
    lines = train.data_problems(mini)
    assert any("holds real data" in ln for ln in lines), lines
    # A mini build into a folder holding the other kind is refused unless overwriting.
    with pytest.raises(ValueError, match="--overwrite"):
      build_lib.build("pose/coco", str(tmp_path), mini_data, source="humanbench_mini")
  finally:
    rec["source"] = "humanbench_mini"
    with open(report, "w") as f:
      json.dump(rec, f)


# ---- Bounded exit after SIGTERM --------------------------------------------------------------


def test_sigterm_while_the_device_hangs_exits_in_bounded_time(tmp_path):
  """A step that never finishes (an endless in-graph loop): the first SIGTERM is noticed at
  once, the run says what it waits for, and exits with 128 + 15 after stop_timeout_s."""
  script = textwrap.dedent("""
      import signal, sys, threading, time, os
      import jax, jax.numpy as jnp
      from path_jax import checkpoint, watchdog
      hang = jax.jit(lambda x: jax.lax.while_loop(lambda c: c >= 0, lambda c: c + 1.0, x))
      hang(jnp.float32(-1.0)).block_until_ready()   # compiled, terminates
      with checkpoint.PreemptionHandler(), watchdog.StopWatchdog(3.0, report_every_s=1.0) as w:
        w.phase("step 7: waiting for the device")
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
        print("blocking", flush=True)
        hang(jnp.float32(0.0)).block_until_ready()   # never returns
      print("unreachable", flush=True)
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 128 + 15, (r.returncode, r.stderr[-2000:])
  assert "blocking" in r.stdout and "unreachable" not in r.stdout
  assert "waiting for: step 7: waiting for the device" in r.stderr
  assert "has not stopped" in r.stderr and "stop_timeout_s=3" in r.stderr


def test_watchdog_is_silent_without_a_signal():
  import signal
  import time
  from path_jax import watchdog
  with watchdog.StopWatchdog(0.2, report_every_s=0.05) as w:
    w.phase("working")
    time.sleep(0.5)   # past the timeout, but no signal: no forced exit (we are still here)
  assert not w._thread.is_alive()
  assert signal.set_wakeup_fd(-1) == -1   # the previous wakeup fd is back


# ---- Console ----------------------------------------------------------------------------------


def test_library_info_lines_are_hidden_ours_and_warnings_kept():
  from path_jax import logs
  handler = logging.StreamHandler()
  records = []
  handler.emit = records.append
  root = logging.getLogger()
  root.addHandler(handler)
  try:
    logs.setup(verbose=False)

    def rec(path, level, msg):
      r = logging.LogRecord("absl", level, path, 1, msg, None, None)
      for f in handler.filters:
        if not f.filter(r):
          return False
      return True

    lib = os.path.join(os.path.dirname(logging.__file__), "site-packages", "orbax", "x.py")
    ours = os.path.join(ROOT, "path_jax", "train.py")
    assert not rec(lib, logging.INFO, "[process=0] Saving item ...")
    assert rec(lib, logging.WARNING, "a real warning")
    assert not rec(lib, logging.WARNING, "OpenCV is not installed. We recommend ...")
    assert rec(ours, logging.INFO, "step 10/300")
    logs.setup(verbose=True)
    assert rec(lib, logging.INFO, "[process=0] Saving item ...")
  finally:
    root.removeHandler(handler)
    logs.setup(verbose=False)


# ---- Preemption exit code and the SLURM requeue ------------------------------------------------


def _fake_slurm(tmp_path, srun_body):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text("#!/usr/bin/env bash\n" + srun_body)
  (bin_dir / "scontrol").write_text(f"#!/usr/bin/env bash\necho \"$@\" >> {tmp_path}/scontrol\n")
  for f in ("srun", "scontrol"):
    os.chmod(bin_dir / f, 0o755)
  return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
              SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1", SLURM_JOB_NODELIST="n1")


@pytest.mark.parametrize("srun_rc,expect_rc,requeued", [(75, 0, True), (0, 0, False),
                                                         (1, 1, False)])
def test_slurm_requeues_on_exit_code_75_only(tmp_path, srun_rc, expect_rc, requeued):
  env = _fake_slurm(tmp_path, f"exit {srun_rc}\n")
  r = subprocess.run(["bash", "launch/slurm.sbatch", "--", "--config=c", "--workdir=w"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
  assert r.returncode == expect_rc, r.stderr
  assert (tmp_path / "scontrol").exists() == requeued
  if requeued:
    assert (tmp_path / "scontrol").read_text().split() == ["requeue", "4242"]


def test_slurm_passes_sigterm_to_the_tasks_then_requeues(tmp_path):
  import signal
  import time
  # A task that saves and exits 75 when it gets SIGTERM (as path_jax.main does).
  env = _fake_slurm(tmp_path, "trap 'echo saved; exit 75' TERM\necho started\n"
                              "while true; do sleep 0.1; done\n")
  p = subprocess.Popen(["bash", "launch/slurm.sbatch", "--", "--config=c", "--workdir=w"],
                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
  assert p.stdout.readline().strip() == "started"
  time.sleep(0.3)
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=60)
  assert p.returncode == 0, err
  assert "saved" in out and "requeueing job 4242" in err
  assert (tmp_path / "scontrol").read_text().split() == ["requeue", "4242"]


def test_demo_update_readme_replaces_only_its_block(tmp_path):
  from path_jax import demo
  readme = tmp_path / "README.md"
  readme.write_text(f"intro\n{demo.README_BEGIN}\nold table\n{demo.README_END}\nrest\n")
  sec = dict(total=301.4, data=12.0, pretrain=250.2, export=3.1, pretrain_eval=9.0,
             finetune_and_eval=27.1)
  demo.update_readme("| new | table |", sec, 0, path=str(readme))
  text = readme.read_text()
  assert text.startswith("intro\n") and text.endswith("rest\n") and "old table" not in text
  assert "| new | table |" in text and "301 s in total" in text and "CPU cores" in text
  readme.write_text("no markers\n")
  with pytest.raises(ValueError, match="demo:begin"):
    demo.update_readme("x", sec, 0, path=str(readme))


def test_missing_pretraining_init_from_is_a_config_error(tmp_path):
  from path_jax import config_check
  cfg = _demo(**{"model.init_from": str(tmp_path / "mae_pretrain_vit_base.pth")})
  problems = config_check.field_problems(cfg)
  assert len(problems) == 1 and problems[0].startswith("config.model.init_from=")
  (tmp_path / "mae_pretrain_vit_base.pth").write_bytes(b"")
  assert config_check.field_problems(cfg) == []
