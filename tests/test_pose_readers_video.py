"""The pose builder's readers of two video-derived publishers' layouts: PoseTrack 2018
(``pose/posetrack_native``) and JRDB-Pose (``pose/jrdb_native``).

Each config is built once from ``data/pose/dummy_data/<config>`` (written by
``python -m data.pose.dummy_data.make_dummy`` in the publisher's layout); expected values come
from the dummy per-sequence json files, read here with NumPy and the conventions the builder
documents (labelled frames only, 1 frame in ``common.FRAME_EVERY`` by rank per video), not from
the builder's code.
"""
import glob
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from configs import humanbench
from data import build as build_mod
from data import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "pose", "dummy_data")
CONFIGS = ("posetrack_native", "jrdb_native")
EVERY = common.FRAME_EVERY
# The JRDB joints in the order the pose_jrdb2022 row's flip pairs assume (B-yaml layout shared
# with MPI-INF-3DHP: head, neck, right arm, left arm, right leg, left leg, pelvis, then the eyes).
JRDB_OUT = ("head", "center shoulder", "right shoulder", "right elbow", "right wrist",
            "left shoulder", "left elbow", "left wrist", "right hip", "right knee", "right foot",
            "left hip", "left knee", "left foot", "center hip", "right eye", "left eye")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds_video"))
  folders = {name: build_mod.build(f"pose/{name}", os.path.join(DUMMY, name), data_dir)
             for name in CONFIGS}
  return data_dir, folders


def records(data_dir, name, split):
  src = tfds.data_source(f"pose/{name}", data_dir=data_dir)[split]
  return sorted((src[i] for i in range(len(src))), key=lambda r: r["instance_id"])


def build_report(folder):
  with open(os.path.join(folder, "build_report.json")) as f:
    return json.load(f)


def clip_xywh(box, width, height):
  """The README's clipping rule: x1 = max(0, x), x2 = min(W-1, x + w - 1), same for y."""
  x, y, w, h = box
  x1, y1 = max(0.0, x), max(0.0, y)
  x2, y2 = min(width - 1.0, x + w - 1), min(height - 1.0, y + h - 1)
  return np.array([x1, y1, x2 - x1, y2 - y1], np.float32)


def joint_box(xy, v, pad=0.1):
  """The README's box for sets without boxes: labelled joints' tight box, +10 % per side."""
  lab = xy[v > 0]
  lo, hi = lab.min(0), lab.max(0)
  lo, hi = lo - (hi - lo) * pad, hi + (hi - lo) * pad
  return [lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]]


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def sequences(folder):
  out = {}
  for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
    with open(path) as f:
      out[os.path.basename(path)[:-len(".json")]] = json.load(f)
  return out


# ---- PoseTrack 2018 -----------------------------------------------------------------------------
PT = os.path.join(DUMMY, "posetrack_native")


def posetrack_expected(split, sample):
  """{(image id, annotation id): annotation} of the records a split should hold: persons with a
  labelled joint on labelled frames; in 'train' only frames ranked 0, N, 2N, ... per video."""
  want = {}
  for seq in sequences(os.path.join(PT, "annotations", split)).values():
    frames = sorted(im["id"] for im in seq["images"] if im["is_labeled"])
    with_person = sorted({a["image_id"] for a in seq["annotations"] if a["image_id"] in frames
                          and np.asarray(a["keypoints"] or [0]).reshape(-1)[2::3].any()})
    kept = with_person[::EVERY] if sample else with_person
    want.update({(a["image_id"], a["id"]): a for a in seq["annotations"]
                 if a["image_id"] in kept and a["keypoints"]})
  return want


def test_posetrack_native(built):
  data_dir, folders = built
  train = records(data_dir, "posetrack_native", "train")
  want = posetrack_expected("train", sample=True)
  assert [(r["image_id"], r["instance_id"]) for r in train] == sorted(want, key=lambda k: k[1])
  # Video 000001: frame 4 is unlabelled, so of its 10 labelled frames ranks 0 and 8 are frames
  # 0 and 9; video 000002: frame 0.
  assert [r["image_id"] for r in train] == [10000010000, 10000010009, 10000020000]
  rep = build_report(folders["posetrack_native"])
  assert rep["frames"]["train"] == {"every": EVERY, "videos": 2, "frames": 13, "kept_frames": 3,
                                    "records": 13, "kept_records": 3}
  # A person on the unlabelled frame 4; a head-box-only person (no keypoints) in every frame 0.
  assert rep["dropped"] == {"unlabelled_frame": 1, "no_keypoints": 3}
  assert rep["skipped"] == {}

  r = train[1]                                           # video 000001, frame 9
  a = want[(r["image_id"], r["instance_id"])]
  raw = np.asarray(a["keypoints"], np.float32).reshape(17, 3)
  raw = np.delete(raw, [3, 4], axis=0)                   # the ears: never annotated
  v = np.where(raw[:, 2] == 1, 2.0, 0.0).astype(np.float32)
  np.testing.assert_array_equal(r["keypoints"], np.stack([raw[:, 0] * (v > 0),
                                                          raw[:, 1] * (v > 0), v], 1))
  np.testing.assert_array_equal(r["bbox"], clip_xywh(a["bbox"], 32, 24))
  assert r["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3])
  assert r["score"] == 1.0
  rel = "images/train/000001_bonn_train/000009.jpg"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(PT, rel)))
  # Its left wrist (source joint 9, 7 after the drop) is not annotated: v 0, x = y = 0.
  assert raw[7, 2] == 0 and r["keypoints"][7].tolist() == [0.0, 0.0, 0.0]
  assert train[0]["keypoints"][:, 2].tolist() == [2.0] * 15

  val = records(data_dir, "posetrack_native", "val")
  want_val = posetrack_expected("val", sample=False)
  assert [(r["image_id"], r["instance_id"]) for r in val] == sorted(want_val,
                                                                    key=lambda k: k[1])
  meta = tfds.builder("pose/posetrack_native", data_dir=data_dir).info.metadata
  assert meta["num_joints"] == 15 and meta["dropped_joints"] == [3, 4]
  with open(os.path.join(folders["posetrack_native"], "coco_gt_val.json")) as f:
    gt = json.load(f)
  # Labelled frames only (frame 2 is not); every person, the keypoint-less one included.
  assert sorted(im["id"] for im in gt["images"]) == [10003420000, 10003420001]
  assert len(gt["annotations"]) == 3
  assert all(len(g["keypoints"]) == 15 * 3 for g in gt["annotations"])
  assert gt["categories"][0]["keypoints"][3:5] == ["left_shoulder", "right_shoulder"]


def test_posetrack_native_empty_annotation_folder(tmp_path):
  root = tmp_path / "posetrack_data"
  shutil.copytree(PT, root)
  for path in (root / "annotations" / "train").glob("*.json"):
    path.unlink()
  with pytest.raises(common.MissingInputError, match=r"annotations/train/<sequence>\.json"):
    build_mod.build("pose/posetrack_native", str(root), str(tmp_path / "d"))


def test_posetrack_native_bad_keypoints(tmp_path):
  root = tmp_path / "posetrack_data"
  shutil.copytree(PT, root)
  path = root / "annotations" / "train" / "000002_mpii_train.json"
  seq = json.loads(path.read_text())
  seq["annotations"][0]["keypoints"] = seq["annotations"][0]["keypoints"][:-3]   # 16 joints
  path.write_text(json.dumps(seq))
  folder = build_mod.build("pose/posetrack_native", str(root), str(tmp_path / "d"))
  rep = build_report(folder)
  assert rep["skipped"] == {"keypoint_count": 1}
  assert "000002_mpii_train.json" in rep["messages"][0]
  # Video 000002 keeps frame 1 now (its frame 0 lost its only person).
  assert rep["frames"]["train"]["frames"] == 12 and rep["splits"]["train"] == 3


# ---- JRDB-Pose ----------------------------------------------------------------------------------
JR = os.path.join(DUMMY, "jrdb_native")
JR_LABELS = os.path.join(JR, "labels", "labels_2d_pose_stitched_coco")


def test_jrdb_native_joint_order_matches_flip_pairs():
  # Every flip pair of the pose_jrdb2022 row swaps a right joint with its left twin ...
  for i, j in humanbench.JRDB_FLIP_PAIRS:
    assert JRDB_OUT[i].startswith("right ") and JRDB_OUT[j] == "left " + JRDB_OUT[i][6:]
  # ... and the unpaired slots hold the centre joints and (no pair in the B-yaml) the eyes.
  paired = {k for p in humanbench.JRDB_FLIP_PAIRS for k in p}
  assert {JRDB_OUT[k] for k in range(17) if k not in paired} == {
      "head", "center shoulder", "center hip", "right eye", "left eye"}


def test_jrdb_native(built):
  data_dir, folders = built
  seqs = sequences(JR_LABELS)
  names = sorted(seqs)
  order = [seqs[names[0]]["categories"][0]["keypoints"].index(n) for n in JRDB_OUT]
  train = records(data_dir, "jrdb_native", "train")
  rep = build_report(folders["jrdb_native"])
  # Sequence 1: 10 frames x 2 persons, one of them (frame 3) straddling the panorama's seam;
  # sequence 2: 2 frames x 1 person. Ranks 0 and 8 of sequence 1, rank 0 of sequence 2.
  assert rep["dropped"] == {"wraps_seam": 1} and rep["skipped"] == {}
  assert rep["frames"]["train"] == {"every": EVERY, "videos": 2, "frames": 12, "kept_frames": 3,
                                    "records": 21, "kept_records": 5}
  # image_id = sequence number * 10^6 + the json's image id; instance_id = running number of
  # the annotations in file order (sequences by name).
  running = [(s, a) for s in (1, 2) for a in seqs[names[s - 1]]["annotations"]]
  want = [(s * 1_000_000 + a["image_id"], n) for n, (s, a) in enumerate(running, 1)
          if (s, a["image_id"]) in {(1, 1), (1, 9), (2, 1)}]
  assert [(r["image_id"], r["instance_id"]) for r in train] == want

  r = train[2]                                          # sequence 1, frame 8, person 1
  s, a = running[r["instance_id"] - 1]
  assert (s, a["image_id"], a["track_id"]) == (1, 9, 1)
  raw = np.asarray(a["keypoints"], np.float64).reshape(17, 3)[order]
  v = raw[:, 2]                                         # 0 invisible, 1 occluded, 2 visible
  assert v[JRDB_OUT.index("right eye")] == 0 and {1.0, 2.0} <= set(v.tolist())
  want_kp = np.stack([raw[:, 0] * (v > 0), raw[:, 1] * (v > 0), v], 1).astype(np.float32)
  np.testing.assert_array_equal(r["keypoints"], want_kp)
  box = joint_box(raw[:, :2], v)
  np.testing.assert_allclose(r["bbox"], clip_xywh(box, 64, 24), rtol=1e-5)
  assert r["area"] == pytest.approx(box[2] * box[3], rel=1e-5) and r["score"] == 1.0
  rel = "images/image_stitched/bytes-cafe-2019-02-07_0/000008.jpg"
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(JR, rel)))

  meta = tfds.builder("pose/jrdb_native", data_dir=data_dir).info.metadata
  assert meta["num_joints"] == 17 and meta["kept_joints"] == order


def test_jrdb_native_malformed_json(tmp_path):
  root = tmp_path / "train_dataset_with_activity"
  shutil.copytree(JR, root)
  path = root / "labels" / "labels_2d_pose_stitched_coco" / "gates-ai-lab-2019-02-08_0.json"
  seq = json.loads(path.read_text())
  del seq["annotations"]
  path.write_text(json.dumps(seq))
  with pytest.raises(common.BadInputError,
                     match=r"gates-ai-lab-2019-02-08_0\.json: corrupt_label \(no 'annotations'"):
    build_mod.build("pose/jrdb_native", str(root), str(tmp_path / "d"), strict=True)
  # Without --strict the sequence is skipped with a warning; the other one is built.
  folder = build_mod.build("pose/jrdb_native", str(root), str(tmp_path / "d2"))
  rep = build_report(folder)
  assert rep["skipped"] == {"corrupt_label": 1} and rep["splits"]["train"] == 4


def test_jrdb_native_missing_labels(tmp_path):
  root = tmp_path / "train_dataset_with_activity"
  shutil.copytree(os.path.join(JR, "images"), root / "images")
  with pytest.raises(common.MissingInputError, match="labels/labels_2d_pose_stitched_coco"):
    build_mod.build("pose/jrdb_native", str(root), str(tmp_path / "d"))
