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
