"""The pose builder's readers of publishers' own layouts (``pose/*_native``) on their dummy data.

Each config is built once from ``data/pose/dummy_data/<config>`` (written by
``python -m data.pose.dummy_data.make_dummy`` in the publisher's layout); expected values come
from the dummy annotation files (AIC json, Halpe json, Penn Action mat) read here with NumPy and
the conventions the builder documents, not from the builder's code.
"""
import json
import os
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod
from data import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "pose", "dummy_data")
CONFIGS = ("aic_native", "halpe_native", "penn_action_native")
AIC_TRAIN = "ai_challenger_keypoint_train_20170909"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {name: build_mod.build(f"pose/{name}", os.path.join(DUMMY, name), data_dir)
             for name in CONFIGS}
  return data_dir, folders


def records(data_dir, name, split):
  src = tfds.data_source(f"pose/{name}", data_dir=data_dir)[split]
  return sorted((src[i] for i in range(len(src))), key=lambda r: r["instance_id"])


def clip_xywh(box, width, height):
  """The README's clipping rule: x1 = max(0, x), x2 = min(W-1, x + w - 1), same for y."""
  x, y, w, h = box
  x1, y1 = max(0.0, x), max(0.0, y)
  x2, y2 = min(width - 1.0, x + w - 1), min(height - 1.0, y + h - 1)
  return np.array([x1, y1, x2 - x1, y2 - y1], np.float32)


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def build_report(folder):
  with open(os.path.join(folder, "build_report.json")) as f:
    return json.load(f)


# ---- AI Challenger ------------------------------------------------------------------------------
def test_aic_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "aic_native")
  with open(os.path.join(root, AIC_TRAIN, "keypoint_train_annotations_20170909.json")) as f:
    entries = json.load(f)
  train = records(data_dir, "aic_native", "train")
  # Persons numbered 1.. in file order (image, then human1, human2, human10); human2 of the
  # first image has no labelled joint (all v = 3) and is dropped.
  assert [(r["image_id"], r["instance_id"]) for r in train] == [(1, 1), (1, 3), (2, 4)]
  assert len(records(data_dir, "aic_native", "val")) == 1
  assert build_report(folders["aic_native"])["dropped"] == {"no_keypoints": 1}

  r = train[0]
  raw = np.asarray(entries[0]["keypoint_annotations"]["human1"], np.float32).reshape(14, 3)
  v = np.array([{1: 2, 2: 1, 3: 0}[int(t)] for t in raw[:, 2]], np.float32)
  want_kp = np.stack([raw[:, 0] * (v > 0), raw[:, 1] * (v > 0), v], 1)
  np.testing.assert_array_equal(r["keypoints"], want_kp)
  x1, y1, x2, y2 = entries[0]["human_annotations"]["human1"]
  np.testing.assert_array_equal(r["bbox"], clip_xywh([x1, y1, x2 - x1, y2 - y1], 32, 32))
  assert r["area"] == pytest.approx((x2 - x1) * (y2 - y1))
  assert r["score"] == 1.0
  rel = f"{AIC_TRAIN}/keypoint_train_images_20170902/{entries[0]['image_id']}.jpg"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))
  # A box reaching past the image is clipped (image 2 is 24 x 32).
  x1, y1, x2, y2 = entries[1]["human_annotations"]["human1"]
  np.testing.assert_array_equal(train[2]["bbox"], clip_xywh([x1, y1, x2 - x1, y2 - y1], 32, 24))

  meta = tfds.builder("pose/aic_native", data_dir=data_dir).info.metadata
  assert meta["num_joints"] == 14
  with open(os.path.join(folders["aic_native"], "coco_gt_val.json")) as f:
    gt = json.load(f)
  assert [a["id"] for a in gt["annotations"]] == [1]
  assert len(gt["annotations"][0]["keypoints"]) == 14 * 3
  assert gt["annotations"][0]["num_keypoints"] == 7   # v alternates 1 (visible), 3 (none)


def test_aic_native_bad_visibility(tmp_path):
  root = tmp_path / "aic"
  shutil.copytree(os.path.join(DUMMY, "aic_native"), root)
  ann = root / AIC_TRAIN / "keypoint_train_annotations_20170909.json"
  entries = json.loads(ann.read_text())
  entries[1]["keypoint_annotations"]["human1"][2] = 4   # not an AIC visibility value
  ann.write_text(json.dumps(entries))
  folder = build_mod.build("pose/aic_native", str(root), str(tmp_path / "d"))
  rep = build_report(folder)
  assert rep["skipped"] == {"label_out_of_range": 1}
  assert rep["splits"]["train"] == 2


# ---- Halpe --------------------------------------------------------------------------------------
def test_halpe_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "halpe_native")
  with open(os.path.join(root, "annotations", "halpe_train_v1.json")) as f:
    src = json.load(f)
  train = records(data_dir, "halpe_native", "train")
  # Annotation 3 labels only face joints (none of the 20 body joints): dropped.
  assert [r["instance_id"] for r in train] == [1, 2]
  assert build_report(folders["halpe_native"])["dropped"] == {"no_keypoints": 1}
  r, a = train[0], src["annotations"][0]
  want = np.asarray(a["keypoints"], np.float32).reshape(136, 3)[:20]
  np.testing.assert_array_equal(r["keypoints"], want)
  np.testing.assert_array_equal(r["bbox"], clip_xywh(a["bbox"], 32, 32))
  assert r["image_id"] == 1 and r["area"] == pytest.approx(a["area"]) and r["score"] == 1.0
  rel = "hico_20160224_det/images/train2015/HICO_train2015_00000001.jpg"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))

  (v,) = records(data_dir, "halpe_native", "val")
  assert v["filename"].decode() == "val2017/000000000139.jpg"
  meta = tfds.builder("pose/halpe_native", data_dir=data_dir).info.metadata
  assert meta["num_joints"] == 20 and meta["kept_joints"] == list(range(20))
  with open(os.path.join(folders["halpe_native"], "coco_gt_val.json")) as f:
    gt = json.load(f)
  (g,) = gt["annotations"]
  assert len(g["keypoints"]) == 60 and len(gt["categories"][0]["keypoints"]) == 20
  with open(os.path.join(root, "annotations", "halpe_val_v1.json")) as f:
    val_kp = np.asarray(json.load(f)["annotations"][0]["keypoints"]).reshape(136, 3)[:20]
  assert g["num_keypoints"] == int((val_kp[:, 2] > 0).sum())


# ---- Penn Action --------------------------------------------------------------------------------
def penn_expected(root, video, f):
  m = scipy.io.loadmat(os.path.join(root, "labels", f"{video}.mat"))
  v = np.where(m["visibility"][f] == 1, 2.0, 0.0)
  kp = np.stack([m["x"][f] * (v > 0), m["y"][f] * (v > 0), v], 1).astype(np.float32)
  x1, y1, x2, y2 = m["bbox"][f]
  h, w = (int(t) for t in m["dimensions"].reshape(-1)[:2])
  return kp, clip_xywh([x1, y1, x2 - x1, y2 - y1], w, h), (x2 - x1) * (y2 - y1)


def test_penn_action_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "penn_action_native")
  val = records(data_dir, "penn_action_native", "val")   # video 0002 (train = -1), all frames
  assert [r["image_id"] for r in val] == [200001, 200002]
  for f, r in enumerate(val):
    kp, box, area = penn_expected(root, "0002", f)
    np.testing.assert_array_equal(r["keypoints"], kp)
    np.testing.assert_allclose(r["bbox"], box, rtol=1e-6)
    assert r["area"] == pytest.approx(area, rel=1e-6)
    assert r["instance_id"] == r["image_id"] and r["score"] == 1.0
    rel = f"frames/0002/{f + 1:06d}.jpg"
    assert r["filename"].decode() == rel
    np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))

  # Video 0001 (train = 1): 3 frames, 2 boxes -> frame 3 dropped; the frames left are sampled
  # one in common.FRAME_EVERY by rank, as every video-derived train split.
  train = records(data_dir, "penn_action_native", "train")
  kept = [f for f in (0, 1) if f % common.FRAME_EVERY == 0]
  assert [r["image_id"] for r in train] == [100000 + f + 1 for f in kept]
  kp, box, _ = penn_expected(root, "0001", 0)
  np.testing.assert_array_equal(train[0]["keypoints"], kp)
  np.testing.assert_allclose(train[0]["bbox"], box, rtol=1e-6)
  rep = build_report(folders["penn_action_native"])
  assert rep["dropped"] == {"no_box": 1}
  assert rep["frames"]["train"]["videos"] == 1 and rep["frames"]["train"]["frames"] == 2
  meta = tfds.builder("pose/penn_action_native", data_dir=data_dir).info.metadata
  assert meta["num_joints"] == 13
  with open(os.path.join(folders["penn_action_native"], "coco_gt_val.json")) as f:
    gt = json.load(f)
  assert [a["id"] for a in gt["annotations"]] == [200001, 200002]


# ---- LV-MHP v2, 3DPW, AIST++ --------------------------------------------------------------------
NEW_CONFIGS = ("mhp_native", "3dpw_native", "aist_native")


@pytest.fixture(scope="module")
def built_new(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds_new"))
  folders = {name: build_mod.build(f"pose/{name}", os.path.join(DUMMY, name), data_dir)
             for name in NEW_CONFIGS}
  return data_dir, folders


def joint_box(xy, v, pad=0.1):
  """The README's box for sets without boxes: labelled joints' tight box, +10 % per side."""
  lab = xy[v > 0]
  lo, hi = lab.min(0), lab.max(0)
  lo, hi = lo - (hi - lo) * pad, hi + (hi - lo) * pad
  return [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]


def test_mhp_native(built_new):
  data_dir, folders = built_new
  root = os.path.join(DUMMY, "mhp_native")
  train = records(data_dir, "mhp_native", "train")
  # Images in natural order (1, 10); persons person_0, person_2, person_10 -> ids 1, 2, 3;
  # person_2 has every joint out of image and is dropped.
  assert [(r["image_id"], r["instance_id"]) for r in train] == [(1, 1), (1, 3), (2, 4)]
  assert build_report(folders["mhp_native"])["dropped"] == {"no_keypoints": 1}
  m = scipy.io.loadmat(os.path.join(root, "train", "pose_annos", "1.mat"))
  p = m["person_0"].astype(np.float64)
  v = np.array([{0: 2, 1: 1, 2: 0}[int(t)] for t in p[:16, 2]], np.float32)
  want = np.stack([p[:16, 0] * (v > 0), p[:16, 1] * (v > 0), v], 1)
  r = train[0]
  np.testing.assert_array_equal(r["keypoints"], want.astype(np.float32))
  (x1, y1), (x2, y2) = p[18, :2], p[19, :2]
  np.testing.assert_allclose(r["bbox"], clip_xywh([x1, y1, x2 - x1, y2 - y1], 32, 32))
  assert r["area"] == pytest.approx((x2 - x1) * (y2 - y1)) and r["score"] == 1.0
  assert r["filename"].decode() == "train/images/1.jpg"
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, "train/images/1.jpg")))
  # person_10's corners are stored bottom-right first: the box is still x1 < x2, y1 < y2.
  q = m["person_10"].astype(np.float64)
  lo, hi = q[18:20, :2].min(0), q[18:20, :2].max(0)
  np.testing.assert_allclose(train[1]["bbox"], clip_xywh([*lo, *(hi - lo)], 32, 32))
  (val,) = records(data_dir, "mhp_native", "val")
  assert val["filename"].decode() == "val/images/7.jpg"
  assert tfds.builder("pose/mhp_native", data_dir=data_dir).info.metadata["num_joints"] == 16
  with open(os.path.join(folders["mhp_native"], "coco_gt_val.json")) as f:
    assert json.load(f)["annotations"][0]["num_keypoints"] == 8   # flags alternate 0, 2


def test_mhp_native_bad_shape(tmp_path):
  root = tmp_path / "mhp"
  shutil.copytree(os.path.join(DUMMY, "mhp_native"), root)
  path = root / "train" / "pose_annos" / "10.mat"
  m = scipy.io.loadmat(path)
  scipy.io.savemat(path, {"person_0": m["person_0"][:18]})   # box rows missing
  folder = build_mod.build("pose/mhp_native", str(root), str(tmp_path / "d"))
  rep = build_report(folder)
  assert rep["skipped"] == {"keypoint_count": 1} and rep["splits"]["train"] == 2


def tdpw_seq(split, seq):
  import pickle
  with open(os.path.join(DUMMY, "3dpw_native", "sequenceFiles", split, f"{seq}.pkl"), "rb") as f:
    return pickle.load(f, encoding="latin1")


def test_3dpw_native(built_new):
  data_dir, folders = built_new
  root = os.path.join(DUMMY, "3dpw_native")
  seq = tdpw_seq("train", "courtyard_basketball_00")
  train = records(data_dir, "3dpw_native", "train")
  # 10 frames, one sequence: frames ranked 0 and 8 kept (1 in common.FRAME_EVERY), 2 actors each.
  kept = [f for f in range(10) if f % common.FRAME_EVERY == 0]
  assert [(r["image_id"], r["instance_id"]) for r in train] == [
      (1_000_000 + f + 1, (1_000_000 + f + 1) * 10 + a + 1) for f in kept for a in (0, 1)]
  rep = build_report(folders["3dpw_native"])
  assert rep["dropped"] == {"campose_invalid": 1, "no_keypoints": 1}
  assert rep["frames"]["train"]["frames"] == 10 and rep["frames"]["train"]["kept_frames"] == 2
  r, p = train[1], seq["poses2d"][1][0]       # actor 1, frame 0: left ear (17) undetected
  v = np.where(p[2] > 0, 2.0, 0.0)
  np.testing.assert_allclose(r["keypoints"],
                             np.stack([p[0] * (v > 0), p[1] * (v > 0), v], 1), rtol=1e-6)
  assert r["keypoints"][17, 2] == 0 and r["keypoints"][16, 2] == 2
  box = joint_box(p[:2].T, v)
  np.testing.assert_allclose(r["bbox"], clip_xywh(box, 24, 32), rtol=1e-5)
  assert r["area"] == pytest.approx(box[2] * box[3], rel=1e-5)
  rel = "imageFiles/courtyard_basketball_00/image_00000.jpg"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))
  assert len(records(data_dir, "3dpw_native", "val")) == 2   # validation/: 1 actor, 2 frames
  assert tfds.builder("pose/3dpw_native", data_dir=data_dir).info.metadata["num_joints"] == 18


def test_3dpw_native_bad_shape(tmp_path):
  import pickle
  root = tmp_path / "3dpw"
  shutil.copytree(os.path.join(DUMMY, "3dpw_native"), root)
  path = root / "sequenceFiles" / "train" / "courtyard_basketball_00.pkl"
  seq = tdpw_seq("train", "courtyard_basketball_00")
  seq["poses2d"][0] = seq["poses2d"][0][:, :, :17]      # 17 joints: not 3DPW's 18
  path.write_bytes(pickle.dumps(seq))
  # The only train sequence is skipped (reported), so the split is empty: the build fails
  # naming the skip.
  with pytest.raises(common.BadInputError, match="keypoint_count"):
    build_mod.build("pose/3dpw_native", str(root), str(tmp_path / "d"))


def test_aist_native(built_new):
  import pickle
  data_dir, folders = built_new
  root = os.path.join(DUMMY, "aist_native")
  seq = "gBR_sBM_cAll_d04_mBR0_ch01"
  with open(os.path.join(root, "keypoints2d", f"{seq}.pkl"), "rb") as f:
    kps = pickle.load(f)["keypoints2d"]
  train = records(data_dir, "aist_native", "train")
  rep = build_report(folders["aist_native"])
  # The ignored sequence (ignore_list.txt) is skipped; c01 frame 1 has no detection, c03 frame 4
  # no joint above 0.15. Of 9 frames per view ranks 0 and 8 are kept: frame 0 and 8, but only
  # frame 0 in c01 and c03 (8 frames left there).
  assert rep["dropped"] == {"ignored": 1, "no_detection": 1, "no_keypoints": 1}
  assert rep["frames"]["train"] == {"every": common.FRAME_EVERY, "videos": 9, "frames": 79,
                                    "kept_frames": 16, "records": 79, "kept_records": 16}
  # Sequence 1 ('gBR...' sorts first); view v (1..9): image_id = (10 + v) * 100000 + f + 1.
  ids = [r["image_id"] for r in train]
  assert ids == sorted([(10 + v) * 100_000 + f + 1 for v in range(1, 10)
                        for f in ((0,) if v in (1, 3) else (0, 8))])
  r = train[-1]                                 # view c09, frame 8
  k = kps[8, 8]
  v = np.where(k[:, 2] >= 0.15, 2.0, 0.0)
  assert v[0] == 0 and v[1:].all()
  np.testing.assert_allclose(r["keypoints"],
                             np.stack([k[:, 0] * (v > 0), k[:, 1] * (v > 0), v], 1), rtol=1e-6)
  np.testing.assert_allclose(r["bbox"], clip_xywh(joint_box(k[:, :2], v), 32, 24), rtol=1e-5)
  assert r["instance_id"] == r["image_id"]
  rel = "frames/gBR_sBM_c09_d04_mBR0_ch01/000008.jpg"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))
  assert tfds.builder("pose/aist_native", data_dir=data_dir).info.metadata["num_joints"] == 17


def test_aist_native_missing_frames(tmp_path):
  root = tmp_path / "aist"
  shutil.copytree(os.path.join(DUMMY, "aist_native"), root)
  shutil.rmtree(root / "frames" / "gBR_sBM_c09_d04_mBR0_ch01")   # frames not extracted
  folder = build_mod.build("pose/aist_native", str(root), str(tmp_path / "d"))
  rep = build_report(folder)
  assert rep["skipped"] == {"missing_image": 9} and rep["splits"]["train"] == 14
