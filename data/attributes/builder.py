"""Pedestrian attribute builder: the Rethinking-PAR ``dataset.pkl`` format.

``dataset.pkl`` holds ``image_name`` (N names), ``label`` (N x A, values 0/1; -1 = unknown),
``attr_name`` (A names), ``partition`` with ``trainval`` and ``test`` index arrays (a list of
arrays -> the first one, as RAPv2/PETA ship five random partitions) and optionally
``label_idx.eval`` (the attribute columns used for evaluation, e.g. PETA's 35 of 105; used when
the config sets ``use_eval_label_idx``). Images live in ``data/`` next to the pickle.

Native configs (``<name>_native``) read the publishers' releases as extracted, converting in
code what Rethinking-PAR's ``format_*.py`` scripts would have written to the pickle:

* ``pa100k_native``: ``annotation.mat`` (HydraPlus-Net release, github.com/xh-liu/HydraPlus-Net:
  ``{train,val,test}_images_name`` cells, ``{train,val,test}_label`` [n, 26] 0/1,
  ``attributes`` [26] names); ``train`` = train + val images (Rethinking-PAR's ``trainval``),
  ``test`` = test images; images in ``data/`` (or ``release_data/release_data/`` etc., the
  first folder that holds the first image).
* ``rapv2_native``: ``RAP_annotation/RAP_annotation.mat`` (rapdataset.com; the struct
  ``RAP_annotation`` with ``name`` [N], ``attribute`` [152], ``data`` [N, 152],
  ``selected_attribute`` [54] 1-based columns evaluated, ``partition_attribute`` [5] structs of
  1-based ``train_index``/``val_index``/``test_index``); images in ``RAP_dataset/``.
* ``peta_native``: ``PETA.mat`` (the 19,000-image PETA release of Deng et al. as packaged with
  the partitions by github.com/dangweili/pedestrian-attribute-recognition-pytorch: the struct
  ``peta`` with ``data`` [N, 4 + 105] (4 id columns, then the labels), ``attribute`` [105],
  ``partition_attribute`` [5] structs as RAPv2's); the 35 evaluated attributes are the first 35
  label columns; image ``i`` (0-based row) is ``images/{i+1:05d}.png``.

For all three: partition ``partition`` (default 0, as Rethinking-PAR) of the five; ``train`` =
its train + val indices. Label value 2 (RAP's "uncertain") becomes 0, as Rethinking-PAR's
dataset class does; any other value outside {0, 1} skips the record (``label_out_of_range``).
With ``rethinking_par_order`` (default) the evaluated columns are put in Rethinking-PAR's
``group_order`` (the order its pickles' ``label_idx.eval`` gives, so a native build has the
columns of a pickle build); without it, in the publisher's order.

Records: ``image`` (encoded RGB), ``labels`` [A] int8, ``filename`` text. Metadata:
``attr_names`` and ``positive_ratio`` (fraction of 1 among the known labels of the train
split, per attribute), used by the weighted BCE loss; native configs add ``source_columns``
(the 0-based columns of the publisher's label matrix, in record order) and ``partition``.
"""
from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from data import common


class _AttrDict(dict):
  """Stand-in for ``easydict.EasyDict`` so pickles that use it load without the package."""

  def __getattr__(self, k):
    try:
      return self[k]
    except KeyError as e:
      raise AttributeError(k) from e


class _SafeUnpickler(pickle.Unpickler):
  """Loads only plain containers, numpy arrays and EasyDicts (a pickle can run code)."""
  _ALLOWED = ("numpy", "collections", "easydict")
  _BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "str", "bytes",
               "bool", "complex", "slice", "range", "object"}

  def find_class(self, module, name):
    if module == "easydict" and name == "EasyDict":
      return _AttrDict
    if module == "builtins" and name in self._BUILTINS:
      return super().find_class(module, name)
    if module.split(".")[0] in self._ALLOWED:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"dataset.pkl refers to {module}.{name}, which is not allowed")


def load_pkl(path: str) -> dict:
  with open(path, "rb") as f:
    # latin1: the original Rethinking-PAR pickles of numpy arrays were written by Python 2.
    return _SafeUnpickler(f, encoding="latin1").load()


def first_partition(p) -> np.ndarray:
  """``partition[name]``: an index array, or a list of them (-> the first)."""
  if isinstance(p, (list, tuple)) and p and np.ndim(p[0]) >= 1:
    p = p[0]
  return np.asarray(p, np.int64).reshape(-1)


# Rethinking-PAR's attribute orders (``group_order`` of its format_pa100k.py, format_rap2.py and
# format_peta.py): positions into PA-100K's 26 attributes, RAPv2's 54 selected attributes and
# PETA's first 35 attributes. Its pickles evaluate (``label_idx.eval``) in this order.
PA100K_ORDER = (7, 8, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 9, 10, 11, 12, 1, 2, 3,
                0, 4, 5, 6)
RAPV2_ORDER = tuple(range(10, 45)) + (1, 2, 3, 4, 0, 5, 6, 7, 8, 9) + tuple(range(45, 54))
PETA_ORDER = (10, 18, 19, 30, 15, 7, 9, 11, 14, 21, 26, 29, 32, 33, 34, 6, 8, 12, 25, 27, 31, 13,
              23, 24, 28, 4, 5, 17, 20, 22, 0, 1, 2, 3, 16)
PETA_NUM_EVAL = 35

# PA-100K image folders seen after extracting the release, first match wins.
PA100K_IMAGE_DIRS = ("data", "release_data/release_data", "release_data",
                     "data/release_data/release_data", "data/release_data")
PA100K_ANNOTATIONS = ("annotation.mat", "annotation/annotation.mat")


@dataclasses.dataclass
class AttributesConfig(tfds.core.BuilderConfig):
  """``source``: 'pkl' (Rethinking-PAR pickle) or a native release 'pa100k_mat',
  'rapv2_mat', 'peta_mat'. ``pkl`` / ``image_dir`` / ``use_eval_label_idx``: pickle configs;
  ``annotation`` / ``image_dir`` / ``partition`` / ``rethinking_par_order``: native configs."""
  source: str = "pkl"
  pkl: str = "dataset.pkl"
  image_dir: str = "data"
  use_eval_label_idx: bool = True
  annotation: str = ""
  partition: int = 0
  rethinking_par_order: bool = True


@dataclasses.dataclass
class NativeTable:
  """A publisher's annotation converted to the pickle's content.

  ``image_names`` [N]; ``labels`` [N, A] int64 in {0, 1} (2 mapped to 0; other values are left
  for the record check); ``attr_names`` [A] and ``source_columns`` [A] (0-based columns of the
  publisher's matrix) of the kept attributes in record order; ``trainval`` / ``test`` 0-based
  row indices."""
  image_names: list
  labels: np.ndarray
  attr_names: list
  source_columns: list
  trainval: np.ndarray
  test: np.ndarray


def _bad(path, msg):
  return common.BadInputError(f"{path}: {msg}")


def load_mat(path: str) -> dict:
  """``scipy.io.loadmat`` with structs as dicts and cells as lists (``simplify_cells``)."""
  try:
    return scipy.io.loadmat(path, simplify_cells=True)
  except NotImplementedError as e:  # MATLAB v7.3 files are HDF5.
    raise _bad(path, "a MATLAB v7.3 (HDF5) file; the publishers' files are v5 .mat, re-save "
               "it in MATLAB with save(..., '-v7')") from e
  except (ValueError, TypeError, OSError) as e:
    raise _bad(path, f"not a readable MATLAB .mat file ({e})") from e


def _field(struct, key, path, where):
  if not isinstance(struct, dict) or key not in struct:
    have = sorted(k for k in struct if not k.startswith("__")) if isinstance(struct, dict) else []
    raise _bad(path, f"{where}{key!r} missing (found {have}); expected the publisher's "
               "annotation file (data/README.md, attributes section)")
  return struct[key]


def _strings(x, path, what) -> list:
  out = [v for v in np.asarray(x, dtype=object).reshape(-1)]
  if not all(isinstance(v, str) for v in out):
    raise _bad(path, f"{what}: expected a cell array of strings")
  return out


def _matrix(x, rows, path, what) -> np.ndarray:
  a = np.asarray(x)
  if a.size == 0 or a.size % max(rows, 1) or not np.issubdtype(a.dtype, np.number):
    raise _bad(path, f"{what}: expected a numeric [{rows}, A] matrix, got shape {a.shape}")
  return a.reshape(rows, -1).astype(np.int64)


def _indices(x, n, path, what) -> np.ndarray:
  """1-based MATLAB indices -> 0-based int64, each checked to be a row of the ``n``."""
  a = np.atleast_1d(np.asarray(x, dtype=np.float64)).reshape(-1)
  if a.size and (np.any(a != np.round(a)) or a.min() < 1 or a.max() > n):
    raise _bad(path, f"{what}: 1-based indices must lie in 1..{n}, got {a.min():g}..{a.max():g}")
  return a.astype(np.int64) - 1


def _partition(parts, k, n, path):
  """``partition_attribute{k}`` -> (train + val, test) 0-based indices."""
  parts = [parts] if isinstance(parts, dict) else list(np.atleast_1d(np.asarray(parts, object)))
  if not 0 <= k < len(parts):
    raise _bad(path, f"partition {k} requested, the file has {len(parts)} (0..{len(parts) - 1})")
  p = parts[k]
  where = f"partition_attribute{{{k + 1}}}."
  tr, va, te = (_indices(_field(p, f"{s}_index", path, where), n, path, where + f"{s}_index")
                for s in ("train", "val", "test"))
  return np.concatenate([tr, va]), te


def _order(cols, order, use, path, what):
  if not use:
    return list(cols)
  if len(cols) != len(order):
    raise _bad(path, f"{len(cols)} {what}, Rethinking-PAR's attribute order is for "
               f"{len(order)}; use a config with rethinking_par_order=False")
  return [cols[i] for i in order]


def _table(path, names, labels, attr_names, cols, trainval, test) -> NativeTable:
  if labels.shape[1] != len(attr_names):
    raise _bad(path, f"{labels.shape[1]} label columns but {len(attr_names)} attribute names")
  labels = labels[:, cols]
  labels = np.where(labels == 2, 0, labels)  # 2: uncertain (RAP) -> 0, as Rethinking-PAR.
  return NativeTable(list(names), labels, [attr_names[c] for c in cols], [int(c) for c in cols],
                     trainval, test)


def read_pa100k_mat(path: str, rethinking_par_order: bool = True) -> NativeTable:
  m = load_mat(path)
  names, labels = [], []
  for s in ("train", "val", "test"):
    n = _strings(_field(m, f"{s}_images_name", path, ""), path, f"{s}_images_name")
    names.append(n)
    labels.append(_matrix(_field(m, f"{s}_label", path, ""), len(n), path, f"{s}_label"))
  attr = _strings(_field(m, "attributes", path, ""), path, "attributes")
  if len({lab.shape[1] for lab in labels}) != 1:
    raise _bad(path, "train/val/test_label have different numbers of columns")
  cols = _order(list(range(len(attr))), PA100K_ORDER, rethinking_par_order, path, "attributes")
  n_trainval, n = len(names[0]) + len(names[1]), sum(map(len, names))
  return _table(path, sum(names, []), np.concatenate(labels), attr, cols,
                np.arange(n_trainval), np.arange(n_trainval, n))


def read_rapv2_mat(path: str, partition: int = 0,
                   rethinking_par_order: bool = True) -> NativeTable:
  r = _field(load_mat(path), "RAP_annotation", path, "")
  w = "RAP_annotation."
  names = _strings(_field(r, "name", path, w), path, w + "name")
  labels = _matrix(_field(r, "data", path, w), len(names), path, w + "data")
  attr = _strings(_field(r, "attribute", path, w), path, w + "attribute")
  selected = _indices(_field(r, "selected_attribute", path, w), len(attr), path,
                      w + "selected_attribute").tolist()
  cols = _order(selected, RAPV2_ORDER, rethinking_par_order, path, "selected attributes")
  trainval, test = _partition(_field(r, "partition_attribute", path, w), partition,
                              len(names), path)
  return _table(path, names, labels, attr, cols, trainval, test)


def read_peta_mat(path: str, partition: int = 0,
                  rethinking_par_order: bool = True) -> NativeTable:
  p = _field(load_mat(path), "peta", path, "")
  w = "peta."
  attr = _strings(_field(p, "attribute", path, w), path, w + "attribute")
  data = np.asarray(_field(p, "data", path, w))
  if data.ndim != 2 or data.shape[1] < len(attr) or len(attr) < PETA_NUM_EVAL:
    raise _bad(path, f"peta.data has shape {data.shape}; expected [N, 4 + {len(attr)}] with "
               f"at least {PETA_NUM_EVAL} attributes")
  labels = _matrix(data[:, data.shape[1] - len(attr):], len(data), path, w + "data")
  names = [f"{i + 1:05d}.png" for i in range(len(data))]
  cols = _order(list(range(PETA_NUM_EVAL)), PETA_ORDER, rethinking_par_order, path,
                "evaluated attributes")
  trainval, test = _partition(_field(p, "partition_attribute", path, w), partition,
                              len(names), path)
  return _table(path, names, labels, attr, cols, trainval, test)


class Attributes(common.HumanBenchBuilder):
  """Pedestrian attribute recognition datasets."""
  BUILDER_CONFIGS = [
      AttributesConfig(name="pa100k", description="PA-100K (26 attributes)."),
      AttributesConfig(name="rapv2", description="RAPv2 (54 evaluation attributes)."),
      AttributesConfig(name="peta", description="PETA (35 evaluation attributes)."),
      AttributesConfig(name="generic", description="Any dataset in the Rethinking-PAR format."),
      AttributesConfig(name="pa100k_native", description="PA-100K from annotation.mat.",
                       source="pa100k_mat", annotation="annotation.mat"),
      AttributesConfig(name="rapv2_native", description="RAPv2 from RAP_annotation.mat.",
                       source="rapv2_mat", annotation="RAP_annotation/RAP_annotation.mat",
                       image_dir="RAP_dataset"),
      AttributesConfig(name="peta_native", description="PETA from PETA.mat.",
                       source="peta_mat", annotation="PETA.mat", image_dir="images"),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "labels": tfds.features.Tensor(shape=(None,), dtype=np.int8, doc="0/1, -1 unknown"),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    if config.source == "pa100k_mat":
      return {"annotation.mat (or annotation/annotation.mat)":
              "{train,val,test}_images_name, {train,val,test}_label, attributes",
              "data/<name> (or release_data/release_data/<name>)": "the images"}
    if config.source == "rapv2_mat":
      return {config.annotation: "struct RAP_annotation: name, data, attribute, "
              "selected_attribute, partition_attribute",
              f"{config.image_dir}/<name>": "the images"}
    if config.source == "peta_mat":
      return {config.annotation: "struct peta: data, attribute, partition_attribute",
              f"{config.image_dir}/00001.png ...": "the images, row i -> {i+1:05d}.png"}
    return {config.pkl: "Rethinking-PAR pickle (image_name, label, attr_name, partition)",
            f"{config.image_dir}/<image_name>": "the images"}

  def _first(self, root, candidates):
    return next((c for c in candidates if os.path.exists(os.path.join(root, c))), candidates[0])

  def _required(self, root):
    c = self.builder_config
    if c.source == "pa100k_mat":
      return [self._first(root, PA100K_ANNOTATIONS), self._first(root, PA100K_IMAGE_DIRS)]
    if c.source != "pkl":
      return [c.annotation, c.image_dir]
    return [c.pkl, c.image_dir]

  def _splits(self, root):
    c = self.builder_config
    if c.source != "pkl":
      return self._native_splits(root)
    path = os.path.join(root, c.pkl)
    d = load_pkl(path)
    for key in ("image_name", "label", "attr_name", "partition"):
      if key not in d:
        raise common.BadInputError(f"{path}: key {key!r} missing; a Rethinking-PAR dataset.pkl "
                                   "has image_name, label, attr_name and partition")
    labels = np.asarray(d["label"])
    names = list(d["attr_name"])
    cols = np.arange(labels.shape[1])
    idx = d.get("label_idx")
    if c.use_eval_label_idx and isinstance(idx, dict) and "eval" in idx:
      cols = np.asarray(idx["eval"], np.int64)
    self.info.metadata["attr_names"] = [str(names[i]) for i in cols]
    self.info.metadata["num_attributes"] = int(len(cols))
    part = d["partition"]
    image_dir = os.path.join(root, c.image_dir)
    names = d["image_name"]
    return {"train": self._examples(image_dir, path, names, labels[:, cols],
                                    first_partition(part["trainval"]), is_train=True),
            "test": self._examples(image_dir, path, names, labels[:, cols],
                                   first_partition(part["test"]), is_train=False)}

  def _native_splits(self, root):
    c = self.builder_config
    if c.source == "pa100k_mat":
      path = os.path.join(root, self._first(root, PA100K_ANNOTATIONS))
      t = read_pa100k_mat(path, c.rethinking_par_order)
      # The first folder that holds the first image (releases differ in nesting).
      first = t.image_names[0] if t.image_names else ""
      image_dir = os.path.join(root, next(
          (d for d in PA100K_IMAGE_DIRS if os.path.isfile(os.path.join(root, d, first))),
          self._first(root, PA100K_IMAGE_DIRS)))
    else:
      path = os.path.join(root, c.annotation)
      read = read_rapv2_mat if c.source == "rapv2_mat" else read_peta_mat
      t = read(path, c.partition, c.rethinking_par_order)
      image_dir = os.path.join(root, c.image_dir)
      self.info.metadata["partition"] = int(c.partition)
    self.info.metadata["attr_names"] = list(t.attr_names)
    self.info.metadata["num_attributes"] = len(t.attr_names)
    self.info.metadata["source_columns"] = list(t.source_columns)
    return {"train": self._examples(image_dir, path, t.image_names, t.labels, t.trainval,
                                    is_train=True),
            "test": self._examples(image_dir, path, t.image_names, t.labels, t.test,
                                   is_train=False)}

  def _examples(self, image_dir, ann_path, image_names, labels, indices, is_train):
    pos = np.zeros(labels.shape[1], np.int64)
    known = np.zeros(labels.shape[1], np.int64)
    for i in sorted(set(indices.tolist())):
      name = str(image_names[i])
      row = labels[i]
      bad = sorted(set(row.tolist()) - {-1, 0, 1})
      if bad:
        self.report.bad("label_out_of_range", ann_path,
                        f"record {i} ({name}): attribute values {bad} not in {{-1, 0, 1}}")
        continue
      img = common.load_image(os.path.join(image_dir, name), self.report)
      if img is None:
        continue
      pos += row == 1
      known += row != -1
      yield name, {"image": img.data, "labels": row.astype(np.int8), "filename": name}
    if is_train:
      self.info.metadata["positive_ratio"] = (pos / np.maximum(known, 1)).round(6).tolist()
