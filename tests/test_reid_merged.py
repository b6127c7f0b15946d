"""The ReID builder's merged configs (``reid/reid_4sets_native``,
``reid/last_prcc_dgmarket_native``) on their dummy raw roots.

Each config is built once from ``data/reid/dummy_data/<config>`` (written by
``python -m data.reid.dummy_data.make_dummy``: the sources' publisher folders side by side).
Expected values come from the dummy folders, file names and lists, read here with the
conventions data/README.md documents (Market-style ``PID_cCAM``, junk -1 and distractor 0 out of
train; MSMT17 ``list_train.txt`` ``<path> <pid>`` with the camera the third '_' field; PRCC PID =
folder, camera letter A/B/C -> 0/1/2; LaST PID = first '_' field; DG-Market PID = the Market PID
after 'gan'), and the merge rule: ids packed per source in sorted source-id order, offset by the
ids of the sources before it in the authors' order.
"""
import glob
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "reid", "dummy_data")
CONFIGS = ("reid_4sets_native", "last_prcc_dgmarket_native")
MARKET = re.compile(r"^(-?\d+)_c(\d+)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {c: build_mod.build(f"reid/{c}", os.path.join(DUMMY, c), data_dir) for c in CONFIGS}
  return data_dir, folders


def records(data_dir, config, split="train"):
  src = tfds.data_source(f"reid/{config}", data_dir=data_dir)[split]
  return {r["filename"].decode(): r for r in (src[i] for i in range(len(src)))}


def metadata(folder):
  with open(os.path.join(folder, "metadata.json")) as f:
    return json.load(f)


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def rels(root, pattern):
  return sorted(os.path.relpath(p, root) for p in glob.glob(os.path.join(root, pattern)))


# ---- expected records, worked out from the dummy files -------------------------------------------
def market_style(root, folder, pattern):
  """{relpath: (source pid, camera)} of a Market-style train folder, junk and distractors out."""
  out = {}
  for rel in rels(root, f"{folder}/{pattern}"):
    pid, cam = (int(g) for g in MARKET.match(os.path.basename(rel)).groups())
    if pid > 0:
      out[rel] = (pid, cam)
  return out


def msmt_train(root, folder):
  out = {}
  with open(os.path.join(root, folder, "list_train.txt")) as f:
    for line in f:
      path, pid = line.split()
      out[f"{folder}/train/{path}"] = (int(pid), int(os.path.basename(path).split("_")[2]))
  return out


def expected_4sets(root):
  return [("market1501", market_style(root, "Market-1501-v15.09.15", "bounding_box_train/*.jpg")),
          ("dukemtmc", market_style(root, "DukeMTMC-reID", "bounding_box_train/*.jpg")),
          ("cuhk03_np_labeled", market_style(root, "cuhk03-np",
                                             "labeled/bounding_box_train/*.png")),
          ("msmt17", msmt_train(root, "MSMT17_V1"))]


def expected_last_prcc_dgmarket(root):
  letters = {"A": 0, "B": 1, "C": 2}
  dg = {rel: (int(os.path.basename(rel).split("_gan")[1].split("_")[0]), -1)
        for rel in rels(root, "DG-Market/*.jpg")}
  prcc = {rel: (int(rel.split("/")[-2]), letters[os.path.basename(rel)[0]])
          for rel in rels(root, "prcc/rgb/train/*/*.jpg")}
  last = {rel: (int(os.path.basename(rel).split("_")[0]), -1)
          for rel in rels(root, "LaST/train/*/*.jpg")}
  return [("dg_market", dg), ("prcc", prcc), ("last", last)]


def merged_ids(sources):
  """{relpath: (merged id, camera)} and [(name, id_start, id_stop)] in source order."""
  out, ranges, offset = {}, [], 0
  for name, files in sources:
    ids = sorted({pid for pid, _ in files.values()})
    for rel, (pid, cam) in files.items():
      out[rel] = (offset + ids.index(pid), cam)
    ranges.append((name, offset, offset + len(ids)))
    offset += len(ids)
  return out, ranges


def check_merged(data_dir, folder, config, sources):
  expected, ranges = merged_ids(sources)
  assert set(tfds.builder(f"reid/{config}", data_dir=data_dir).info.splits) == {"train"}
  got = records(data_dir, config)
  assert sorted(got) == sorted(expected)
  for rel, (pid, cam) in expected.items():
    assert (int(got[rel]["person_id"]), int(got[rel]["camera_id"])) == (pid, cam), rel
    assert got[rel]["role"].decode() == "train"
  # Ids per source: exactly the source's range; the ranges tile 0..N-1 in source order.
  n = ranges[-1][2]
  for name, start, stop in ranges:
    prefix = {s["name"]: s["folder"] for s in metadata(folder)["sources"]}[name] + "/"
    ids = {int(r["person_id"]) for rel, r in got.items() if rel.startswith(prefix)}
    assert ids == set(range(start, stop)), name
  assert [r[1] for r in ranges] == [0] + [r[2] for r in ranges[:-1]]
  meta = metadata(folder)
  assert meta["num_train_ids"] == meta["num_classes"] == n
  assert [(s["name"], s["id_start"], s["id_stop"]) for s in meta["sources"]] == ranges
  for s, (name, files) in zip(meta["sources"], sources):
    assert s["num_ids"] == s["id_stop"] - s["id_start"]
    assert s["num_images"] == len(files)
  assert meta["layout"] == "merged" and meta["source_order"] == [name for name, _ in sources]
  return got, expected


# ---- reid_4sets_native ---------------------------------------------------------------------------
def test_reid_4sets_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "reid_4sets_native")
  sources = expected_4sets(root)
  got, expected = check_merged(data_dir, folders["reid_4sets_native"], "reid_4sets_native",
                               sources)
  assert len(got) == 15 and metadata(folders["reid_4sets_native"])["num_train_ids"] == 10
  # Not read: CUHK03-NP detected/, MSMT17 list_val.txt, any query/gallery folder.
  assert not any("/detected/" in rel or "/query/" in rel or "bounding_box_test" in rel
                 or "/test/" in rel for rel in got)
  with open(os.path.join(root, "MSMT17_V1", "list_val.txt")) as f:
    val_paths = [f"MSMT17_V1/train/{ln.split()[0]}" for ln in f if ln.strip()]
  assert val_paths and not set(val_paths) & set(got)
  # One record field by field: CUHK03-NP labelled id 3 (the second of ids 1, 3, 4), after
  # Market's 3 and Duke's 2 ids.
  rel = "cuhk03-np/labeled/bounding_box_train/0003_c1_2.png"
  r = got[rel]
  assert r["filename"].decode() == rel
  assert int(r["person_id"]) == 3 + 2 + 1
  assert int(r["camera_id"]) == 1
  assert r["role"].decode() == "train"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))
  # Junk (-1) and the distractor (0000) of Market's train folder are counted as dropped.
  report = metadata(folders["reid_4sets_native"])["build_report"]
  assert report["dropped"] == {"junk_train": 1, "distractor_train": 1}


def test_reid_4sets_native_other_folder_names(tmp_path):
  """Second folder names: Market-1501 (case ignored), MSMT17_V2 with mask_train_v2/."""
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "reid_4sets_native"), src)
  os.rename(os.path.join(src, "Market-1501-v15.09.15"), os.path.join(src, "market-1501"))
  os.rename(os.path.join(src, "MSMT17_V1"), os.path.join(src, "MSMT17_V2"))
  msmt = os.path.join(src, "MSMT17_V2")
  os.rename(os.path.join(msmt, "train"), os.path.join(msmt, "mask_train_v2"))
  data_dir = str(tmp_path / "tfds")
  folder = build_mod.build("reid/reid_4sets_native", src, data_dir)
  got = records(data_dir, "reid_4sets_native")
  assert len(got) == 15
  assert [s["folder"] for s in metadata(folder)["sources"]] == [
      "market-1501", "DukeMTMC-reID", "cuhk03-np", "MSMT17_V2"]
  assert sum(rel.startswith("MSMT17_V2/mask_train_v2/") for rel in got) == 3
  assert sum(rel.startswith("market-1501/bounding_box_train/") for rel in got) == 5


def test_reid_4sets_native_missing_sources_named(tmp_path):
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "reid_4sets_native"), src)
  shutil.rmtree(os.path.join(src, "DukeMTMC-reID"))
  shutil.rmtree(os.path.join(src, "cuhk03-np", "labeled"))
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("reid/reid_4sets_native", src, str(tmp_path / "tfds"))
  msg = str(e.value)
  # The missing source with every folder name tried and where to download it; the incomplete
  # one with the path it lacks; the complete ones not named as problems.
  assert "source dukemtmc: no folder 'DukeMTMC-reID', 'dukemtmc-reid', 'DukeMTMC'" in msg
  assert "github.com/layumi/DukeMTMC-reID_evaluation" in msg
  assert "source cuhk03_np_labeled: folder cuhk03-np/ lacks " \
         "cuhk03-np/labeled/bounding_box_train" in msg
  assert "github.com/zhunzhong07/person-re-ranking" in msg
  assert "source market1501" not in msg and "source msmt17" not in msg
  assert "data/build.py reid/reid_4sets_native" in msg
  assert not os.path.exists(tmp_path / "tfds" / "reid")


def test_reid_4sets_native_unreadable_id_leaves_no_hole(tmp_path):
  """Duke id 12's only image is corrupt: Duke keeps one id and CUHK03-NP's range moves down."""
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "reid_4sets_native"), src)
  victim = os.path.join(src, "DukeMTMC-reID", "bounding_box_train", "0012_c1_f0057703.jpg")
  with open(victim, "wb") as f:
    f.write(b"not a jpeg")
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(common.BadInputError, match="0012_c1_f0057703.jpg: corrupt_image"):
    build_mod.build("reid/reid_4sets_native", src, data_dir, strict=True)
  folder = build_mod.build("reid/reid_4sets_native", src, data_dir)
  meta = metadata(folder)
  assert [(s["name"], s["id_start"], s["id_stop"]) for s in meta["sources"]] == [
      ("market1501", 0, 3), ("dukemtmc", 3, 4), ("cuhk03_np_labeled", 4, 7), ("msmt17", 7, 9)]
  assert meta["num_train_ids"] == 9
  assert sorted({int(r["person_id"]) for r in records(data_dir, "reid_4sets_native").values()}) \
      == list(range(9))


# ---- last_prcc_dgmarket_native ------------------------------------------------------------------
def test_last_prcc_dgmarket_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "last_prcc_dgmarket_native")
  sources = expected_last_prcc_dgmarket(root)
  got, _ = check_merged(data_dir, folders["last_prcc_dgmarket_native"],
                        "last_prcc_dgmarket_native", sources)
  assert len(got) == 14 and metadata(folders["last_prcc_dgmarket_native"])["num_train_ids"] == 9
  # Train only: no PRCC test/val, no LaST test/val image.
  assert not any("/rgb/test/" in rel or "/rgb/val/" in rel or rel.startswith(("LaST/test/",
                                                                              "LaST/val/"))
                 for rel in got)
  # One record field by field: PRCC id 3 (second of 1, 3, 10), camera B, after DG-Market's 3 ids.
  rel = "prcc/rgb/train/003/B_cropped_rgb002.jpg"
  r = got[rel]
  assert r["filename"].decode() == rel
  assert int(r["person_id"]) == 3 + 1
  assert int(r["camera_id"]) == 1
  assert r["role"].decode() == "train"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))
  # LaST comes last: its ids 15, 120, 4999 -> 6, 7, 8.
  assert int(got["LaST/train/004999/004999_0_tt0003_000900.jpg"]["person_id"]) == 8


def test_last_prcc_dgmarket_native_missing_source_named(tmp_path):
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "last_prcc_dgmarket_native"), src)
  shutil.rmtree(os.path.join(src, "LaST"))
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("reid/last_prcc_dgmarket_native", src, str(tmp_path / "tfds"))
  msg = str(e.value)
  assert "source last: no folder 'last', 'LaST'" in msg and "github.com/shuxjweb/last" in msg
  assert "last/train" in msg
  assert "source prcc" not in msg and "source dg_market" not in msg
