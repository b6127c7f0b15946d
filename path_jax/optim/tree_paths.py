"""Parameter paths and per-leaf specifications for the optimiser transforms.

A parameter's *path* is the tuple of its dict keys, e.g.
``('backbone', 'block_3', 'attn', 'qkv', 'kernel')``. Wrappers that are not dict keys (the
``.value`` of a ``nn.Partitioned`` box) are skipped, so boxed and unboxed trees give the same
paths; sequence indices become strings.

The transforms in this package take per-leaf settings (learning-rate multipliers, decay masks,
stacked-axis counts) as a *leaf spec*: a constant, a tree shaped like the parameters, or a
function ``(path, leaf) -> value``. They look values up by path at update time, so they also
work inside ``optax.multi_transform``, which hands them trees with frozen leaves removed.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import jax
import numpy as np

Path = tuple[str, ...]
LeafFn = Callable[[Path, Any], Any]


def path_names(keypath) -> Path:
  """Dict-key names of a JAX key path (``tree_flatten_with_path``), wrappers skipped."""
  names = []
  for key in keypath:
    if isinstance(key, jax.tree_util.DictKey):
      names.append(str(key.key))
    elif isinstance(key, jax.tree_util.SequenceKey):
      names.append(str(key.idx))
  return tuple(names)


def path_str(path: Path) -> str:
  return "/".join(path)


def map_with_paths(fn: Callable[..., Any], tree, *rest):
  """``jax.tree.map`` whose function gets the leaf's :func:`path_names` first."""
  return jax.tree_util.tree_map_with_path(
      lambda kp, x, *r: fn(path_names(kp), x, *r), tree, *rest)


def leaves_with_paths(tree) -> list[tuple[Path, Any]]:
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [(path_names(kp), x) for kp, x in flat]


def _is_constant(spec) -> bool:
  return isinstance(spec, (bool, int, float, np.number, np.bool_)) or (
      isinstance(spec, (np.ndarray, jax.Array)) and spec.ndim == 0)


def leaf_fn(spec, what: str) -> LeafFn:
  """Turns a leaf spec (constant, parameter-shaped tree or function) into a path lookup.

  Args:
    spec: a scalar (same value for every leaf), a tree with the parameters' structure (values
      may be arrays that broadcast against their leaf), or ``fn(path, leaf) -> value``.
    what: name of the setting, used in error messages.
  """
  if callable(spec):
    return spec
  if _is_constant(spec):
    return lambda path, leaf: spec
  table = dict(leaves_with_paths(spec))

  def lookup(path: Path, leaf):
    try:
      return table[path]
    except KeyError:
      raise KeyError(
          f"{what} has no entry for parameter '{path_str(path)}'; build it from the same "
          "parameter tree that the optimiser is initialised with.") from None

  return lookup


def match_rules(params, rules: Sequence[tuple[str, Any]], what: str):
  """Tree of values from ``(regex, value)`` rules; the first rule whose regex fullmatches the
  '/'-joined path wins. Every leaf must match a rule (a coverage check), otherwise ValueError
  lists the unmatched paths."""
  compiled = [(re.compile(pattern), value) for pattern, value in rules]
  unmatched = []

  def value_of(path: Path, leaf):
    name = path_str(path)
    for pattern, value in compiled:
      if pattern.fullmatch(name):
        return value
    unmatched.append(name)
    return None

  tree = map_with_paths(value_of, params)
  if unmatched:
    shown = ", ".join(unmatched[:10]) + (" ..." if len(unmatched) > 10 else "")
    raise ValueError(
        f"{what}: no rule matches {len(unmatched)} parameter(s): {shown}. Add a "
        f"(regex, value) rule that covers them (rules: {[p for p, _ in rules]}).")
  return tree


def stacked_axes(params, stacked_names: Sequence[str] = ("blocks",)):
  """Tree of ints: 1 for leaves under a subtree named in ``stacked_names`` (scanned layers
  with a leading layer axis), else 0."""
  names = set(stacked_names)
  return map_with_paths(lambda path, leaf: int(any(n in names for n in path)), params)
