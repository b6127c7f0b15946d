"""The attr_5set sources' native readers (``attributes/{hardhc,uav_human,parse27k,duke_attr,
market_attr}_native``) and the merged rows (``attributes/rap2_pa100k_native``,
``attributes/attr_5set_native``) on their committed dummy data (data/attributes/dummy_data).

Expected values are computed here from the dummy files themselves (json, image names, a plain
sqlite3 query, ``scipy.io.loadmat`` without ``simplify_cells``) with the column layouts written
out in this file, independently of the builder's parsing. The merged rows' column blocks are
checked against the authors' positive-ratio vectors' lengths (configs/humanbench.py).
"""
import json
import math
import os
import shutil
import sqlite3

import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from configs import humanbench  # noqa: E402
from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "attributes", "dummy_data")
SINGLE = ("hardhc_native", "uav_human_native", "parse27k_native", "duke_attr_native",
          "market_attr_native", "rapv2_native", "pa100k_native")
MERGED = ("rap2_pa100k_native", "attr_5set_native")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  for c in SINGLE + MERGED:
    build_mod.build(f"attributes/{c}", os.path.join(DUMMY, c), data_dir)
  return data_dir


def records(data_dir, config, split):
  src = tfds.data_source(f"attributes/{config}", data_dir=data_dir)[split]
  out = {}
  for i in range(len(src)):
    r = src[i]
    out[r["filename"].decode()] = r
  assert len(out) == len(src)  # filenames are unique
  return out


def meta(data_dir, config):
  with open(os.path.join(data_dir, "attributes", config, "1.0.0", "metadata.json")) as f:
    return json.load(f)


def rgb(path):
  return np.asarray(Image.open(path).convert("RGB"))


def ratio(labels):
  labels = np.asarray(labels)
  return (labels == 1).sum(0) / np.maximum((labels != -1).sum(0), 1)


def check_record(rec, image, labels):
  assert set(rec) == {"image", "labels", "filename"}
  assert rec["image"].dtype == np.uint8 and rec["image"].shape == image.shape
  np.testing.assert_array_equal(rec["image"], image)
  assert rec["labels"].dtype == np.int8
  np.testing.assert_array_equal(rec["labels"], labels)


# ---- HARDHC = WIDER Attribute --------------------------------------------------------------------
def _hardhc_expected(root, json_name):
  """{filename: (crop, labels)} of one json: 1 / -1 / 0 -> 1 / 0 / -1, other values skipped,
  boxes without area dropped, the box floor/ceil'ed and cut to the image."""
  with open(os.path.join(root, json_name)) as f:
    d = json.load(f)
  out = {}
  for im in d["images"]:
    image = rgb(os.path.join(root, "Image", im["file_name"]))
    h, w = image.shape[:2]
    for k, t in enumerate(im["targets"]):
      if set(t["attribute"]) - {1, -1, 0}:
        continue
      x, y, bw, bh = t["bbox"]
      if bw <= 0 or bh <= 0:
        continue
      x0, y0 = max(math.floor(x), 0), max(math.floor(y), 0)
      x1, y1 = min(math.ceil(x + bw), w), min(math.ceil(y + bh), h)
      labels = [{1: 1, -1: 0, 0: -1}[v] for v in t["attribute"]]
      out[f"{im['file_name']}#{k}"] = (image[y0:y1, x0:x1], np.asarray(labels))
  return d, out


def test_hardhc_native(built):
  root = os.path.join(DUMMY, "hardhc_native")
  d, train_exp = _hardhc_expected(root, "wider_attribute_trainval.json")
  _, test_exp = _hardhc_expected(root, "wider_attribute_test.json")
  train, test = records(built, "hardhc_native", "train"), records(built, "hardhc_native", "test")
  assert len(train) == 3 and len(test) == 2  # 5 targets: one value 2, one zero-width box
  assert sorted(train) == sorted(train_exp) and sorted(test) == sorted(test_exp)
  for name, (crop, labels) in list(train_exp.items()) + list(test_exp.items()):
    check_record({**train, **test}[name], crop, labels)
  # The second Parade target reaches past the 48 x 40 image: cut to 18 x 30.
  assert train["train/0--Parade/0_Parade_marchingband_1_5.jpg#1"]["image"].shape == (30, 18, 3)
  first = train["train/0--Parade/0_Parade_marchingband_1_5.jpg#0"]
  np.testing.assert_array_equal(first["labels"], [1, 0, -1, 1, 1, 0, 0, -1, 1, 1, 0, 0, 1, -1])
  md = meta(built, "hardhc_native")
  assert md["attr_names"] == [d["attribute_id_map"][str(k)] for k in range(14)]
  assert md["attr_names"][:3] == ["Male", "Long hair", "Sunglasses"] and md["num_attributes"] == 14
  np.testing.assert_allclose(md["positive_ratio"], ratio([v[1] for v in train_exp.values()]),
                             atol=1e-6)
  rep = md["build_report"]
  assert rep["skipped"] == {"label_out_of_range": 1} and rep["dropped"] == {"degenerate_box": 1}


# ---- UAV-Human -----------------------------------------------------------------------------------
# Column of each group's first value: male 0, backpack 1-5, hat 6-10, upper colour 11-22, upper
# style 23-26, lower colour 27-38, lower style 39-42; value v >= 1 -> start + v - 1, v = 0 (n/a)
# -> the group's last column.
UAV_BLOCKS = ((1, 5), (6, 5), (11, 12), (23, 4), (27, 12), (39, 4))


def _uav_expected(name):
  body = name.split("G", 1)[1]
  g, b, h = int(body[0]), int(body.split("B")[1][0]), int(body.split("H")[1][0])
  uc, lc = body.split("UC")[1][:6], body.split("LC")[1][:6]
  row = np.zeros(43, np.int64)
  row[0] = {1: 1, 2: 0, 0: -1}[g]
  for (start, size), v in zip(UAV_BLOCKS, (b, h, int(uc[:2]), int(uc[2]), int(lc[:2]),
                                           int(lc[2]))):
    row[start + (v - 1 if v else size - 1)] = 1
  return row


def test_uav_human_native(built):
  root = os.path.join(DUMMY, "uav_human_native")
  train, test = (records(built, "uav_human_native", s) for s in ("train", "test"))
  names = sorted(os.listdir(os.path.join(root, "train")))
  good = [n for n in names if "B50" not in n and "not_a" not in n]
  assert sorted(train) == [f"train/{n}" for n in good] and len(train) == 4
  assert sorted(test) == sorted(f"test/{n}" for n in os.listdir(os.path.join(root, "test")))
  for split, recs in (("train", train), ("test", test)):
    for fn, rec in recs.items():
      check_record(rec, rgb(os.path.join(root, fn)), _uav_expected(os.path.basename(fn)))
  # Written out by hand: female, yellow backpack, black hat, white short upper, dark-brown skirt.
  rec = train["train/P012S01G21B41H22UC072000LC093000A010R1_09131758_003.jpg"]
  assert np.flatnonzero(rec["labels"] == 1).tolist() == [4, 7, 17, 24, 35, 41]
  assert rec["labels"][0] == 0
  # Gender n/a -> -1; backpack, upper style, lower colour and style n/a -> their last columns.
  rec = train["train/P020S02G00B00H40UC110000LC000000A020R0_09140101_042.jpg"]
  assert rec["labels"][0] == -1
  assert np.flatnonzero(rec["labels"] == 1).tolist() == [5, 9, 21, 26, 38, 42]
  md = meta(built, "uav_human_native")
  assert md["num_attributes"] == 43 and md["attr_names"][:3] == ["male", "backpack=red",
                                                                  "backpack=black"]
  assert md["attr_names"][10] == "hat=n/a" and md["attr_names"][42] == "lower_style=n/a"
  np.testing.assert_allclose(md["positive_ratio"],
                             ratio([_uav_expected(os.path.basename(f)) for f in train]),
                             atol=1e-6)
  assert md["build_report"]["skipped"] == {"label_out_of_range": 1, "unparsable_name": 1}


# ---- Parse-27k -----------------------------------------------------------------------------------
# Attribute sizes in column order: Orientation 5, Orientation8 9, Gender 3, Posture 3, 8 x 3.
PARSE_SIZES = (5, 9, 3, 3) + (3,) * 8
PARSE_SPLIT = {1: "train", 4: "train", 5: "train", 2: "val", 7: "val", 8: "val", 3: "test",
               6: "test"}


def _parse_rows(root):
  db = sqlite3.connect(os.path.join(root, "annotations.sqlite3"))
  rows = db.execute(
      "SELECT Sequence.directory, Image.filename, Image.sequenceID, Pedestrian.pedestrianID, "
      "box_min_x, box_min_y, box_max_x, box_max_y, orientationID, orientation8ID, genderID, "
      "postureID, hasBagOnShoulderLeftID, hasBagOnShoulderRightID, hasBagInHandLeftID, "
      "hasBagInHandRightID, hasTrolleyID, hasBackpackID, isPushingID, isTalkingOnPhoneID "
      "FROM Pedestrian, Image, Sequence, AttributeSet WHERE Pedestrian.imageID = Image.imageID "
      "AND Image.sequenceID = Sequence.sequenceID "
      "AND Pedestrian.attributeSetID = AttributeSet.attributeSetID").fetchall()
  db.close()
  return rows


def _parse_values(db_values):
  """Database values -> softmax values (0 = N/A); Posture 1/3/2 -> 0/1/2; None if invalid."""
  v = [x - 1 for x in db_values]
  v[3] = {1: 0, 3: 1, 2: 2}.get(db_values[3])
  if v[3] is None or any(not 0 <= x < n for x, n in zip(v, PARSE_SIZES)):
    return None
  return v


def _parse_onehot(values):
  return np.concatenate([np.eye(n, dtype=np.int64)[x] for x, n in zip(values, PARSE_SIZES)])


def _parse_mirror(v):
  """Flip left-right: Orientation left <-> right, Orientation8 mirrored about front-back, the
  bag-on-left/right attributes swapped."""
  m = list(v)
  m[0] = {3: 4, 4: 3}.get(v[0], v[0])
  m[1] = {2: 8, 8: 2, 3: 7, 7: 3, 4: 6, 6: 4}.get(v[1], v[1])
  m[4], m[5], m[6], m[7] = v[5], v[4], v[7], v[6]
  return m


def _parse_crop(image, box):
  x0, y0, x1, y1 = box
  h = y1 - y0
  cx = (x0 + x1) / 2
  r = lambda t: int(math.floor(t + 0.5))  # noqa: E731
  cx0, cy0, cx1, cy1 = r(cx - h / 2), r(y0 - h / 4), r(cx + h / 2), r(y1 + h / 4)
  p = max(image.shape[:2])
  padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="edge")
  return padded[cy0 + p:cy1 + p, cx0 + p:cx1 + p]


def _parse_expected(root):
  out = {"train": {}, "val": {}, "test": {}}
  for directory, filename, seq, pid, *rest in _parse_rows(root):
    values = _parse_values(rest[4:])
    if rest[4 + 3] == 4 or values is None:  # sitting / out of range
      continue
    image = rgb(os.path.join(root, "sequences", directory, filename))
    out[PARSE_SPLIT[seq]][f"{directory}/{filename}#{pid}"] = (_parse_crop(image, rest[:4]),
                                                              values)
  return out


def test_parse27k_native(built):
  root = os.path.join(DUMMY, "parse27k_native")
  exp = _parse_expected(root)
  assert {s: len(v) for s, v in exp.items()} == {"train": 3, "val": 1, "test": 2}
  for split in ("train", "val", "test"):
    recs = records(built, "parse27k_native", split)
    assert sorted(recs) == sorted(exp[split])
    for name, (crop, values) in exp[split].items():
      check_record(recs[name], crop, _parse_onehot(values))
  # Pedestrian 102 (box 40..47 x 10..38 in a 48 x 40 frame): a 28 x 42 crop, edge-padded.
  rec = records(built, "parse27k_native", "train")["seq01/frame_00015.png#102"]
  assert rec["image"].shape == (42, 28, 3)
  np.testing.assert_array_equal(rec["image"][-1], rec["image"][-6])  # rows past the frame
  md = meta(built, "parse27k_native")
  assert md["num_attributes"] == 44
  assert md["attr_names"][:5] == ["Orientation=na", "Orientation=front", "Orientation=back",
                                  "Orientation=left", "Orientation=right"]
  assert md["attr_names"][17:20] == ["Posture=na", "Posture=standing", "Posture=walking"]
  assert md["attr_names"][-3:] == ["isTalkingOnPhone=na", "isTalkingOnPhone=yes",
                                   "isTalkingOnPhone=no"]
  np.testing.assert_allclose(md["positive_ratio"],
                             ratio([_parse_onehot(v) for _, v in exp["train"].values()]),
                             atol=1e-6)
  rep = md["build_report"]
  assert rep["skipped"] == {"label_out_of_range": 1} and rep["dropped"] == {"parse27k_sitting": 1}


# ---- DukeMTMC-attribute / Market-1501-attribute --------------------------------------------------
DUKE_ORDER = ["backpack", "bag", "boots", "downblack", "downblue", "downbrown", "downgray",
              "downgreen", "downred", "downwhite", "gender", "handbag", "hat", "shoes", "top",
              "upblack", "upblue", "upbrown", "upgray", "upgreen", "uppurple", "upred", "upwhite"]
MARKET_ORDER = ["backpack", "bag", "handbag", "downblack", "downblue", "downbrown", "downgray",
                "downgreen", "downpink", "downpurple", "downwhite", "downyellow", "upblack",
                "upblue", "upgreen", "upgray", "uppurple", "upred", "upwhite", "upyellow",
                "clothes", "down", "up", "hair", "hat", "gender"]


def _lin_expected(root, key, split):
  """{identity: labels or None (a value outside the documented ones)} of one struct."""
  s = scipy.io.loadmat(os.path.join(root, f"{key}.mat"))[key][0, 0][split][0, 0]
  ids = [int(np.asarray(x).reshape(-1)[0]) for x in s["image_index"].reshape(-1)]
  out = {}
  for j, pid in enumerate(ids):
    order = DUKE_ORDER if key == "duke_attribute" else MARKET_ORDER
    raw = [int(s[a].reshape(-1)[j]) for a in order]
    row = [{2: 1, 1: 0, 0: -1}.get(v) for v in raw]
    if key == "market_attribute":
      age = int(s["age"].reshape(-1)[j])
      row += [int(age == k) for k in (1, 2, 3, 4)] if age else [-1] * 4
    out[pid] = None if None in row else np.asarray(row)
  return out


@pytest.mark.parametrize("config,key,n_train,n_test", [
    ("duke_attr_native", "duke_attribute", 3, 2), ("market_attr_native", "market_attribute", 3, 2)])
def test_lin_attribute_native(built, config, key, n_train, n_test):
  root = os.path.join(DUMMY, config)
  for split, n in (("train", n_train), ("test", n_test)):
    table = _lin_expected(root, key, split)
    folder = f"bounding_box_{split}"
    recs = records(built, config, split)
    expected = {}
    for name in sorted(os.listdir(os.path.join(root, folder))):
      pid = name.split("_")[0]
      if pid in ("-1", "0000") or table.get(int(pid)) is None:
        continue
      expected[f"{folder}/{name}"] = table[int(pid)]
    assert sorted(recs) == sorted(expected) and len(recs) == n
    for fn, labels in expected.items():
      check_record(recs[fn], rgb(os.path.join(root, fn)), labels)
    if split == "train":
      md = meta(built, config)
      np.testing.assert_allclose(md["positive_ratio"], ratio(list(expected.values())),
                                 atol=1e-6)
  md = meta(built, config)
  if config == "duke_attr_native":
    assert md["attr_names"] == DUKE_ORDER and md["num_attributes"] == 23
    # Identity 5's 'top' is 0 in the .mat: unknown.
    rec = records(built, config, "train")["bounding_box_train/0005_c2_f0046985.jpg"]
    assert rec["labels"][DUKE_ORDER.index("top")] == -1
    assert md["build_report"]["skipped"] == {"no_attribute_identity": 1}
  else:
    assert md["attr_names"] == MARKET_ORDER + ["age=young", "age=teenager", "age=adult",
                                               "age=old"]
    assert md["num_attributes"] == 30
    rec = records(built, config, "train")["bounding_box_train/0007_c2s3_070952_01.jpg"]
    np.testing.assert_array_equal(rec["labels"][-4:], [0, 0, 0, 1])  # age 4: old
    assert md["build_report"]["skipped"] == {"label_out_of_range": 1}  # identity 10: hat 3
    assert md["build_report"]["dropped"] == {"unannotated_identity": 2}  # -1 and 0000


# ---- merged rows ---------------------------------------------------------------------------------
def _authors_blocks(row):
  return [(name, len(r)) for name, r in humanbench.AUTHORS_POSITIVE_RATIOS[row]]


def _check_merged(built, row, config, sources):
  """Each source's records: its block = the single-source record's labels, -1 elsewhere, same
  image; metadata names / blocks / ratios / record counts; column counts = the authors'
  vectors' lengths. ``sources``: (name, folder, single config, its splits in the merged train,
  in the merged test, single filename -> path under the folder[, copies per record])."""
  md = meta(built, config)
  blocks = _authors_blocks(row)
  assert [(n, b - a) for n, (a, b) in md["source_blocks"].items()] == blocks
  assert md["num_attributes"] == len(humanbench.authors_positive_ratios(row)) == sum(
      n for _, n in blocks)
  assert len(md["attr_names"]) == len(md["positive_ratio"]) == md["num_attributes"]
  merged = records(built, config, "train")
  merged_test = records(built, config, "test") if "test" in md["build_report"]["images"] else {}
  all_labels = []
  for name, folder, single, splits, test_splits, to_merged, *copies in sources:
    a, b = md["source_blocks"][name]
    single_md = meta(built, single)
    assert md["attr_names"][a:b] == [f"{name}/{n}" for n in single_md["attr_names"]]
    assert md["source_folders"][name] == folder
    for target, source_splits in ((merged, splits), (merged_test, test_splits)):
      n = 0
      for split in source_splits:
        for fn, rec in records(built, single, split).items():
          m = target[f"{folder}/{to_merged(fn)}"]
          np.testing.assert_array_equal(m["image"], rec["image"])
          np.testing.assert_array_equal(m["labels"][a:b], rec["labels"])
          assert np.all(m["labels"][:a] == -1) and np.all(m["labels"][b:] == -1)
          n += 1
      if source_splits:
        # Parse27k's merged train adds a mirrored copy of each crop (copies = 2).
        count = md["source_records"]["train" if target is merged else "test"][name]
        assert count == n * (copies[0] if copies and target is merged else 1)
  for rec in merged.values():
    all_labels.append(rec["labels"])
  np.testing.assert_allclose(md["positive_ratio"], ratio(all_labels), atol=1e-6)
  return md, merged


def test_rap2_pa100k_native(built):
  md, merged = _check_merged(built, "attr_rap2_pa100k", "rap2_pa100k_native", [
      ("rapv2", "RAP2", "rapv2_native", ("train",), ("test",), lambda f: f"RAP_dataset/{f}"),
      ("pa100k", "PA-100K", "pa100k_native", ("train",), ("test",), lambda f: f"data/{f}")])
  assert md["source_records"] == {"train": {"rapv2": 4, "pa100k": 3},
                                  "test": {"rapv2": 2, "pa100k": 2}}
  assert len(merged) == 7 and len(records(built, "rap2_pa100k_native", "test")) == 4
  # The per-source ratios are the single-source builds' (same records).
  rap, pa = meta(built, "rapv2_native"), meta(built, "pa100k_native")
  np.testing.assert_allclose(md["positive_ratio"], rap["positive_ratio"] + pa["positive_ratio"],
                             atol=1e-6)
  assert md["attr_names"][0] == "rapv2/" + rap["attr_names"][0]
  assert md["attr_names"][54] == "pa100k/Hat"


def test_attr_5set_native(built):
  md, merged = _check_merged(built, "attr_5set", "attr_5set_native", [
      ("hardhc", "WIDERAttribute", "hardhc_native", ("train",), (), lambda f: f"Image/{f}"),
      ("uav_human", "uavhuman", "uav_human_native", ("train",), (), lambda f: f),
      ("parse27k", "Parse27k", "parse27k_native", ("train",), (),
       lambda f: f"sequences/{f}", 2),
      ("dukemtmc", "DukeMTMC-reID", "duke_attr_native", ("train", "test"), (), lambda f: f),
      ("market1501", "Market-1501-v15.09.15", "market_attr_native", ("train",), (),
       lambda f: f)])
  assert [name for name, _ in _authors_blocks("attr_5set")] == list(md["source_blocks"])
  assert md["source_blocks"] == {"hardhc": [0, 14], "uav_human": [14, 57],
                                 "parse27k": [57, 101], "dukemtmc": [101, 124],
                                 "market1501": [124, 154]}
  # Parse27k's train crops and their mirrored copies (the tools' train.hdf5); Duke train + test.
  assert md["source_records"] == {"train": {"hardhc": 3, "uav_human": 4, "parse27k": 6,
                                            "dukemtmc": 5, "market1501": 3}}
  assert len(merged) == 21 and list(md["build_report"]["images"]) == ["train"]
  # A mirrored Parse27k crop: the flipped crop, with mirrored labels.
  root = os.path.join(DUMMY, "parse27k_native")
  exp = _parse_expected(root)["train"]
  crop, values = exp["seq01/frame_00015.png#101"]
  rec = merged["Parse27k/sequences/seq01/frame_00015.png#101_mirrored"]
  np.testing.assert_array_equal(rec["image"], crop[:, ::-1])
  np.testing.assert_array_equal(rec["labels"][57:101], _parse_onehot(_parse_mirror(values)))
  assert values[0] == 3 and _parse_mirror(values)[0] == 4  # Orientation left -> right
  assert not np.array_equal(_parse_mirror(values), values)
  assert np.all(rec["labels"][:57] == -1) and np.all(rec["labels"][101:] == -1)


def test_authors_column_counts():
  # The merged rows' source blocks have the authors' column counts (REFERENCE.md §3.3).
  assert [n for _, n in _authors_blocks("attr_rap2_pa100k")] == [54, 26]
  assert [n for _, n in _authors_blocks("attr_5set")] == [14, 43, 44, 23, 30]
  from data.attributes import builder as attr_builder
  assert [len(attr_builder.HARDHC_NAMES), len(attr_builder.UAV_HUMAN_NAMES),
          len(attr_builder.PARSE27K_NAMES), len(attr_builder.DUKE_ATTRIBUTES),
          len(attr_builder.MARKET_NAMES)] == [14, 43, 44, 23, 30]


# ---- errors --------------------------------------------------------------------------------------
def test_missing_source_folder_names_it(tmp_path):
  root = tmp_path / "raw"
  shutil.copytree(os.path.join(DUMMY, "attr_5set_native"), root)
  shutil.rmtree(root / "Parse27k")
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("attributes/attr_5set_native", str(root), str(tmp_path / "tfds"))
  assert "Parse27k/annotations.sqlite3" in str(e.value)
  assert "Parse27k/sequences" in str(e.value)


def test_bad_inputs_name_file_and_field(tmp_path):
  data_dir = str(tmp_path / "tfds")
  # Duke: a struct field missing.
  src = tmp_path / "duke"
  shutil.copytree(os.path.join(DUMMY, "duke_attr_native"), src)
  m = scipy.io.loadmat(str(src / "duke_attribute.mat"))["duke_attribute"][0, 0]
  train = {k: m["train"][0, 0][k] for k in m["train"].dtype.names if k != "gender"}
  test = {k: m["test"][0, 0][k] for k in m["test"].dtype.names}
  scipy.io.savemat(str(src / "duke_attribute.mat"),
                   {"duke_attribute": {"train": train, "test": test}})
  with pytest.raises(common.BadInputError, match=r"duke_attribute.mat: duke_attribute\.train\."
                     r"'gender' missing"):
    build_mod.build("attributes/duke_attr_native", str(src), data_dir)
  # Parse-27k: not an sqlite database.
  src = tmp_path / "parse"
  shutil.copytree(os.path.join(DUMMY, "parse27k_native"), src)
  (src / "annotations.sqlite3").write_bytes(b"not a database" * 100)
  with pytest.raises(common.BadInputError, match="annotations.sqlite3: not the Parse-27k"):
    build_mod.build("attributes/parse27k_native", str(src), data_dir)
  # WIDER Attribute: a json without 'images'.
  src = tmp_path / "wider"
  shutil.copytree(os.path.join(DUMMY, "hardhc_native"), src)
  (src / "wider_attribute_test.json").write_text(json.dumps({"annotations": []}))
  with pytest.raises(common.BadInputError, match="wider_attribute_test.json: 'images' missing"):
    build_mod.build("attributes/hardhc_native", str(src), data_dir)
