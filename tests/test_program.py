"""The training program: config overrides, data checks, resume, preemption, export, finetune."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(args, env=None, timeout=900):
  e = dict(os.environ)
  e.update({"JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"})
  e.update(env or {})
  return subprocess.run([sys.executable, "-m", "path_jax.main", *args], cwd=ROOT, env=e,
                        capture_output=True, text=True, timeout=timeout)


def test_mistyped_override_names_the_nearest_key(tmp_path):
  r = _main(["--config=configs/demo.py", f"--workdir={tmp_path}",
             "--config.optimizer.peak_lrr=1e-3"], timeout=300)
  assert r.returncode != 0
  assert "peak_lr" in r.stderr and "peak_lrr" in r.stderr


def test_missing_data_names_the_path_and_the_command(tmp_path):
  r = _main(["--config=configs/demo.py", f"--workdir={tmp_path / 'w'}",
             f"--config.data_dir={tmp_path / 'nothing'}", "--config.train.num_steps=1"],
            timeout=300)
  assert r.returncode == 2
  # the demo's data is humanbench_mini: its own build command, once, and --config.data_dir
  assert r.stderr.count(f"python -m data.humanbench_mini.build_all --data_dir="
                        f"{tmp_path / 'nothing'}") == 1
  assert "--config.data_dir" in r.stderr and "Traceback" not in r.stderr
  assert "config.datasets.mini_market" in r.stderr   # the dataset whose data is missing
  assert not (tmp_path / "w").exists()


def test_config_override_reaches_the_config():
  from absl import flags
  from ml_collections import config_flags
  fv = flags.FlagValues()
  argv = ["prog", "--config=configs/demo.py", "--config.train.num_steps=7",
          "--config.datasets.mini_coco.batch_size=8"]
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True,
                                  sys_argv=argv)
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    fv(argv)
  finally:
    os.chdir(cwd)
  cfg = fv.config
  assert cfg.train.num_steps == 7 and cfg.datasets.mini_coco.batch_size == 8
  with pytest.raises(AttributeError):
    cfg.train.num_stepz = 3      # locked


# ------------------------------------------------------------------------------------------------
# Runs on real (tiny) humanbench_mini data.


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory):
  d = tmp_path_factory.mktemp("mini") / "tfds"
  from data.humanbench_mini import build_all
  build_all.build_all(str(d), size="tiny")
  return str(d)


def _tiny_config(data_dir, steps=4, **kw):
  """Two pretraining sets sharing one input shape: cheap to compile."""
  sys.path.insert(0, ROOT)
  from configs import demo
  cfg = demo.get_config("pretrain")
  for name in ("mini_market", "mini_lip", "mini_crowdhuman"):
    del cfg.datasets[name]
  cfg.data_dir = data_dir
  cfg.datasets.mini_coco.batch_size = 8
  cfg.datasets.mini_pa100k.batch_size = 8
  cfg.datasets.mini_pa100k.image_size = (128, 96)
  cfg.model.backbone.update(width=32, depth=2, num_heads=2, mlp_dim=64)
  cfg.train.num_steps = steps
  cfg.train.log_every = 2
  cfg.train.checkpoint_every = 2
  cfg.optimizer.schedule.total_steps = steps
  cfg.optimizer.schedule.warmup_steps = 1
  for k, v in kw.items():
    node = cfg
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return cfg


def _restore_params(workdir, cfg):
  from path_jax import checkpoint as ckpt_lib
  from path_jax import train
  from path_jax.state import abstract_train_state
  s = train.setup(cfg)
  abstract, _ = abstract_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules)
  with ckpt_lib.Checkpointer(workdir, save_every=1, keep=10) as c:
    state, meta = c.restore(abstract)
  return jax.device_get(state), meta


@pytest.mark.slow
@pytest.mark.parametrize("placement", ["shared", "slices"])
def test_resume_continues_exactly(mini_data, tmp_path, placement):
  """Interrupt at step 2 and resume to 4 == 4 steps uninterrupted: same params, same batches
  (in 'slices', each task group on its own rows of the 8 devices)."""
  from path_jax import train
  kw = {"placement.mode": placement, "placement.round_batches": True}
  full = str(tmp_path / "full")
  train.run(_tiny_config(mini_data, steps=4, **kw), full)
  part = str(tmp_path / "part")
  # Stopped after 2 of the same 4-step run (same schedule), then resumed to 4.
  train.run(_tiny_config(mini_data, steps=2, **{"optimizer.schedule.total_steps": 4}, **kw),
            part)
  train.run(_tiny_config(mini_data, steps=4, **kw), part)
  a, meta_a = _restore_params(full, _tiny_config(mini_data))
  b, meta_b = _restore_params(part, _tiny_config(mini_data))
  assert int(a.step) == int(b.step) == 4
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  jax.tree.map(np.testing.assert_array_equal, a.opt_state, b.opt_state)
  assert meta_a["examples_seen"] == meta_b["examples_seen"]


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(mini_data, tmp_path):
  workdir = tmp_path / "w"
  args = ["--config=configs/demo.py", f"--workdir={workdir}", f"--config.data_dir={mini_data}",
          "--config.train.num_steps=100000", "--config.optimizer.schedule.total_steps=100000",
          "--config.train.checkpoint_every=100000", "--config.train.log_every=1",
          "--config.model.backbone.depth=1", "--config.model.backbone.width=32",
          "--config.model.backbone.num_heads=2", "--config.model.backbone.mlp_dim=64",
          # the tiny data has 6 training identities: P x K = 4 x 4
          "--config.datasets.mini_market.batch_size=16"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "path_jax.main", *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 900
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if "step 2/" in line:          # training is under way
      proc.send_signal(signal.SIGTERM)
      break
    assert time.time() < deadline, "training did not start"
  out, _ = proc.communicate(timeout=600)
  text = "".join(lines) + out
  assert proc.returncode == 75, text[-3000:]   # preempted, checkpoint saved: requeue me
  assert "preemption" in text and "preempted at step" in text
  steps = sorted(int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit())
  assert steps and steps[-1] >= 2


@pytest.mark.slow
def test_pretrain_export_finetune_evaluate(mini_data, tmp_path):
  """The demo's path at a tiny size: pretrain -> export -> partial finetune -> evaluate."""
  from path_jax import train
  from configs import demo
  pre = _tiny_config(mini_data, steps=4, **{"train.eval_every": 2, "train.eval_batches": 1,
                                              "train.metrics_every": 2,
                                              "train.metrics_max_examples": 8,
                                              "train.profile.start_step": 1,
                                              "train.profile.num_steps": 1})
  train.run(pre, str(tmp_path / "pre"))
  # Task metrics during pretraining: the real evaluators on the first examples of each eval
  # split, every 2 steps, one results.json per step.
  for step in (2, 4):
    with open(tmp_path / "pre" / "eval_steps" / str(step) / "results.json") as f:
      metrics = json.load(f)
    assert set(metrics) == {"mini_coco", "mini_pa100k"}
    assert 0.0 <= metrics["mini_pa100k"]["mA"] <= 1.0 and metrics["mini_coco"]["EPE"] > 0
    # bounded: whole batches of the eval batch size (8) until 8 examples are seen
    assert all(8 <= m["num_examples"] <= 8 + 8 for m in metrics.values()), metrics
  # The in-training validation hook and the profiling window ran.
  assert list((tmp_path / "pre" / "profile").rglob("*.xplane.pb"))
  exp = _tiny_config(mini_data, steps=4, mode="export")
  out = train.run(exp, str(tmp_path / "pre"))
  assert os.path.exists(os.path.join(out, "backbone.json"))
  assert os.path.exists(os.path.join(out, "backbone.safetensors"))
  with open(os.path.join(out, train.EXPORT_REPORT)) as f:
    assert json.load(f)["step"] == 4 and not train.export_report(str(tmp_path / "pre"), 4,
                                                                    [])["fallback"]
  # Garble the newest step's largest state file at the same size: the export falls back to
  # step 2 and says so in its report and message.
  state_files = [p for p in (tmp_path / "pre" / "checkpoints" / "4" / "state").rglob("*")
                 if p.is_file()]
  biggest = max(state_files, key=lambda p: p.stat().st_size)
  data = bytearray(biggest.read_bytes())
  mid = len(data) // 2
  data[mid:mid + 64] = bytes(b ^ 0xFF for b in data[mid:mid + 64])
  biggest.write_bytes(bytes(data))
  exp2 = _tiny_config(mini_data, steps=4, mode="export")
  exp2.export.output = str(tmp_path / "fallback_export")
  out2 = train.run(exp2, str(tmp_path / "pre"))
  with open(os.path.join(out2, train.EXPORT_REPORT)) as f:
    report = json.load(f)
  assert report["step"] == 2 and report["fallback"]
  assert [r["step"] for r in report["newer_steps_set_aside"]] == [4]
  assert "FALLBACK EXPORT" in train.export_message(report, out2)
  assert (tmp_path / "pre" / "checkpoints.corrupt" / "4").is_dir()
  ft = demo.get_config("finetune")
  ft.data_dir = mini_data
  ft.model.backbone.update(width=32, depth=2, num_heads=2, mlp_dim=64)
  ft.train.num_steps = 3
  ft.optimizer.schedule.total_steps = 3
  ft.optimizer.schedule.warmup_steps = 1
  ft.train.log_every = 1
  ft.datasets.mini_dukemtmc.batch_size = 8
  ft.datasets.mini_peta.batch_size = 8
  # Finetune from the PyTorch-layout file (MAE/timm keys): the path a released checkpoint takes.
  ft.finetune.init_from = os.path.join(out, "backbone.safetensors")
  result = train.run(ft, str(tmp_path / "ft"))
  assert set(result["eval"]) == {"mini_dukemtmc", "mini_peta"}
  assert 0.0 <= result["eval"]["mini_dukemtmc"]["rank1"] <= 1.0
  assert 0.0 <= result["eval"]["mini_peta"]["mA"] <= 1.0
  with open(tmp_path / "ft" / "eval" / "results.json") as f:
    assert json.load(f) == result["eval"]
  # Partial protocol: blocks before the last 2 (here: none of 2) and the patch embedding frozen.
  a, _ = _restore_params(str(tmp_path / "ft"), ft)
  from path_jax import export as export_lib
  loaded, _ = export_lib.load_backbone(out)
  np.testing.assert_array_equal(a.params["backbone"]["patch_embed"]["kernel"],
                                loaded["patch_embed"]["kernel"])
  assert not np.array_equal(a.params["backbone"]["norm"]["scale"], loaded["norm"]["scale"])


@pytest.mark.slow
def test_pretraining_starts_from_mae_weights_once(mini_data, tmp_path, monkeypatch):
  """config.model.init_from: an MAE-layout .pth ({'model': sd} with the decoder and mask token
  MAE ships) becomes the backbone of a fresh pretraining run; heads stay initialised; a resumed
  run does not re-apply it."""
  pytest.importorskip("torch")
  from path_jax import train
  from path_jax.model import convert
  from path_jax.model import path as path_lib
  # The "MAE" weights: another seed's backbone in the timm/MAE layout, plus MAE's extra keys.
  other = _tiny_config(mini_data, steps=2, seed=7)
  s7, _ = train.initial_state(train.setup(other))
  sd = convert.export_backbone(jax.device_get(path_lib.backbone_params(s7.params)))
  width = sd["cls_token"].shape[-1]
  sd.update({"mask_token": np.zeros((1, 1, width), np.float32),
             "decoder_embed.weight": np.ones((16, width), np.float32),
             "decoder_pos_embed": np.zeros((1, 197, 16), np.float32)})
  mae = tmp_path / "mae_pretrain_vit_tiny.pth"
  convert.save_state_dict(sd, mae)

  cfg = _tiny_config(mini_data, steps=2, **{"model.init_from": str(mae)})
  fresh, _ = train.initial_state(train.setup(cfg))
  plain, _ = train.initial_state(train.setup(_tiny_config(mini_data, steps=2)))
  want = jax.device_get(path_lib.backbone_params(s7.params))
  got = jax.device_get(path_lib.backbone_params(fresh.params))
  jax.tree.map(np.testing.assert_array_equal, got, want)
  heads = {k: v for k, v in fresh.params.items() if k != "backbone"}
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(heads),
               jax.device_get({k: v for k, v in plain.params.items() if k != "backbone"}))

  workdir = str(tmp_path / "run")
  train.run(cfg, workdir)

  def no_fresh_state(*a, **k):
    raise AssertionError("a resumed run must not initialise (nor re-load init_from)")
  monkeypatch.setattr(train, "initial_state", no_fresh_state)
  more = _tiny_config(mini_data, steps=4, **{"model.init_from": str(mae)})
  assert train.run(more, workdir)["step"] == 4
