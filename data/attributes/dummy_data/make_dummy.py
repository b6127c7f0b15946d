"""Writes the attribute dummy data: the Rethinking-PAR dataset.pkl format (``pa100k``, ``peta``)
and the publishers' .mat releases (``pa100k_native``, ``rapv2_native``, ``peta_native``, the
structures of data/attributes/builder.py's docstring, written with scipy.io.savemat). Run from
the repo root: ``python -m data.attributes.dummy_data.make_dummy [name ...]`` (default: all).

PETA's pickle is written with an ``easydict.EasyDict`` (as the real files are): a minimal class
of that import path is created here so that the pickle refers to it by the same name."""
import os
import pickle
import sys
import types

import numpy as np
import scipy.io

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def _easydict_class():
  mod = types.ModuleType("easydict")

  class EasyDict(dict):
    pass

  EasyDict.__module__ = "easydict"
  EasyDict.__qualname__ = "EasyDict"
  mod.EasyDict = EasyDict
  sys.modules.setdefault("easydict", mod)
  return sys.modules["easydict"].EasyDict


def pa100k():
  root = dummy.fresh(os.path.join(HERE, "pa100k"))
  names = [f"{i:06d}.jpg" for i in range(1, 6)]
  for i, n in enumerate(names):
    dummy.write_image(os.path.join(root, "data", n), 700 + i, 32, 16)
  label = np.array([[1, 0, 0, 1], [0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 2, 0]],
                   np.int64)  # Row 4 has a 2: out of range.
  d = {"description": "pa100k", "root": "data/", "image_name": names, "label": label,
       "attr_name": ["Female", "Hat", "Glasses", "Backpack"],
       "partition": {"train": np.array([0, 1]), "val": np.array([2]),
                     "trainval": np.array([0, 1, 2, 4]), "test": np.array([3])}}
  with open(os.path.join(root, "dataset.pkl"), "wb") as f:
    pickle.dump(d, f)


def peta():
  ed = _easydict_class()
  root = dummy.fresh(os.path.join(HERE, "peta"))
  names = [f"{i:05d}.png" for i in range(4)]
  for i, n in enumerate(names):
    dummy.write_image(os.path.join(root, "data", n), 800 + i, 32, 16)
  label = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1]], np.int64)
  d = ed(description="peta", root="data/", image_name=names, label=label,
         attr_name=["A", "B", "C"],
         label_idx=ed(eval=[2, 0], color=[], extra=[1]),
         partition=ed(trainval=[np.array([0, 1, 2]), np.array([1, 2, 3])],
                      test=[np.array([3]), np.array([0])]))
  for k, v in list(d.items()):
    setattr(d, k, v)  # EasyDict keeps both the items and the attributes.
  with open(os.path.join(root, "dataset.pkl"), "wb") as f:
    pickle.dump(d, f)


def _cell(items, shape=None):
  """A MATLAB cell array (numpy object array), column by default."""
  c = np.empty(len(items), object)
  c[:] = list(items)
  return c.reshape(shape or (len(items), 1))


# PA-100K's 26 attribute names in the release's order (HydraPlus-Net README).
PA100K_NAMES = [
    "Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses",
    "HandBag", "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve",
    "UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern",
    "LongCoat", "Trousers", "Shorts", "Skirt&Dress", "boots"]
# PETA's 35 evaluated attributes, the first 35 of PETA.mat's 105.
PETA_NAMES = [
    "personalLess30", "personalLess45", "personalLess60", "personalLarger60", "carryingBackpack",
    "carryingOther", "lowerBodyCasual", "upperBodyCasual", "lowerBodyFormal", "upperBodyFormal",
    "accessoryHat", "upperBodyJacket", "lowerBodyJeans", "footwearLeatherShoes", "upperBodyLogo",
    "hairLong", "personalMale", "carryingMessengerBag", "accessoryMuffler", "accessoryNothing",
    "carryingNothing", "upperBodyPlaid", "carryingPlasticBags", "footwearSandals",
    "footwearShoes", "lowerBodyShorts", "upperBodyShortSleeve", "lowerBodyShortSkirt",
    "footwearSneaker", "upperBodyThinStripes", "accessorySunglasses", "lowerBodyTrousers",
    "upperBodyTshirt", "upperBodyOther", "upperBodyVNeck"]


def _partitions(n_parts, n, rng, column):
  """``partition_attribute``: 1-based train/val/test index vectors, the first one fixed."""
  parts = []
  for k in range(n_parts):
    order = np.arange(1, n + 1) if k == 0 else rng.permutation(np.arange(1, n + 1))
    split = {"train_index": order[:3], "val_index": order[3:4], "test_index": order[4:]}
    parts.append({key: (v.reshape(-1, 1) if column else v.reshape(1, -1)).astype(np.float64)
                  for key, v in split.items()})
  return _cell(parts, (1, n_parts))


def pa100k_native():
  """annotation.mat + data/: 3 train, 1 val, 2 test images; val row has a 3 (out of range)."""
  root = dummy.fresh(os.path.join(HERE, "pa100k_native"))
  rng = np.random.default_rng(26)
  names = [f"{i:06d}.jpg" for i in range(1, 7)]
  for i, n in enumerate(names):
    dummy.write_image(os.path.join(root, "data", n), 900 + i, 32, 16)
  label = rng.integers(0, 2, size=(6, 26)).astype(np.uint8)
  label[3, 5] = 3
  mat = {"attributes": _cell(PA100K_NAMES)}
  for split, sl in (("train", slice(0, 3)), ("val", slice(3, 4)), ("test", slice(4, 6))):
    mat[f"{split}_images_name"] = _cell(names[sl])
    mat[f"{split}_label"] = label[sl]
  scipy.io.savemat(os.path.join(root, "annotation.mat"), mat)


def rapv2_native():
  """RAP_annotation/RAP_annotation.mat + RAP_dataset/: 6 images, 152 attributes, 54 selected
  (1-based, sorted), five partitions; some selected labels are 2 (uncertain)."""
  root = dummy.fresh(os.path.join(HERE, "rapv2_native"))
  rng = np.random.default_rng(54)
  names = [f"CAM{c:02d}_2014-02-15_20140215161032-20140215162620_tarid{i}_frame{100 + i}_line1.png"
           for i, c in enumerate((1, 1, 2, 3, 5, 7))]
  for i, n in enumerate(names):
    dummy.write_image(os.path.join(root, "RAP_dataset", n), 1000 + i, 32, 16)
  data = rng.integers(0, 2, size=(6, 152)).astype(np.float64)
  selected = np.sort(rng.choice(152, size=54, replace=False)) + 1
  data[0, selected[10] - 1] = 2
  data[4, selected[0] - 1] = 2
  ann = {"name": _cell(names), "data": data,
         "attribute": _cell([f"rap_attr{k:03d}" for k in range(152)]),
         "selected_attribute": selected.reshape(1, -1).astype(np.float64),
         "partition_attribute": _partitions(5, 6, rng, column=False)}
  os.makedirs(os.path.join(root, "RAP_annotation"))
  scipy.io.savemat(os.path.join(root, "RAP_annotation", "RAP_annotation.mat"),
                   {"RAP_annotation": ann})


def peta_native():
  """PETA.mat + images/: 6 images 00001.png.., data = 4 id columns + 105 labels, 5 partitions
  (column index vectors)."""
  root = dummy.fresh(os.path.join(HERE, "peta_native"))
  rng = np.random.default_rng(35)
  for i in range(6):
    dummy.write_image(os.path.join(root, "images", f"{i + 1:05d}.png"), 1100 + i, 32, 16)
  ids = np.stack([np.arange(1, 7), np.ones(6), np.arange(1, 7), np.zeros(6)], 1)
  data = np.concatenate([ids, rng.integers(0, 2, size=(6, 105))], 1).astype(np.float64)
  attr = PETA_NAMES + [f"peta_extra{k:02d}" for k in range(70)]
  peta_s = {"data": data, "attribute": _cell(attr),
            "partition_attribute": _partitions(5, 6, rng, column=True)}
  scipy.io.savemat(os.path.join(root, "PETA.mat"), {"peta": peta_s})


WRITERS = {"pa100k": pa100k, "peta": peta, "pa100k_native": pa100k_native,
           "rapv2_native": rapv2_native, "peta_native": peta_native}


if __name__ == "__main__":
  for name in sys.argv[1:] or list(WRITERS):
    WRITERS[name]()
