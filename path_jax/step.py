"""One jitted multi-dataset training step (DESIGN.md "The step").

``train_step(state, batch, loss_weights, rng, *, model, tx, ...) -> (state, metrics)``:

* ``batch``: ``{dataset: {field: array [B_d, ...]}}``, each sub-batch sharded along its leading
  axis over the mesh's batch axes. Datasets sharing an input shape share one backbone pass (the
  PATH model groups them); each task's projector, each dataset's head and loss follow.
* ``loss_weights``: float32 ``[num_datasets]`` in the order of ``model.datasets``; the total loss
  is ``sum_d lambda_d L_d``. It is an array argument, so changing it never recompiles.
* Non-finite loss or gradients: parameters, optimiser state and BatchNorm statistics are left
  unchanged, the skip is counted (``skipped`` and ``consecutive_skipped`` in the state and the
  metrics); :func:`check_skips` aborts a run after too many in a row.
* ``accum_steps > 1`` splits every sub-batch into that many micro-batches (each taking a
  contiguous chunk of every device's shard, so P x K identity groups stay whole when the per-device
  chunk is a multiple of K) and averages their gradients in a ``lax.scan``.

Module-level and pure: tests call :func:`train_step` directly; :func:`make_train_step` binds the
static arguments and jits it with the state donated.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from path_jax import tasks as tasks_lib
from path_jax.optim import grouping
from path_jax.state import TrainState


def dataset_names(model) -> tuple[str, ...]:
  return tuple(s.name for s in model.datasets)


def loss_weight_vector(weights: Mapping[str, float], model) -> np.ndarray:
  """``{dataset: lambda}`` -> the float32 vector the step takes (``model.datasets`` order)."""
  names = dataset_names(model)
  missing = [n for n in names if n not in weights]
  extra = [n for n in weights if n not in names]
  if missing or extra:
    raise KeyError(f"loss weights must name exactly the model's datasets {list(names)}; "
                   f"missing {missing}, unknown {extra}")
  return np.asarray([float(weights[n]) for n in names], np.float32)


def authors_loss_weights(sample_weights: Mapping[str, float], images_per_step: Mapping[str, int]
                         ) -> dict[str, float]:
  """Loss weights as the authors derived them (REFERENCE.md §4.7): ``sw_d * images_d`` per step,
  normalised to sum to 1. Every image of dataset d then weighs ``sw_d`` in the backbone gradient;
  under Adafactor only the ratios matter."""
  raw = {d: float(sample_weights[d]) * float(images_per_step[d]) for d in sample_weights}
  total = sum(raw.values())
  if total <= 0:
    raise ValueError(f"sample weights x images per step sum to {total}; give positive weights")
  return {d: v / total for d, v in raw.items()}


def _loss_fn(params, batch_stats, batch, loss_weights, rng, *, model, rules):
  names = dataset_names(model)
  images = {n: batch[n]["image"] for n in names if n in batch}
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  with nn.logical_axis_rules(rules):
    outputs, mutated = model.apply(variables, images, train=True, rngs={"dropout": rng},
                                   mutable=["batch_stats"])
  total = jnp.zeros((), jnp.float32)
  metrics: dict[str, jax.Array] = {}
  for i, spec in enumerate(model.datasets):
    if spec.name not in batch:
      continue
    task = tasks_lib.get(spec.task)
    with jax.named_scope(f"loss_{spec.name}"):   # named for profiles and path_jax.cost_model
      loss, task_metrics = task.loss(outputs[spec.name], batch[spec.name], spec.cfg)
    loss = loss.astype(jnp.float32)
    total = total + loss_weights[i] * loss
    metrics[f"loss/{spec.name}"] = loss
    for k, v in task_metrics.items():
      metrics[f"{spec.name}/{k}"] = jnp.asarray(v, jnp.float32)
  metrics["loss"] = total
  return total, (metrics, mutated.get("batch_stats", batch_stats))


def split_micro_batches(x: jax.Array, accum_steps: int, batch_shards: int) -> jax.Array:
  """``[B, ...] -> [accum_steps, B / accum_steps, ...]``; micro-batch j takes the j-th contiguous
  chunk of each of the ``batch_shards`` device shards, so every micro-batch stays spread over all
  devices."""
  b = x.shape[0]
  if b % (batch_shards * accum_steps):
    raise ValueError(f"sub-batch of {b} cannot be split into {accum_steps} micro-batches over "
                     f"{batch_shards} batch shards; make it a multiple of "
                     f"{batch_shards * accum_steps}")
  m = b // (batch_shards * accum_steps)
  x = x.reshape((batch_shards, accum_steps, m) + x.shape[1:])
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape((accum_steps, batch_shards * m) + x.shape[3:])


def compute_grads(params, batch_stats, batch, loss_weights, rng, *, model, rules: Sequence = (),
                  accum_steps: int = 1, batch_shards: int = 1):
  """Loss, metrics, new BatchNorm statistics and gradients of ``sum_d lambda_d L_d`` over the
  datasets in ``batch`` (``params`` may hold only the parts those datasets use: the backbone,
  their projectors and heads). The per-task-group computation of both placements."""
  grad_fn = jax.value_and_grad(functools.partial(_loss_fn, model=model, rules=tuple(rules)),
                               has_aux=True)
  if accum_steps == 1:
    (loss, (metrics, batch_stats)), grads = grad_fn(params, batch_stats, batch, loss_weights, rng)
    return loss, metrics, batch_stats, grads
  micro = jax.tree.map(lambda x: split_micro_batches(x, accum_steps, batch_shards), batch)

  def body(carry, inputs):
    grads_acc, stats = carry
    mb, i = inputs
    (loss, (m, stats)), g = grad_fn(params, stats, mb, loss_weights, jax.random.fold_in(rng, i))
    return (jax.tree.map(jnp.add, grads_acc, g), stats), m

  zeros = jax.tree.map(jnp.zeros_like, params)
  (grads, batch_stats), ms = jax.lax.scan(body, (zeros, batch_stats),
                                          (micro, jnp.arange(accum_steps)))
  grads = jax.tree.map(lambda g: g / accum_steps, grads)
  metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), ms)
  return metrics["loss"], metrics, batch_stats, grads


def apply_grads(state: TrainState, grads, loss, metrics, batch_stats, loss_weights, *, model,
                tx: optax.GradientTransformation, schedule: Callable | None = None,
                present: Sequence[str] = ()) -> tuple[TrainState, dict[str, jax.Array]]:
  """The update of both placements: the optimiser step, skipped as a whole when the loss or a
  gradient is not finite, and the step's metrics (``present``: the datasets in the batch)."""
  # A non-finite element makes the global norm inf/nan; one reduction instead of one per leaf
  # (a finite gradient whose squares overflow float32, |g| > 1e19, is skipped too). Grouped by
  # leaf shape: one reduction per shape, not per leaf (path_jax.optim.grouping).
  grad_norm = grouping.global_norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  with jax.named_scope("optimizer"):   # a name for profiles and path_jax.cost_model's parts
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
  # One conditional select of the whole state (cheaper to compile than a select per leaf).
  params, opt_state, batch_stats = jax.lax.cond(
      finite, lambda: (new_params, new_opt_state, batch_stats),
      lambda: (state.params, state.opt_state, state.batch_stats))
  consecutive = jnp.where(finite, 0, state.consecutive_skipped + 1)
  new_state = state.replace(
      step=state.step + 1, params=params, opt_state=opt_state, batch_stats=batch_stats,
      skipped=state.skipped + (~finite).astype(jnp.int32),
      consecutive_skipped=consecutive.astype(jnp.int32))
  metrics = dict(metrics)
  metrics["grad_norm"] = grad_norm
  metrics["param_norm"] = grouping.global_norm(new_state.params)
  metrics["finite"] = finite.astype(jnp.float32)
  metrics["skipped"] = new_state.skipped
  metrics["consecutive_skipped"] = new_state.consecutive_skipped
  if schedule is not None:
    metrics["lr"] = jnp.asarray(schedule(state.step), jnp.float32)
  for i, name in enumerate(dataset_names(model)):
    if name in present:
      metrics[f"loss_weight/{name}"] = loss_weights[i]
  return new_state, metrics


def train_step(state: TrainState, batch: Mapping[str, Mapping[str, jax.Array]],
               loss_weights: jax.Array, rng: jax.Array, *, model, tx: optax.GradientTransformation,
               schedule: Callable | None = None, rules: Sequence = (), accum_steps: int = 1,
               batch_shards: int = 1) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step over every dataset's sub-batch. See the module docstring."""
  rng = jax.random.fold_in(rng, state.step)
  loss, metrics, batch_stats, grads = compute_grads(
      state.params, state.batch_stats, batch, loss_weights, rng, model=model, rules=rules,
      accum_steps=accum_steps, batch_shards=batch_shards)
  return apply_grads(state, grads, loss, metrics, batch_stats, loss_weights, model=model, tx=tx,
                     schedule=schedule, present=tuple(batch))


def make_train_step(model, tx, *, mesh, state_shardings, schedule=None, rules=(),
                    accum_steps: int = 1):
  """``train_step`` with its static arguments bound, jitted with the state donated."""
  from path_jax.parallel.mesh import batch_shards
  fn = functools.partial(train_step, model=model, tx=tx, schedule=schedule, rules=tuple(rules),
                         accum_steps=accum_steps, batch_shards=batch_shards(mesh))
  jitted = jax.jit(fn, donate_argnums=(0,), out_shardings=(state_shardings, None))

  def step(state, batch, loss_weights, rng):
    with jax.set_mesh(mesh):
      return jitted(state, batch, loss_weights, rng)

  step.jitted = jitted
  return step


def eval_step(params, batch_stats, batch, *, model, rules=(), decode: bool = True):
  """Inference on ``{dataset: sub-batch}``: decoded predictions (or raw head outputs) and losses."""
  names = dataset_names(model)
  images = {n: batch[n]["image"] for n in names if n in batch}
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  with nn.logical_axis_rules(tuple(rules)):
    outputs = model.apply(variables, images, train=False)
  results = {}
  for spec in model.datasets:
    if spec.name not in batch:
      continue
    task = tasks_lib.get(spec.task)
    out = outputs[spec.name]
    results[spec.name] = task.decode(out, batch[spec.name], spec.cfg) if decode else out
  return results


class TooManySkippedSteps(RuntimeError):
  pass


def check_skips(metrics: Mapping[str, Any], max_consecutive: int, step: int) -> None:
  """Raises when ``max_consecutive`` updates in a row were skipped for non-finite values."""
  consecutive = int(np.asarray(metrics["consecutive_skipped"]))
  if max_consecutive and consecutive >= max_consecutive:
    raise TooManySkippedSteps(
        f"{consecutive} consecutive training steps (up to step {step}) had a non-finite loss or "
        f"gradient and were skipped; aborting. Lower the learning rate (config.optimizer.peak_lr), "
        f"check the data of the datasets whose 'loss/<name>' is nan/inf in the last metrics, or "
        f"raise config.train.max_consecutive_skips (now {max_consecutive}).")
