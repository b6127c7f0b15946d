"""A step-window profiler for the training loop (config ``train.profile``).

``Profiler(workdir, start_step, num_steps)`` traces steps ``start_step .. start_step+num_steps-1``
with ``jax.profiler`` into ``workdir/profile`` (TensorBoard's profile plugin reads it, as does
``xprof``). The loop calls ``profiler.step(step, outputs)`` at the top of each iteration, before
dispatching ``step``, with the outputs of the previous step: the trace starts before
``start_step`` is dispatched and stops once the last traced step's outputs are ready, so the
asynchronous device work of the window is inside the trace. ``start_step < 0`` disables it.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

log = logging.getLogger(__name__)


class Profiler:
  """Traces a window of ``num_steps`` training steps starting at ``start_step`` (host 0 only,
  unless ``all_hosts``)."""

  def __init__(self, workdir: str, start_step: int, num_steps: int, *, all_hosts: bool = False):
    import jax
    if start_step >= 0 and num_steps < 1:
      raise ValueError(f"profile num_steps must be >= 1 (config.train.profile.num_steps), "
                       f"got {num_steps}")
    self.log_dir = os.path.join(workdir, "profile")
    self.start_step = int(start_step)
    self.stop_step = int(start_step) + int(num_steps)
    self.enabled = start_step >= 0 and (all_hosts or jax.process_index() == 0)
    self.active = False
    self.done = False

  def step(self, step: int, outputs: Any = None) -> None:
    """Called before dispatching ``step``; ``outputs`` are the previous step's (any pytree)."""
    if not self.enabled or self.done:
      return
    if not self.active and self.start_step <= step < self.stop_step:
      import jax
      os.makedirs(self.log_dir, exist_ok=True)
      # Steps dispatched before the window must not leak into it.
      jax.block_until_ready(outputs)
      jax.profiler.start_trace(self.log_dir)
      self.active = True
      log.info("profiling steps %d..%d into %s", step, self.stop_step - 1, self.log_dir)
    elif self.active and step >= self.stop_step:
      self.stop(outputs)

  def stop(self, outputs: Any = None) -> None:
    """Blocks on ``outputs`` (the last traced step's) and ends the trace, if one is running."""
    if not self.active:
      return
    import jax
    jax.block_until_ready(outputs)
    jax.profiler.stop_trace()
    self.active = False
    self.done = True
    log.info("profile written to %s", self.log_dir)

  def annotate(self, step: int):
    """A context naming ``step`` in the trace (``StepTraceAnnotation``); no-op when not tracing."""
    if not self.active:
      return contextlib.nullcontext()
    import jax
    return jax.profiler.StepTraceAnnotation("train", step_num=step)
