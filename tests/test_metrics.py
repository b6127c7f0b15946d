"""Metric logging: event files on host 0, one-step-late fetches, throughput arithmetic, pauses,
the profiler window, analytic FLOPs per step."""
import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from path_jax import metrics as metrics_lib
from path_jax.profiling import Profiler


class RecordingWriter:
  """A clu-like writer that keeps what it is given."""

  def __init__(self):
    self.scalars: dict[int, dict[str, float]] = {}
    self.closed = False

  def write_scalars(self, step, scalars):
    self.scalars[step] = dict(scalars)

  def flush(self):
    pass

  def close(self):
    self.closed = True


class FakeClock:

  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def _step_metrics(step):
  """Host-side stand-ins of the step's metrics whose values identify the step."""
  return {"loss": np.float32(step), "loss/a": np.float32(2 * step), "a/acc": np.float32(0.1 * step),
          "skipped": np.int32(step // 3)}


def _read_events(workdir):
  import tensorflow as tf
  values: dict[int, dict[str, float]] = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        x = float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value
        values.setdefault(event.step, {})[v.tag] = x
  return values


def test_event_files_on_host0(tmp_path):
  workdir = str(tmp_path)
  logger = metrics_lib.MetricLogger(workdir, total_steps=4, log_every=2, flops_per_step=1e6,
                                    peak_flops_per_device=1e9, num_devices=8)
  given = {}
  for step in range(1, 5):
    m = {"loss": jnp.float32(step * 0.5), "loss/a": jnp.float32(step), "a/acc": jnp.float32(
        step / 10), "lr": jnp.float32(1e-3 * step), "grad_norm": jnp.float32(3.0),
         "skipped": jnp.int32(step)}
    given[step] = {k: float(v) for k, v in m.items()}
    logger.update(step, m, images={"a": 8}, data_wait_s=0.0,
                  data_stats={"a": {"epoch": 0, "skipped": 1, "batches": step}})
  logger.close()
  events = _read_events(workdir)
  assert sorted(events) == [2, 4]
  tags = set(events[4])
  for tag in ("loss", "loss/a", "a/acc", "lr", "grad_norm", "skipped", "images_per_s",
              "images_per_s/a", "steps_per_s", "mfu", "eta_s", "data_wait_fraction", "paused_s",
              "epoch/a", "skipped_examples/a", "batches/a"):
    assert tag in tags, tag
  # Means over each window's steps (1, 2) and (3, 4); the counter keeps its last value.
  for step, window in ((2, (1, 2)), (4, (3, 4))):
    for key in ("loss", "loss/a", "a/acc", "lr"):
      want = np.mean([given[s][key] for s in window])
      np.testing.assert_allclose(events[step][key], want, rtol=1e-6)
    assert events[step]["skipped"] == given[step]["skipped"]
  assert events[4]["batches/a"] == 4 and events[4]["skipped_examples/a"] == 1
  assert events[4]["eta_s"] == 0.0


def test_nothing_written_on_other_hosts(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda *a, **k: 1)
  logger = metrics_lib.MetricLogger(str(tmp_path), total_steps=2, log_every=1)
  for step in (1, 2):
    logger.update(step, {"loss": jnp.float32(step)}, images={"a": 2})
  logger.close()
  assert not logger.is_host0
  assert os.listdir(tmp_path) == []
  assert 2 in logger.written   # the values were still fetched and reduced


def test_metrics_fetched_one_step_late():
  fetched = []

  def fetch(dicts):
    fetched.append([int(d["loss"]) for d in dicts])
    return dicts

  writer = RecordingWriter()
  logger = metrics_lib.MetricLogger(None, total_steps=5, log_every=2, writer=writer, fetch=fetch)
  logger.update(1, _step_metrics(1))
  assert fetched == []                 # nothing waits on the step just given
  logger.update(2, _step_metrics(2))
  assert fetched == [[1]]              # first step: sets the time origin only
  assert writer.scalars == {}          # log step 2 is not fetched in its own update
  logger.update(3, _step_metrics(3))
  assert fetched == [[1], [2]] and list(writer.scalars) == [2]
  logger.update(4, _step_metrics(4))
  assert fetched == [[1], [2]]         # no fetch between log steps
  logger.update(5, _step_metrics(5))
  assert fetched == [[1], [2], [3, 4]] and list(writer.scalars) == [2, 4]
  assert logger.last_fetched_step == 4 and logger.last_fetched["loss"] == 4.0
  logger.close()
  assert fetched[-1] == [5] and list(writer.scalars) == [2, 4, 5] and writer.closed
  np.testing.assert_allclose(writer.scalars[4]["loss"], 3.5)
  assert writer.scalars[4]["skipped"] == 1     # 4 // 3, last value of the window


def test_rates_mfu_eta_and_pause_exclusion():
  clock, writer = FakeClock(), RecordingWriter()
  flops, peak, devices, total = 2e9, 1e10, 8, 10
  logger = metrics_lib.MetricLogger(None, total_steps=total, log_every=2, flops_per_step=flops,
                                    peak_flops_per_device=peak, num_devices=devices,
                                    writer=writer, clock=clock)
  images = {"a": 4, "b": 2}

  def update(step, wait=0.5):
    logger.update(step, _step_metrics(step), images=images, data_wait_s=wait,
                  data_stats={"a": {"epoch": 2, "skipped": 5}})

  clock.t = 5.0
  update(1)                       # compiled and ran during 0..5 s
  update(2)                       # fetches step 1 at t=5: the time origin
  clock.t = 7.0
  update(3)                       # fetches step 2 at t=7: window (1, 2] took 2 s
  s = writer.scalars[2]
  np.testing.assert_allclose(s["steps_per_s"], 1 / 2)
  np.testing.assert_allclose(s["images_per_s"], 6 / 2)
  np.testing.assert_allclose(s["images_per_s/a"], 4 / 2)
  np.testing.assert_allclose(s["images_per_s/b"], 2 / 2)
  np.testing.assert_allclose(s["images_per_s_per_device"], 6 / 2 / 8)
  np.testing.assert_allclose(s["mfu"], 2e9 / 2 / (1e10 * 8))
  np.testing.assert_allclose(s["eta_s"], (10 - 2) * 2.0)
  np.testing.assert_allclose(s["data_wait_fraction"], 0.5 / 2)
  np.testing.assert_allclose(s["loss"], 1.5)      # steps 1 and 2
  assert s["epoch/a"] == 2 and s["skipped_examples/a"] == 5

  clock.t = 9.0
  update(4)
  clock.t = 10.0
  with logger.paused():           # blocks on steps 3, 4 at t=10, then a 20 s checkpoint
    assert 4 in writer.scalars
    clock.t = 30.0
  s = writer.scalars[4]
  np.testing.assert_allclose(s["steps_per_s"], 2 / (10 - 7))
  np.testing.assert_allclose(s["data_wait_fraction"], 1.0 / (10 - 7))
  clock.t = 31.0
  update(5)
  clock.t = 32.0
  update(6)
  clock.t = 33.0
  update(7)                       # fetches 5, 6 at t=33 with 20 s paused since the last mark
  s = writer.scalars[6]
  np.testing.assert_allclose(s["steps_per_s"], 2 / (33 - 20 - 10))
  np.testing.assert_allclose(s["images_per_s"], 2 * 6 / 3.0)
  np.testing.assert_allclose(s["mfu"], 2 * 2e9 / 3.0 / (1e10 * 8))
  np.testing.assert_allclose(s["eta_s"], (10 - 6) * 3.0 / 2)
  np.testing.assert_allclose(s["paused_s"], 20.0)
  np.testing.assert_allclose(s["elapsed_s"], 33.0)
  line = metrics_lib.progress_line(6, total, s)
  assert line.startswith("step 6/10 (60.0%)") and "ETA 0m06s" in line and "MFU" in line
  assert "loss 5.5" in line


def test_chrono_and_durations():
  clock = FakeClock()
  chrono = metrics_lib.Chrono(clock)
  clock.t = 4.0
  with chrono.paused():
    clock.t = 10.0
    assert chrono.active_s == 4.0 and chrono.paused_s == 6.0
  clock.t = 12.0
  assert (chrono.active_s, chrono.paused_s, chrono.elapsed_s) == (6.0, 6.0, 12.0)
  with pytest.raises(RuntimeError, match="without a pause"):
    chrono.resume()
  assert metrics_lib.format_duration(3725) == "1h02m"
  assert metrics_lib.format_duration(95) == "1m35s"
  assert metrics_lib.format_duration(2 * 86400 + 3 * 3600) == "2d03h"
  assert metrics_lib.format_duration(float("nan")) == "?"


def test_profiler_traces_a_two_step_window(tmp_path):
  f = jax.jit(lambda x: jnp.tanh(x @ x))
  x = jnp.ones((8, 8), jnp.float32)
  prof = Profiler(str(tmp_path), start_step=2, num_steps=2)
  active, out = [], None
  for step in range(1, 6):
    prof.step(step, out)
    active.append(prof.active)
    with prof.annotate(step):
      out = f(x)
  prof.stop(out)
  assert active == [False, True, True, False, False]
  traces = glob.glob(os.path.join(tmp_path, "profile", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0

  off = Profiler(str(tmp_path / "off"), start_step=-1, num_steps=2)
  for step in range(1, 4):
    off.step(step, out)
  assert not os.path.exists(tmp_path / "off")


def _two_dataset_config(projector: bool):
  from configs import common
  cfg = common.base_config()
  cfg.model.backbone.variant = "mu/16"
  cfg.model.projector.enabled = projector
  cfg.datasets.reid = common.dataset("reid", "x/y", batch_size=4, num_classes=3,
                                     image_size=(64, 32))
  cfg.datasets.pose = common.dataset("pose", "x/y", batch_size=2, image_size=(64, 48))
  return cfg


def test_flops_per_step_is_the_hand_sum():
  from path_jax.model import flops, path
  # mu/16: width 64, depth 2, mlp 128, patch 16; projector width 64 // 8 over the 2 blocks.
  reid_vit = flops.vit_forward_flops(64, 2, 128, 16, 64, 32, cls_token=True)
  pose_vit = flops.vit_forward_flops(64, 2, 128, 16, 64, 48, cls_token=False)
  reid_proj = flops.projector_forward_flops(64, 8, 2, num_tokens=4 * 2 + 1)
  pose_proj = flops.projector_forward_flops(64, 8, 2, num_tokens=4 * 3)

  cfg = _two_dataset_config(projector=True)
  want = 4 * 3 * (reid_vit + reid_proj) + 2 * 3 * (pose_vit + pose_proj)
  got = metrics_lib.flops_per_step(cfg.model, cfg.datasets, heads=False)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  model = path.from_config(cfg)
  np.testing.assert_allclose(metrics_lib.flops_per_step(model, cfg.datasets, heads=False), want,
                             rtol=1e-12)

  cfg = _two_dataset_config(projector=False)
  np.testing.assert_allclose(metrics_lib.flops_per_step(cfg.model, cfg.datasets, heads=False),
                             4 * 3 * reid_vit + 2 * 3 * pose_vit, rtol=1e-12)
  # With heads: + 3 x each head's traced forward FLOPs per image.
  heads = sum(cfg.datasets[n].batch_size * 3 * metrics_lib.head_forward_flops(
      cfg.datasets[n].task, cfg.datasets[n], 64, (4, s), (64, 16 * s), n == "reid")
              for n, s in (("reid", 2), ("pose", 3)))
  assert heads > 0
  np.testing.assert_allclose(metrics_lib.flops_per_step(cfg.model, cfg.datasets),
                             4 * 3 * reid_vit + 2 * 3 * pose_vit + heads, rtol=1e-12)


def test_head_flops_are_the_hand_count():
  """Traced head FLOPs (jaxpr_flops) equal closed forms: the pose head's two phase-form
  deconvolutions (4 taps per output) + 1x1 conv, and the ReID classifier over padded classes."""
  from path_jax.model import flops
  from path_jax.tasks.pose import default_config as pose_config
  from path_jax.tasks.reid import default_config as reid_config
  c, (gh, gw) = 64, (4, 3)
  pose = pose_config()
  pose.num_joints, pose.deconv_features, pose.flip_pairs = 5, (16, 8), ((1, 2),)
  want = (2 * (2 * gh) * (2 * gw) * 16 * c * 4            # deconv 1: 4 taps of C in, 16 out
          + 2 * (4 * gh) * (4 * gw) * 8 * 16 * 4         # deconv 2
          + 2 * (4 * gh) * (4 * gw) * 5 * 8)             # 1x1 to joints
  got = metrics_lib.head_forward_flops("pose", pose, c, (gh, gw), (16 * gh, 16 * gw), False)
  assert got == want
  reid = reid_config()
  reid.num_classes, reid.classes_multiple_of = 10, 8
  got = metrics_lib.head_forward_flops("reid", reid, c, (gh, gw), (16 * gh, 16 * gw), True)
  assert got == 2 * c * 16       # classifier kernel [C, 16] (10 classes padded to 16)

  # Nested jaxprs: a scan body counts `length` times, a cond its larger branch.
  def f(x, w):
    y, _ = jax.lax.scan(lambda h, _: (h @ w, None), x, None, length=3)
    return jax.lax.cond(y.sum() > 0, lambda: y @ w, lambda: y)
  x, w = jnp.ones((2, 5)), jnp.ones((5, 5))
  assert flops.function_flops(f, x, w) == 4 * (2 * 2 * 5 * 5)
