"""Writes the attribute dummy data in the Rethinking-PAR dataset.pkl format. Run from the repo
root: ``python -m data.attributes.dummy_data.make_dummy``.

PETA's pickle is written with an ``easydict.EasyDict`` (as the real files are): a minimal class
of that import path is created here so that the pickle refers to it by the same name."""
import os
import pickle
import sys
import types

import numpy as np

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


if __name__ == "__main__":
  pa100k()
  peta()
