"""Logical-axis rules -> parameter shardings, with an fsdp fallback and a replication report.

Every parameter carries logical axis names (``nn.with_logical_partitioning``). One rules table
(``config.mesh.rules``, default :data:`DEFAULT_RULES`) maps each logical name to mesh axes. A mesh
axis is used at most once per parameter and only where it divides the dimension; otherwise that
dimension stays replicated and the report says so. A parameter of at least ``fsdp_min_size``
elements that no rule shards over ``fsdp`` gets its largest divisible free dimension sharded over
``fsdp`` (the big_vision/maxtext fallback), so nothing large is left replicated by accident.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from path_jax.parallel.mesh import BATCH_AXES

Rules = Sequence[tuple[str, Any]]

DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("embed", "fsdp"),
    ("mlp", "model"),
    ("qkv", "model"),
    ("heads", "model"),
    ("classes", "model"),
    ("vocab", "model"),
    ("layers", None),
    ("tokens", None),
    ("kv", None),
    ("proj_embed", None),
)


@dataclasses.dataclass
class ShardingReport:
  """What the rules did: replicated large parameters, fallbacks and indivisible dimensions."""
  replicated: list[tuple[str, tuple[int, ...]]] = dataclasses.field(default_factory=list)
  fallback: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  indivisible: list[str] = dataclasses.field(default_factory=list)
  unknown_names: set = dataclasses.field(default_factory=set)

  def lines(self) -> list[str]:
    out = []
    if self.replicated:
      out.append(f"{len(self.replicated)} parameters left replicated: "
                 + ", ".join(f"{p}{list(s)}" for p, s in self.replicated[:20])
                 + (" ..." if len(self.replicated) > 20 else ""))
    if self.fallback:
      out.append(f"{len(self.fallback)} parameters sharded by the fsdp fallback: "
                 + ", ".join(f"{p} ({s})" for p, s in self.fallback[:20]))
    if self.indivisible:
      out.append("dimensions left replicated because the mesh axis does not divide them: "
                 + "; ".join(self.indivisible[:20]))
    if self.unknown_names:
      out.append(f"logical names with no rule (replicated): {sorted(self.unknown_names)}")
    return out


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _rule_axes(name: str | None, rules: Rules, report: ShardingReport) -> tuple[str, ...]:
  if name is None:
    return ()
  for logical, axes in rules:
    if logical == name:
      if axes is None:
        return ()
      return (axes,) if isinstance(axes, str) else tuple(axes)
  report.unknown_names.add(name)
  return ()


def spec_for(shape: Sequence[int], names: Sequence[str | None], mesh: Mesh, rules: Rules,
             fsdp_min_size: int, path: str, report: ShardingReport) -> P:
  """The PartitionSpec of one parameter of ``shape`` with logical ``names``."""
  used: set[str] = set()
  spec: list[Any] = []
  for dim, name in zip(shape, names):
    axes = [a for a in _rule_axes(name, rules, report) if a not in used and mesh.shape[a] > 1]
    size = math.prod(mesh.shape[a] for a in axes) if axes else 1
    if axes and dim % size:
      report.indivisible.append(f"{path} dim {dim} over {tuple(axes)} ({size})")
      axes = []
    used.update(axes)
    spec.append(None if not axes else (axes[0] if len(axes) == 1 else tuple(axes)))
  n = math.prod(shape) if shape else 1
  fsdp = mesh.shape.get("fsdp", 1)
  if "fsdp" not in used and fsdp > 1 and n >= fsdp_min_size:
    free = [i for i, s in enumerate(spec) if s is None and shape[i] % fsdp == 0]
    if free:
      i = max(free, key=lambda j: shape[j])
      spec[i] = "fsdp"
      report.fallback.append((path, f"dim {i} over fsdp"))
  if n >= fsdp_min_size and all(s is None for s in spec):
    report.replicated.append((path, tuple(shape)))
  return P(*spec)


def param_shardings(abstract_params: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES, *,
                    fsdp_min_size: int = 2 ** 18) -> tuple[Any, ShardingReport]:
  """NamedShardings for a (boxed, possibly abstract) parameter tree; the tree comes back unboxed.

  Leaves without logical names (plain flax initialisers) count as all-``None`` and fall under the
  fsdp fallback like any other.
  """
  report = ShardingReport()

  def one(path, leaf):
    if isinstance(leaf, nn.Partitioned):
      names, shape = tuple(leaf.names), tuple(leaf.value.shape)
    else:
      shape = tuple(np.shape(leaf))
      names = (None,) * len(shape)
    return NamedSharding(mesh, spec_for(shape, names, mesh, rules, fsdp_min_size,
                                        _path_str(path), report))

  shardings = jax.tree_util.tree_map_with_path(
      one, abstract_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  return shardings, report


def state_leaf_sharding(param_sharding: NamedSharding, leaf_shape: Sequence[int]) -> NamedSharding:
  """Sharding of an optimiser-state leaf that mirrors a parameter (same rank, maybe size-1 axes
  for factored statistics, or a scalar for an unused slot)."""
  spec = tuple(param_sharding.spec)
  shape = tuple(leaf_shape)
  if len(shape) != len(spec) and not (len(spec) < len(shape)):
    return NamedSharding(param_sharding.mesh, P())
  spec = spec + (None,) * (len(shape) - len(spec))
  mesh = param_sharding.mesh
  out = []
  for dim, s in zip(shape, spec):
    if s is None:
      out.append(None)
      continue
    axes = (s,) if isinstance(s, str) else tuple(s)
    size = math.prod(mesh.shape[a] for a in axes)
    out.append(s if dim % size == 0 and dim >= size else None)
  return NamedSharding(mesh, P(*out))


def _key_name(k) -> Any:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return getattr(k, attr)
  return str(k)


def opt_state_shardings(tx: optax.GradientTransformation, abstract_opt_state: Any,
                        param_shards: Any, mesh: Mesh) -> Any:
  """Shardings for an optimiser state: leaves that mirror a parameter follow its sharding
  (size-1 and scalar slots replicated), everything else (counters) is replicated.

  A state leaf mirrors the parameter whose path ends its own key path (optax states nest the
  parameter tree inside their own containers: chains, masks, multi_transform partitions).
  """
  del tx
  replicated = NamedSharding(mesh, P())
  by_path = {tuple(_key_name(k) for k in path): sh for path, sh in
             jax.tree_util.tree_leaves_with_path(
                 param_shards, is_leaf=lambda x: isinstance(x, NamedSharding))}
  longest = max((len(p) for p in by_path), default=0)

  def one(path, leaf):
    names = tuple(_key_name(k) for k in path)
    for start in range(max(0, len(names) - longest), len(names)):
      sh = by_path.get(names[start:])
      if sh is not None:
        return state_leaf_sharding(sh, getattr(leaf, "shape", ()))
    return replicated

  return jax.tree_util.tree_map_with_path(one, abstract_opt_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Every dataset's sub-batch is split along its leading axis over the batch axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def rules_from_config(cfg) -> tuple[tuple[str, Any], ...]:
  rules = cfg.get("rules", None) if cfg is not None else None
  if not rules:
    return DEFAULT_RULES
  return tuple((str(k), None if v is None else (v if isinstance(v, str) else tuple(v)))
               for k, v in rules)
