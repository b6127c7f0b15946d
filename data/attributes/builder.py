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

More native readers (the sources of the authors' ``attr_5set`` row; "HARDHC" in the authors'
code is the WIDER Attribute dataset of Li et al., "Human Attribute Recognition by Deep
Hierarchical Contexts", ECCV 2016, reference [46] of the paper). Each source's columns are
binarised as the authors' 154-column row has them (checked against the authors' positive-ratio
vectors, configs/humanbench.py ``AUTHORS_POSITIVE_RATIOS``):

* ``hardhc_native`` (14): WIDER Attribute, mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html:
  ``wider_attribute_trainval.json`` / ``wider_attribute_test.json`` (``images`` [{``file_name``
  relative to ``Image/``, ``targets`` [{``attribute`` [14] in {1 positive, -1 negative,
  0 unspecified}, ``bbox`` [x, y, w, h]}]}], ``attribute_id_map``); one record per target, the
  box cropped from ``Image/<file_name>`` (floor/ceil to whole pixels, clipped to the image).
  Labels 1 -> 1, -1 -> 0, 0 -> -1 (unknown), the authors' ``HARDHC_attr_name`` convention.
  ``train`` = the trainval json (WIDER's train + val images), ``test`` = the test json.
* ``uav_human_native`` (43): UAV-Human's attribute subset (github.com/sutdcv/UAV-Human,
  ``uavhumanattrtools``): crops ``train/*.jpg``, ``test/*.jpg`` whose names carry the labels,
  ``P<pid>S<setup>G<gg>B<bb>H<hh>UC<cc s cc s>LC<cc s cc s>A<action>R<rep>_<time>_<n>.jpg``; the
  first digit(s) of each field are the main subject's (the toolkit's ``parse_label``). The
  authors' 43 columns (their ``uavhuman_attr_name``): male (G: 1 male -> 1, 2 female -> 0,
  0 n/a -> -1); backpack one-hot [red, black, green, yellow, n/a] (B: 1..4, then 0); hat one-hot
  [red, black, green, white, n/a] (H); upper-clothing colour one-hot [red, black, blue, green,
  multicolor, grey, white, yellow, dark brown, purple, pink, n/a] (UC digits 1-2: 1..11, then
  0); upper style one-hot [long, short, skirt, n/a] (UC digit 3: 1..3, then 0); lower colour
  and style likewise (LC). 1 + 5 + 5 + 12 + 4 + 12 + 4 = 43.
* ``parse27k_native`` (44): Parse-27k (Sudowe et al. 2015, www.vision.rwth-aachen.de/parse27k;
  tools github.com/psudowe/parse27k_tools): ``annotations.sqlite3`` (tables ``Pedestrian``,
  ``AttributeSet``, ``Image``, ``Sequence``) and the frames ``sequences/<directory>/<filename>``.
  As the tools' ``DataPreprocessorPARSE`` (``exclude_sitting``): sitting pedestrians are left
  out, labels become "softmax" values (0 = N/A), Posture 3 standing -> 1, 2 walking -> 2; the
  authors' 44 columns are each attribute one-hot over its values: Orientation [na, front, back,
  left, right], Orientation8 [na, front, front-right, right, back-right, back, back-left, left,
  front-left], Gender [na, male, female], Posture [na, standing, walking], then [na, yes, no] for
  HasBagOnShoulderLeft/Right, HasBagInHandLeft/Right, HasTrolley, HasBackpack, isPushing,
  isTalkingOnPhone (5 + 9 + 3 + 3 + 8 x 3). Splits by sequence: train 1, 4, 5; val 2, 7, 8;
  test 3, 6. The crop is the tools' ``preprocess_dataset.py`` geometry at the frame's own
  resolution: the box's width set to half its height about its centre, then a quarter of its
  height added on every side (64 x 128 + 32 px padding at the tools' scale), pixels beyond the
  frame repeating its edge (the tools' default ``edge`` padding). ``mirror_train`` adds a mirrored
  copy of each train crop with mirrored labels (the tools' ``train.hdf5``, which the authors'
  27,482 images are: 2 x 13,741); unlike the tools, whose mirror table is keyed 'Orientation4'
  and so never swaps the 'Orientation' left/right labels, left and right are swapped here.
* ``duke_attr_native`` (23) / ``market_attr_native`` (30): DukeMTMC-attribute / Market-1501-
  attribute of Lin et al. (github.com/vana77/DukeMTMC-attribute, github.com/vana77/Market-1501_
  Attribute): ``duke_attribute.mat`` / ``market_attribute.mat``, a struct with ``train`` and
  ``test`` structs of per-identity label rows (fields in a different order in the two; read by
  name) and ``image_index`` (the 4-digit ids), next to the ReID release's ``bounding_box_train/``
  and ``bounding_box_test/`` (the image's id is its name's first field). Binary fields: 2 -> 1,
  1 -> 0, 0 (Duke's ``top`` has two) -> -1. Duke's 23 columns in alphabetical order (the authors'
  ``duke_attr_name``); Market's 26 binary fields in the train struct's order, then ``age``
  (1 young, 2 teenager, 3 adult, 4 old) one-hot as 4 columns (the authors' ``market_attr_name``):
  27 attributes -> 30 columns. Market's junk (-1) and distractor (0000) test images have no
  attributes and are dropped; ``test`` = the other gallery images (13,115 in Market-1501).

Merged rows, read side by side from one raw root (each source in its publisher's folder, found by
name, exactly then ignoring case, as ``detection/det_5set``): ``rap2_pa100k_native`` = RAPv2's
54 columns then PA-100K's 26 (Rethinking-PAR order, as the authors' pickles), ``train`` =
RAPv2 trainval of partition 0 + PA-100K train + val (67,943 + 90,000 = 157,943, REFERENCE.md
§4.7), ``test`` = both test sets; ``attr_5set_native`` = HARDHC 14, UAV-Human 43, Parse27k 44,
DukeMTMC 23, Market-1501 30 (154), ``train`` only, from HARDHC trainval, UAV-Human train,
Parse27k train with mirrors, Duke train + test (the authors' 34,183 = 16,522 + 17,661) and
Market train: 28,336 + 16,183 + 27,482 + 34,183 + 12,936 = 119,120 in the authors' count
(their ``dataset_specific_sample_weight.py``). Every record holds -1 in the other sources'
columns (the authors' ``MultiAttrDataset`` with ``ignore_other_attrs``); ``attr_names`` are
prefixed by the source (``hardhc/Male``), ``source_blocks`` gives each source's [start, stop)
columns and ``source_records`` its records per split; ``filename`` is the image's path relative
to the raw root (``<folder>/...``), a crop's followed by its ``#<person>`` tag. Crops (HARDHC,
Parse27k) are stored as PNG; their single-source ``filename`` is ``<file_name>#<target index>``
(HARDHC, relative to ``Image/``) or ``<directory>/<filename>#<pedestrianID>`` (Parse27k, relative
to ``sequences/``; ``_mirrored`` appended for a mirrored copy).

Not confirmed from the publishers' files (no copy could be read here): the WIDER Attribute json
keys beyond the documented ``images``/``targets``/``attribute``/``bbox``/``attribute_id_map``
(the authors count 28,336 HARDHC images where the trainval json is said to hold 28,345 boxes;
which ones they left out is unknown); the folder the UAV-Human attribute archive extracts to and
its gender n/a coding (read as unknown, -1); the Parse-27k database beyond the columns the tools'
query names (and the frames' file type); the crop margins the authors used for HARDHC / Parse27k
(their pickles name image files this code cannot see). Checked: Duke's / Market's .mat files
(public in the repositories above) give, read this way, identity-level positive ratios matching
the authors' vectors column by column.

Records: ``image`` (encoded RGB), ``labels`` [A] int8, ``filename`` text. Metadata:
``attr_names`` and ``positive_ratio`` (fraction of 1 among the known labels of the train
split, per attribute; for a merged row, of each source's own records), used by the weighted BCE
loss; ``pa100k_native``/``rapv2_native``/``peta_native`` add ``source_columns`` (the 0-based
columns of the publisher's label matrix, in record order), the last two ``partition``; merged
rows add ``source_blocks``, ``source_folders`` and ``source_records``.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import pickle
import re
import sqlite3
from typing import NamedTuple

import numpy as np
from PIL import Image
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


class MergedSource(NamedTuple):
  """One source of a merged row: its ``name`` (the prefix of its attribute names), the
  ``folders`` it may have under the raw root (the first one found wins), the single-source
  config that reads it, the splits of that config that make the row's ``train`` and ``test``,
  and whether Parse-27k's train crops get their mirrored copies."""
  name: str
  folders: tuple
  config: str
  train: tuple = ("train",)
  test: tuple = ()
  mirror: bool = False


@dataclasses.dataclass
class AttributesConfig(tfds.core.BuilderConfig):
  """``source``: 'pkl' (Rethinking-PAR pickle), a native release 'pa100k_mat', 'rapv2_mat',
  'peta_mat', 'wider_attr_json', 'uav_human_names', 'parse27k_sqlite', 'duke_attr_mat',
  'market_attr_mat', or 'merged' (``sources``: :class:`MergedSource` s read side by side).
  ``pkl`` / ``image_dir`` / ``use_eval_label_idx``: pickle configs; ``annotation`` /
  ``image_dir`` / ``partition`` / ``rethinking_par_order`` / ``mirror_train``: native
  configs."""
  source: str = "pkl"
  pkl: str = "dataset.pkl"
  image_dir: str = "data"
  use_eval_label_idx: bool = True
  annotation: str = ""
  partition: int = 0
  rethinking_par_order: bool = True
  mirror_train: bool = False
  sources: tuple = ()


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


# ---- Readers of the attr_5set sources ----------------------------------------------------------
@dataclasses.dataclass
class Item:
  """One record to write: ``name`` (its ``filename`` in a single-source config), ``path`` (the
  image file, relative to the source's root), ``labels`` [A] int64 in {-1, 0, 1} (anything else
  is skipped as ``label_out_of_range``). With ``box`` (x0, y0, x1, y1 whole pixels, x1/y1
  exclusive) the record is that crop of the image: cut to the image (``pad_edge`` False) or with
  the pixels beyond it repeating its edge (``pad_edge`` True); ``mirror`` flips it left-right.
  ``tag`` ('#<person>') tells a crop from the others of its file: a merged row's ``filename``
  is ``<source folder>/<path><tag>``."""
  name: str
  path: str
  labels: np.ndarray
  box: tuple | None = None
  pad_edge: bool = False
  mirror: bool = False
  tag: str = ""


@dataclasses.dataclass
class SourceData:
  """A source read into records: ``attr_names`` [A], ``splits`` {split: [Item]}, ``annotation``
  (the file the labels came from, for messages)."""
  attr_names: list
  splits: dict
  annotation: str


# A record's value for a label the publisher's file does not allow (reported, record skipped).
_INVALID = 9


def _one_hot(value, size):
  row = np.zeros(size, np.int64)
  row[value] = 1
  return row


# HARDHC = WIDER Attribute: the 14 attributes in the json's order (its ``attribute_id_map``,
# used when present; the authors' ``HARDHC_attr_name`` lists the same order).
HARDHC_NAMES = ("Male", "Long hair", "Sunglasses", "Hat", "T-shirt", "Long sleeve", "Formal",
                "Shorts", "Jeans", "Long pants", "Skirt", "Face mask", "Logo", "Stripe")
# Where the two jsons may lie under the WIDER Attribute root (the annotation zip extracted there,
# into its own folder, or as Anno/ / Annotations/ in common re-distributions); first match wins.
WIDER_ANNOTATION_DIRS = ("", "wider_attribute_annotation", "Anno", "Annotations", "annotations")
WIDER_TRAINVAL, WIDER_TEST = "wider_attribute_trainval.json", "wider_attribute_test.json"


def _wider_labels(values) -> np.ndarray:
  """WIDER Attribute 1 / -1 / 0 -> 1 / 0 / -1 (unknown); other values -> invalid."""
  a = np.asarray(values, np.float64).reshape(-1)
  out = np.full(a.shape, _INVALID, np.int64)
  out[a == 1], out[a == -1], out[a == 0] = 1, 0, -1
  return out


def _load_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise _bad(path, f"not a readable json file ({e})") from e


def read_wider_attribute(path: str, image_dir: str, report: common.BuildReport) -> tuple:
  """One WIDER Attribute json -> (attribute names, [Item]), one Item per target (person box)."""
  d = _load_json(path)
  if not isinstance(d, dict):
    raise _bad(path, "expected a json object with 'images' (the WIDER Attribute annotation)")
  images = _field(d, "images", path, "")
  id_map = d.get("attribute_id_map")
  names = list(HARDHC_NAMES)
  if isinstance(id_map, dict) and len(id_map) == len(HARDHC_NAMES):
    try:
      names = [str(id_map[str(k)]) for k in range(len(HARDHC_NAMES))]
    except KeyError as e:
      raise _bad(path, f"attribute_id_map: key {e} missing (expected '0'..'13')") from e
  items = []
  for j, im in enumerate(images):
    if not isinstance(im, dict) or "file_name" not in im:
      raise _bad(path, f"images[{j}]: 'file_name' missing")
    file_name = str(im["file_name"])
    for k, t in enumerate(im.get("targets", [])):
      attr, bbox = (t.get("attribute"), t.get("bbox")) if isinstance(t, dict) else (None, None)
      if attr is None or len(attr) != len(names) or bbox is None or len(bbox) != 4:
        report.bad("bad_annotation", path, f"{file_name} target {k}: expected 'attribute' "
                   f"[{len(names)}] and 'bbox' [x, y, w, h]")
        continue
      x, y, w, h = (float(v) for v in bbox)
      if not (w > 0 and h > 0):
        report.drop("degenerate_box")
        continue
      labels = _wider_labels(attr)
      if np.any(labels == _INVALID):
        bad = sorted({float(v) for v in attr} - {1.0, -1.0, 0.0})
        report.bad("label_out_of_range", path, f"{file_name} target {k}: attribute values "
                   f"{bad} not in {{1, -1, 0}}")
        continue
      box = (math.floor(x), math.floor(y), math.ceil(x + w), math.ceil(y + h))
      items.append(Item(f"{file_name}#{k}", os.path.join(image_dir, file_name), labels,
                        box=box, tag=f"#{k}"))
  return names, items


# UAV-Human attribute subset: label fields of the image names (github.com/sutdcv/UAV-Human
# README and uavhumanattrtools/uavhuman.py) and the authors' 43-column expansion.
UAV_HUMAN_PATTERN = re.compile(
    r"P(?P<p>\d+)S(?P<s>\d+)G(?P<g>\d+)B(?P<b>\d+)H(?P<h>\d+)UC(?P<uc>\d+)LC(?P<lc>\d+)"
    r"A(?P<a>\d+)R(?P<r>\d+)_")
UAV_HUMAN_COLOURS = ("red", "black", "blue", "green", "multicolor", "grey", "white", "yellow",
                     "dark brown", "purple", "pink")
# (group, the names of its values 1..K; value 0 ("n/a") is the last column). The hat's value 3
# is 'green' in the README's text, 'yellow' in its commented-out table and in the authors' names:
# unconfirmed; the column is the same either way.
UAV_HUMAN_GROUPS = (
    ("backpack", ("red", "black", "green", "yellow")),
    ("hat", ("red", "black", "green", "white")),
    ("upper_color", UAV_HUMAN_COLOURS),
    ("upper_style", ("long", "short", "skirt")),
    ("lower_color", UAV_HUMAN_COLOURS),
    ("lower_style", ("long", "short", "skirt")),
)
UAV_HUMAN_NAMES = ["male"] + [f"{g}={v}" for g, values in UAV_HUMAN_GROUPS
                              for v in values + ("n/a",)]


def uav_human_labels(file_name: str):
  """An image name -> its 43 labels, or (reason, message) saying what is wrong with it."""
  m = UAV_HUMAN_PATTERN.match(os.path.basename(file_name))
  if m is None:
    return "unparsable_name", ("expected P<pid>S<setup>G<gender>B<backpack>H<hat>UC<upper>"
                               "LC<lower>A<action>R<rep>_...")
  uc, lc = m["uc"], m["lc"]
  if len(uc) < 3 or len(lc) < 3:
    return "unparsable_name", "UC/LC need 3 digits per subject (colour 2, style 1)"
  gender = int(m["g"][0])
  if gender not in (0, 1, 2):
    return "label_out_of_range", f"gender {gender} not in 0..2"
  values = (int(m["b"][0]), int(m["h"][0]), int(uc[0:2]), int(uc[2]), int(lc[0:2]), int(lc[2]))
  row = [{1: 1, 2: 0, 0: -1}[gender]]
  for (group, names), v in zip(UAV_HUMAN_GROUPS, values):
    if not 0 <= v <= len(names):
      return "label_out_of_range", f"{group} {v} not in 0..{len(names)}"
    row += list(_one_hot(v - 1 if v else len(names), len(names) + 1))
  return np.asarray(row, np.int64)


def read_uav_human(root: str, folder: str, report: common.BuildReport) -> list:
  """``<folder>/*.jpg`` -> [Item], labels from the names (a name that does not parse is
  reported and skipped)."""
  out = []
  for name in sorted(os.listdir(os.path.join(root, folder))):
    if not name.lower().endswith((".jpg", ".jpeg", ".png")):
      continue
    rel = os.path.join(folder, name)
    labels = uav_human_labels(name)
    if isinstance(labels, tuple):
      report.bad(labels[0], os.path.join(root, rel), labels[1])
      continue
    out.append(Item(rel, rel, labels))
  return out


# Parse-27k (parse27k_tools/attribute_datasets.py): the attributes, their "softmax" values
# (0 = N/A) and the sequences of each split.
PARSE27K_ATTRIBUTES = (
    ("Orientation", ("na", "front", "back", "left", "right")),
    ("Orientation8", ("na", "front", "front-right", "right", "back-right", "back", "back-left",
                      "left", "front-left")),
    ("Gender", ("na", "male", "female")),
    ("Posture", ("na", "standing", "walking")),
) + tuple((a, ("na", "yes", "no")) for a in (
    "HasBagOnShoulderLeft", "HasBagOnShoulderRight", "HasBagInHandLeft", "HasBagInHandRight",
    "HasTrolley", "HasBackpack", "isPushing", "isTalkingOnPhone"))
PARSE27K_NAMES = [f"{a}={v}" for a, values in PARSE27K_ATTRIBUTES for v in values]
PARSE27K_SPLITS = {"train": (1, 4, 5), "val": (2, 7, 8), "test": (3, 6)}
# Posture in the database: 1 N/A, 2 walking, 3 standing, 4 sitting (left out, as the tools do).
PARSE27K_POSTURE = {1: 0, 3: 1, 2: 2}
PARSE27K_SITTING = 4
# Mirroring a crop: value permutations and the left/right attribute pairs.
PARSE27K_MIRROR_VALUES = {"Orientation": {3: 4, 4: 3},
                          "Orientation8": {2: 8, 8: 2, 3: 7, 7: 3, 4: 6, 6: 4}}
PARSE27K_MIRROR_PAIRS = {"HasBagOnShoulderLeft": "HasBagOnShoulderRight",
                         "HasBagOnShoulderRight": "HasBagOnShoulderLeft",
                         "HasBagInHandLeft": "HasBagInHandRight",
                         "HasBagInHandRight": "HasBagInHandLeft"}


def parse27k_crop_box(x0, y0, x1, y1) -> tuple:
  """The tools' crop of a pedestrian box at the frame's resolution (whole pixels, rounded half
  up): width = height / 2 about the box's centre, then height / 4 more on every side."""
  h, cx = float(y1) - float(y0), (float(x0) + float(x1)) / 2
  half_w, pad = h / 4, h / 4
  r = lambda v: int(math.floor(v + 0.5))  # noqa: E731
  return (r(cx - half_w - pad), r(float(y0) - pad), r(cx + half_w + pad), r(float(y1) + pad))


def parse27k_mirror(values: dict) -> dict:
  """Softmax labels of a crop -> those of the crop flipped left-right."""
  out = {}
  for a, v in values.items():
    if a in PARSE27K_MIRROR_PAIRS:
      out[a] = values[PARSE27K_MIRROR_PAIRS[a]]
    else:
      out[a] = PARSE27K_MIRROR_VALUES.get(a, {}).get(v, v)
  return out


def _parse27k_row(values: dict) -> np.ndarray:
  return np.concatenate([_one_hot(values[a], len(v)) for a, v in PARSE27K_ATTRIBUTES])


def read_parse27k(path: str, image_dir: str, report: common.BuildReport,
                  mirror_train: bool = False) -> dict:
  """``annotations.sqlite3`` -> {split: [Item]} (crops of ``image_dir/<directory>/<filename>``)."""
  attrs = [a for a, _ in PARSE27K_ATTRIBUTES]
  query = ("SELECT s.directory, i.filename, i.sequenceID, p.pedestrianID, p.box_min_x, "
           "p.box_min_y, p.box_max_x, p.box_max_y, " + ", ".join(f"{a}ID" for a in attrs) +
           " FROM Pedestrian p JOIN AttributeSet a ON p.attributeSetID = a.attributeSetID"
           " JOIN Image i ON p.imageID = i.imageID JOIN Sequence s ON s.sequenceID = i.sequenceID"
           " ORDER BY i.sequenceID, s.directory, i.filename, p.pedestrianID")
  try:
    db = sqlite3.connect(pathlib.Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    try:
      rows = db.execute(query).fetchall()
    finally:
      db.close()
  except sqlite3.Error as e:
    raise _bad(path, f"not the Parse-27k annotation database ({e}); expected tables Pedestrian "
               "(pedestrianID, imageID, attributeSetID, box_min/max_x/y), AttributeSet "
               f"(attributeSetID, {', '.join(a + 'ID' for a in attrs)}), Image (imageID, "
               "sequenceID, filename), Sequence (sequenceID, directory)") from e
  by_seq = {s: k for k, seqs in PARSE27K_SPLITS.items() for s in seqs}
  out = {k: [] for k in PARSE27K_SPLITS}
  mirrored = []
  sizes = dict(PARSE27K_ATTRIBUTES)
  for directory, filename, seq, pid, *rest in rows:
    box, raw = rest[:4], dict(zip(attrs, rest[4:]))
    split = by_seq.get(int(seq))
    if split is None:
      report.drop("parse27k_unknown_sequence")
      continue
    if raw["Posture"] == PARSE27K_SITTING:
      report.drop("parse27k_sitting")
      continue
    values, bad = {}, []
    for a in attrs:
      v = raw[a]
      if not (isinstance(v, (int, float)) and float(v).is_integer()):
        v = _INVALID
      elif a == "Posture":
        v = PARSE27K_POSTURE.get(int(v), _INVALID)
      else:
        v = int(v) - 1
      if not 0 <= v < len(sizes[a]):
        bad.append(f"{a}ID={raw[a]}")
      values[a] = v
    if bad:
      report.bad("label_out_of_range", path, f"pedestrian {pid}: {', '.join(bad)}")
      continue
    if not float(box[3]) > float(box[1]):
      report.drop("degenerate_box")
      continue
    rel = os.path.join(image_dir, str(directory), str(filename))
    name = f"{directory}/{filename}#{pid}"
    crop = parse27k_crop_box(*box)
    out[split].append(Item(name, rel, _parse27k_row(values), box=crop, pad_edge=True,
                           tag=f"#{pid}"))
    if split == "train" and mirror_train:
      mirrored.append(Item(name + "_mirrored", rel, _parse27k_row(parse27k_mirror(values)),
                           box=crop, pad_edge=True, mirror=True, tag=f"#{pid}_mirrored"))
  out["train"] += mirrored  # the tools' train.hdf5: all crops, then all mirrored copies
  return out


# DukeMTMC-attribute / Market-1501-attribute (Lin et al.), column orders of the authors' rows.
DUKE_ATTRIBUTES = ("backpack", "bag", "boots", "downblack", "downblue", "downbrown", "downgray",
                   "downgreen", "downred", "downwhite", "gender", "handbag", "hat", "shoes",
                   "top", "upblack", "upblue", "upbrown", "upgray", "upgreen", "uppurple",
                   "upred", "upwhite")
MARKET_BINARY = ("backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray",
                 "downgreen", "downpink", "downpurple", "downwhite", "downyellow", "upblack",
                 "upblue", "upgreen", "upgray", "uppurple", "upred", "upwhite", "upyellow",
                 "clothes", "down", "up", "hair", "hat", "gender")
MARKET_AGES = ("young", "teenager", "adult", "old")
MARKET_NAMES = list(MARKET_BINARY) + [f"age={a}" for a in MARKET_AGES]
# Where the .mat may lie under the ReID release folder (the repository's file copied in, or an
# attribute/ folder as the common PyTorch loaders expect).
LIN_MAT_DIRS = ("", "attribute", "DukeMTMC-attribute", "Market-1501_Attribute")
# ReID ids without attribute annotation: junk and distractors of Market-1501's gallery.
LIN_UNANNOTATED_IDS = ("-1", "0000")


def _lin_binary(a) -> np.ndarray:
  """1 / 2 (no / yes, or the first / second named value) -> 0 / 1; 0 -> -1 (unknown)."""
  out = np.full(a.shape, _INVALID, np.int64)
  out[a == 1], out[a == 2], out[a == 0] = 0, 1, -1
  return out


def read_lin_attribute_mat(path: str, key: str, split: str) -> tuple:
  """``<key>.<split>`` of duke_attribute.mat / market_attribute.mat -> ({id int: labels [A]},
  {id int: what is out of range}), the second for identities with values outside 0..2
  (age 0..4)."""
  s = _field(_field(load_mat(path), key, path, ""), split, path, f"{key}.")
  w = f"{key}.{split}."
  ids = _strings(_field(s, "image_index", path, w), path, w + "image_index")
  n = len(ids)

  def col(name):
    a = np.asarray(_field(s, name, path, w)).reshape(-1)
    if a.size != n or not np.issubdtype(a.dtype, np.number):
      raise _bad(path, f"{w}{name}: expected {n} numbers (one per image_index), got shape "
                 f"{a.shape}")
    return a.astype(np.int64)

  binary = DUKE_ATTRIBUTES if key == "duke_attribute" else MARKET_BINARY
  raw = {a: col(a) for a in binary + (() if key == "duke_attribute" else ("age",))}
  labels = np.stack([_lin_binary(raw[a]) for a in binary], 1)
  if "age" in raw:
    age = raw["age"]
    ages = np.full((n, len(MARKET_AGES)), _INVALID, np.int64)
    ok = (age >= 1) & (age <= len(MARKET_AGES))
    ages[ok] = np.eye(len(MARKET_AGES), dtype=np.int64)[age[ok] - 1]
    ages[age == 0] = -1
    labels = np.concatenate([labels, ages], 1)
  try:
    pids = [int(i) for i in ids]
  except ValueError as e:
    raise _bad(path, f"{w}image_index: expected 4-digit identity strings ({e})") from e
  problems = {}
  for j in np.nonzero(np.any(labels == _INVALID, 1))[0]:
    problems[pids[j]] = ", ".join(f"{a}={int(v[j])}" for a, v in raw.items()
                                  if not 0 <= v[j] <= (4 if a == "age" else 2))
  return {p: labels[j] for j, p in enumerate(pids)}, problems


def read_lin_images(root: str, folder: str, table: tuple, mat_path: str,
                    report: common.BuildReport) -> list:
  """``<folder>/<id>_c*.jpg`` -> [Item] with the labels of the image's identity (``table``: what
  :func:`read_lin_attribute_mat` returns)."""
  table, problems = table
  out = []
  for name in sorted(os.listdir(os.path.join(root, folder))):
    if not name.lower().endswith(".jpg"):
      continue
    rel = os.path.join(folder, name)
    pid = name.split("_")[0]
    if pid in LIN_UNANNOTATED_IDS:
      report.drop("unannotated_identity")
      continue
    try:
      labels = table[int(pid)]
    except (KeyError, ValueError):
      report.bad("no_attribute_identity", os.path.join(root, rel),
                 f"identity {pid!r} is not in {os.path.basename(mat_path)}")
      continue
    if int(pid) in problems:
      report.bad("label_out_of_range", mat_path, f"{rel}: identity {pid}: {problems[int(pid)]}")
      continue
    out.append(Item(rel, rel, labels))
  return out


def _crop(arr: np.ndarray, item: Item):
  """The crop of an ``[H, W, 3]`` image that ``item`` asks for, or None if nothing is left."""
  h, w = arr.shape[:2]
  x0, y0, x1, y1 = item.box
  if not item.pad_edge:
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
  if x1 <= x0 or y1 <= y0 or x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
    return None
  pads = ((max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)), (0, 0))
  if any(p for pair in pads for p in pair):
    arr = np.pad(arr, pads, mode="edge")
    x0, x1, y0, y1 = x0 + pads[1][0], x1 + pads[1][0], y0 + pads[0][0], y1 + pads[0][0]
  return arr[y0:y1, x0:x1]


def _png(arr: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.ascontiguousarray(arr, np.uint8), mode="RGB").save(buf, format="PNG")
  return buf.getvalue()



# Merged rows: the sources side by side, each in its publisher's folder under the raw root (the
# first of ``folders`` found, exactly then ignoring case). RAPv2 / PA-100K folders as
# data/prepare.py names them.
RAP2_PA100K_SOURCES = (
    MergedSource("rapv2", ("RAP2", "RAPv2", "rapv2"), "rapv2_native", ("train",), ("test",)),
    MergedSource("pa100k", ("PA-100K", "PA100k", "pa100k"), "pa100k_native", ("train",),
                 ("test",)),
)
# attr_5set in the authors' column order (HARDHC 14, UAV-Human 43, Parse27k 44, DukeMTMC 23,
# Market-1501 30) and with the splits that give their image counts (module docstring).
ATTR_5SET_SOURCES = (
    MergedSource("hardhc", ("WIDERAttribute", "WIDER_Attribute", "wider_attribute", "HARDHC"),
                 "hardhc_native"),
    MergedSource("uav_human", ("uavhuman", "UAV-Human", "UAVHuman"), "uav_human_native"),
    MergedSource("parse27k", ("Parse27k", "Parse-27k", "parse27k"), "parse27k_native",
                 mirror=True),
    MergedSource("dukemtmc", ("DukeMTMC-reID",), "duke_attr_native", ("train", "test")),
    MergedSource("market1501", ("Market-1501-v15.09.15", "Market-1501"), "market_attr_native"),
)
# Folders of UAV-Human's attribute crops: the manual_dir itself or the toolkit's layout.
UAV_HUMAN_DIRS = ("", "uavhuman", "data/uavhuman")
_TABLE_SOURCES = ("pa100k_mat", "rapv2_mat", "peta_mat")
_LIN = {"duke_attr_mat": ("duke_attribute", DUKE_ATTRIBUTES),
        "market_attr_mat": ("market_attribute", MARKET_NAMES)}


def _first(root, candidates, probe=""):
  """The first candidate under ``root`` (holding ``probe`` if given); else the first one."""
  return next((c for c in candidates if os.path.exists(os.path.join(root, c, probe))),
              candidates[0])


def _table_source(t: NativeTable, image_dir: str, path: str) -> SourceData:
  items = [Item(n, os.path.join(image_dir, n), t.labels[i])
           for i, n in enumerate(t.image_names)]
  return SourceData(list(t.attr_names), {
      "train": [items[i] for i in sorted(set(t.trainval.tolist()))],
      "test": [items[i] for i in sorted(set(t.test.tolist()))]}, path)


def _pa100k_image_dir(root: str, t: NativeTable) -> str:
  """The first folder that holds the first image (releases differ in nesting)."""
  first = t.image_names[0] if t.image_names else ""
  return next((d for d in PA100K_IMAGE_DIRS if os.path.isfile(os.path.join(root, d, first))),
              _first(root, PA100K_IMAGE_DIRS))


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
      AttributesConfig(name="hardhc_native",
                       description="HARDHC = WIDER Attribute (14) from its jsons, person crops.",
                       source="wider_attr_json", annotation=WIDER_TRAINVAL, image_dir="Image"),
      AttributesConfig(name="uav_human_native",
                       description="UAV-Human attributes (43) from the crops' names.",
                       source="uav_human_names", image_dir=""),
      AttributesConfig(name="parse27k_native",
                       description="Parse-27k (44) from annotations.sqlite3, pedestrian crops.",
                       source="parse27k_sqlite", annotation="annotations.sqlite3",
                       image_dir="sequences"),
      AttributesConfig(name="duke_attr_native",
                       description="DukeMTMC-attribute (23) from duke_attribute.mat.",
                       source="duke_attr_mat", annotation="duke_attribute.mat", image_dir=""),
      AttributesConfig(name="market_attr_native",
                       description="Market-1501-attribute (30) from market_attribute.mat.",
                       source="market_attr_mat", annotation="market_attribute.mat",
                       image_dir=""),
      AttributesConfig(name="rap2_pa100k_native",
                       description="The authors' attr_rap2_pa100k: RAPv2 54 + PA-100K 26.",
                       source="merged", sources=RAP2_PA100K_SOURCES),
      AttributesConfig(name="attr_5set_native",
                       description="The authors' attr_5set: HARDHC, UAV-Human, Parse27k, "
                                   "DukeMTMC, Market-1501 (154).",
                       source="merged", sources=ATTR_5SET_SOURCES),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "labels": tfds.features.Tensor(shape=(None,), dtype=np.int8, doc="0/1, -1 unknown"),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    if config.source == "merged":
      out = {}
      for src in config.sources:
        for rel, what in cls.layout(_CONFIGS[src.config]).items():
          out[f"{src.folders[0]}/{rel}"] = f"{src.name}: {what}"
      return out
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
    if config.source == "wider_attr_json":
      return {f"{WIDER_TRAINVAL} (or wider_attribute_annotation/...)":
              "images [{file_name, targets [{attribute [14] 1/-1/0, bbox x y w h}]}], "
              "attribute_id_map (train + val images)",
              f"{WIDER_TEST} (next to it)": "the same for the test images",
              f"{config.image_dir}/<file_name>": "the images (train/, val/, test/<scene>/...)"}
    if config.source == "uav_human_names":
      name = "P<pid>S<setup>G<gg>B<bb>H<hh>UC<6 digits>LC<6 digits>A<action>R<rep>_<time>_<n>.jpg"
      return {f"train/{name}": "train crops, labels in the names (or under uavhuman/)",
              "test/<name as above>": "test crops"}
    if config.source == "parse27k_sqlite":
      return {config.annotation: "tables Pedestrian, AttributeSet, Image, Sequence",
              f"{config.image_dir}/<directory>/<filename>": "the frames of the 8 sequences"}
    if config.source in _LIN:
      mat = config.annotation
      return {f"{mat} (or attribute/{mat})": f"struct {_LIN[config.source][0]}: train, test "
              "(per-identity labels 1/2, image_index)",
              "bounding_box_train/<id>_c<cam>*.jpg": "the ReID release's train images",
              "bounding_box_test/<id>_c<cam>*.jpg": "its gallery images (test)"}
    return {config.pkl: "Rethinking-PAR pickle (image_name, label, attr_name, partition)",
            f"{config.image_dir}/<image_name>": "the images"}

  def _first(self, root, candidates):
    return _first(root, candidates)

  def _required(self, root):
    c = self.builder_config
    if c.source == "merged":
      out = []
      for src in c.sources:
        folder = common.find_folder(root, src.folders) or src.folders[0]
        out += [os.path.join(folder, p) for p in _source_required(
            _CONFIGS[src.config], os.path.join(root, folder), src.train + src.test)]
      return out
    if c.source == "pa100k_mat":
      return [self._first(root, PA100K_ANNOTATIONS), self._first(root, PA100K_IMAGE_DIRS)]
    if c.source in _TABLE_SOURCES:
      return [c.annotation, c.image_dir]
    if c.source != "pkl":
      return _source_required(c, root, ("train", "test"))
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
    if c.source == "merged":
      return self._merged_splits(root)
    if c.source not in _TABLE_SOURCES:
      d = self._read_source(c, root, c.mirror_train)
      self.info.metadata["attr_names"] = list(d.attr_names)
      self.info.metadata["num_attributes"] = len(d.attr_names)
      width = len(d.attr_names)
      return {split: self._emit(split, [("", root, "", d.annotation, items, 0)], width,
                                is_train=split == "train")
              for split, items in d.splits.items()}
    if c.source == "pa100k_mat":
      path = os.path.join(root, self._first(root, PA100K_ANNOTATIONS))
      t = read_pa100k_mat(path, c.rethinking_par_order)
      image_dir = os.path.join(root, _pa100k_image_dir(root, t))
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

  def _read_source(self, c, root, mirror=False, splits=None) -> SourceData:
    """Any native config's source under ``root`` -> its records per split (``splits``: only
    these, when the files of the others need not exist)."""
    want = lambda s: splits is None or s in splits  # noqa: E731
    if c.source == "pa100k_mat":
      path = os.path.join(root, _first(root, PA100K_ANNOTATIONS))
      t = read_pa100k_mat(path, c.rethinking_par_order)
      return _table_source(t, _pa100k_image_dir(root, t), path)
    if c.source in _TABLE_SOURCES:
      path = os.path.join(root, c.annotation)
      read = read_rapv2_mat if c.source == "rapv2_mat" else read_peta_mat
      return _table_source(read(path, c.partition, c.rethinking_par_order), c.image_dir, path)
    if c.source == "wider_attr_json":
      ann = _first(root, WIDER_ANNOTATION_DIRS, WIDER_TRAINVAL)
      out, names = {}, list(HARDHC_NAMES)
      for split, f in (("train", WIDER_TRAINVAL), ("test", WIDER_TEST)):
        if want(split):
          names, out[split] = read_wider_attribute(os.path.join(root, ann, f), c.image_dir,
                                                   self.report)
      return SourceData(names, out, os.path.join(root, ann, WIDER_TRAINVAL))
    if c.source == "uav_human_names":
      d = _first(root, UAV_HUMAN_DIRS, "train")
      return SourceData(list(UAV_HUMAN_NAMES), {
          s: read_uav_human(root, os.path.join(d, s), self.report)
          for s in ("train", "test") if want(s)}, os.path.join(root, d))
    if c.source == "parse27k_sqlite":
      path = os.path.join(root, c.annotation)
      out = read_parse27k(path, c.image_dir, self.report, mirror)
      return SourceData(list(PARSE27K_NAMES), {s: v for s, v in out.items() if want(s)}, path)
    if c.source in _LIN:
      key, names = _LIN[c.source]
      path = os.path.join(root, _first(root, LIN_MAT_DIRS, c.annotation), c.annotation)
      return SourceData(list(names), {
          s: read_lin_images(root, f"bounding_box_{s}", read_lin_attribute_mat(path, key, s),
                             path, self.report)
          for s in ("train", "test") if want(s)}, path)
    raise ValueError(f"unknown attribute source {c.source!r}")

  def _merged_splits(self, root):
    """The sources' records, each label row -1 outside its source's column block."""
    c = self.builder_config
    names, blocks, folders = [], {}, {}
    parts = {"train": [], "test": []}
    for src in c.sources:
      folder = common.find_folder(root, src.folders) or src.folders[0]
      src_root = os.path.join(root, folder)
      d = self._read_source(_CONFIGS[src.config], src_root, src.mirror, src.train + src.test)
      start = len(names)
      names += [f"{src.name}/{n}" for n in d.attr_names]
      blocks[src.name], folders[src.name] = [start, len(names)], folder
      for split, source_splits in (("train", src.train), ("test", src.test)):
        parts[split] += [(src.name, src_root, folder, d.annotation, d.splits[s], start)
                         for s in source_splits]
    self.info.metadata["attr_names"] = names
    self.info.metadata["num_attributes"] = len(names)
    self.info.metadata["source_blocks"] = blocks
    self.info.metadata["source_folders"] = folders
    return {split: self._emit(split, p, len(names), is_train=split == "train")
            for split, p in parts.items() if p}

  def _emit(self, split, parts, width, is_train):
    """Records of ``parts`` [(source name or '', source root, its folder under a merged row's
    raw root or '', annotation path, [Item], first column)], labels -1 outside each part's
    columns; the train split's positive ratios and each source's record count go into the
    metadata."""
    pos = np.zeros(width, np.int64)
    known = np.zeros(width, np.int64)
    counts = {}
    for name, src_root, folder, ann, items, offset in parts:
      counts.setdefault(name, 0)
      cache = [None, None]
      for it in items:
        bad = sorted(set(np.asarray(it.labels).tolist()) - {-1, 0, 1})
        if bad:
          self.report.bad("label_out_of_range", ann,
                          f"{it.name}: attribute values {bad} not in {{-1, 0, 1}}")
          continue
        data = self._image(src_root, it, cache)
        if data is None:
          continue
        row = np.full(width, -1, np.int8)
        row[offset:offset + len(it.labels)] = it.labels
        pos += row == 1
        known += row != -1
        counts[name] += 1
        key = f"{name}/{it.name}" if name else it.name
        filename = f"{folder}/{it.path}{it.tag}" if folder else it.name
        yield key, {"image": data, "labels": row, "filename": filename}
    if is_train:
      self.info.metadata["positive_ratio"] = (pos / np.maximum(known, 1)).round(6).tolist()
    if any(counts):
      records = dict(self.info.metadata.get("source_records", {}))
      records[split] = counts
      self.info.metadata["source_records"] = records

  def _image(self, src_root, item: Item, cache: list):
    """Encoded image of ``item``: the file's bytes, or its crop / mirror as PNG (the decoded
    file of consecutive items of one file kept in ``cache``)."""
    path = os.path.join(src_root, item.path)
    if item.box is None and not item.mirror:
      img = common.load_image(path, self.report)
      return None if img is None else img.data
    if cache[0] != path or cache[1] is None:
      img = common.load_image(path, self.report)
      arr = None
      if img is not None:
        with Image.open(io.BytesIO(img.data)) as im:
          arr = np.asarray(im.convert("RGB"))
      cache[:] = [path, arr]
    arr = cache[1]
    if arr is None:
      return None
    out = arr if item.box is None else _crop(arr, item)
    if out is None:
      self.report.bad("box_outside_image", path, f"{item.name}: crop {list(item.box)} in "
                      f"{arr.shape[1]}x{arr.shape[0]} image")
      return None
    return _png(out[:, ::-1] if item.mirror else out)

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


_CONFIGS = {c.name: c for c in Attributes.BUILDER_CONFIGS}


def _source_required(c, root, splits) -> list:
  """Paths (relative to ``root``) a native config needs for ``splits``."""
  if c.source == "pa100k_mat":
    return [_first(root, PA100K_ANNOTATIONS), _first(root, PA100K_IMAGE_DIRS)]
  if c.source in _TABLE_SOURCES:
    return [c.annotation, c.image_dir]
  if c.source == "wider_attr_json":
    ann = _first(root, WIDER_ANNOTATION_DIRS, WIDER_TRAINVAL)
    files = [f for s, f in (("train", WIDER_TRAINVAL), ("test", WIDER_TEST)) if s in splits]
    return [os.path.join(ann, f) for f in files] + [c.image_dir]
  if c.source == "uav_human_names":
    d = _first(root, UAV_HUMAN_DIRS, "train")
    return [os.path.join(d, s) for s in ("train", "test") if s in splits]
  if c.source == "parse27k_sqlite":
    return [c.annotation, c.image_dir]
  if c.source in _LIN:
    return [os.path.join(_first(root, LIN_MAT_DIRS, c.annotation), c.annotation)] + [
        f"bounding_box_{s}" for s in ("train", "test") if s in splits]
  raise ValueError(f"unknown attribute source {c.source!r}")
