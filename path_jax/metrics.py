"""Training metrics: one-step-late fetching, clu writers on host 0, throughput, MFU, ETA.

The training loop hands :class:`MetricLogger` every step's device metrics (the dict the jitted
step returns, still on device) and what the host knows about the step (images per dataset, seconds
spent waiting for the batch, the input iterator's counters). The logger never blocks on the step
it was just given: it keeps the arrays and fetches them one step late, when the *next* step has
already been dispatched, so the device always has work queued while the host waits (maxtext's
scheme). Between log steps it only appends arrays to a list; at most ``log_every`` scalar dicts are
kept.

Timing (:class:`Chrono`, after big_vision's) measures the active wall time of the loop: spans in
``logger.paused()`` (checkpoints, evaluation) are excluded, so images/s, MFU and ETA describe
training alone. Rates are measured between fetch points: a fetch of step ``s`` returns when the
device has finished step ``s``, so the time between two fetches is the device time of the steps in
between (or the host's, when the input pipeline is the bottleneck). The first step the logger sees
(compilation) only sets the time origin.

Scalars written at a log step ``s`` (window = the steps since the previous log step):

  loss, loss/<ds>, <ds>/<metric>, loss_weight/<ds>, lr, grad_norm, param_norm, finite
                          means over the window of what the step returned
  skipped, consecutive_skipped
                          value at step ``s`` (counters, not averaged)
  steps_per_s, images_per_s, images_per_s/<ds>, images_per_s_per_device
  mfu                     flops_per_step x steps / active seconds / (peak x devices)
  eta_s                   (total_steps - s) x active seconds per step of the window
  data_wait_fraction      seconds waiting for batches / active seconds of the window
  paused_s, elapsed_s     total paused and total wall seconds since the logger started
  epoch/<ds>, skipped_examples/<ds>, batches/<ds>
                          the input iterator's counters (``MixtureIterator.stats()``)

Also here: :func:`flops_per_step`, the analytic FLOPs of one training step, for MFU.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any, Callable, Iterator, Mapping

import numpy as np

log = logging.getLogger(__name__)

# Step metrics that are running counters: written as their value at the log step, not a mean.
LAST_VALUE_KEYS = ("skipped", "consecutive_skipped")


class Chrono:
  """Wall-clock accounting with paused spans excluded (seconds, from ``clock``).

  ``active_s`` = wall seconds since construction minus seconds spent paused; while paused it
  stays at its value when the pause began. ``clock`` is injectable for tests.
  """

  def __init__(self, clock: Callable[[], float] = time.perf_counter):
    self._clock = clock
    self._t0 = clock()
    self._paused_total = 0.0
    self._pause_start: float | None = None

  @property
  def is_paused(self) -> bool:
    return self._pause_start is not None

  def pause(self) -> None:
    if self._pause_start is not None:
      raise RuntimeError("Chrono.pause() while already paused; pair every pause() with resume()")
    self._pause_start = self._clock()

  def resume(self) -> None:
    if self._pause_start is None:
      raise RuntimeError("Chrono.resume() without a pause() before it")
    self._paused_total += self._clock() - self._pause_start
    self._pause_start = None

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    self.pause()
    try:
      yield
    finally:
      self.resume()

  @property
  def paused_s(self) -> float:
    """Seconds spent paused so far (the running pause included)."""
    running = self._clock() - self._pause_start if self._pause_start is not None else 0.0
    return self._paused_total + running

  @property
  def elapsed_s(self) -> float:
    """Wall seconds since construction."""
    return self._clock() - self._t0

  @property
  def active_s(self) -> float:
    """Wall seconds since construction that were not paused."""
    return self.elapsed_s - self.paused_s


def format_duration(seconds: float) -> str:
  """``3725`` -> ``'1h02m'``, ``95`` -> ``'1m35s'``; '?' when unknown."""
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  s = int(round(seconds))
  d, s = divmod(s, 86400)
  h, s = divmod(s, 3600)
  m, s = divmod(s, 60)
  if d:
    return f"{d}d{h:02d}h"
  if h:
    return f"{h}h{m:02d}m"
  return f"{m}m{s:02d}s"


def window_rates(*, steps: int, active_s: float, images: Mapping[str, float], data_wait_s: float,
                 remaining_steps: int, flops_per_step: float | None,
                 peak_flops_per_device: float | None, num_devices: int) -> dict[str, float]:
  """Throughput scalars of one log window (pure arithmetic; see the module docstring).

  ``steps`` steps took ``active_s`` seconds (pauses excluded) and consumed ``images[ds]`` images
  of each dataset; ``data_wait_s`` of those seconds the host waited for input.
  """
  if steps <= 0 or active_s <= 0:
    return {}
  total_images = float(sum(images.values()))
  out = {
      "steps_per_s": steps / active_s,
      "images_per_s": total_images / active_s,
      "images_per_s_per_device": total_images / active_s / num_devices,
      "eta_s": remaining_steps * active_s / steps,
      "data_wait_fraction": data_wait_s / active_s,
  }
  for name, n in images.items():
    out[f"images_per_s/{name}"] = n / active_s
  if flops_per_step and peak_flops_per_device and math.isfinite(peak_flops_per_device):
    out["mfu"] = flops_per_step * steps / active_s / (peak_flops_per_device * num_devices)
  return out


def _mean_metrics(entries: list[Mapping[str, Any]]) -> dict[str, float]:
  """Means over steps of each scalar (over the steps that have it); counters take the last value."""
  sums: dict[str, float] = {}
  counts: dict[str, int] = {}
  last: dict[str, float] = {}
  for m in entries:
    for k, v in m.items():
      v = float(np.asarray(v))
      if k in LAST_VALUE_KEYS:
        last[k] = v
      else:
        sums[k] = sums.get(k, 0.0) + v
        counts[k] = counts.get(k, 0) + 1
  out = {k: sums[k] / counts[k] for k in sums}
  out.update(last)
  return out


class MetricLogger:
  """Writes training scalars every ``log_every`` steps; see the module docstring for the tags.

  Args:
    workdir: where the TensorBoard event files go (host 0 only).
    total_steps: the run's last step, for ETA and the progress line.
    log_every: log period in steps; the last step (``total_steps``) is always a log step.
    flops_per_step: analytic FLOPs of one training step (:func:`flops_per_step`); None = no MFU.
    peak_flops_per_device: peak FLOP/s of one device (``path_jax.bench.device_peak``).
    num_devices: devices doing the step's work (default ``jax.device_count()``).
    writer: a clu ``MetricWriter``; default ``create_default_writer(workdir, just_logging=
      jax.process_index() > 0)`` (TensorBoard + console on host 0, console elsewhere).
    clock: seconds clock (tests pass a fake one).
    fetch: device -> host transfer of a list of metric dicts (default ``jax.device_get``).

  Use::

    logger = MetricLogger(workdir, total_steps, log_every, flops_per_step=f,
                          peak_flops_per_device=p)
    for step in range(first, total + 1):
      t = time.perf_counter(); batch = next(it); wait = time.perf_counter() - t
      state, metrics = train_step(state, batch, ...)
      logger.update(step, metrics, images={name: bs, ...}, data_wait_s=wait,
                    data_stats=it.stats())
      if logger.last_fetched:   # host values one step late, no extra sync
        check_skips(logger.last_fetched, max_consecutive, logger.last_fetched_step)
      if step % checkpoint_every == 0:
        with logger.paused():
          save(...)
    logger.close()
  """

  def __init__(self, workdir: str | None, total_steps: int, log_every: int, *,
               flops_per_step: float | None = None, peak_flops_per_device: float | None = None,
               num_devices: int | None = None, writer: Any = None,
               clock: Callable[[], float] = time.perf_counter,
               fetch: Callable[[Any], Any] | None = None):
    if log_every < 1:
      raise ValueError(f"log_every must be >= 1 (config.train.log_every), got {log_every}")
    import jax
    self.is_host0 = jax.process_index() == 0
    if writer is None:
      # clu imports TensorFlow (~20 s): only when a logger is actually built.
      from clu import metric_writers
      writer = metric_writers.create_default_writer(workdir, just_logging=not self.is_host0)
    self.writer = writer
    self.total_steps = int(total_steps)
    self.log_every = int(log_every)
    self.flops_per_step = flops_per_step
    self.peak_flops_per_device = peak_flops_per_device
    self.num_devices = int(num_devices or jax.device_count())
    self.chrono = Chrono(clock)
    self._fetch = fetch or jax.device_get
    # Steps given but not yet fetched: (step, device metrics, host info).
    self._pending: list[tuple[int, Any, dict]] = []
    # Fetched steps not yet written: (step, host metrics, host info).
    self._window: list[tuple[int, dict, dict]] = []
    self._mark: tuple[int, float] | None = None   # (step, active_s) of the last timing point
    self._log_pending: int | None = None          # a log step waiting for its fetch
    self._data_stats: Mapping[str, Mapping[str, float]] | None = None
    self._last_fetch_t = 0.0
    #: Host values of the most recently fetched step (e.g. for ``step.check_skips``).
    self.last_fetched: dict[str, float] = {}
    self.last_fetched_step: int | None = None
    self.written: dict[int, dict[str, float]] = {}   # last few writes, for tests and callers
    self._max_written = 4

  def is_log_step(self, step: int) -> bool:
    return step % self.log_every == 0 or step == self.total_steps

  def update(self, step: int, metrics: Mapping[str, Any], *,
             images: Mapping[str, int] | None = None, data_wait_s: float = 0.0,
             data_stats: Mapping[str, Mapping[str, float]] | None = None) -> None:
    """Records step ``step``: its device ``metrics`` (not fetched now), ``images`` of each dataset
    in the step, ``data_wait_s`` seconds the host waited for its batch, the input counters.

    Fetches and writes the previous log step (or sets the time origin after the first step).
    """
    if self._pending and step <= self._pending[-1][0]:
      raise ValueError(f"MetricLogger.update: step {step} after step {self._pending[-1][0]}; "
                       "steps must increase")
    if self._log_pending is not None or self._mark is None:
      self._sync()
    self._pending.append((int(step), metrics, dict(images=dict(images or {}),
                                                   data_wait_s=float(data_wait_s))))
    if data_stats is not None:
      self._data_stats = data_stats
    if self.is_log_step(step):
      self._log_pending = int(step)

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Excludes the enclosed span (checkpointing, evaluation) from throughput and ETA.

    Blocks on the steps already dispatched first, so their device time counts as training.
    """
    self._sync()
    with self.chrono.paused():
      yield

  def close(self) -> None:
    """Fetches what is left, writes the last window if it was not written, closes the writer."""
    self._sync()
    if self._window:
      self._write(self._window[-1][0], self._last_fetch_t)
    self.writer.flush()
    self.writer.close()

  # ------------------------------------------------------------------------------------------

  def _sync(self) -> None:
    """Fetches every pending step (blocks until the device finished them); writes a due log."""
    if not self._pending:
      return
    host = self._fetch([m for _, m, _ in self._pending])
    now = self._last_fetch_t = self.chrono.active_s
    for (step, _, info), values in zip(self._pending, host):
      self._window.append((step, dict(values), info))
    self._pending = []
    last_step = self._window[-1][0]
    self.last_fetched = {k: float(np.asarray(v)) for k, v in self._window[-1][1].items()}
    self.last_fetched_step = last_step
    if self._mark is None:
      # The first step includes compilation: it only starts the clock.
      self._mark = (last_step, now)
    if self._log_pending is not None and last_step >= self._log_pending:
      self._write(self._log_pending, now)
      self._log_pending = None

  def _write(self, step: int, now: float) -> None:
    """Writes the fetched steps up to ``step``; ``now`` = active seconds when they were fetched."""
    entries = [e for e in self._window if e[0] <= step]
    self._window = [e for e in self._window if e[0] > step]
    scalars = _mean_metrics([m for _, m, _ in entries])
    mark_step, mark_t = self._mark
    timed = [info for s, _, info in entries if s > mark_step]
    if timed:
      images: dict[str, float] = {}
      for info in timed:
        for name, n in info["images"].items():
          images[name] = images.get(name, 0.0) + n
      scalars.update(window_rates(
          steps=step - mark_step, active_s=now - mark_t, images=images,
          data_wait_s=sum(info["data_wait_s"] for info in timed),
          remaining_steps=max(0, self.total_steps - step), flops_per_step=self.flops_per_step,
          peak_flops_per_device=self.peak_flops_per_device, num_devices=self.num_devices))
      self._mark = (step, now)
    scalars["paused_s"] = self.chrono.paused_s
    scalars["elapsed_s"] = self.chrono.elapsed_s
    for name, counters in (self._data_stats or {}).items():
      for key, value in counters.items():
        tag = "skipped_examples" if key == "skipped" else key
        scalars[f"{tag}/{name}"] = float(value)
    self.writer.write_scalars(step, scalars)
    self.written[step] = scalars
    while len(self.written) > self._max_written:
      self.written.pop(min(self.written))
    if self.is_host0:
      log.info(progress_line(step, self.total_steps, scalars))


def progress_line(step: int, total_steps: int, scalars: Mapping[str, float]) -> str:
  """One console line: step/total, rates, MFU, loss, ETA, data wait."""
  parts = [f"step {step}/{total_steps} ({100.0 * step / max(1, total_steps):.1f}%)"]
  if "steps_per_s" in scalars:
    parts.append(f"{scalars['steps_per_s']:.3g} steps/s {scalars['images_per_s']:.4g} img/s")
  if "mfu" in scalars:
    parts.append(f"MFU {100.0 * scalars['mfu']:.1f}%")
  if "loss" in scalars:
    parts.append(f"loss {scalars['loss']:.4g}")
  if "eta_s" in scalars:
    parts.append(f"ETA {format_duration(scalars['eta_s'])}")
  if "data_wait_fraction" in scalars:
    parts.append(f"data wait {100.0 * scalars['data_wait_fraction']:.0f}%")
  return " | ".join(parts)


# ----------------------------------------------------------------------------------------------
# Analytic FLOPs.


def head_forward_flops(task_name: str, cfg: Mapping[str, Any], width: int,
                       grid: tuple[int, int], image_hw: tuple[int, int], use_cls: bool) -> float:
  """Forward FLOPs of one image through a dataset's head (traced, not compiled: the heads have
  no shared closed form; see :func:`path_jax.model.flops.jaxpr_flops`)."""
  import jax
  import jax.numpy as jnp
  from path_jax import tasks as tasks_lib
  from path_jax.model import flops

  task = tasks_lib.get(task_name)
  head = task.make_head(cfg)
  tokens = jax.ShapeDtypeStruct((1, grid[0] * grid[1], width), jnp.float32)
  cls = jax.ShapeDtypeStruct((1, width), jnp.float32) if use_cls else None

  def inputs(t, c):
    return tasks_lib.HeadInputs(tokens=t, grid=tuple(grid), image_hw=tuple(image_hw), cls=c)

  variables = jax.eval_shape(lambda t, c: head.init(jax.random.key(0), inputs(t, c), train=False),
                             tokens, cls)
  return flops.function_flops(lambda v, t, c: head.apply(v, inputs(t, c), train=False),
                              variables, tokens, cls)


def flops_per_step(model: Any, datasets: Mapping[str, Mapping[str, Any]], *,
                   heads: bool = True) -> float:
  """FLOPs of one training step (forward + backward = 3 x forward; 1 multiply-add = 2 FLOPs).

  ``model`` is a :class:`path_jax.model.path.PATHModel` or the ``config.model`` subtree
  (``backbone`` and ``projector``); ``datasets`` the ``config.datasets`` subtrees. Sums, over the
  datasets, ``batch_size x 3 x`` (backbone forward FLOPs of one image at the dataset's
  ``image_size``, with the cls token when its task uses it, + the projector's forward FLOPs when
  projectors are enabled + the head's forward FLOPs when ``heads``, traced with
  :func:`head_forward_flops`). Losses, target matching and the optimizer update are left out.
  The ladder projector is counted like the paper projector over the same layers (its step count
  is one fewer block: a small over-count).
  """
  from path_jax import tasks as tasks_lib
  from path_jax.model import flops, projector as projector_lib, vit as vit_lib

  if hasattr(model, "backbone") and isinstance(model.backbone, vit_lib.ViT):
    backbone, proj = model.backbone, model.projector
  else:
    backbone = vit_lib.from_config(model.backbone)
    proj = model.get("projector")
    if proj is not None and not proj.get("enabled", True):
      proj = None
  total = 0.0
  for name in datasets:
    cfg = datasets[name]
    for key in ("task", "batch_size", "image_size"):
      if key not in cfg:
        raise KeyError(f"dataset {name!r} has no {key!r}; set config.datasets.{name}.{key}")
    use_cls = bool(tasks_lib.get(cfg["task"]).uses_cls_token) and backbone.cls_token
    h, w = (int(v) for v in cfg["image_size"])
    per_image = flops.vit_forward_flops(
        backbone.width, backbone.depth, backbone.mlp_dim, backbone.patch_size, h, w,
        cls_token=use_cls, pos_grid=tuple(backbone.pos_grid))
    if proj is not None:
      p = backbone.patch_size
      tokens = (-(-h // p)) * (-(-w // p)) + int(use_cls)
      default_layers = "authors" if proj.get("kind", "paper") == "ladder" else "blocks"
      layers = proj.get("layers", None) or default_layers
      layers = layers if isinstance(layers, str) else tuple(int(i) for i in layers)
      n_layers = len(projector_lib.select_layers(layers, backbone.depth + 1))
      dim = int(proj.get("dim", 0) or backbone.width // int(proj.get("reduction", 8) or 8))
      per_image += flops.projector_forward_flops(backbone.width, dim, n_layers, tokens,
                                                 mlp_ratio=int(proj.get("mlp_ratio", 4) or 4))
    if heads:
      p = backbone.patch_size
      per_image += head_forward_flops(cfg["task"], cfg, backbone.width,
                                      (-(-h // p), -(-w // p)), (h, w), use_cls)
    total += int(cfg["batch_size"]) * 3 * per_image
  return float(total)
