"""Evaluation iteration: every record exactly once across hosts, static shapes, padding masked.

Host ``h`` of ``n`` takes records ``h, h + n, ...``. Every host runs the same number of batches,
``ceil(ceil(N / n) / batch_size)``, so collective steps line up; slots past a host's share hold
a zero example with ``mask`` False and ``index`` -1. Each batch adds two fields:

* ``'mask'``  ``[B]`` bool: the slot holds a real, decoded example.
* ``'index'`` ``[B]`` int32: the record's index in the split (-1 for padding); a record that
  failed to decode keeps its index with ``mask`` False, so it is visibly not evaluated.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import grain
import numpy as np

from path_jax.input import sampling
from path_jax.input.fields import BadExampleError
from path_jax.input.mixture import ensure_flags_parsed, stack, transforms_module


class _EvalElement:
  """``slot -> example dict + 'mask' + 'index'`` (padding -> template)."""

  def __init__(self, source, transform: Callable[[Any], dict], indices: np.ndarray,
               template: Mapping[str, np.ndarray]):
    self.source, self.transform = source, transform
    self.indices, self.template = indices, template

  def __call__(self, slot: int) -> dict[str, np.ndarray]:
    if slot >= len(self.indices):
      return dict(self.template, mask=np.False_, index=np.int32(-1))
    index = int(self.indices[slot])
    try:
      record = self.source[index]
    except Exception:  # noqa: BLE001  (a record that fails to decode is reported by the mask)
      return dict(self.template, mask=np.False_, index=np.int32(index))
    try:
      example = self.transform(record)
    except BadExampleError:
      return dict(self.template, mask=np.False_, index=np.int32(index))
    return dict(example, mask=np.True_, index=np.int32(index))


def _template(source, transform) -> dict[str, np.ndarray]:
  """Zeros shaped like a transformed example (from the first record that transforms)."""
  for i in range(min(len(source), 16)):
    try:
      record = source[i]
    except Exception:  # noqa: BLE001  (a corrupt record cannot give the template; try the next)
      continue
    try:
      example = transform(record)
    except BadExampleError:
      continue
    return {k: np.zeros_like(np.asarray(v)) for k, v in example.items()}
  raise ValueError("none of the first 16 records of the evaluation set could be transformed; "
                   "check the dataset and its eval transform.")


class EvalIterator:
  """Iterable of padded batches; ``len()`` batches, the same on every host."""

  def __init__(self, dataset: grain.IterDataset, num_batches: int, num_examples: int):
    self._dataset, self.num_batches, self.num_examples = dataset, num_batches, num_examples
    self.skipped = 0

  def __len__(self) -> int:
    return self.num_batches

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    self.skipped = 0
    for batch in self._dataset:
      self.skipped += int(np.sum((batch["index"] >= 0) & ~batch["mask"]))
      yield batch


def eval_iterator(source: Sequence[Any], transform: Callable[[Any], dict], batch_size: int, *,
                  shard_index: int | None = None, shard_count: int | None = None,
                  num_workers: int = 0) -> EvalIterator:
  """Padded, masked batches of this host's share of ``source`` (``batch_size`` per host)."""
  if shard_index is None or shard_count is None:
    import jax
    shard_index, shard_count = jax.process_index(), jax.process_count()
  if batch_size < 1:
    raise ValueError(f"eval batch_size must be >= 1, got {batch_size}.")
  n = len(source)
  mine = sampling.shard_indices(n, shard_index, shard_count)
  num_batches = math.ceil(math.ceil(n / shard_count) / batch_size)
  element = _EvalElement(source, transform, mine, _template(source, transform))
  ds = grain.MapDataset.range(num_batches * batch_size).map(element).batch(
      batch_size, batch_fn=stack)
  it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=0))
  if num_workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    ensure_flags_parsed()
  return EvalIterator(it_ds, num_batches, n)


def eval_iterator_for(task: str, cfg: Mapping[str, Any], source: Sequence[Any],
                      batch_size: int, **kwargs) -> EvalIterator:
  """:func:`eval_iterator` with the task's eval transform built from the dataset config."""
  return eval_iterator(source, transforms_module(task).eval_transform(cfg), batch_size, **kwargs)
