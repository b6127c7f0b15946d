"""The multi-dataset training iterator: ``dict[dataset -> dict[field -> np.ndarray]]`` per step.

One grain pipeline per dataset, each on this host's shard of its records:

    index stream (sampling.py; (epoch, record) per element, infinite)
      -> read + task train transform   (random_map: rng from (seed, element index))
      -> to_iter_dataset [-> mp_prefetch(num_workers) when num_workers > 0]
      -> _SkipAndBatch                 (drops records that failed to decode, stacks batch_size)

and one :class:`MixtureIterator` over all of them. Everything before the batcher is a pure
function of (seed, element index), so the state of a dataset's iterator is grain's position plus
the batcher's counters; :meth:`MixtureIterator.get_state` / ``set_state`` hold every dataset's,
and the iterator is a ``grain.DatasetIterator``, so an orbax composite with
``grain.checkpoint.CheckpointSave(iterator)`` restores it to the identical next batch.

Records that fail to decode (any exception from the source) or that a transform rejects
(:class:`path_jax.input.fields.BadExampleError`) are skipped and counted per dataset; other
transform errors are bugs or config errors and propagate. A skipped record in a P x K stream
shifts later batches against the identity groups (by the number of skips, mod K): a batch may
then begin and end with partial groups. The builders already drop bad inputs, so this is rare
and costs triplet positives, never a wrong label.
"""
from __future__ import annotations

import dataclasses
import importlib
import zlib
from typing import Any, Callable, Mapping, Sequence

import grain
import numpy as np

from path_jax.input import sampling
from path_jax.input.fields import BadExampleError


def transforms_module(task: str):
  """``path_jax.tasks.<task>.transforms`` with an error naming the task and the file to add."""
  try:
    return importlib.import_module(f"path_jax.tasks.{task}.transforms")
  except ModuleNotFoundError as e:
    if e.name and e.name.startswith(f"path_jax.tasks.{task}"):
      raise ValueError(f"task {task!r} has no input transforms: add path_jax/tasks/{task}/"
                       f"transforms.py with train_transform(cfg) and eval_transform(cfg).") from e
    raise


@dataclasses.dataclass
class DatasetInput:
  """One dataset of the mixture, already opened.

  ``batch_size`` is this host's sub-batch (the global one divided by the number of hosts).
  ``sampler``: 'shuffle' (per-epoch permutation) or 'identity' (P x K, K from the config's
  ``images_per_identity``, identities read from the record field ``identity_key``).
  """
  name: str
  task: str
  source: Sequence[Any]
  cfg: Mapping[str, Any]
  batch_size: int
  sampler: str = "shuffle"
  identity_key: str = "person_id"
  labels: np.ndarray | None = None     # identity of every record (computed when None)
  shard: tuple[int, int] | None = None  # (index, count) of this host's records (None: by process)


class _ReadTransform:
  """``((epoch, record_index), rng) -> {'epoch', 'example'} | {'epoch', 'error'}``."""

  def __init__(self, source, transform: Callable[[Any, np.random.Generator], dict]):
    self.source, self.transform = source, transform

  def __call__(self, element, rng: np.random.Generator) -> dict[str, Any]:
    epoch, index = element
    try:
      record = self.source[index]
    except Exception as e:  # noqa: BLE001  (any decode failure of one record is counted, skipped)
      return {"epoch": epoch, "error": f"record {index}: {type(e).__name__}: {e}"}
    try:
      return {"epoch": epoch, "example": self.transform(record, rng)}
    except BadExampleError as e:
      return {"epoch": epoch, "error": f"record {index}: {e}"}


def stack(examples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
  """List of example dicts -> dict of ``[B, ...]`` arrays (shapes must agree)."""
  out = {}
  for key in examples[0]:
    try:
      out[key] = np.stack([np.asarray(e[key]) for e in examples])
    except ValueError:
      shapes = sorted({np.shape(e[key]) for e in examples})
      raise ValueError(f"field {key!r} has different shapes {shapes} across examples; the "
                       f"transform must give static shapes.") from None
  return out


class _SkipAndBatchIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, batch_size: int, name: str):
    super().__init__(parent)
    self._batch_size, self._name = batch_size, name
    self._skipped, self._epoch, self._batches = 0, 0, 0
    self.last_error = ""

  def __next__(self) -> dict[str, np.ndarray]:
    examples = []
    misses = 0
    while len(examples) < self._batch_size:
      element = next(self._parent)
      self._epoch = max(self._epoch, int(element["epoch"]))
      if "error" in element:
        self._skipped += 1
        self.last_error = element["error"]
        misses += 1
        if misses > 100 * self._batch_size:
          raise RuntimeError(f"dataset {self._name!r}: {misses} records in a row failed to "
                             f"decode; last: {self.last_error}")
        continue
      examples.append(element["example"])
    self._batches += 1
    return stack(examples)

  def get_state(self) -> dict[str, Any]:
    return {"parent": self._parent.get_state(), "skipped": self._skipped, "epoch": self._epoch,
            "batches": self._batches}

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._skipped = int(state["skipped"])
    self._epoch = int(state["epoch"])
    self._batches = int(state["batches"])

  @property
  def counters(self) -> dict[str, int]:
    return {"epoch": self._epoch, "skipped": self._skipped, "batches": self._batches}


class _SkipAndBatch(grain.IterDataset):

  def __init__(self, parent: grain.IterDataset, batch_size: int, name: str):
    super().__init__(parent)
    self._batch_size, self._name = batch_size, name

  def __iter__(self) -> _SkipAndBatchIterator:
    return _SkipAndBatchIterator(self._parent.__iter__(), self._batch_size, self._name)

  def __str__(self) -> str:
    return f"SkipAndBatch({self._name}, batch_size={self._batch_size})"


def ensure_flags_parsed() -> None:
  """grain's worker processes read absl flags; outside an absl app (tests, notebooks) nobody
  parsed them, so accept the defaults instead of failing in the worker."""
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def dataset_seed(seed: int, name: str) -> int:
  """Per-dataset seed (stable across runs and Python processes): datasets draw independently."""
  return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2 ** 31)


def train_dataset(ds: DatasetInput, *, seed: int, shard_index: int, shard_count: int,
                  num_workers: int = 0, read_threads: int = 1,
                  prefetch: int = 0) -> grain.IterDataset:
  """The grain pipeline of one dataset on this host's shard, yielding ``batch_size`` batches."""
  module = transforms_module(ds.task)
  transform = module.train_transform(ds.cfg)
  s = dataset_seed(seed, ds.name)
  if ds.sampler == "identity":
    k = int(ds.cfg.get("images_per_identity", None) or
            getattr(module, "DEFAULTS", {}).get("images_per_identity", 4))
    if ds.batch_size % k:
      raise ValueError(f"dataset {ds.name!r}: per-host batch {ds.batch_size} is not a multiple of "
                       f"images_per_identity K={k}; P x K batches need B = P * K.")
    labels = ds.labels
    if labels is None:
      labels = sampling_labels(ds.source, ds.identity_key)
    mine = sampling.identity_shard(labels, shard_index, shard_count)
    index_ds = sampling.IdentityBatches(labels[mine], mine, ds.batch_size // k, k, s)
  elif ds.sampler == "shuffle":
    mine = sampling.shard_indices(len(ds.source), shard_index, shard_count)
    index_ds = sampling.EpochShuffle(mine, s)
  else:
    raise ValueError(f"dataset {ds.name!r}: unknown sampler {ds.sampler!r}; use 'shuffle' or "
                     f"'identity'.")
  mapped = index_ds.random_map(_ReadTransform(ds.source, transform), seed=s)
  it_ds = mapped.to_iter_dataset(grain.ReadOptions(num_threads=read_threads,
                                                   prefetch_buffer_size=prefetch))
  if num_workers > 0:
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    ensure_flags_parsed()
  return _SkipAndBatch(it_ds, ds.batch_size, ds.name)


def sampling_labels(source, key: str) -> np.ndarray:
  """Identity of every record of ``source`` (reads records once; see sources.read_column)."""
  from path_jax.input.sources import read_column
  return read_column(source, key)


class MixtureIterator(grain.DatasetIterator):
  """``next()`` -> ``{dataset: {field: [B_d, ...] np.ndarray}}`` with every dataset's batch.

  ``get_state()`` / ``set_state()`` cover every dataset; :meth:`stats` reports per dataset the
  epoch reached, the records skipped for bad input and the batches drawn.
  """

  def __init__(self, iterators: Mapping[str, _SkipAndBatchIterator]):
    self._names = tuple(sorted(iterators))
    super().__init__([iterators[n] for n in self._names])
    self._iterators = dict(iterators)

  def __next__(self) -> dict[str, dict[str, np.ndarray]]:
    return {n: next(self._iterators[n]) for n in self._names}

  def get_state(self) -> dict[str, Any]:
    return {n: self._iterators[n].get_state() for n in self._names}

  def set_state(self, state: dict[str, Any]) -> None:
    missing = set(self._names) - set(state)
    if missing:
      raise KeyError(f"iterator state has no entry for datasets {sorted(missing)} (it holds "
                     f"{sorted(state)}); the checkpoint was written with other datasets.")
    for n in self._names:
      self._iterators[n].set_state(state[n])

  def stats(self) -> dict[str, dict[str, int]]:
    return {n: self._iterators[n].counters for n in self._names}

  def close(self) -> None:
    for it in self._iterators.values():
      it.close()
    super().close()


def make_train_iterator(datasets: Sequence[DatasetInput], *, seed: int,
                        shard_index: int | None = None, shard_count: int | None = None,
                        num_workers: int = 0, read_threads: int = 1,
                        prefetch: int = 0) -> MixtureIterator:
  """The mixture iterator over ``datasets`` on one host.

  ``shard_index`` / ``shard_count`` default to ``jax.process_index()`` / ``jax.process_count()``;
  tests pass them to simulate several hosts in one process. ``num_workers`` > 0 runs each
  dataset's read + transform in that many worker processes (0 = in this process).
  """
  if shard_index is None or shard_count is None:
    import jax
    shard_index, shard_count = jax.process_index(), jax.process_count()
  names = [d.name for d in datasets]
  if len(set(names)) != len(names):
    raise ValueError(f"dataset names must be unique, got {names}.")
  its = {}
  for d in datasets:
    index, count = d.shard if d.shard is not None else (shard_index, shard_count)
    its[d.name] = iter(train_dataset(d, seed=seed, shard_index=index,
                                     shard_count=count, num_workers=num_workers,
                                     read_threads=read_threads, prefetch=prefetch))
  return MixtureIterator(its)


def inputs_from_config(datasets_cfg: Mapping[str, Mapping[str, Any]], *,
                       shard_count: int | None = None,
                       streams: Mapping[str, tuple[int, int, int]] | None = None
                       ) -> list[DatasetInput]:
  """Opens every dataset of a config's ``datasets`` subtree (name -> dataset config).

  Fields read per dataset: ``task``, ``tfds_name``, ``data_dir``, ``split`` (default 'train'),
  ``batch_size`` (global sub-batch; divided by the number of hosts, or as ``streams`` says),
  ``sampler`` (default: the task's ``TRAIN_SAMPLER`` field -> 'identity', else 'shuffle'), plus
  the task's transform fields. ``streams`` (placement 'slices', path_jax.train.host_streams):
  only the datasets it names are opened, each with its (shard index, shard count, host batch).
  """
  from path_jax.input.sources import open_source, read_column
  if shard_count is None:
    import jax
    shard_count = jax.process_count()
  out = []
  for name, cfg in datasets_cfg.items():
    if streams is not None and name not in streams:
      continue   # placement 'slices': another host's stream
    for key in ("task", "tfds_name", "data_dir", "batch_size"):
      if cfg.get(key, None) is None:
        raise KeyError(f"dataset {name!r} config has no {key!r}.")
    batch = int(cfg["batch_size"])
    shard = None
    if streams is not None:
      index, count, host_batch = streams[name]
      shard = (int(index), int(count))
    elif batch % shard_count:
      raise ValueError(f"dataset {name!r}: batch_size {batch} is not divisible by the "
                       f"{shard_count} hosts.")
    else:
      host_batch = batch // shard_count
    split = cfg.get("split", None) or "train"
    module = transforms_module(cfg["task"])
    identity_key = getattr(module, "TRAIN_SAMPLER", None)
    sampler = cfg.get("sampler", None) or ("identity" if identity_key else "shuffle")
    source = open_source(cfg["tfds_name"], split, cfg["data_dir"])
    labels = None
    if sampler == "identity":
      raw = open_source(cfg["tfds_name"], split, cfg["data_dir"], decode_images=False)
      labels = read_column(raw, identity_key or "person_id")
    out.append(DatasetInput(name=name, task=cfg["task"], source=source, cfg=cfg,
                            batch_size=host_batch, sampler=sampler,
                            identity_key=identity_key or "person_id", labels=labels,
                            shard=shard))
  return out
