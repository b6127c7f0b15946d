"""Index streams for training: per-epoch shuffling and identity-balanced (P x K) sampling.

Both are infinite grain ``MapDataset`` s whose element ``i`` is ``(epoch, record_index)``: pure
functions of ``(seed, i)``, so an iterator's position alone is its checkpointable state, any
worker can compute any element, and a resumed run sees the same stream.
"""
from __future__ import annotations

import sys

import grain
import numpy as np


def shard_indices(n: int, shard_index: int, shard_count: int) -> np.ndarray:
  """Record indices ``shard_index, shard_index + shard_count, ...`` below ``n`` (one host's share)."""
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count}).")
  return np.arange(shard_index, n, shard_count, dtype=np.int64)


class EpochShuffle(grain.MapDataset):
  """Infinite stream over ``indices``, a fresh permutation every epoch (or in order)."""

  def __init__(self, indices: np.ndarray, seed: int, shuffle: bool = True):
    super().__init__()
    self._indices = np.asarray(indices, np.int64)
    if not len(self._indices):
      raise ValueError("EpochShuffle got no records; this host's shard of the dataset is empty "
                       "(more hosts than records?).")
    self._seed = int(seed)
    self._shuffle = shuffle
    self._cache: tuple[int, np.ndarray] | None = None

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f"EpochShuffle(n={len(self._indices)}, seed={self._seed})"

  def _order(self, epoch: int) -> np.ndarray:
    if self._cache is None or self._cache[0] != epoch:
      n = len(self._indices)
      perm = (np.random.default_rng([self._seed, epoch]).permutation(n) if self._shuffle
              else np.arange(n))
      self._cache = (epoch, self._indices[perm])
    return self._cache[1]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, pos = divmod(int(index), len(self._indices))
    return epoch, int(self._order(epoch)[pos])


class IdentityBatches(grain.MapDataset):
  """P x K sampling (PATH ``RandomIdentityBatchSampler``): every ``P*K`` consecutive elements are
  K records of each of P distinct identities.

  An epoch is one pass over a fresh permutation of the identities, ``len(ids) // P`` groups (the
  last partial group is dropped). Each identity's K records are drawn without replacement when it
  has at least K, with replacement otherwise, from ``default_rng([seed, epoch, identity])``.
  """

  def __init__(self, labels: np.ndarray, indices: np.ndarray, p: int, k: int, seed: int):
    super().__init__()
    labels, indices = np.asarray(labels, np.int64), np.asarray(indices, np.int64)
    if labels.shape != indices.shape:
      raise ValueError(f"labels {labels.shape} and indices {indices.shape} must match.")
    if p < 1 or k < 1:
      raise ValueError(f"P x K sampling needs P >= 1 and K >= 1, got P={p}, K={k}.")
    order = np.argsort(labels, kind="stable")
    self._ids, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    if len(self._ids) < p:
      raise ValueError(f"P x K sampling needs P={p} identities per batch but this host's shard "
                       f"has {len(self._ids)}; lower the batch size or K (images_per_identity).")
    self._members = indices[order]
    self._starts, self._counts = starts, counts
    self._p, self._k, self._seed = int(p), int(k), int(seed)
    self._groups = len(self._ids) // self._p
    self._cache: tuple[int, np.ndarray] | None = None

  def __len__(self) -> int:
    return sys.maxsize

  def __str__(self) -> str:
    return f"IdentityBatches(ids={len(self._ids)}, P={self._p}, K={self._k}, seed={self._seed})"

  @property
  def elements_per_epoch(self) -> int:
    return self._groups * self._p * self._k

  def _id_order(self, epoch: int) -> np.ndarray:
    if self._cache is None or self._cache[0] != epoch:
      self._cache = (epoch, np.random.default_rng([self._seed, epoch]).permutation(len(self._ids)))
    return self._cache[1]

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, pos = divmod(int(index), self.elements_per_epoch)
    group, within = divmod(pos, self._p * self._k)
    slot, k = divmod(within, self._k)
    ident = int(self._id_order(epoch)[group * self._p + slot])
    n = int(self._counts[ident])
    rng = np.random.default_rng([self._seed, epoch, ident, 1])
    pick = rng.choice(n, size=self._k, replace=n < self._k)[k]
    return epoch, int(self._members[self._starts[ident] + pick])


def identity_shard(labels: np.ndarray, shard_index: int, shard_count: int) -> np.ndarray:
  """Record indices of this host's identities (every ``shard_count``-th sorted identity), so each
  identity's images stay on one host and P x K groups are whole on every host."""
  labels = np.asarray(labels, np.int64)
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index {shard_index} must be in [0, shard_count={shard_count}).")
  ids = np.unique(labels)
  mine = ids[shard_index::shard_count]
  return np.flatnonzero(np.isin(labels, mine))
