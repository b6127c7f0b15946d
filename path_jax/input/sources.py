"""Opening prepared TFDS datasets (ArrayRecord) as grain random-access sources.

Datasets are prepared once with ``python data/build.py <builder>/<config> --manual_dir=DIR
--data_dir=DIR`` (data/README.md) and read here with ``tfds.data_source``; the builders are
never imported at train time. Any object with ``__len__`` and ``__getitem__`` returning a record
dict works wherever a source is expected (tests and benchmarks use in-memory lists).
"""
from __future__ import annotations

import glob
import os
from typing import Any, Sequence

import numpy as np


def _build_hint(name: str, data_dir: str) -> str:
  return (f"prepare it with: python data/build.py {name} --manual_dir=<the dataset's source "
          f"folder, layout in data/README.md> --data_dir={data_dir}")


def dataset_dir(name: str, data_dir: str) -> str:
  """``data_dir/<builder>/<config>/<version>`` of a prepared dataset (the newest version).

  Raises FileNotFoundError naming the missing path and the command that prepares it.
  """
  if not data_dir:
    raise ValueError(f"dataset {name!r} has no data_dir; set the dataset config's data_dir to the "
                     f"folder given to data/build.py --data_dir.")
  root = os.path.join(os.path.expanduser(data_dir), name)
  found = sorted(glob.glob(os.path.join(root, "*", "dataset_info.json")))
  if not found:
    raise FileNotFoundError(f"TFDS dataset {name!r} is not prepared: no {root}/<version>/"
                            f"dataset_info.json; {_build_hint(name, data_dir)}")
  return os.path.dirname(found[-1])


def check_prepared(name: str, split: str, data_dir: str) -> str:
  """Checks that ``split`` of ``name`` is prepared in ``data_dir`` (without importing TFDS);
  returns the dataset folder. Errors name the missing path and the preparation command."""
  import json
  info_dir = dataset_dir(name, data_dir)
  with open(os.path.join(info_dir, "dataset_info.json")) as f:
    splits = [s["name"] for s in json.load(f).get("splits", [])]
  if split not in splits:
    raise ValueError(f"dataset {name!r} in {info_dir} has no split {split!r}; its splits are "
                     f"{splits}. Fix the dataset config's split.")
  return info_dir


def data_kind(folder: str) -> str:
  """Which kind of data a prepared dataset's version folder holds: ``'humanbench_mini'`` (the
  synthetic sets, built under the real datasets' names) or ``'real'``.

  Read from the ``source`` its build recorded in ``build_report.json``; builds older than that
  record count as humanbench_mini when the data dir's ``humanbench_mini.json`` index lists
  them."""
  import json
  try:
    with open(os.path.join(folder, "build_report.json")) as f:
      source = json.load(f).get("source")
  except (OSError, ValueError):
    source = None
  if source:
    return "humanbench_mini" if source == "humanbench_mini" else "real"
  config_dir = os.path.dirname(os.path.normpath(folder))
  builder_dir = os.path.dirname(config_dir)
  index = os.path.join(os.path.dirname(builder_dir), "humanbench_mini.json")
  name = f"{os.path.basename(builder_dir)}/{os.path.basename(config_dir)}"
  try:
    with open(index) as f:
      return "humanbench_mini" if name in json.load(f).get("datasets", {}) else "real"
  except (OSError, ValueError):
    return "real"


def open_source(name: str, split: str, data_dir: str, *, decode_images: bool = True) -> Any:
  """``tfds.data_source(name, split=split, data_dir=data_dir)`` with errors that say what to do.

  ``decode_images=False`` leaves 'image' as encoded bytes (fast reads of the label fields).
  """
  check_prepared(name, split, data_dir)
  import tensorflow_datasets as tfds  # only when a TFDS source is actually opened
  decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
  return tfds.data_source(name, split=split, data_dir=os.path.expanduser(data_dir),
                          decoders=decoders)


def read_column(source: Sequence[Any], key: str, indices: np.ndarray | None = None) -> np.ndarray:
  """``[N]`` values of one scalar field of every record (or of ``indices``), e.g. 'person_id'.

  Uses the source's batched ``__getitems__`` when it has one. For a TFDS source open it with
  ``decode_images=False`` first: this reads every record once.
  """
  idx = np.arange(len(source)) if indices is None else np.asarray(indices)
  out = np.empty(len(idx), np.int64)
  getitems = getattr(source, "__getitems__", None)
  step = 4096
  for start in range(0, len(idx), step):
    chunk = [int(i) for i in idx[start:start + step]]
    records = getitems(chunk) if getitems else [source[i] for i in chunk]
    for j, record in enumerate(records):
      if key not in record:
        raise KeyError(f"records have no field {key!r} (fields: {sorted(record)}); the sampler "
                       f"needs it.")
      out[start + j] = int(record[key])
  return out
