"""Writes the attribute dummy data: the Rethinking-PAR dataset.pkl format (``pa100k``, ``peta``)
and the publishers' .mat releases (``pa100k_native``, ``rapv2_native``, ``peta_native``, the
structures of data/attributes/builder.py's docstring, written with scipy.io.savemat), the attr_5set
sources in their publishers' layouts (``hardhc_native``: WIDER Attribute jsons + images;
``uav_human_native``: crops named by their labels; ``parse27k_native``: annotations.sqlite3 +
frames; ``duke_attr_native`` / ``market_attr_native``: the .mat next to ReID image folders) and
the merged rows' raw roots (``rap2_pa100k_native``, ``attr_5set_native``: copies of the
single-source folders under the publishers' folder names). Run from the repo root:
``python -m data.attributes.dummy_data.make_dummy [name ...]`` (default: all).

PETA's pickle is written with an ``easydict.EasyDict`` (as the real files are): a minimal class
of that import path is created here so that the pickle refers to it by the same name."""
import os
import pickle
import shutil
import sqlite3
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


def hardhc_native():
  """WIDER Attribute: the two jsons + Image/{train,val,test}/<scene>/<name>.jpg. Train json:
  5 targets (one with a value 2: out of range; one with zero width: dropped; one reaching past the
  image: clipped), test json: 2 targets."""
  root = dummy.fresh(os.path.join(HERE, "hardhc_native"))
  files = {"train/0--Parade/0_Parade_marchingband_1_5.jpg": (1200, 40, 48),
           "val/1--Handshaking/1_Handshaking_Handshaking_1_94.jpg": (1201, 36, 40),
           "test/2--Demonstration/2_Demonstration_Protesters_2_12.jpg": (1202, 40, 44)}
  for rel, (seed, h, w) in files.items():
    dummy.write_image(os.path.join(root, "Image", rel), seed, h, w)
  id_map = {str(k): n for k, n in enumerate(
      ("Male", "Long hair", "Sunglasses", "Hat", "T-shirt", "Long sleeve", "Formal", "Shorts",
       "Jeans", "Long pants", "Skirt", "Face mask", "Logo", "Stripe"))}
  scene_map = {"0": "Parade", "1": "Handshaking", "2": "Demonstration"}
  a = [1, -1, 0, 1, 1, -1, -1, 0, 1, 1, -1, -1, 1, 0]
  b = [-1, 1, -1, 0, -1, 1, 1, -1, 0, -1, 1, 0, -1, 1]
  c = [0, 0, 1, -1, 1, 1, -1, -1, -1, 0, 0, 1, 1, -1]
  bad = list(a)
  bad[4] = 2
  trainval = {"images": [
      {"file_name": "train/0--Parade/0_Parade_marchingband_1_5.jpg", "scene_id": 0,
       "targets": [{"attribute": a, "bbox": [3.5, 2.2, 10.1, 20.3]},
                   {"attribute": b, "bbox": [30.0, 10.0, 25.0, 40.0]}]},
      {"file_name": "val/1--Handshaking/1_Handshaking_Handshaking_1_94.jpg", "scene_id": 1,
       "targets": [{"attribute": bad, "bbox": [1.0, 1.0, 8.0, 12.0]},
                   {"attribute": c, "bbox": [5.0, 4.0, 0.0, 10.0]},
                   {"attribute": c, "bbox": [12.0, 6.0, 14.0, 25.0]}]}],
      "attribute_id_map": id_map, "scene_id_map": scene_map}
  test = {"images": [
      {"file_name": "test/2--Demonstration/2_Demonstration_Protesters_2_12.jpg", "scene_id": 2,
       "targets": [{"attribute": b, "bbox": [0.0, 0.0, 20.0, 30.0]},
                   {"attribute": a, "bbox": [22.4, 9.6, 12.0, 28.0]}]}],
      "attribute_id_map": id_map, "scene_id_map": scene_map}
  dummy.write_json(os.path.join(root, "wider_attribute_trainval.json"), trainval)
  dummy.write_json(os.path.join(root, "wider_attribute_test.json"), test)


# UAV-Human attribute crops: names carry the labels (G B H UC LC fields, main subject first).
UAV_TRAIN = ("P000S00G10B10H10UC022000LC021000A000R0_08241716_170.jpg",
             "P000S00G10B10H10UC022000LC021000A005R0_08241716_011.jpg",
             "P012S01G21B41H22UC072000LC093000A010R1_09131758_003.jpg",
             "P020S02G00B00H40UC110000LC000000A020R0_09140101_042.jpg",
             "P031S00G10B50H10UC022000LC021000A000R0_09150101_001.jpg",   # backpack 5: bad
             "P040S00G10_not_a_uav_human_name.jpg")                       # unparsable
UAV_TEST = ("P001S00G20B40H20UC072000LC021000A000R0_08241838_004.jpg",
            "P001S00G20B40H20UC052300LC062100A002R0_08241838_090.jpg")


def uav_human_native():
  """train/ (4 good crops, one with an out-of-range backpack, one unparsable name), test/ (2)."""
  root = dummy.fresh(os.path.join(HERE, "uav_human_native"))
  for split, names in (("train", UAV_TRAIN), ("test", UAV_TEST)):
    for i, n in enumerate(names):
      dummy.write_image(os.path.join(root, split, n), 1300 + 10 * (split == "test") + i, 32, 16)


# Parse-27k: sequences (id, directory), frames, and pedestrians (id, sequence, frame, box,
# Orientation, Orientation8, Gender, Posture, ShoulderL, ShoulderR, HandL, HandR, Trolley,
# Backpack, Pushing, Phone) in the database's values (1 = N/A; Posture 2 walking, 3 standing,
# 4 sitting).
PARSE27K_SEQUENCES = ((1, "seq01"), (2, "seq02"), (3, "seq03"), (4, "seq04"), (5, "seq05"))
PARSE27K_PEDESTRIANS = (
    (101, 1, "frame_00015.png", (10.0, 5.0, 20.0, 30.0), (4, 3, 2, 2, 2, 3, 3, 1, 3, 2, 3, 3)),
    (102, 1, "frame_00015.png", (40.0, 10.0, 47.0, 38.0), (2, 1, 3, 3, 1, 2, 2, 3, 3, 3, 2, 3)),
    (103, 4, "frame_00030.png", (5.0, 4.0, 15.0, 24.0), (3, 5, 2, 4, 3, 3, 3, 3, 3, 3, 3, 3)),
    (104, 4, "frame_00030.png", (20.0, 6.0, 30.0, 30.0), (5, 9, 7, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
    (105, 5, "frame_00045.png", (22.0, 2.0, 32.0, 26.0), (5, 8, 3, 3, 3, 2, 1, 2, 2, 3, 3, 2)),
    (201, 2, "frame_00015.png", (8.0, 8.0, 18.0, 34.0), (3, 6, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2)),
    (301, 3, "frame_00060.png", (2.0, 3.0, 12.0, 27.0), (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)),
    (302, 3, "frame_00060.png", (30.0, 12.0, 40.0, 36.0), (2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
)
PARSE27K_COLUMNS = ("orientationID", "orientation8ID", "genderID", "postureID",
                    "hasBagOnShoulderLeftID", "hasBagOnShoulderRightID", "hasBagInHandLeftID",
                    "hasBagInHandRightID", "hasTrolleyID", "hasBackpackID", "isPushingID",
                    "isTalkingOnPhoneID")


def parse27k_native():
  """annotations.sqlite3 (tables Sequence, Image, AttributeSet, Pedestrian) + sequences/: train
  (sequences 1, 4, 5) 5 pedestrians of which one sits (left out) and one has Gender 7 (out of
  range), val 1, test 2; boxes near the frame's edges (crops padded with its edge)."""
  root = dummy.fresh(os.path.join(HERE, "parse27k_native"))
  seq_dir = dict(PARSE27K_SEQUENCES)
  frames = sorted({(seq, f) for _, seq, f, _, _ in PARSE27K_PEDESTRIANS})
  for i, (seq, f) in enumerate(frames):
    dummy.write_image(os.path.join(root, "sequences", seq_dir[seq], f), 1400 + i, 40, 48)
  db = sqlite3.connect(os.path.join(root, "annotations.sqlite3"))
  db.execute("CREATE TABLE Sequence (sequenceID INTEGER PRIMARY KEY, directory TEXT)")
  db.execute("CREATE TABLE Image (imageID INTEGER PRIMARY KEY, sequenceID INTEGER, "
             "filename TEXT)")
  db.execute("CREATE TABLE AttributeSet (attributeSetID INTEGER PRIMARY KEY, " +
             ", ".join(f"{c} INTEGER" for c in PARSE27K_COLUMNS) + ")")
  db.execute("CREATE TABLE Pedestrian (pedestrianID INTEGER PRIMARY KEY, imageID INTEGER, "
             "attributeSetID INTEGER, box_min_x REAL, box_min_y REAL, box_max_x REAL, "
             "box_max_y REAL)")
  db.executemany("INSERT INTO Sequence VALUES (?, ?)", PARSE27K_SEQUENCES)
  image_id = {sf: 10 + i for i, sf in enumerate(frames)}
  db.executemany("INSERT INTO Image VALUES (?, ?, ?)",
                 [(image_id[sf], sf[0], sf[1]) for sf in frames])
  for k, (pid, seq, f, box, values) in enumerate(PARSE27K_PEDESTRIANS):
    db.execute(f"INSERT INTO AttributeSet VALUES ({', '.join('?' * 13)})", (500 + k,) + values)
    db.execute("INSERT INTO Pedestrian VALUES (?, ?, ?, ?, ?, ?, ?)",
               (pid, image_id[(seq, f)], 500 + k) + box)
  db.commit()
  db.close()


def _struct_row(values):
  return np.asarray(values, np.uint8).reshape(1, -1)


# DukeMTMC-attribute's field orders (they differ between train and test in the release).
DUKE_TRAIN_FIELDS = ("backpack", "bag", "handbag", "boots", "gender", "hat", "shoes", "top",
                     "downblack", "downwhite", "downred", "downgray", "downblue", "downgreen",
                     "downbrown", "upblack", "upwhite", "upred", "uppurple", "upgray", "upblue",
                     "upgreen", "upbrown")
DUKE_TEST_FIELDS = ("boots", "shoes", "top", "gender", "hat", "backpack", "bag", "handbag",
                    "downblack", "downwhite", "downred", "downgray", "downblue", "downgreen",
                    "downbrown", "upblack", "upwhite", "upred", "upgray", "upblue", "upgreen",
                    "uppurple", "upbrown")


def _lin_part(fields, ids, rng, zero=None, special=None):
  part = {f: rng.integers(1, 3, size=len(ids)) for f in fields}
  if zero is not None:
    part[zero[0]][zero[1]] = 0
  for f, j, v in special or ():
    part[f][j] = v
  part = {f: _struct_row(v) for f, v in part.items()}
  part["image_index"] = _cell(ids, (1, len(ids)))
  return part


def duke_attr_native():
  """duke_attribute.mat + bounding_box_train/ (ids 1 and 5, plus id 7 absent from the .mat) and
  bounding_box_test/ (ids 2 and 3); identity 5's ``top`` is 0 (unknown)."""
  root = dummy.fresh(os.path.join(HERE, "duke_attr_native"))
  rng = np.random.default_rng(23)
  mat = {"duke_attribute": {
      "train": _lin_part(DUKE_TRAIN_FIELDS, ["0001", "0005"], rng, zero=("top", 1)),
      "test": _lin_part(DUKE_TEST_FIELDS, ["0002", "0003"], rng)}}
  scipy.io.savemat(os.path.join(root, "duke_attribute.mat"), mat)
  for i, n in enumerate(("bounding_box_train/0001_c2_f0046182.jpg",
                         "bounding_box_train/0001_c5_f0051341.jpg",
                         "bounding_box_train/0005_c2_f0046985.jpg",
                         "bounding_box_train/0007_c1_f0000001.jpg",
                         "bounding_box_test/0002_c1_f0044158.jpg",
                         "bounding_box_test/0003_c3_f0061025.jpg")):
    dummy.write_image(os.path.join(root, n), 1500 + i, 32, 16)


MARKET_TRAIN_FIELDS = ("age", "backpack", "bag", "handbag", "downblack", "downblue", "downbrown",
                       "downgray", "downgreen", "downpink", "downpurple", "downwhite",
                       "downyellow", "upblack", "upblue", "upgreen", "upgray", "uppurple",
                       "upred", "upwhite", "upyellow", "clothes", "down", "up", "hair", "hat",
                       "gender")
MARKET_TEST_FIELDS = ("age", "backpack", "bag", "handbag", "clothes", "down", "up", "hair", "hat",
                      "gender", "upblack", "upwhite", "upred", "uppurple", "upyellow", "upgray",
                      "upblue", "upgreen", "downblack", "downwhite", "downpink", "downpurple",
                      "downyellow", "downgray", "downblue", "downgreen", "downbrown")


def market_attr_native():
  """market_attribute.mat (test struct first, as the release) + bounding_box_train/ (ids 2, 7
  and 10; id 10's ``hat`` is 3: out of range) and bounding_box_test/ (ids 1, 3, a junk -1 and a
  distractor 0000 image)."""
  root = dummy.fresh(os.path.join(HERE, "market_attr_native"))
  rng = np.random.default_rng(30)
  train = _lin_part(MARKET_TRAIN_FIELDS, ["0002", "0007", "0010"], rng,
                    special=(("age", 0, 2), ("age", 1, 4), ("age", 2, 1), ("hat", 2, 3)))
  test = _lin_part(MARKET_TEST_FIELDS, ["0001", "0003"], rng,
                   special=(("age", 0, 3), ("age", 1, 2)))
  scipy.io.savemat(os.path.join(root, "market_attribute.mat"),
                   {"market_attribute": {"test": test, "train": train}})
  for i, n in enumerate(("bounding_box_train/0002_c1s1_000451_03.jpg",
                         "bounding_box_train/0002_c2s1_000301_01.jpg",
                         "bounding_box_train/0007_c2s3_070952_01.jpg",
                         "bounding_box_train/0010_c1s1_002301_02.jpg",
                         "bounding_box_test/0001_c1s1_001051_03.jpg",
                         "bounding_box_test/0003_c3s1_000551_02.jpg",
                         "bounding_box_test/-1_c1s1_000401_03.jpg",
                         "bounding_box_test/0000_c1s1_000151_01.jpg")):
    dummy.write_image(os.path.join(root, n), 1600 + i, 32, 16)


def _merged(name, folders):
  """A raw root holding copies of single-source dummy folders under the publishers' names."""
  root = dummy.fresh(os.path.join(HERE, name))
  for folder, config in folders:
    src = os.path.join(HERE, config)
    if not os.path.isdir(src):
      WRITERS[config]()
    shutil.copytree(src, os.path.join(root, folder))


def rap2_pa100k_native():
  _merged("rap2_pa100k_native", (("RAP2", "rapv2_native"), ("PA-100K", "pa100k_native")))


def attr_5set_native():
  _merged("attr_5set_native", (("WIDERAttribute", "hardhc_native"),
                               ("uavhuman", "uav_human_native"),
                               ("Parse27k", "parse27k_native"),
                               ("DukeMTMC-reID", "duke_attr_native"),
                               ("Market-1501-v15.09.15", "market_attr_native")))


WRITERS = {"pa100k": pa100k, "peta": peta, "pa100k_native": pa100k_native,
           "rapv2_native": rapv2_native, "peta_native": peta_native,
           "hardhc_native": hardhc_native, "uav_human_native": uav_human_native,
           "parse27k_native": parse27k_native, "duke_attr_native": duke_attr_native,
           "market_attr_native": market_attr_native,
           "rap2_pa100k_native": rap2_pa100k_native, "attr_5set_native": attr_5set_native}


if __name__ == "__main__":
  for name in sys.argv[1:] or list(WRITERS):
    WRITERS[name]()
