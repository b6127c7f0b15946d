"""Host-local NumPy batches -> global ``jax.Array`` s sharded along the mesh's batch axes.

Every host passes its own sub-batch of every dataset (``[B_local, ...]``); the global array has
``B_local * process_count`` rows split over the mesh axes named in ``batch_axes`` that the mesh
has (default ``('data', 'fsdp')``) and is replicated over the others.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXES = ("data", "fsdp")


def batch_spec(mesh: Mesh, ndim: int, batch_axes: Sequence[str] = BATCH_AXES) -> PartitionSpec:
  """``PartitionSpec((batch axes present in mesh), None, ...)`` for an array of rank ``ndim``."""
  axes = tuple(a for a in batch_axes if a in mesh.axis_names)
  if ndim == 0:
    return PartitionSpec()
  return PartitionSpec(axes if axes else None, *([None] * (ndim - 1)))


def batch_shards(mesh: Mesh, batch_axes: Sequence[str] = BATCH_AXES) -> int:
  """Number of shards the batch dimension is split into."""
  return int(np.prod([mesh.shape[a] for a in batch_axes if a in mesh.axis_names]))


def to_global(batch: Any, mesh: Mesh, batch_axes: Sequence[str] = BATCH_AXES,
              global_rows: int | None = None) -> Any:
  """Pytree of host-local ``[B_local, ...]`` arrays -> pytree of global ``jax.Array`` s.

  ``global_rows``: the global batch size, needed when the hosts feed different numbers of rows
  (a task group's sub-mesh in placement 'slices' may hold 2 devices of one host and 3 of
  another); by default every host feeds the same share.

  Raises a ValueError naming the field whose local batch does not split evenly over this
  host's share of the batch shards.
  """
  shards = batch_shards(mesh, batch_axes)
  # The batch shards this host's devices hold (hosts of a sub-mesh may hold different numbers).
  axes = [i for i, a in enumerate(mesh.axis_names) if a in batch_axes]
  me = jax.process_index()
  local_shards = max(1, len({tuple(idx[i] for i in axes)
                             for idx, d in np.ndenumerate(mesh.devices)
                             if d.process_index == me}))

  def one(path, x):
    x = np.asarray(x)
    if x.ndim == 0:
      raise ValueError(f"batch field {jax.tree_util.keystr(path)} is a scalar; every field needs "
                       f"a leading batch axis.")
    if x.shape[0] % local_shards:
      raise ValueError(
          f"batch field {jax.tree_util.keystr(path)} has {x.shape[0]} rows on this host, not a "
          f"multiple of the {local_shards} batch shards this host feeds (mesh axes "
          f"{[a for a in batch_axes if a in mesh.axis_names]}); make that dataset's batch_size a "
          f"multiple of {shards}.")
    sharding = NamedSharding(mesh, batch_spec(mesh, x.ndim, batch_axes))
    shape = None if global_rows is None else (int(global_rows),) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)

  return jax.tree_util.tree_map_with_path(one, batch)
