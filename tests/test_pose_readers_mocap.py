"""The pose builder's readers of MPI-INF-3DHP and Human3.6M as distributed (``pose/*_native``,
data/pose/mocap.py) on their dummy data, and the frame-extraction tool.

Each config is built once from ``data/pose/dummy_data/<config>`` (written by
``python -m data.pose.dummy_data.make_dummy_mocap`` in the publishers' layouts, frames already
extracted); expected values come from the dummy annotation files (annot.mat read with scipy, .cdf
with cdflib) and the conventions the reader documents, with the joint index lists written out
here, not taken from the reader's code.
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import scipy.io
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod
from data import common
from data.tools import extract_frames

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "pose", "dummy_data")
W, H = 32, 24          # the dummy frames' size
STRIDE = 100_000       # image id = video number * STRIDE + 1-based frame
# The rules the README documents for boxes (shared with the video-set readers' tests).
from test_pose_readers_video import build_report, clip_xywh, joint_box  # noqa: E402

# mpii_get_joint_set.m 'relevant' (1-based 8 6 15 16 17 10 11 12 24 25 26 19 20 21 5 4 7), 0-based.
TDHP_17 = [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6]
# The standard Human3.6M 17 of 32 (pelvis, r leg, l leg, spine, thorax, neck, head, l arm, r arm).
H36M_17 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]


def records(data_dir, name, split):
  src = tfds.data_source(f"pose/{name}", data_dir=data_dir)[split]
  return sorted((src[i] for i in range(len(src))), key=lambda r: r["image_id"])


def expected_person(xy):
  """Keypoints [17, 3], bbox, area of joints ``xy`` [17, 2] by the documented rules."""
  v = np.where((xy[:, 0] >= 0) & (xy[:, 0] < W) & (xy[:, 1] >= 0) & (xy[:, 1] < H), 2.0, 0.0)
  kp = np.stack([xy[:, 0] * (v > 0), xy[:, 1] * (v > 0), v], 1)
  box = joint_box(xy, v)
  return kp, clip_xywh(box, W, H), box[2] * box[3]


def pixels(path):
  return np.asarray(Image.open(path).convert("RGB"))


def check_record(r, root, rel, kp, box, area, image_id):
  np.testing.assert_allclose(r["keypoints"], kp, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(r["bbox"], box, rtol=1e-5, atol=1e-4)
  assert r["area"] == pytest.approx(area, rel=1e-5)
  assert r["image_id"] == image_id and r["instance_id"] == image_id
  assert r["score"] == 1.0
  assert r["filename"].decode() == rel
  np.testing.assert_array_equal(r["image"], pixels(os.path.join(root, rel)))


# ---- MPI-INF-3DHP -------------------------------------------------------------------------------
TDHP = os.path.join(DUMMY, "mpi_inf_3dhp_native")


@pytest.fixture(scope="module")
def built_3dhp(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds_3dhp"))
  return data_dir, build_mod.build("pose/mpi_inf_3dhp_native", TDHP, data_dir)


def annot2(seq, camera):
  """[rows, 28, 2] of ``camera`` in ``<seq>/annot.mat`` (cell looked up through 'cameras')."""
  m = scipy.io.loadmat(os.path.join(TDHP, seq, "annot.mat"))
  cams = [int(c) for c in np.ravel(m["cameras"])]
  return np.asarray(m["annot2"][cams.index(camera), 0], np.float64).reshape(-1, 28, 2)


def test_3dhp_counts(built_3dhp):
  data_dir, folder = built_3dhp
  rep = build_report(folder)
  # 16 sequences x 8 vnect cameras = 128 videos. S1/Seq1 (10 rows): video_0 9 frames (row 5 has
  # every joint outside: no_keypoints), video_1 9 (frame 10 missing: no_frame), video_2 3
  # (--every 4: 7 not extracted), video_4..8 1 each (--every 16: 9 not extracted each); the
  # other 120 videos 1 frame each.
  assert rep["dropped"] == {"no_keypoints": 1, "no_frame": 1, "frame_not_extracted": 7 + 5 * 9}
  assert rep["skipped"] == {}
  # Ranks 0 and 8 of each video (1 in common.FRAME_EVERY): video_0, video_1 keep 2 frames.
  assert rep["frames"]["train"] == {"every": common.FRAME_EVERY, "videos": 128,
                                    "frames": 9 + 9 + 3 + 5 + 120,
                                    "kept_frames": 2 + 2 + 1 + 5 + 120,
                                    "records": 146, "kept_records": 130}
  train = records(data_dir, "mpi_inf_3dhp_native", "train")
  assert len(train) == 130 and len({r["image_id"] for r in train}) == 130
  s1 = [r["image_id"] for r in train if r["image_id"] // STRIDE // 100 == 11]
  base = lambda cam: (11 * 100 + cam) * STRIDE   # (subject 1 * 10 + sequence 1) * 100 + camera
  # video_0: frames 0..4, 6..9 -> ranks 0, 8 = frames 0, 9; video_1: frames 0..8 -> 0, 8.
  assert s1 == sorted([base(0) + 1, base(0) + 10, base(1) + 1, base(1) + 9, base(2) + 1]
                      + [base(c) + 1 for c in (4, 5, 6, 7, 8)])
  assert tfds.builder("pose/mpi_inf_3dhp_native",
                      data_dir=data_dir).info.metadata["num_joints"] == 17


def test_3dhp_record(built_3dhp):
  data_dir, _ = built_3dhp
  train = {r["image_id"]: r for r in records(data_dir, "mpi_inf_3dhp_native", "train")}
  # S2/Seq1 lists its annot2 cells in reverse camera order: the 'cameras' field maps them.
  xy = annot2("S2/Seq1", 4)[0][TDHP_17]
  kp, box, area = expected_person(xy)
  assert kp[:, 2].all()
  image_id = ((2 * 10 + 1) * 100 + 4) * STRIDE + 1
  check_record(train[image_id], TDHP, "S2/Seq1/imageSequence/video_4/000001.jpg", kp, box, area,
               image_id)
  # S1/Seq1 camera 0 frame 0: head_top (source joint 7 -> output 0) lies left of the image.
  xy = annot2("S1/Seq1", 0)[0][TDHP_17]
  kp, box, area = expected_person(xy)
  assert xy[0, 0] < 0 and kp[0].tolist() == [0, 0, 0] and kp[1:, 2].all()
  image_id = 1100 * STRIDE + 1
  check_record(train[image_id], TDHP, "S1/Seq1/imageSequence/video_0/000001.jpg", kp, box,
               area, image_id)
  # Frame 10 of video_0 (rank 8; annotation row 9).
  xy = annot2("S1/Seq1", 0)[9][TDHP_17]
  check_record(train[image_id + 9], TDHP, "S1/Seq1/imageSequence/video_0/000010.jpg",
               *expected_person(xy), image_id + 9)


def test_3dhp_missing_frames(tmp_path):
  root = tmp_path / "3dhp"
  shutil.copytree(TDHP, root)
  shutil.rmtree(root / "S3" / "Seq2" / "imageSequence" / "video_5")
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("pose/mpi_inf_3dhp_native", str(root), str(tmp_path / "d"))
  msg = str(e.value)
  assert "S3/Seq2/imageSequence/video_5/" in msg and "Videos are missing too" in msg
  (root / "S3" / "Seq2" / "imageSequence" / "video_5.avi").write_bytes(b"")
  with pytest.raises(common.MissingInputError, match="extract_frames --videos") as e:
    build_mod.build("pose/mpi_inf_3dhp_native", str(root), str(tmp_path / "d"))
  assert "Frames are not extracted" in str(e.value)
  assert not os.path.exists(tmp_path / "d" / "pose" / "mpi_inf_3dhp_native")


def test_3dhp_bad_annot2(tmp_path):
  root = tmp_path / "3dhp"
  shutil.copytree(TDHP, root)
  path = root / "S4" / "Seq1" / "annot.mat"
  m = scipy.io.loadmat(path)
  for i in range(m["annot2"].shape[0]):
    m["annot2"][i, 0] = m["annot2"][i, 0][:, :54]        # 27 joints
  scipy.io.savemat(path, {k: v for k, v in m.items() if not k.startswith("__")})
  with pytest.raises(common.BadInputError, match=r"S4/Seq1/annot\.mat.*'annot2'"):
    build_mod.build("pose/mpi_inf_3dhp_native", str(root), str(tmp_path / "d"), strict=True)
  folder = build_mod.build("pose/mpi_inf_3dhp_native", str(root), str(tmp_path / "d2"))
  rep = build_report(folder)
  assert rep["skipped"] == {"keypoint_count": 1} and rep["splits"]["train"] == 130 - 8


# ---- Human3.6M ----------------------------------------------------------------------------------
H36M = os.path.join(DUMMY, "h36m_native")


@pytest.fixture(scope="module")
def built_h36m(tmp_path_factory):
  pytest.importorskip("cdflib", reason="Human3.6M's .cdf files need cdflib (pip install cdflib)")
  data_dir = str(tmp_path_factory.mktemp("tfds_h36m"))
  return data_dir, build_mod.build("pose/h36m_native", H36M, data_dir)


def pose(subject, video):
  import cdflib
  path = os.path.join(H36M, subject, "MyPoseFeatures", "D2_Positions", f"{video}.cdf")
  return np.asarray(cdflib.CDF(path).varget("Pose"), np.float64).reshape(-1, 32, 2)


def test_h36m_counts(built_h36m):
  data_dir, folder = built_h36m
  rep = build_report(folder)
  # train: S1 'Directions 1'.54138969 10 frames, .60457274 2 of 3 (no_frame), 'Walking' 2,
  # S5-S8 1 each. val: S9 7 rows -> rows 0, 5 (5 dropped by the step), S11 'Eating' 1;
  # S11 'Directions'.54138969 (corrupt video, no frames) dropped.
  assert rep["dropped"] == {"no_frame": 1, "frame_step": 5, "corrupt_video": 1}
  assert rep["frames"]["train"] == {"every": common.FRAME_EVERY, "videos": 7, "frames": 18,
                                    "kept_frames": 2 + 1 + 1 + 4, "records": 18,
                                    "kept_records": 8}
  assert rep["splits"] == {"train": 8, "val": 3}
  train = records(data_dir, "h36m_native", "train")
  # Actions numbered in name order per subject, cameras 54138969, 55011271, 58860488, 60457274.
  vid = lambda k, a, c: ((k * 100 + a) * 10 + c) * STRIDE
  assert [r["image_id"] for r in train] == sorted(
      [vid(1, 1, 1) + 1, vid(1, 1, 1) + 9, vid(1, 1, 4) + 1, vid(1, 2, 2) + 1]
      + [vid(k, 1, 3) + 1 for k in (5, 6, 7, 8)])
  val = records(data_dir, "h36m_native", "val")
  assert [r["image_id"] for r in val] == [vid(9, 1, 1) + 1, vid(9, 1, 1) + 6, vid(11, 2, 2) + 1]
  assert tfds.builder("pose/h36m_native", data_dir=data_dir).info.metadata["num_joints"] == 17


def test_h36m_record(built_h36m):
  data_dir, _ = built_h36m
  train = {r["image_id"]: r for r in records(data_dir, "h36m_native", "train")}
  p = pose("S1", "Directions 1.54138969")
  image_id = ((1 * 100 + 1) * 10 + 1) * STRIDE + 1
  xy = p[0][H36M_17]
  kp, box, area = expected_person(xy)
  assert kp[13].tolist() == [0, 0, 0] and kp[np.arange(17) != 13, 2].all()  # left wrist below
  check_record(train[image_id], H36M, "S1/Videos/Directions 1.54138969/000001.jpg", kp, box,
               area, image_id)
  check_record(train[image_id + 8], H36M, "S1/Videos/Directions 1.54138969/000009.jpg",
               *expected_person(p[8][H36M_17]), image_id + 8)
  val = {r["image_id"]: r for r in records(data_dir, "h36m_native", "val")}
  image_id = ((9 * 100 + 1) * 10 + 1) * STRIDE + 6
  check_record(val[image_id], H36M, "S9/Videos/Sitting 1.54138969/000006.jpg",
               *expected_person(pose("S9", "Sitting 1.54138969")[5][H36M_17]), image_id)


def test_h36m_bad_pose_and_missing_subject(tmp_path):
  pytest.importorskip("cdflib", reason="Human3.6M's .cdf files need cdflib (pip install cdflib)")
  from data.pose.dummy_data import make_dummy_mocap
  root = tmp_path / "h36m"
  shutil.copytree(H36M, root)
  bad = root / "S5" / "MyPoseFeatures" / "D2_Positions" / "Posing.58860488.cdf"
  make_dummy_mocap.write_cdf(str(bad), np.zeros((1, 60)))   # 30 joints, not 32
  with pytest.raises(common.BadInputError, match=r"Posing\.58860488\.cdf.*'Pose'"):
    build_mod.build("pose/h36m_native", str(root), str(tmp_path / "d"), strict=True)
  shutil.rmtree(root / "S11")
  with pytest.raises(common.MissingInputError, match="S11/MyPoseFeatures/D2_Positions"):
    build_mod.build("pose/h36m_native", str(root), str(tmp_path / "d"))


# ---- extract_frames -----------------------------------------------------------------------------
def test_extract_frames_without_ffmpeg(tmp_path, monkeypatch):
  monkeypatch.setattr(shutil, "which", lambda name: None)
  monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)
  with pytest.raises(extract_frames.ExtractionError, match="imageio-ffmpeg"):
    extract_frames.find_ffmpeg()
  (tmp_path / "a.avi").write_bytes(b"")
  assert extract_frames.main(["--videos", str(tmp_path / "*.avi")]) == 2
  assert not os.path.exists(tmp_path / "a")


def test_extract_frames_skips_existing_folders(tmp_path):
  # Needs no ffmpeg: a complete folder (marker) is skipped, a foreign one left as is.
  for name in ("done", "foreign"):
    (tmp_path / f"{name}.mp4").write_bytes(b"")
    (tmp_path / name).mkdir()
    (tmp_path / name / "000001.jpg").write_bytes(b"x")
  (tmp_path / "done" / extract_frames.MARKER).write_text(json.dumps({"every": 1, "frames": 1}))
  assert extract_frames.extract(str(tmp_path / "done.mp4"), ffmpeg="/nonexistent") == ("skipped", 1)
  assert extract_frames.extract(str(tmp_path / "foreign.mp4"), ffmpeg="/nonexistent") == ("kept", 0)


def _ffmpeg_or_skip():
  try:
    return extract_frames.find_ffmpeg()
  except extract_frames.ExtractionError as e:
    pytest.skip(f"no ffmpeg binary (PATH or imageio-ffmpeg): {e}")


def test_extract_frames_video(tmp_path):
  ffmpeg = _ffmpeg_or_skip()
  src = tmp_path / "src"
  src.mkdir()
  for k in range(10):  # frame k (0-based) is uniformly 10 + 20 k grey
    Image.fromarray(np.full((24, 32, 3), 10 + 20 * k, np.uint8)).save(src / f"{k:03d}.png")
  video = tmp_path / "seq" / "video_0.avi"
  video.parent.mkdir()
  subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-framerate", "25", "-i",
                  str(src / "%03d.png"), "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p",
                  str(video)], check=True)
  out = tmp_path / "seq" / "video_0"
  stale = tmp_path / "seq" / ".video_0.partial"   # left by an interrupted run
  stale.mkdir()
  (stale / "000001.jpg").write_bytes(b"half")

  def grey(n):
    return float(pixels(out / extract_frames.frame_name(n)).mean())

  glob = str(tmp_path / "**" / "*.avi")
  assert extract_frames.main(["--videos", glob, "--every", "3"]) == 0
  assert not stale.exists()
  assert sorted(os.listdir(out)) == [extract_frames.MARKER, "000001.jpg", "000004.jpg",
                                     "000007.jpg", "000010.jpg"]
  for n in (1, 4, 7, 10):    # 1-based frame n is source frame n - 1
    assert abs(grey(n) - (10 + 20 * (n - 1))) < 4
  marker = extract_frames.read_marker(str(out))
  assert marker["every"] == 3 and marker["frames"] == 4
  mtime = os.path.getmtime(out / "000004.jpg")
  assert extract_frames.main(["--videos", glob]) == 0           # complete: skipped
  assert os.path.getmtime(out / "000004.jpg") == mtime
  assert extract_frames.main(["--videos", glob, "--force"]) == 0
  assert sorted(n for n in os.listdir(out) if n.endswith(".jpg")) == [
      extract_frames.frame_name(n) for n in range(1, 11)]
  assert [round((grey(n) - 10) / 20) for n in range(1, 11)] == list(range(10))
  assert sorted(os.listdir(tmp_path / "seq")) == ["video_0", "video_0.avi"]


def test_extract_frames_aist_layout(tmp_path):
  """AIST++: frames of videos/<name>.mp4 go to frames/<name>/ numbered from 0 (--out_root,
  --first 0), as pose/aist_native reads them."""
  ffmpeg = _ffmpeg_or_skip()
  src = tmp_path / "src"
  src.mkdir()
  for k in range(7):
    Image.fromarray(np.full((24, 32, 3), 10 + 30 * k, np.uint8)).save(src / f"{k:03d}.png")
  videos = tmp_path / "aist" / "videos"
  videos.mkdir(parents=True)
  subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-framerate", "60", "-i",
                  str(src / "%03d.png"), "-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p",
                  str(videos / "gBR_sBM_c01_d04_mBR0_ch01.mp4")], check=True)
  frames = tmp_path / "aist" / "frames"
  assert extract_frames.main(["--videos", str(videos / "*.mp4"), "--out_root", str(frames),
                              "--first", "0", "--every", "2"]) == 0
  out = frames / "gBR_sBM_c01_d04_mBR0_ch01"
  assert sorted(os.listdir(out)) == [extract_frames.MARKER, "000000.jpg", "000002.jpg",
                                     "000004.jpg", "000006.jpg"]
  for n in (0, 2, 4, 6):     # 0-based file n is source frame n
    assert abs(float(pixels(out / extract_frames.frame_name(n)).mean()) - (10 + 30 * n)) < 4
  assert not (videos / "gBR_sBM_c01_d04_mBR0_ch01").exists()
