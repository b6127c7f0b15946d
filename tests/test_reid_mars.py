"""The ReID builder's MARS reader (``reid/mars``) and the SenseReID finetuning set
(``reid/sensereid_train_native``: reid_4sets_native's four sources, then MARS) on their dummy data.

Both configs are built from ``data/reid/dummy_data/<config>`` (written by
``python -m data.reid.dummy_data.make_dummy``). Expected values come from the dummy folders and
file names, read here with the conventions data/README.md documents, not from the builder's code:
MARS frames ``bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg`` (PID = the first four
characters, camera = the number after 'C'), every frame one train record, ``bbox_test/`` not
read; Market-style ``PID_cCAM`` names with junk -1 and distractor 0 out of train; MSMT17
``list_train.txt`` ``<path> <pid>`` with the camera the third '_' field (list_val not read);
merge rule: ids packed per source in sorted source-id order, offset by the ids of the sources
before it (Market-1501, DukeMTMC-reID, CUHK03-NP labelled, MSMT17, MARS).
"""
import os
import shutil

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod
from data import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "reid", "dummy_data")
CONFIGS = ("mars", "sensereid_train_native", "reid_4sets_native")
# The merged-row test's helpers: records, metadata, pixels, the expected-record builders.
from test_reid_merged import (market_style, merged_ids, metadata, msmt_train, pixels,  # noqa: E402
                              records, rels)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {c: build_mod.build(f"reid/{c}", os.path.join(DUMMY, c), data_dir) for c in CONFIGS}
  return data_dir, folders


def mars_train(root, folder=""):
  """{relpath: (source pid, camera)} of MARS's bbox_train frames."""
  prefix = f"{folder}/" if folder else ""
  out = {}
  for rel in rels(root, f"{prefix}bbox_train/*/*.jpg"):
    name = os.path.basename(rel)
    assert name[:4] == rel.split("/")[-2]           # the PID folder holds its own frames
    out[rel] = (int(name[:4]), int(name[5:name.index("T")]))
  return out


def expected_sensereid_train(root):
  return [("market1501", market_style(root, "Market-1501-v15.09.15", "bounding_box_train/*.jpg")),
          ("dukemtmc", market_style(root, "DukeMTMC-reID", "bounding_box_train/*.jpg")),
          ("cuhk03_np_labeled", market_style(root, "cuhk03-np",
                                             "labeled/bounding_box_train/*.png")),
          ("msmt17", msmt_train(root, "MSMT17_V1")),
          ("mars", mars_train(root, "MARS"))]


# ---- reid/mars -----------------------------------------------------------------------------------
def test_mars(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "mars")
  assert set(tfds.builder("reid/mars", data_dir=data_dir).info.splits) == {"train"}
  got = records(data_dir, "mars")
  files = mars_train(root)
  # Every frame of every train tracklet, nothing of bbox_test.
  assert sorted(got) == sorted(files) and len(got) == 7
  assert not any(rel.startswith("bbox_test/") for rel in got)
  ids = sorted({pid for pid, _ in files.values()})           # 3, 11, 20
  for rel, (pid, cam) in files.items():
    assert int(got[rel]["person_id"]) == ids.index(pid), rel
    assert int(got[rel]["camera_id"]) == cam, rel
  meta = metadata(folders["mars"])
  assert meta["num_train_ids"] == len(ids) == 3
  assert meta["layout"] == "mars"
  assert meta["build_report"]["skipped"] == {} and meta["build_report"]["dropped"] == {}
  # One record field by field: pid 0011 (second of 3, 11, 20), camera 2, tracklet 1, frame 3.
  rel = "bbox_train/0011/0011C2T0001F003.jpg"
  r = got[rel]
  assert r["filename"].decode() == rel
  assert int(r["person_id"]) == 1
  assert int(r["camera_id"]) == 2
  assert r["role"].decode() == "train"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))


def test_mars_missing_and_bad_names(tmp_path):
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("reid/mars", str(tmp_path), str(tmp_path / "tfds"))
  assert "bbox_train" in str(e.value) and "data/build.py reid/mars" in str(e.value)
  # A frame whose name's PID is not its folder's is skipped (an error under strict).
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "mars"), src)
  shutil.copy(os.path.join(src, "bbox_train", "0020", "0020C6T0001F001.jpg"),
              os.path.join(src, "bbox_train", "0003", "0020C6T0001F002.jpg"))
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(common.BadInputError, match="0020C6T0001F002.jpg: unparsable_name"):
    build_mod.build("reid/mars", src, data_dir, strict=True)
  folder = build_mod.build("reid/mars", src, data_dir)
  assert len(records(data_dir, "mars")) == 7
  assert metadata(folder)["build_report"]["skipped"] == {"unparsable_name": 1}


# ---- reid/sensereid_train_native -----------------------------------------------------------------
def test_sensereid_train_native(built):
  data_dir, folders = built
  folder = folders["sensereid_train_native"]
  root = os.path.join(DUMMY, "sensereid_train_native")
  sources = expected_sensereid_train(root)
  expected, ranges = merged_ids(sources)
  assert set(tfds.builder("reid/sensereid_train_native", data_dir=data_dir).info.splits) == {
      "train"}
  got = records(data_dir, "sensereid_train_native")
  assert sorted(got) == sorted(expected) and len(got) == 15 + 7
  for rel, (pid, cam) in expected.items():
    assert (int(got[rel]["person_id"]), int(got[rel]["camera_id"])) == (pid, cam), rel
    assert got[rel]["role"].decode() == "train"
  # Ranges: Market 3, Duke 2, CUHK03-NP 3, MSMT17 2 (list_train), MARS 3 ids, contiguous.
  assert ranges == [("market1501", 0, 3), ("dukemtmc", 3, 5), ("cuhk03_np_labeled", 5, 8),
                    ("msmt17", 8, 10), ("mars", 10, 13)]
  meta = metadata(folder)
  assert meta["num_train_ids"] == meta["num_classes"] == 13
  assert [(s["name"], s["id_start"], s["id_stop"]) for s in meta["sources"]] == ranges
  assert [s["folder"] for s in meta["sources"]] == [
      "Market-1501-v15.09.15", "DukeMTMC-reID", "cuhk03-np", "MSMT17_V1", "MARS"]
  for s, (name, files) in zip(meta["sources"], sources):
    assert s["num_ids"] == s["id_stop"] - s["id_start"]
    assert s["num_images"] == len(files)
    prefix = s["folder"] + "/"
    ids = {int(r["person_id"]) for rel, r in got.items() if rel.startswith(prefix)}
    assert ids == set(range(s["id_start"], s["id_stop"])), name
  assert meta["layout"] == "merged" and meta["source_order"] == [n for n, _ in sources]
  # The four reid_4sets sources read exactly as reid_4sets_native reads them.
  four = records(data_dir, "reid_4sets_native")
  assert sorted(four) == sorted(rel for rel in got if not rel.startswith("MARS/"))
  for rel, r in four.items():
    assert (int(got[rel]["person_id"]), int(got[rel]["camera_id"])) == (
        int(r["person_id"]), int(r["camera_id"])), rel
  # Not read: MARS bbox_test (distractor 0000 and junk 00-1 folders), any query/gallery folder.
  assert not any(rel.startswith("MARS/bbox_test/") or "/query/" in rel
                 or "bounding_box_test" in rel or "/test/" in rel for rel in got)
  # One record field by field: MARS pid 0020 (third of 3, 11, 20) after the 10 ids before it.
  rel = "MARS/bbox_train/0020/0020C6T0001F001.jpg"
  r = got[rel]
  assert r["filename"].decode() == rel
  assert int(r["person_id"]) == 10 + 2
  assert int(r["camera_id"]) == 6
  assert r["role"].decode() == "train"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))


def test_sensereid_train_native_other_mars_folder(tmp_path):
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "sensereid_train_native"), src)
  os.rename(os.path.join(src, "MARS"), os.path.join(src, "mars-v160809"))
  data_dir = str(tmp_path / "tfds")
  folder = build_mod.build("reid/sensereid_train_native", src, data_dir)
  assert metadata(folder)["sources"][-1]["folder"] == "mars-v160809"
  got = records(data_dir, "sensereid_train_native")
  assert sum(rel.startswith("mars-v160809/bbox_train/") for rel in got) == 7


def test_sensereid_train_native_missing_sources_named(tmp_path):
  src = str(tmp_path / "raw")
  shutil.copytree(os.path.join(DUMMY, "sensereid_train_native"), src)
  shutil.rmtree(os.path.join(src, "MARS"))
  os.remove(os.path.join(src, "MSMT17_V1", "list_train.txt"))
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("reid/sensereid_train_native", src, str(tmp_path / "tfds"))
  msg = str(e.value)
  assert "source mars: no folder 'MARS', 'mars', 'MARS-v160809'" in msg
  assert "MARS/bbox_train" in msg
  assert "zheng-lab.cecs.anu.edu.au/Project/project_mars.html" in msg
  assert "source msmt17: folder MSMT17_V1/ lacks MSMT17_V1/list_train.txt" in msg
  assert "www.pkuvmc.com" in msg
  assert not any(f"source {n}" in msg for n in ("market1501", "dukemtmc", "cuhk03_np_labeled"))
  assert "data/build.py reid/sensereid_train_native" in msg
  assert not os.path.exists(tmp_path / "tfds" / "reid")
  # A MARS folder without bbox_train is named as incomplete.
  os.makedirs(os.path.join(src, "MARS", "bbox_test"))
  shutil.copy(os.path.join(DUMMY, "sensereid_train_native", "MSMT17_V1", "list_train.txt"),
              os.path.join(src, "MSMT17_V1", "list_train.txt"))
  with pytest.raises(common.MissingInputError, match="source mars: folder MARS/ lacks "
                                                     "MARS/bbox_train"):
    build_mod.build("reid/sensereid_train_native", src, str(tmp_path / "tfds"))
