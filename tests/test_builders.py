"""The HumanBench TFDS builders on their committed dummy data (real source formats).

Every dummy config is built once (module fixture) with ``data/build.py``'s ``build`` and read
back with ``tfds.data_source``; expected values are derived from the dummy sources (json, pkl,
mat, names) with NumPy, independently of the builders.
"""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402
from data import dummy  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data")

DUMMY_CONFIGS = [
    "reid/market1501", "reid/msmt17", "reid/sensereid", "reid/luperson_nl",
    "pose/coco", "pose/posetrack", "pose/mpii",
    "parsing/lip", "parsing/h36m_parsing",
    "attributes/pa100k", "attributes/peta",
    "detection/crowdhuman", "detection/caltech",
    "counting/shanghaitech_a",
]


def dummy_dir(full):
  family, config = full.split("/")
  return os.path.join(DATA, family, "dummy_data", config)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  for full in DUMMY_CONFIGS:
    build_mod.build(full, dummy_dir(full), data_dir)
  return data_dir


def records(data_dir, full, split):
  src = tfds.data_source(full, data_dir=data_dir)[split]
  out = [src[i] for i in range(len(src))]
  return sorted(out, key=lambda r: (r["filename"], r.get("instance_id", 0)))


def report(data_dir, full):
  family, config = full.split("/")
  with open(os.path.join(data_dir, family, config, "1.0.0", "build_report.json")) as f:
    return json.load(f)


def metadata(data_dir, full):
  family, config = full.split("/")
  with open(os.path.join(data_dir, family, config, "1.0.0", "metadata.json")) as f:
    return json.load(f)


# ---- ReID --------------------------------------------------------------------------------------
def _market_pid_cam(name):
  pid, cam = name.split("_")[:2]
  return int(pid), int(cam[1:].split("s")[0])


def test_market_protocol_and_repacked_ids(built):
  root = dummy_dir("reid/market1501")
  for split, folder in (("train", "bounding_box_train"), ("query", "query"),
                        ("gallery", "bounding_box_test")):
    names = sorted(os.listdir(os.path.join(root, folder)))
    keep = [n for n in names if _market_pid_cam(n)[0] != -1
            and (split == "gallery" or _market_pid_cam(n)[0] != 0)]
    recs = records(built, "reid/market1501", split)
    assert [r["filename"].decode() for r in recs] == sorted(f"{folder}/{n}" for n in keep)
    assert all(r["role"].decode() == split for r in recs)
    cams = [_market_pid_cam(n)[1] for n in sorted(keep)]
    np.testing.assert_array_equal([r["camera_id"] for r in recs], cams)
    src_pids = [_market_pid_cam(n)[0] for n in sorted(keep)]
    if split == "train":
      packed = {p: i for i, p in enumerate(sorted(set(src_pids)))}
      np.testing.assert_array_equal([r["person_id"] for r in recs], [packed[p] for p in src_pids])
    else:
      np.testing.assert_array_equal([r["person_id"] for r in recs], src_pids)
  assert 0 in [r["person_id"] for r in records(built, "reid/market1501", "gallery")]
  # The stored image is the source file's pixels.
  r = records(built, "reid/market1501", "train")[0]
  src = np.asarray(Image.open(os.path.join(root, r["filename"].decode())))
  np.testing.assert_array_equal(r["image"], src)
  assert report(built, "reid/market1501")["dropped"] == {
      "junk_train": 1, "distractor_train": 1, "junk_query": 1, "junk_gallery": 1}


def test_msmt_lists_train_includes_val(built):
  root = dummy_dir("reid/msmt17")
  entries = []
  for lst in ("list_train.txt", "list_val.txt"):
    entries += [ln.split() for ln in open(os.path.join(root, lst)).read().split("\n") if ln]
  entries.sort()
  packed = {p: i for i, p in enumerate(sorted({int(p) for _, p in entries}))}
  recs = records(built, "reid/msmt17", "train")
  assert [r["filename"].decode() for r in recs] == [f"train/{e}" for e, _ in entries]
  np.testing.assert_array_equal([r["person_id"] for r in recs],
                                [packed[int(p)] for _, p in entries])
  np.testing.assert_array_equal([r["camera_id"] for r in recs],
                                [int(os.path.basename(e).split("_")[2]) for e, _ in entries])
  assert len(records(built, "reid/msmt17", "gallery")) == 2


def test_sensereid_and_id_lists(built):
  q = records(built, "reid/sensereid", "query")
  assert [(r["person_id"], r["camera_id"]) for r in q] == [(1, 0), (4, 0)]
  assert len(records(built, "reid/sensereid", "gallery")) == 3
  # Two lists with ids offset per list: (a,5)->0, (a,9)->1, (b,3)->2, (b,5)->3.
  recs = {r["filename"].decode(): r["person_id"]
          for r in records(built, "reid/luperson_nl", "train")}
  assert recs == {"a/img/x0.jpg": 0, "a/img/x1.jpg": 1, "a/img/x2.jpg": 0,
                  "b/y/0.jpg": 3, "b/y/1.jpg": 2}
  assert metadata(built, "reid/luperson_nl")["num_train_ids"] == 4


# ---- Pose ------------------------------------------------------------------------------------
def test_coco_pose_instances(built):
  root = dummy_dir("pose/coco")
  coco = json.load(open(os.path.join(root, "annotations/person_keypoints_train2017.json")))
  anns = {a["id"]: a for a in coco["annotations"]}
  recs = records(built, "pose/coco", "train")
  assert [int(r["instance_id"]) for r in recs] == [10, 20]
  for r in recs:
    a = anns[int(r["instance_id"])]
    np.testing.assert_allclose(r["keypoints"], np.reshape(a["keypoints"], (17, 3)))
    assert r["image_id"] == a["image_id"] and r["score"] == 1.0
  # Annotation 20: box [-3, 5, 20, 30] in a 32x24 image -> x 0..16, y 5..23.
  np.testing.assert_allclose(recs[1]["bbox"], [0, 5, 16, 18])
  np.testing.assert_allclose(recs[0]["bbox"], [4, 4, 19, 23])
  assert recs[1]["image"].shape == (24, 32, 3)
  rep = report(built, "pose/coco")
  assert rep["skipped"] == {"box_outside_image": 1}
  assert rep["dropped"] == {"crowd": 1, "no_keypoints": 1, "degenerate_box": 1}
  assert "000000000001.jpg" in rep["messages"][0]
  assert metadata(built, "pose/coco")["num_joints"] == 17
  dets = records(built, "pose/coco", "val_dets")
  assert sorted(float(d["score"]) for d in dets) == pytest.approx([0.3, 0.9])
  big = [d for d in dets if d["score"] < 0.5][0]
  np.testing.assert_allclose(big["bbox"], [20, 20, 11, 11])  # clipped at pixel 31
  assert big["keypoints"].shape == (17, 3) and not big["keypoints"].any()
  assert len(records(built, "pose/coco", "val")) == 1


def test_posetrack_drops_joints_and_mpii_adjustment(built):
  root = dummy_dir("pose/posetrack")
  a = json.load(open(os.path.join(root, "annotations/train.json")))["annotations"][0]
  (r,) = records(built, "pose/posetrack", "train")
  want = np.delete(np.reshape(a["keypoints"], (17, 3)), [3, 4], axis=0)
  np.testing.assert_allclose(r["keypoints"], want)
  assert metadata(built, "pose/posetrack")["num_joints"] == 15

  src = json.load(open(os.path.join(dummy_dir("pose/mpii"), "annotations/mpii_train.json")))
  recs = records(built, "pose/mpii", "train")
  for r, s in zip(recs, sorted(src, key=lambda s: s["image"])):
    np.testing.assert_allclose(
        r["center"], [s["center"][0] - 1, s["center"][1] + 15 * s["scale"] - 1], rtol=1e-6)
    np.testing.assert_allclose(r["scale"], [1.25 * s["scale"]] * 2, rtol=1e-6)
    np.testing.assert_allclose(r["keypoints"][:, :2], np.asarray(s["joints"]) - 1, rtol=1e-6)
    np.testing.assert_array_equal(r["keypoints"][:, 2], s["joints_vis"])


# ---- Parsing ---------------------------------------------------------------------------------
def test_lip_identity_labels_and_out_of_range_skip(built):
  root = dummy_dir("parsing/lip")
  recs = records(built, "parsing/lip", "train")
  assert [r["filename"].decode() for r in recs] == ["100_1", "100_2"]  # 101_7 has class 23
  for r in recs:
    src = np.asarray(Image.open(os.path.join(
        root, "TrainVal_parsing_annotations/train_segmentations", r["filename"].decode() + ".png")))
    np.testing.assert_array_equal(r["label"][..., 0], src)
  rep = report(built, "parsing/lip")
  assert rep["skipped"] == {"label_out_of_range": 1} and "101_7" in rep["messages"][0]
  meta = metadata(built, "parsing/lip")
  assert meta["num_classes"] == 20 and meta["flip_pairs"] == [[14, 15], [16, 17], [18, 19]]


def test_h36m_parsing_remaps_25_of_59(built):
  root = dummy_dir("parsing/h36m_parsing")
  keep = [0, 1, 2, 3, 6, 7, 8, 17, 18, 19, 25, 26, 27, 32, 33, 34, 38, 39, 43, 44, 46, 49, 50,
          56, 58]
  recs = records(built, "parsing/h36m_parsing", "train")
  assert len(recs) == 2
  for r in recs:
    src = np.asarray(Image.open(os.path.join(root, r["filename"].decode().replace("rgb", "seg",
                                                                                  1))))
    want = np.zeros_like(src)
    for out_id, v in enumerate(keep):
      want[src == v] = out_id
    want[src == 255] = 255
    np.testing.assert_array_equal(r["label"][..., 0], want)
    assert set(np.unique(src)) >= {46, 58}  # the dummy exercises remapped ids
  pairs = metadata(built, "parsing/h36m_parsing")["flip_pairs"]
  assert len(pairs) == 10 and [1, 4] in pairs  # right hip (1) <-> left hip (6 -> 4)
  assert len(records(built, "parsing/h36m_parsing", "val")) == 1


# ---- Attributes ------------------------------------------------------------------------------
def test_pa100k_labels_and_positive_ratio(built):
  d = pickle.load(open(os.path.join(dummy_dir("attributes/pa100k"), "dataset.pkl"), "rb"))
  recs = records(built, "attributes/pa100k", "train")
  valid = [i for i in d["partition"]["trainval"] if set(d["label"][i]) <= {0, 1}]
  assert [r["filename"].decode() for r in recs] == [d["image_name"][i] for i in valid]
  for r, i in zip(recs, valid):
    assert r["labels"].dtype == np.int8
    np.testing.assert_array_equal(r["labels"], d["label"][i])
  meta = metadata(built, "attributes/pa100k")
  np.testing.assert_allclose(meta["positive_ratio"], d["label"][valid].mean(0), atol=1e-6)
  assert meta["attr_names"] == d["attr_name"]
  assert report(built, "attributes/pa100k")["skipped"] == {"label_out_of_range": 1}


def test_peta_easydict_partitions_and_eval_columns(built):
  recs = records(built, "attributes/peta", "train")
  assert [r["filename"].decode() for r in recs] == ["00000.png", "00001.png", "00002.png"]
  src = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]])
  np.testing.assert_array_equal(np.stack([r["labels"] for r in recs]), src[:, [2, 0]])
  assert metadata(built, "attributes/peta")["attr_names"] == ["C", "A"]
  (t,) = records(built, "attributes/peta", "test")
  assert t["filename"].decode() == "00003.png"


# ---- Detection -------------------------------------------------------------------------------
def test_crowdhuman_boxes_and_ignore(built):
  recs = records(built, "detection/crowdhuman", "train")
  first = [r for r in recs if r["image_id"].decode().startswith("273271")][0]
  np.testing.assert_allclose(first["boxes"], [[2, 3, 12, 23], [20, 0, 40, 26], [0, 0, 5, 5],
                                              [30, 10, 36, 22]])
  np.testing.assert_array_equal(first["is_ignore"], [False, False, True, True])
  rep = report(built, "detection/crowdhuman")
  assert rep["skipped"] == {"box_outside_image": 1} and rep["dropped"] == {"degenerate_box": 1}


def test_coco_format_detection(built):
  recs = {r["image_id"].decode(): r for r in records(built, "detection/caltech", "train")}
  np.testing.assert_allclose(recs["1"]["boxes"], [[3, 4, 13, 24], [15, 4, 21, 14],
                                                  [25, 2, 33, 22]])
  np.testing.assert_array_equal(recs["1"]["is_ignore"], [False, True, True])
  assert recs["1"]["filename"].decode().endswith(".jpg")  # .png name read as .jpg
  assert recs["2"]["boxes"].shape == (0, 4) and recs["2"]["is_ignore"].shape == (0,)
  (v,) = records(built, "detection/caltech", "val")
  np.testing.assert_allclose(v["boxes"], [[30, 20, 40, 32]])


# ---- Counting --------------------------------------------------------------------------------
def test_shanghaitech_points(built):
  root = dummy_dir("counting/shanghaitech_a")
  for split in ("train", "test"):
    recs = records(built, "counting/shanghaitech_a", split)
    for r in recs:
      name = os.path.basename(r["filename"].decode())[:-4]
      m = scipy.io.loadmat(os.path.join(root, "part_A", f"{split}_data", "ground-truth",
                                        f"GT_{name}.mat"))
      loc = m["image_info"][0, 0][0, 0][0].reshape(-1, 2)
      h, w = r["image"].shape[:2]
      inside = loc[(loc[:, 0] < w) & (loc[:, 1] < h) & (loc >= 0).all(1)]
      np.testing.assert_allclose(r["points"], inside, rtol=1e-6)
      assert r["count"] == len(inside)
  counts = {os.path.basename(r["filename"].decode()): int(r["count"])
            for r in records(built, "counting/shanghaitech_a", "train")}
  assert counts == {"IMG_1.jpg": 3, "IMG_2.jpg": 1, "IMG_10.jpg": 1}
  assert report(built, "counting/shanghaitech_a")["skipped"] == {"point_outside_image": 1}


# ---- Bad input, strict mode, atomic rebuild, errors ---------------------------------------
def _corrupt_market(tmp_path):
  src = os.path.join(tmp_path, "market")
  shutil.copytree(dummy_dir("reid/market1501"), src)
  victim = os.path.join(src, "bounding_box_train", "0007_c1s1_001051_02.jpg")
  data = open(victim, "rb").read()
  open(victim, "wb").write(data[: len(data) // 2])  # truncated JPEG
  return src, victim


def test_corrupt_image_skipped_or_strict_error_and_rebuild_is_atomic(tmp_path):
  data_dir = str(tmp_path / "tfds")
  build_mod.build("reid/market1501", dummy_dir("reid/market1501"), data_dir)
  src, victim = _corrupt_market(str(tmp_path))

  with pytest.raises(common.BadInputError, match="0007_c1s1_001051_02.jpg: corrupt_image"):
    build_mod.build("reid/market1501", src, data_dir, overwrite=True, strict=True)
  # The failed build left the previous one untouched and no temporary folders behind.
  assert len(records(data_dir, "reid/market1501", "train")) == 5
  assert sorted(os.listdir(data_dir)) == ["reid"]

  build_mod.build("reid/market1501", src, data_dir, overwrite=True)
  recs = records(data_dir, "reid/market1501", "train")
  assert len(recs) == 4 and all("0007" not in r["filename"].decode() for r in recs)
  # id 7 is gone entirely, so the remaining ids 2 and 10 re-pack to 0 and 1.
  assert sorted({int(r["person_id"]) for r in recs}) == [0, 1]
  rep = report(data_dir, "reid/market1501")
  assert rep["skipped"] == {"corrupt_image": 1} and victim in rep["messages"][0]
  assert metadata(data_dir, "reid/market1501")["build_report"]["skipped"] == {"corrupt_image": 1}


@pytest.mark.parametrize("family", sorted(build_mod.BUILDERS))
def test_missing_layout_names_expected_paths(tmp_path, family):
  cls = build_mod.builder_class(family)
  for config in cls.BUILDER_CONFIGS:
    b = cls(config=config.name, data_dir=str(tmp_path / "d"))
    with pytest.raises(common.MissingInputError) as e:
      b.check_layout(str(tmp_path))
    msg = str(e.value)
    for rel in b._required(str(tmp_path)):
      assert rel in msg
    assert f"data/build.py {family}/{config.name}" in msg


def test_build_cli_errors(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run(
      [sys.executable, os.path.join(DATA, "build.py"), "pose/aic", f"--manual_dir={tmp_path}",
       f"--data_dir={tmp_path / 'd'}"], capture_output=True, text=True, env=env, cwd=REPO)
  assert out.returncode == 1
  assert "annotations/train.json" in out.stderr and "images" in out.stderr
  assert not os.path.exists(tmp_path / "d" / "pose")
  with pytest.raises(ValueError, match="market1501"):
    build_mod.parse_name("reid/market1502")


def test_dummy_images_are_the_documented_generator():
  # The committed dummy images are what make_dummy writes (seeded), up to JPEG loss.
  img = np.asarray(Image.open(os.path.join(dummy_dir("reid/sensereid"), "test_probe",
                                           "0001_0.jpg")), np.float32)
  assert np.abs(img - dummy.image(200, 32, 16)).mean() < 8
