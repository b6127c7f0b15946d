"""Learning-rate schedules: optax schedules ``count -> lr`` (count = updates applied so far).

* ``step`` (pretraining; paper §5.1 and REFERENCE.md §4.6): for ``t < warmup_steps``
  ``lr = init_lr + (t / warmup_steps) (peak_lr - init_lr)``; afterwards
  ``lr = peak_lr * prod(factors[:k])`` with ``k = bisect_right(boundaries, t)``. Paper:
  boundaries at 50/75/95 % of the steps, factors 0.5 each; authors: boundaries
  (40000, 60000, 76000), factors (0.5, 0.2, 0.1), i.e. cumulative (1, 0.5, 0.1, 0.01).
* ``cosine`` (authors' ``Cosine``): the same linear warm-up to ``peak_lr``, then
  ``eta_min + (peak_lr - eta_min) (1 + cos(pi (t - w) / (T - w))) / 2``, held at ``eta_min``
  after ``T = total_steps``.
* ``warmup_cosine`` (authors' ``WarmupCosine``, detectron2 style):
  ``lr = peak_lr * w(t) * (1 + cos(pi min(t, T) / T)) / 2`` with the warm-up factor
  ``w(t) = warmup_factor (1 - t / warmup_steps) + t / warmup_steps`` for ``t < warmup_steps``,
  else 1.
* ``constant``: ``peak_lr``.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

SCHEDULES = ("step", "cosine", "warmup_cosine", "constant")


def _linear_warmup(t, init_lr: float, peak_lr: float, warmup_steps: int):
  return init_lr + (t / max(warmup_steps, 1)) * (peak_lr - init_lr)


def step_schedule(peak_lr: float, boundaries: Sequence[int], factors: Sequence[float], *,
                  init_lr: float = 1e-7, warmup_steps: int = 1500) -> optax.Schedule:
  """Linear warm-up, then piecewise-constant decay with cumulative ``factors``."""
  if len(boundaries) != len(factors):
    raise ValueError(f"step schedule: {len(boundaries)} boundaries but {len(factors)} factors; "
                     "give one factor per boundary.")
  if list(boundaries) != sorted(boundaries):
    raise ValueError(f"step schedule boundaries must increase: {list(boundaries)}")
  bounds = jnp.asarray(np.asarray(boundaries, np.int32))
  levels = jnp.asarray(peak_lr * np.cumprod(np.concatenate([[1.0], np.asarray(factors)])),
                       jnp.float32)

  def schedule(count):
    count = jnp.asarray(count)
    t = count.astype(jnp.float32)
    after = levels[jnp.searchsorted(bounds, count, side="right")]
    return jnp.where(count < warmup_steps, _linear_warmup(t, init_lr, peak_lr, warmup_steps),
                     after)

  return schedule


def paper_boundaries(total_steps: int,
                     fractions: Sequence[float] = (0.5, 0.75, 0.95)) -> tuple[int, ...]:
  """Step boundaries at fractions of the run (80k steps -> 40000, 60000, 76000)."""
  return tuple(int(round(f * total_steps)) for f in fractions)


def cosine_schedule(peak_lr: float, total_steps: int, *, init_lr: float = 1e-7,
                    warmup_steps: int = 0, eta_min: float = 0.0) -> optax.Schedule:
  """Authors' ``Cosine``: linear warm-up, then cosine from ``peak_lr`` down to ``eta_min``."""
  if total_steps <= warmup_steps:
    raise ValueError(f"cosine schedule: total_steps={total_steps} must exceed "
                     f"warmup_steps={warmup_steps}.")
  span = total_steps - warmup_steps

  def schedule(count):
    t = jnp.asarray(count).astype(jnp.float32)
    progress = jnp.clip(t - warmup_steps, 0, span) / span
    # (1 + cos(pi x)) / 2 written as cos(pi x / 2)**2: no cancellation near the end in float32.
    cosine = eta_min + (peak_lr - eta_min) * jnp.cos(0.5 * math.pi * progress) ** 2
    return jnp.where(t < warmup_steps, _linear_warmup(t, init_lr, peak_lr, warmup_steps),
                     cosine)

  return schedule


def warmup_cosine_schedule(peak_lr: float, total_steps: int, *, warmup_steps: int = 0,
                           warmup_factor: float = 0.001) -> optax.Schedule:
  """Authors' ``WarmupCosine``: warm-up factor times a cosine over the whole run."""
  if total_steps <= 0:
    raise ValueError(f"warmup_cosine schedule: total_steps={total_steps} must be positive.")

  def schedule(count):
    t = jnp.asarray(count).astype(jnp.float32)
    alpha = t / max(warmup_steps, 1)
    warm = jnp.where(t < warmup_steps, warmup_factor * (1.0 - alpha) + alpha, 1.0)
    cosine = jnp.cos(0.5 * math.pi * jnp.minimum(t, total_steps) / total_steps) ** 2
    return peak_lr * warm * cosine

  return schedule


def schedule_config(name: str = "step", total_steps: int = 80_000) -> ml_collections.ConfigDict:
  """Schedule fields (the ``optimizer.schedule`` subtree), paper defaults.

  Fields:
    name: one of ``SCHEDULES``.
    total_steps: length of the run in updates (``T``); for ``step`` it places
      ``boundary_fractions``.
    warmup_steps: linear warm-up length in updates.
    init_lr: lr at step 0 for ``step`` and ``cosine`` (1e-7).
    boundaries: explicit ``step`` boundaries (updates); empty -> from ``boundary_fractions``.
    boundary_fractions: ``step`` boundaries as fractions of ``total_steps``.
    factors: ``step`` per-boundary factors, applied cumulatively.
    eta_min: final lr of ``cosine``.
    warmup_factor: starting warm-up factor of ``warmup_cosine``.
  """
  return ml_collections.ConfigDict(dict(
      name=name,
      total_steps=total_steps,
      warmup_steps=1500,
      init_lr=1e-7,
      boundaries=(),
      boundary_fractions=(0.5, 0.75, 0.95),
      factors=(0.5, 0.5, 0.5),
      eta_min=0.0,
      warmup_factor=0.001,
  ))


def make_schedule(cfg: ml_collections.ConfigDict) -> optax.Schedule:
  """Schedule from an optimiser config: ``cfg.peak_lr`` and the ``cfg.schedule`` subtree
  (fields in :func:`schedule_config`). Use it for metrics too: the update that follows
  ``step`` applied updates uses ``make_schedule(cfg)(step)`` (times each leaf's multiplier)."""
  s = cfg.schedule
  unknown = set(s.keys()) - set(schedule_config().keys())
  if unknown:
    raise ValueError(f"unknown optimizer.schedule field(s) {sorted(unknown)}; valid fields: "
                     f"{sorted(schedule_config().keys())}.")
  if s.name == "step":
    boundaries = tuple(s.boundaries) or paper_boundaries(s.total_steps, s.boundary_fractions)
    return step_schedule(cfg.peak_lr, boundaries, tuple(s.factors), init_lr=s.init_lr,
                         warmup_steps=s.warmup_steps)
  if s.name == "cosine":
    return cosine_schedule(cfg.peak_lr, s.total_steps, init_lr=s.init_lr,
                           warmup_steps=s.warmup_steps, eta_min=s.eta_min)
  if s.name == "warmup_cosine":
    return warmup_cosine_schedule(cfg.peak_lr, s.total_steps, warmup_steps=s.warmup_steps,
                                  warmup_factor=s.warmup_factor)
  if s.name == "constant":
    return optax.constant_schedule(cfg.peak_lr)
  raise ValueError(f"unknown optimizer.schedule.name '{s.name}'; use one of {SCHEDULES}.")
