"""Learning-rate schedules: optax schedules ``count -> lr`` (count = updates applied so far).

* ``step`` (pretraining; paper §5.1 and REFERENCE.md §4.6): for ``t < warmup_steps``
  ``lr = init_lr + (t / warmup_steps) (peak_lr - init_lr)``; afterwards
  ``lr = peak_lr * prod(factors[:k])`` with ``k = bisect_right(boundaries, t)``. Paper:
  boundaries at 50/75/95 % of the steps, factors 0.5 each; authors: boundaries
  (40000, 60000, 76000) of 80k, factors (0.5, 0.2, 0.1), i.e. cumulative (1, 0.5, 0.1, 0.01).
* ``cosine`` (authors' ``Cosine``): the same linear warm-up to ``peak_lr``, then
  ``eta_min + (peak_lr - eta_min) (1 + cos(pi (t - w) / (T - w))) / 2``, held at ``eta_min``
  after ``T = total_steps``.
* ``warmup_cosine`` (authors' ``WarmupCosine``, detectron2 style):
  ``lr = peak_lr * w(t) * (1 + cos(pi min(t, T) / T)) / 2`` with the warm-up factor
  ``w(t) = warmup_factor (1 - t / warmup_steps) + t / warmup_steps`` for ``t < warmup_steps``,
  else 1.
* ``constant``: ``peak_lr``.

Durations follow the run (big_vision style, converted once by :func:`durations`): ``T`` is
``total_steps``, which every config built on ``configs.common.base_config`` links to
``train.num_steps`` until it is set (0 = the run length passed to :func:`make_schedule`); the
warm-up is ``warmup_steps`` when set, else ``warmup_fraction`` of ``T``; step decay points are
``boundary_fractions`` of ``T`` unless explicit ``boundaries`` are given. A warm-up at least as
long as the run, or a decay point at or past its end, is refused (:func:`problems`).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from ml_collections import config_dict

SCHEDULES = ("step", "cosine", "warmup_cosine", "constant")
# The paper's pretraining run (§5.1): 80k updates, 1,500 of them warm-up.
PAPER_STEPS = 80_000
PAPER_WARMUP_STEPS = 1_500
KEY = "config.optimizer.schedule"


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


def schedule_config(name: str = "step", total_steps: int = 0) -> ml_collections.ConfigDict:
  """Schedule fields (the ``optimizer.schedule`` subtree), paper defaults.

  Fields:
    name: one of ``SCHEDULES``.
    total_steps: the schedule's length ``T`` in updates. 0 = the run's length (the
      ``num_steps`` given to :func:`make_schedule`); configs built on
      ``configs.common.base_config`` link it to ``train.num_steps`` until it is set (set it only
      to stop a run early inside a longer schedule).
    warmup_steps: linear warm-up length in updates; None = ``warmup_fraction`` of ``T``. When
      set it wins over ``warmup_fraction``.
    warmup_fraction: the warm-up as a fraction of ``T`` in [0, 1) (big_vision's
      ``warmup_percent``); default the paper's 1,500 of 80,000 updates.
    init_lr: lr at step 0 for ``step`` and ``cosine`` (1e-7).
    boundaries: explicit ``step`` boundaries (updates, each below ``T``); empty -> from
      ``boundary_fractions``.
    boundary_fractions: ``step`` boundaries as fractions of ``T``, each in (0, 1).
    factors: ``step`` per-boundary factors, applied cumulatively.
    eta_min: final lr of ``cosine``.
    warmup_factor: starting warm-up factor of ``warmup_cosine``.
  """
  return ml_collections.ConfigDict(dict(
      name=name,
      total_steps=total_steps,
      warmup_steps=config_dict.placeholder(int),
      warmup_fraction=PAPER_WARMUP_STEPS / PAPER_STEPS,
      init_lr=1e-7,
      boundaries=(),
      boundary_fractions=(0.5, 0.75, 0.95),
      factors=(0.5, 0.5, 0.5),
      eta_min=0.0,
      warmup_factor=0.001,
  ))


@dataclasses.dataclass(frozen=True)
class Durations:
  """A schedule's durations in updates, resolved for one run."""
  total_steps: int
  warmup_steps: int
  boundaries: tuple[int, ...] = ()


def _resolve(s, num_steps: int | None) -> tuple[Durations | None, list[str]]:
  out: list[str] = []
  if s.name not in SCHEDULES:
    return None, [f"{KEY}.name={s.name!r}: unknown schedule; use one of {SCHEDULES}"]
  total = int(s.total_steps or 0) or int(num_steps or 0)
  if s.name == "constant":
    return Durations(total, 0), out
  if total <= 0:
    return None, [f"{KEY}.total_steps={s.total_steps}: the {s.name!r} schedule needs the run's "
                  "length; build the config on configs.common.base_config (which links it to "
                  "config.train.num_steps) or set it"]
  if s.warmup_steps is not None:
    warmup = int(s.warmup_steps)
    if warmup < 0:
      out.append(f"{KEY}.warmup_steps={warmup}: give a number of updates >= 0")
    elif warmup and warmup >= total:
      out.append(
          f"{KEY}.warmup_steps={warmup} is not shorter than the run ({KEY}.total_steps={total}, "
          f"which follows config.train.num_steps): the learning rate would never reach "
          f"config.optimizer.peak_lr. Set --config.optimizer.schedule.warmup_steps below {total} "
          f"(e.g. {total // 10}), or give the warm-up as a fraction of the run in the config "
          f"file (warmup_fraction, with warmup_steps=None)")
  else:
    fraction = float(s.warmup_fraction)
    if not 0.0 <= fraction < 1.0:
      out.append(f"{KEY}.warmup_fraction={fraction:g}: give the warm-up as a fraction of the run "
                 "in [0, 1) (e.g. 0.05)")
    warmup = int(round(fraction * total))
  boundaries: tuple[int, ...] = ()
  if s.name == "step":
    if tuple(s.boundaries):
      boundaries = tuple(int(b) for b in s.boundaries)
      if any(b <= 0 or b >= total for b in boundaries):
        out.append(f"{KEY}.boundaries={boundaries} must lie inside the run's {total} updates "
                   f"({KEY}.total_steps): a decay point at or past the end never applies. Give "
                   f"them as fractions of the run ({KEY}.boundary_fractions) with boundaries=()")
    else:
      fractions = tuple(float(f) for f in s.boundary_fractions)
      if any(not 0.0 < f < 1.0 for f in fractions):
        out.append(f"{KEY}.boundary_fractions={fractions}: each must lie in (0, 1)")
      boundaries = paper_boundaries(total, fractions)
    if list(boundaries) != sorted(boundaries):
      out.append(f"{KEY}: step boundaries must increase, got {boundaries}")
    if len(boundaries) != len(tuple(s.factors)):
      out.append(f"{KEY}.factors={tuple(s.factors)}: {len(boundaries)} boundaries need one "
                 "factor each")
  return Durations(total, max(warmup, 0), boundaries), out


def problems(cfg: ml_collections.ConfigDict, num_steps: int | None = None) -> list[str]:
  """Every problem of the optimiser config's schedule durations, each naming its key (for a
  config check before anything runs); ``num_steps``: the run's length, used when
  ``schedule.total_steps`` is 0."""
  return _resolve(cfg.schedule, num_steps)[1]


def durations(cfg: ml_collections.ConfigDict, num_steps: int | None = None) -> Durations:
  """The schedule's durations in updates (total, warm-up, step boundaries) for a run of
  ``num_steps`` updates (used when ``schedule.total_steps`` is 0). Raises ValueError listing
  every problem (:func:`problems`)."""
  d, out = _resolve(cfg.schedule, num_steps)
  if out:
    raise ValueError("the learning-rate schedule cannot run:\n  " + "\n  ".join(out))
  return d


def describe(cfg: ml_collections.ConfigDict, d: Durations) -> str:
  """One line for the log: the schedule with its resolved durations."""
  s = cfg.schedule
  if s.name == "constant":
    return f"lr schedule constant {cfg.peak_lr:g}"
  how = ("warmup_steps" if s.warmup_steps is not None
         else f"warmup_fraction {float(s.warmup_fraction):g}")
  text = (f"lr schedule {s.name}: {d.total_steps} updates, warm-up {d.warmup_steps} ({how}), "
          f"peak {cfg.peak_lr:g}")
  if d.boundaries:
    text += f", decay x{tuple(s.factors)} at {d.boundaries}"
  return text


_LOGGED: set[str] = set()


def make_schedule(cfg: ml_collections.ConfigDict, num_steps: int | None = None
                  ) -> optax.Schedule:
  """Schedule from an optimiser config: ``cfg.peak_lr`` and the ``cfg.schedule`` subtree
  (fields in :func:`schedule_config`); ``num_steps``: the run's length, used when
  ``schedule.total_steps`` is 0. Use it for metrics too: the update that follows ``step``
  applied updates uses ``make_schedule(cfg)(step)`` (times each leaf's multiplier)."""
  s = cfg.schedule
  unknown = set(s.keys()) - set(schedule_config().keys())
  if unknown:
    raise ValueError(f"unknown optimizer.schedule field(s) {sorted(unknown)}; valid fields: "
                     f"{sorted(schedule_config().keys())}.")
  if s.name not in SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule.name '{s.name}'; use one of {SCHEDULES}.")
  d = durations(cfg, num_steps)
  line = describe(cfg, d)
  if line not in _LOGGED:     # the optimiser and the metrics build the same schedule
    _LOGGED.add(line)
    logging.info("%s", line)
  if s.name == "step":
    return step_schedule(cfg.peak_lr, d.boundaries, tuple(s.factors), init_lr=s.init_lr,
                         warmup_steps=d.warmup_steps)
  if s.name == "cosine":
    return cosine_schedule(cfg.peak_lr, d.total_steps, init_lr=s.init_lr,
                           warmup_steps=d.warmup_steps, eta_min=s.eta_min)
  if s.name == "warmup_cosine":
    return warmup_cosine_schedule(cfg.peak_lr, d.total_steps, warmup_steps=d.warmup_steps,
                                  warmup_factor=s.warmup_factor)
  return optax.constant_schedule(cfg.peak_lr)
