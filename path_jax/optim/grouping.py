"""Run a per-leaf optimiser once per group of same-shaped leaves: a much smaller program.

The PATH model has about 800 parameter leaves (25 heads, 6 projectors, the backbone) but only
about 60 distinct shapes. A per-leaf optimiser chain (Adafactor: factored moments, RMS clipping,
layer decay, momentum, weight decay) emits its ~30 operations for every leaf, and on TPU each
becomes its own fusion to compile: on the demo mixture the optimiser is ~40 % of the compile
time. :func:`grouped` stacks the leaves that the chain treats alike (same shape, dtype, stacked
axes, factored dims and weight-decay flag) along a new leading axis and runs the chain once per
group, with that axis counted as one more stacked (layer) axis, so factoring and clipping still
never mix leaves. Per-leaf learning-rate multipliers become a stacked array.

The optimiser *state* keeps the per-leaf layout (the checkpoint format does not change): it is
stacked on the way in and split on the way out, like the parameters and the updates. The
numbers are those of the per-leaf chain (the same element-wise operations and per-leaf
reductions; tests compare both).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from path_jax.optim import tree_paths

GROUP_PREFIX = "group_"


class _Plan:
  """Which leaves form which group, and the groups' specs for the inner chain."""

  def __init__(self, params, signature: Callable[[tree_paths.Path, Any], Any]):
    flat, self.treedef = jax.tree_util.tree_flatten_with_path(params)
    self.paths = [tree_paths.path_names(kp) for kp, _ in flat]
    self.shapes = [tuple(x.shape) for _, x in flat]
    keys: dict[Any, list[int]] = {}
    for i, (path, (_, leaf)) in enumerate(zip(self.paths, flat)):
      key = (tuple(leaf.shape), str(jnp.dtype(leaf.dtype)), signature(path, leaf))
      keys.setdefault(key, []).append(i)
    self.groups = [members for members in keys.values()]
    self.names = [f"{GROUP_PREFIX}{g:03d}" for g in range(len(self.groups))]

  def representative(self, name: str) -> tuple[tree_paths.Path, tuple[int, ...]]:
    i = self.groups[self.names.index(name)][0]
    return self.paths[i], self.shapes[i]

  def stack(self, tree, template: dict[str, Any] | None = None) -> dict[str, jax.Array]:
    """Each group's leaves stacked along a new leading axis. With a grouped ``template`` (a
    state): where it holds a scalar (an unused placeholder entry), the members' scalars are
    equal and the first is kept."""
    leaves = self.treedef.flatten_up_to(tree)
    return {name: leaves[members[0]] if template is not None and np.ndim(template[name]) == 0
            else jnp.stack([leaves[i] for i in members])
            for name, members in zip(self.names, self.groups)}

  def unstack(self, grouped: dict[str, jax.Array]):
    leaves = [None] * len(self.paths)
    for name, members in zip(self.names, self.groups):
      x = grouped[name]
      for pos, i in enumerate(members):
        leaves[i] = x if x.ndim == 0 else x[pos]
    return self.treedef.unflatten(leaves)


def _is_grouped(node, names) -> bool:
  return isinstance(node, dict) and set(node) == set(names) and bool(names)


def _map_grouped(fn, state, names):
  """Applies ``fn`` to every subtree of ``state`` that is a grouped tree (dict of group names)."""
  if _is_grouped(state, names):
    return fn(state)
  if isinstance(state, tuple) and hasattr(state, "_fields"):   # NamedTuple states
    return type(state)(*[_map_grouped(fn, s, names) for s in state])
  if isinstance(state, (tuple, list)):
    return type(state)(_map_grouped(fn, s, names) for s in state)
  return state


def _map_parameter_trees(fn, state, treedef):
  """Applies ``fn`` to every subtree of ``state`` that has the parameters' structure."""
  try:
    if jax.tree_util.tree_structure(state) == treedef:
      return fn(state)
  except Exception:   # noqa: BLE001 - not a pytree we can compare
    pass
  if isinstance(state, tuple) and hasattr(state, "_fields"):
    return type(state)(*[_map_parameter_trees(fn, s, treedef) for s in state])
  if isinstance(state, (tuple, list)):
    return type(state)(_map_parameter_trees(fn, s, treedef) for s in state)
  return state


def grouped(make_inner: Callable[..., optax.GradientTransformation], params, *,
            stacked, multipliers, signature: Callable[[tree_paths.Path, Any], Any]
            ) -> optax.GradientTransformation:
  """The chain ``make_inner(stacked=..., multipliers=..., path_of=...)`` run once per group.

  Args:
    make_inner: builds the per-leaf chain for the grouped tree. It receives ``stacked`` and
      ``multipliers`` leaf specs for the grouped tree, and ``path_of``: ``group path ->
      (representative member path, member shape)`` for path-dependent rules (factored dims,
      weight-decay masks) that must see a member's name.
    params: the parameters (arrays or ``ShapeDtypeStruct``s; paths and shapes are read).
    stacked, multipliers: leaf specs of the ungrouped parameters (see :mod:`tree_paths`).
    signature: ``(path, leaf) -> hashable``; leaves are grouped only when shape, dtype and
      signature agree (put everything that changes the chain's code for a leaf in it: stacked
      axes, factored dims, weight-decay flag).
  """
  stacked_of = tree_paths.leaf_fn(stacked, "stacked axes")
  mult_of = tree_paths.leaf_fn(multipliers, "learning-rate multipliers")

  def full_signature(path, leaf):
    return (int(stacked_of(path, leaf)), signature(path, leaf))

  plan = _Plan(params, full_signature)
  leaves = jax.tree_util.tree_leaves(params)
  g_stacked, g_mult = {}, {}
  for name, members in zip(plan.names, plan.groups):
    first = leaves[members[0]]
    g_stacked[name] = int(stacked_of(plan.paths[members[0]], first)) + 1
    ms = []
    for i in members:   # each padded to the leaf's rank (stacked [depth, 1, ...] kept leading)
      m = np.asarray(mult_of(plan.paths[i], leaves[i]), np.float32)
      ms.append(m.reshape(m.shape + (1,) * (len(plan.shapes[i]) - m.ndim)))
    if all(m.size == 1 for m in ms) and len({float(m.reshape(())) for m in ms}) == 1:
      g_mult[name] = float(ms[0].reshape(()))
    else:
      shape = np.broadcast_shapes(*[m.shape for m in ms])
      g_mult[name] = np.stack([np.broadcast_to(m, shape) for m in ms])

  def path_of(path):
    name = path[-1] if path else ""
    return plan.representative(name)

  inner = make_inner(stacked=g_stacked, multipliers=g_mult, path_of=path_of)
  abstract_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  template_state = jax.eval_shape(lambda p: inner.init(plan.stack(p)), abstract_params)

  def to_leaves(state):
    return _map_grouped(plan.unstack, state, plan.names)

  templates = []   # the grouped trees of the state, in the order both walks meet them
  _map_grouped(lambda t: templates.append(t) or t, template_state, plan.names)

  def to_groups(state):
    it = iter(templates)
    return _map_parameter_trees(lambda t: plan.stack(t, next(it)), state, plan.treedef)

  def init_fn(p):
    return to_leaves(inner.init(plan.stack(p)))

  def update_fn(updates, state, p=None):
    new, inner_state = inner.update(plan.stack(updates), to_groups(state),
                                    None if p is None else plan.stack(p))
    return plan.unstack(new), to_leaves(inner_state)

  return optax.GradientTransformation(init_fn, update_fn)


def global_norm(tree) -> jax.Array:
  """``optax.global_norm`` with one reduction per group of same-shaped leaves (stacked) instead
  of one per leaf: the same value (up to float32 summation order), a much smaller program for
  trees of hundreds of leaves."""
  groups: dict[tuple, list[jax.Array]] = {}
  for leaf in jax.tree.leaves(tree):
    groups.setdefault((tuple(leaf.shape), str(jnp.dtype(leaf.dtype))), []).append(leaf)
  total = jnp.zeros((), jnp.float32)
  for members in groups.values():
    x = (members[0] if len(members) == 1 else jnp.stack(members)).astype(jnp.float32)
    total = total + jnp.sum(x * x)
  return jnp.sqrt(total)
