"""Adafactor as the authors run it (REFERENCE.md §4.5), as a chain of small optax transforms.

Per parameter ``p`` with gradient ``g`` at step ``t`` (1-based):

1. ``beta2 = min(1 - t**decay_rate, clip_beta2)``; ``u = g**2 + eps``.
2. Factored (per-layer ndim >= 2): row/column second moments ``R``, ``C`` are EMAs of the means
   of ``u`` over the two factored dims; ``u = g * rsqrt(R / mean(R)) * rsqrt(C)``. Otherwise a
   full EMA ``V`` of ``u`` and ``u = g * rsqrt(V)``.
3. ``u /= max(1, rms(u) / clip_threshold)``, the RMS taken per layer.
4. ``u *= lr * multiplier``; momentum on the scaled update ``m = beta1 m + (1 - beta1) u``.
5. ``p <- p - weight_decay * lr * multiplier * p - m`` (decoupled decay, masked).

``optax.adafactor`` factors the two *largest* dims, has no per-layer clipping for stacked
parameters and decays differently, hence these transforms.

Scanned stacks. A leaf with ``s`` stacked (leading layer) axes, e.g. ``[depth, a, b]`` with
``s = 1``, is treated as ``depth`` independent ``[a, b]`` parameters: factoring and RMS clipping
never mix layers, so its updates equal those of the looped layers.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from path_jax.optim import tree_paths

Axes = tuple[int, ...]
FactoredDimsFn = Callable[[tree_paths.Path, tuple[int, ...], int], "tuple[Axes, Axes] | None"]


def default_factored_dims(path: tree_paths.Path, shape: tuple[int, ...],
                          n_stacked: int) -> tuple[Axes, Axes] | None:
  """``(row_axes, col_axes)`` of the factored second moment, or None for a full one.

  The row statistic averages ``g**2`` over ``col_axes`` and the column statistic over
  ``row_axes`` (PyTorch's dims -2 and -1). The rule is PyTorch's "factor over the last two
  dims when ndim >= 2", counted per layer (``len(shape) - n_stacked``), adjusted where the flax
  layout differs from the PyTorch one so that the statistics are the same:

  * 4-D convolution kernels, HWIO here and OIHW in PyTorch, whose last two dims are the
    spatial ones: rows H, columns W.
  * ``pos_embed`` ``[Hp, Wp, C]``, ``[1, Hp*Wp, C]`` in PyTorch: rows (Hp, Wp), columns C.
  * Dense kernels are transposed relative to PyTorch; the factored estimate
    ``R_i C_j / mean(R)`` is symmetric under transposition, so the last two dims are right.
  """
  ndim = len(shape) - n_stacked
  last = len(shape) - 1
  if ndim < 2:
    return None
  if ndim == 4 and path and path[-1] == "kernel":
    return (n_stacked,), (n_stacked + 1,)
  if ndim == 3 and path and str(path[-1]).startswith("pos_embed"):   # also pos_embed_<key>
    return (n_stacked, n_stacked + 1), (last,)
  return (last - 1,), (last,)


class FactoredRmsState(NamedTuple):
  """Second-moment state. Trees shaped like the parameters; each leaf keeps the parameter's
  ndim with the reduced axis of size 1 (so its sharding is the parameter's with that axis
  replicated). Unused entries (``v`` of factored leaves, ``v_row``/``v_col`` of the others)
  are float32 scalars."""
  count: jax.Array
  v_row: Any
  v_col: Any
  v: Any


def _stat_dtype(dtype):
  return jnp.promote_types(dtype, jnp.float32)


def scale_by_factored_rms(decay_rate: float = -0.8, clip_beta2: float = 0.999,
                          eps: float = 1e-30, stacked=0,
                          factored_dims: FactoredDimsFn = default_factored_dims,
                          ) -> optax.GradientTransformation:
  """Steps 1-2: precondition the gradient by the (factored) second-moment estimate.

  Args:
    decay_rate: exponent of the beta2 schedule ``1 - t**decay_rate``.
    clip_beta2: upper bound of beta2.
    eps: added to the squared gradient.
    stacked: leaf spec (see :mod:`tree_paths`) of leading stacked-layer axes per leaf.
    factored_dims: ``(path, shape, n_stacked) -> (row_axes, col_axes) | None``, see
      :func:`default_factored_dims`.
  """
  stacked_of = tree_paths.leaf_fn(stacked, "stacked axes")

  def dims_of(path, leaf):
    n_stacked = int(stacked_of(path, leaf))
    dims = factored_dims(path, tuple(leaf.shape), n_stacked)
    if dims is not None:
      rows, cols = (tuple(int(a) for a in axes) for axes in dims)
      if (not rows or not cols or set(rows) & set(cols)
          or not all(n_stacked <= a < leaf.ndim for a in rows + cols)):
        raise ValueError(
            f"factored_dims gave {dims} for '{tree_paths.path_str(path)}' of shape {leaf.shape} "
            f"with {n_stacked} stacked axes; it must give two disjoint non-empty tuples of "
            "non-stacked axes.")
      dims = rows, cols
    return dims

  def init_fn(params):
    def init_leaf(path, p):
      dtype = _stat_dtype(p.dtype)
      scalar = jnp.zeros((), dtype)
      dims = dims_of(path, p)
      if dims is None:
        return scalar, scalar, jnp.zeros(p.shape, dtype)
      rows, cols = dims
      row_shape = tuple(1 if i in cols else n for i, n in enumerate(p.shape))
      col_shape = tuple(1 if i in rows else n for i, n in enumerate(p.shape))
      return jnp.zeros(row_shape, dtype), jnp.zeros(col_shape, dtype), scalar

    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    out = [init_leaf(tree_paths.path_names(kp), p) for kp, p in flat]
    rows, cols, vs = (treedef.unflatten([o[i] for o in out]) for i in range(3))
    return FactoredRmsState(jnp.zeros([], jnp.int32), rows, cols, vs)

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    beta2 = jnp.minimum(1.0 - t ** decay_rate, clip_beta2)

    def update_leaf(path, g, v_row, v_col, v):
      dims = dims_of(path, g)
      g32 = g.astype(_stat_dtype(g.dtype))
      u = g32 * g32 + eps
      if dims is None:
        v = beta2 * v + (1.0 - beta2) * u
        return (g32 * jax.lax.rsqrt(v)).astype(g.dtype), v_row, v_col, v
      rows, cols = dims
      v_row = beta2 * v_row + (1.0 - beta2) * jnp.mean(u, axis=cols, keepdims=True)
      v_col = beta2 * v_col + (1.0 - beta2) * jnp.mean(u, axis=rows, keepdims=True)
      # Normalising R by its mean over the rows gives the rank-1 estimate R_i C_j / mean(R).
      r_factor = jax.lax.rsqrt(v_row / jnp.mean(v_row, axis=rows, keepdims=True))
      c_factor = jax.lax.rsqrt(v_col)
      return (g32 * r_factor * c_factor).astype(g.dtype), v_row, v_col, v

    flat, treedef = jax.tree_util.tree_flatten_with_path(updates)
    rows = treedef.flatten_up_to(state.v_row)
    cols = treedef.flatten_up_to(state.v_col)
    vs = treedef.flatten_up_to(state.v)
    out = [update_leaf(tree_paths.path_names(kp), g, r, c, v)
           for (kp, g), r, c, v in zip(flat, rows, cols, vs)]
    new_updates, rows, cols, vs = (treedef.unflatten([o[i] for o in out]) for i in range(4))
    return new_updates, FactoredRmsState(count, rows, cols, vs)

  return optax.GradientTransformation(init_fn, update_fn)


def clip_by_block_rms(threshold: float, stacked=0) -> optax.GradientTransformation:
  """Step 3: ``u /= max(1, rms(u) / threshold)``, RMS over each layer's slice of the leaf
  (all axes after its ``stacked`` leading axes)."""
  stacked_of = tree_paths.leaf_fn(stacked, "stacked axes")

  def update_fn(updates, state, params=None):
    del params

    def clip(path, u):
      axes = tuple(range(int(stacked_of(path, u)), u.ndim))
      u32 = u.astype(_stat_dtype(u.dtype))
      rms = jnp.sqrt(jnp.mean(u32 * u32, axis=axes, keepdims=True))
      return (u32 / jnp.maximum(1.0, rms / threshold)).astype(u.dtype)

    return tree_paths.map_with_paths(clip, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


class ScheduleCountState(NamedTuple):
  count: jax.Array


def _lr_at(learning_rate: optax.ScalarOrSchedule, count):
  return learning_rate(count) if callable(learning_rate) else learning_rate


def scale_by_lr(learning_rate: optax.ScalarOrSchedule, multipliers=1.0,
                ) -> optax.GradientTransformation:
  """Step 4 (first half): ``u *= lr(count) * multiplier`` (positive; the sign flips at the
  end of the chain). ``count`` is the number of updates applied before this one, so the first
  update uses ``lr(0)``. ``multipliers`` is a leaf spec; array values (scanned stacks,
  ``[depth, 1, ...]``) broadcast against their leaf."""
  mult_of = tree_paths.leaf_fn(multipliers, "learning-rate multipliers")

  def update_fn(updates, state, params=None):
    del params
    lr = _lr_at(learning_rate, state.count)
    updates = tree_paths.map_with_paths(
        lambda path, u: (u * (lr * jnp.asarray(mult_of(path, u), jnp.float32))).astype(u.dtype),
        updates)
    return updates, ScheduleCountState(optax.safe_increment(state.count))

  return optax.GradientTransformation(
      lambda params: ScheduleCountState(jnp.zeros([], jnp.int32)), update_fn)


def add_decoupled_weight_decay(weight_decay: float, learning_rate: optax.ScalarOrSchedule,
                               multipliers=1.0, mask=True) -> optax.GradientTransformation:
  """Step 5: ``u += weight_decay * lr(count) * multiplier * p`` where ``mask`` is true.

  Uses the same schedule and per-leaf multipliers as :func:`scale_by_lr` (its own counter
  advances in step with that one). ``mask`` is a leaf spec of bools.
  """
  mult_of = tree_paths.leaf_fn(multipliers, "learning-rate multipliers")
  mask_of = tree_paths.leaf_fn(mask, "weight-decay mask")

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("add_decoupled_weight_decay needs params: call update(grads, state, "
                       "params).")
    lr = _lr_at(learning_rate, state.count)

    def decay(path, u, p):
      if not bool(mask_of(path, u)) or weight_decay == 0.0:
        return u
      rate = weight_decay * lr * jnp.asarray(mult_of(path, u), jnp.float32)
      return (u + rate * p).astype(u.dtype)

    return (tree_paths.map_with_paths(decay, updates, params),
            ScheduleCountState(optax.safe_increment(state.count)))

  return optax.GradientTransformation(
      lambda params: ScheduleCountState(jnp.zeros([], jnp.int32)), update_fn)


def adafactor(learning_rate: optax.ScalarOrSchedule, *, multipliers=1.0,
              weight_decay: float = 0.0, weight_decay_mask=True, beta1: float | None = 0.9,
              decay_rate: float = -0.8, clip_beta2: float = 0.999, clip_threshold: float = 1.0,
              eps: float = 1e-30, stacked=0,
              factored_dims: FactoredDimsFn = default_factored_dims,
              ) -> optax.GradientTransformation:
  """The full REFERENCE §4.5 update as an optax chain (updates are to be *added* to params).

  Args:
    learning_rate: peak-scaled schedule ``count -> lr`` or a constant.
    multipliers: per-leaf lr multipliers (layer decay), leaf spec.
    weight_decay: decoupled decay coefficient (multiplied by lr * multiplier).
    weight_decay_mask: leaf spec of bools, where decay applies.
    beta1: momentum on the scaled update; None disables it.
    decay_rate, clip_beta2, eps: second-moment settings.
    clip_threshold: RMS update clipping threshold (per layer).
    stacked: leaf spec of the number of leading stacked-layer axes.
    factored_dims: per-leaf factoring rule, see :func:`default_factored_dims`.
  """
  parts = [
      scale_by_factored_rms(decay_rate, clip_beta2, eps, stacked, factored_dims),
      clip_by_block_rms(clip_threshold, stacked),
      scale_by_lr(learning_rate, multipliers),
  ]
  if beta1 is not None:
    parts.append(optax.ema(beta1, debias=False))
  parts.append(add_decoupled_weight_decay(weight_decay, learning_rate, multipliers,
                                          weight_decay_mask))
  parts.append(optax.scale(-1.0))
  return optax.chain(*parts)
