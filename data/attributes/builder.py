"""Pedestrian attribute builder: the Rethinking-PAR ``dataset.pkl`` format.

``dataset.pkl`` holds ``image_name`` (N names), ``label`` (N x A, values 0/1; -1 = unknown),
``attr_name`` (A names), ``partition`` with ``trainval`` and ``test`` index arrays (a list of
arrays -> the first one, as RAPv2/PETA ship five random partitions) and optionally
``label_idx.eval`` (the attribute columns used for evaluation, e.g. PETA's 35 of 105; used when
the config sets ``use_eval_label_idx``). Images live in ``data/`` next to the pickle.

Records: ``image`` (encoded RGB), ``labels`` [A] int8, ``filename`` text. Metadata:
``attr_names`` and ``positive_ratio`` (fraction of 1 among the known labels of the train
split, per attribute), used by the weighted BCE loss.
"""
from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
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


@dataclasses.dataclass
class AttributesConfig(tfds.core.BuilderConfig):
  pkl: str = "dataset.pkl"
  image_dir: str = "data"
  use_eval_label_idx: bool = True


class Attributes(common.HumanBenchBuilder):
  """Pedestrian attribute recognition datasets."""
  BUILDER_CONFIGS = [
      AttributesConfig(name="pa100k", description="PA-100K (26 attributes)."),
      AttributesConfig(name="rapv2", description="RAPv2 (54 evaluation attributes)."),
      AttributesConfig(name="peta", description="PETA (35 evaluation attributes)."),
      AttributesConfig(name="generic", description="Any dataset in the Rethinking-PAR format."),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "labels": tfds.features.Tensor(shape=(None,), dtype=np.int8, doc="0/1, -1 unknown"),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    return {config.pkl: "Rethinking-PAR pickle (image_name, label, attr_name, partition)",
            f"{config.image_dir}/<image_name>": "the images"}

  def _required(self, root):
    c = self.builder_config
    return [c.pkl, c.image_dir]

  def _splits(self, root):
    c = self.builder_config
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
    return {"train": self._examples(root, path, d, labels[:, cols],
                                    first_partition(part["trainval"]), is_train=True),
            "test": self._examples(root, path, d, labels[:, cols],
                                   first_partition(part["test"]), is_train=False)}

  def _examples(self, root, pkl_path, d, labels, indices, is_train):
    pos = np.zeros(labels.shape[1], np.int64)
    known = np.zeros(labels.shape[1], np.int64)
    for i in sorted(set(indices.tolist())):
      name = str(d["image_name"][i])
      row = labels[i]
      bad = sorted(set(row.tolist()) - {-1, 0, 1})
      if bad:
        self.report.bad("label_out_of_range", pkl_path,
                        f"record {i} ({name}): attribute values {bad} not in {{-1, 0, 1}}")
        continue
      img = common.load_image(os.path.join(root, self.builder_config.image_dir, name),
                              self.report)
      if img is None:
        continue
      pos += row == 1
      known += row != -1
      yield name, {"image": img.data, "labels": row.astype(np.int8), "filename": name}
    if is_train:
      self.info.metadata["positive_ratio"] = (pos / np.maximum(known, 1)).round(6).tolist()
