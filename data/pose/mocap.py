"""Motion-capture pose sets as distributed (video only): MPI-INF-3DHP and Human3.6M.

The pose builder (data/pose/builder.py, layouts ``'3dhp'`` and ``'h36m'``) calls :func:`records`;
each video's annotations are converted to an in-memory COCO keypoint dict (as the builder's
``_3dpw_to_coco`` / ``_aist`` do) and read by the builder's COCO reader, one video at a time
(the sets have ~1 M annotated frames; a split-wide dict would not fit in memory). Each image
dict carries ``video_id`` and ``frame_index`` (0-based), which the COCO reader turns into
:data:`VIDEO_KEY` / :data:`FRAME_KEY` for the base class's frame sampling (data/common.py,
'Video hook'). One person per frame: image_id = instance_id.

Frames are not distributed as images: extract them first with data/tools/extract_frames.py
(``D/<video>.<ext>`` -> ``D/<video>/%06d.jpg``, 1-based, ffmpeg's decoding order), so the
annotation row f (0-based) is frame ``<f+1:06d>.jpg``. Only annotated rows whose frame file
exists become records; the others are counted as dropped: ``frame_not_extracted`` (the folder
was written with ``extract_frames --every N`` and the row is not one of 0, N, 2N, ...) or
``no_frame`` (the video is shorter than its annotations). A missing frame folder is an error
(:class:`common.MissingInputError` naming the extraction command).

Common conversion: the source joints are reduced to 17 (index lists below); a joint is labelled
(v 2) when its x, y are finite and inside the frame (0 <= x < W, 0 <= y < H, W x H read from the
video's first extracted frame; the publishers give every joint of every frame, and mmpose's
preprocessing marks joints outside the image invisible the same way), else v 0 (x, y = 0);
box = the labelled joints' tight box widened by ``JOINT_BOX_PAD`` (data/pose/builder.py, as
3DPW / AIST++) of its size on every side, area = its w * h. Coordinates are kept as published
(pixels; whether their origin is 0- or 1-based is not documented by either publisher).

MPI-INF-3DHP (training set; its README and util/ scripts ``mpii_get_joint_set.m``,
``mpii_get_camera_set.m``, ``mpii_get_sequence_info.m``, distributed with the data at
https://vcai.mpi-inf.mpg.de/3dhp-dataset/ via ``get_dataset.sh``):
``S<1..8>/Seq<1,2>/annot.mat`` holds ``annot2`` (one cell per camera, [frames, 28 * 2] as
x1, y1, x2, y2, ...), ``annot3`` / ``univ_annot3`` (3-D, unused), ``cameras`` (the 0-based
camera of each cell) and ``frames``; the videos are ``S*/Seq*/imageSequence/video_<cam>.avi``.
Kept: the 8 'vnect' cameras :data:`MPI_INF_3DHP_CAMERAS` (mmpose's and SPIN's training
cameras; 131,592 annotated frames x 8 = 1,052,736, against the authors' 1,031,701 samples), and
per the README only the first F rows of ``annot2`` (F = :data:`MPI_INF_3DHP_FRAMES`, from
``mpii_get_sequence_info.m``; "some sequences have a few frames missing at the end but
annotations still available"), the rest dropped as ``beyond_sequence_frames``. Joints:
:data:`MPI_INF_3DHP_JOINTS_17` (the 'relevant' set of ``mpii_get_joint_set.m`` = the test set's
17-joint order, also mmpose's ``joints_17``). Ids: image_id = ((subject * 10 + sequence) * 100
+ camera) * ``VIDEO_ID_STRIDE`` + f + 1. Unconfirmed: whether row f of ``annot2`` is always
frame f of the video (the README's advice to extract with ffmpeg and mmpose's reader assume so;
the ``frames`` field is not used), and which ~2 % of the frames the authors left out.

Human3.6M (http://vision.imar.ro/human3.6m/, subject-specific archives
``PosesD2_PositionsSubjectSpecific_<n>.tgz`` and ``VideosSubjectSpecific_<n>.tgz``; file names as
in mmpose's ``preprocess_h36m.py`` and h36m-fetch): ``S<k>/MyPoseFeatures/D2_Positions/
<Action>.<camera>.cdf`` holds ``Pose`` [1, frames, 64] (32 joints x (x, y) pixels), the video is
``S<k>/Videos/<Action>.<camera>.mp4``. Subjects :data:`H36M_SUBJECTS` (train S1, S5, S6, S7, S8;
val S9, S11: the common protocol, mmpose's ``subjects_splits``; PATH's REFERENCE gives only the
count 312,187 = mmpose's 10 fps training set). Joints: :data:`H36M_JOINTS_17` (mmpose's
``movable_joints``, the standard 17-joint subset). Files whose action starts with ``_ALL`` are
skipped (mmpose excludes that action; unconfirmed whether the pose archives hold any), and the
corrupt video :data:`H36M_CORRUPT_VIDEOS` (h36m-fetch's blacklist) is dropped as
``corrupt_video`` when it has no frame folder. 'val' keeps rows 0, 5, 10, ...
(:data:`H36M_VAL_FRAME_STEP`, mmpose's ``sample_rate`` 5: the 10 fps test set its 2-D Human3.6M
EPE is reported on), the others dropped as ``frame_step``; 'train' yields every frame (the base
class samples 1 in ``frame_every``; ``--frame_every 5`` reproduces mmpose's 10 fps training set).
Ids: actions numbered 1.. in name order per subject, cameras 1..4 in :data:`H36M_CAMERAS` order;
image_id = ((subject * 100 + action) * 10 + camera) * ``VIDEO_ID_STRIDE`` + f + 1. Reading .cdf
needs the ``cdflib`` package (``pip install cdflib``).

No ground-truth json is written for 'val' (its metric, EPE, reads the records).
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from data import common
from data.tools import extract_frames

# The base class's video hook keys (re-exported: the COCO reader sets them from the image dicts'
# video_id / frame_index).
VIDEO_KEY = common.VIDEO_KEY
FRAME_KEY = common.FRAME_KEY

# ---- MPI-INF-3DHP ---------------------------------------------------------------------------
# The 28 joints of annot2, in order (mpii_get_joint_set.m, 'all').
MPI_INF_3DHP_ALL_JOINTS = (
    "spine3", "spine4", "spine2", "spine", "pelvis", "neck", "head", "head_top",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "left_hand", "right_clavicle",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand", "left_hip", "left_knee",
    "left_ankle", "left_foot", "left_toe", "right_hip", "right_knee", "right_ankle", "right_foot",
    "right_toe")
# The 17-joint subset (mpii_get_joint_set.m 'relevant', 1-based [8 6 15 16 17 10 11 12 24 25 26
# 19 20 21 5 4 7]; the test set's annot2 order; mmpose preprocess_mpi_inf_3dhp.py joints_17):
# head_top, neck, right shoulder/elbow/wrist, left shoulder/elbow/wrist, right hip/knee/ankle,
# left hip/knee/ankle, pelvis, spine, head. The pose_3dhp row's flip pairs (JRDB_FLIP_PAIRS:
# (2,5) (3,6) (4,7) (8,11) (9,12) (10,13)) are its shoulder/elbow/wrist/hip/knee/ankle pairs.
MPI_INF_3DHP_JOINTS_17 = (7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6)
MPI_INF_3DHP_JOINTS = tuple(MPI_INF_3DHP_ALL_JOINTS[j] for j in MPI_INF_3DHP_JOINTS_17)
# mpii_get_camera_set.m 'vnect': chest high, knee high and 2 cameras angled down.
MPI_INF_3DHP_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
MPI_INF_3DHP_SEQUENCES = {"train": tuple((s, q) for s in range(1, 9) for q in (1, 2))}
# Frames per video (mpii_get_sequence_info.m): annot2 rows past these have no frame.
MPI_INF_3DHP_FRAMES = {
    (1, 1): 6416, (1, 2): 12430, (2, 1): 6502, (2, 2): 6081, (3, 1): 12488, (3, 2): 12283,
    (4, 1): 6171, (4, 2): 6675, (5, 1): 12820, (5, 2): 12312, (6, 1): 6188, (6, 2): 6145,
    (7, 1): 6239, (7, 2): 6320, (8, 1): 6468, (8, 2): 6054}

# ---- Human3.6M ------------------------------------------------------------------------------
# The 17-joint subset of the 32 D2_Positions joints (0-based; mmpose preprocess_h36m.py
# movable_joints): pelvis, right hip/knee/ankle, left hip/knee/ankle, spine, thorax, neck/nose,
# head (top), left shoulder/elbow/wrist, right shoulder/elbow/wrist. The pose_h36m row's flip
# pairs (H36M_POSE_FLIP_PAIRS: (1,4) (2,5) (3,6) (11,14) (12,15) (13,16)) are its hip/knee/ankle
# and shoulder/elbow/wrist pairs. (Sides as Human3.6M's skeleton names them; mmpose's 2-D json
# calls index 1 'left_hip' - the swap does not change the pairs.)
H36M_JOINTS_17 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
H36M_JOINTS = ("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
               "left_ankle", "spine", "thorax", "neck", "head", "left_shoulder", "left_elbow",
               "left_wrist", "right_shoulder", "right_elbow", "right_wrist")
H36M_NUM_SOURCE_JOINTS = 32
H36M_CAMERAS = ("54138969", "55011271", "58860488", "60457274")
H36M_SUBJECTS = {"train": (1, 5, 6, 7, 8), "val": (9, 11)}
H36M_VAL_FRAME_STEP = 5
# <subject>/<Action>.<camera> videos known to be unreadable (h36m-fetch's blacklist).
H36M_CORRUPT_VIDEOS = frozenset({"S11/Directions.54138969"})

_MAX_LISTED = 30


def layout(name: str) -> dict:
  """The expected layout of ``name`` ('3dhp' or 'h36m'), for errors and the README."""
  if name == "3dhp":
    cams = ",".join(map(str, MPI_INF_3DHP_CAMERAS))
    return {
        "S<1..8>/Seq<1,2>/annot.mat": "annotations (annot2: per camera [frames, 28 * 2] pixels; "
                                      "cameras; frames)",
        "S<1..8>/Seq<1,2>/imageSequence/video_<cam>/<frame:06d>.jpg": (
            f"frames of imageSequence/video_<cam>.avi, cameras {cams}, 1-based (python -m "
            "data.tools.extract_frames --videos 'ROOT/S*/Seq*/imageSequence/video_*.avi')"),
    }
  if name == "h36m":
    subj = "; ".join(f"{split} " + ",".join(f"S{k}" for k in ks)
                     for split, ks in H36M_SUBJECTS.items())
    return {
        "S<k>/MyPoseFeatures/D2_Positions/<Action>.<camera>.cdf": (
            f"2-D poses (Pose [1, frames, 64]: 32 joints x, y pixels); subjects {subj}"),
        "S<k>/Videos/<Action>.<camera>/<frame:06d>.jpg": (
            "frames of S<k>/Videos/<Action>.<camera>.mp4, 1-based (python -m "
            "data.tools.extract_frames --videos 'ROOT/S*/Videos/*.mp4')"),
    }
  raise ValueError(f"unknown motion-capture layout {name!r}")


def records(builder, root: str, split: str) -> Iterator[tuple[str, dict]]:
  """The records of ``split`` for the pose ``builder`` (layout '3dhp' or 'h36m').

  The layout is checked here, before the first record is read: missing annotation files or
  frame folders raise :class:`common.MissingInputError` naming them all."""
  name = builder.builder_config.layout
  if name == "3dhp":
    videos = _3dhp_videos(builder, root, split)
    return _3dhp_records(builder, root, videos)
  if name == "h36m":
    cdflib = _import_cdflib()
    videos = _h36m_videos(builder, root, split)
    return _h36m_records(builder, root, split, videos, cdflib)
  raise ValueError(f"unknown motion-capture layout {name!r}")


# ---- shared -------------------------------------------------------------------------------------
def _missing(builder, root: str, missing: Sequence[str], hints: Sequence[str]):
  shown = list(missing[:_MAX_LISTED])
  if len(missing) > _MAX_LISTED:
    shown.append(f"... and {len(missing) - _MAX_LISTED} more")
  lines = common.missing_message(builder.name, builder.builder_config, root, shown,
                                 layout(builder.builder_config.layout)).split("\n")
  # The hints go before the closing "Then run: ..." line.
  return common.MissingInputError("\n".join(lines[:-1] + list(dict.fromkeys(hints)) + lines[-1:]))


def _extract_hint(root: str, pattern: str, video: str) -> str:
  if os.path.exists(video):
    return ("Frames are not extracted: run python -m data.tools.extract_frames --videos "
            f"'{os.path.join(root, pattern)}' (ffmpeg, or pip install imageio imageio-ffmpeg).")
  return (f"Videos are missing too ({os.path.relpath(video, root)}): download them from the "
          "publisher, then run python -m data.tools.extract_frames --videos "
          f"'{os.path.join(root, pattern)}'.")


def frames_present(folder: str) -> tuple[set, int]:
  """(1-based numbers of the ``%06d.jpg`` frames in ``folder``, the ``--every`` they were
  extracted with: 1 unless extract_frames' marker says otherwise)."""
  nums = set()
  with os.scandir(folder) as it:
    for e in it:
      stem, ext = os.path.splitext(e.name)
      if ext == ".jpg" and stem.isdigit():
        nums.add(int(stem))
  marker = extract_frames.read_marker(folder) or {}
  try:
    every = max(1, int(marker.get("every", 1)))
  except (TypeError, ValueError):
    every = 1
  return nums, every


def _frame_size(folder: str, nums: set) -> tuple[int, int] | None:
  """(W, H) of the first frame in ``folder`` (header only), None if there is none/unreadable."""
  if not nums:
    return None
  from PIL import Image
  try:
    with Image.open(os.path.join(folder, extract_frames.frame_name(min(nums)))) as im:
      return im.size
  except (OSError, ValueError):
    return None  # the COCO reader reports the image itself


def video_to_coco(report, joints: np.ndarray, names: Sequence[str], *, id_base: int,
                  video_id: str, folder_rel: str, nums: set, every: int,
                  size: tuple[int, int] | None, step: int = 1) -> dict:
  """COCO keypoint dict of one video: ``joints`` [N, 17, 2] (row f = frame f, 0-based) ->
  images ``<folder_rel>/<f+1:06d>.jpg`` with id ``id_base + f + 1`` (rows f % step == 0 whose
  frame is in ``nums``; the others counted as dropped), one person each (module docstring)."""
  from data.pose import builder as pose_builder
  images, anns = [], []
  for f in range(joints.shape[0]):
    if f % step:
      report.drop("frame_step")
      continue
    if f + 1 not in nums:
      report.drop("frame_not_extracted" if f % every else "no_frame")
      continue
    image_id = id_base + f + 1
    xy = joints[f]
    ok = np.isfinite(xy).all(1)
    if size is not None:
      w, h = size
      with np.errstate(invalid="ignore"):
        ok &= (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    im = {"id": image_id, "file_name": f"{folder_rel}/{extract_frames.frame_name(f + 1)}",
          "video_id": video_id, "frame_index": f}
    if size is not None:
      im.update(width=size[0], height=size[1])
    images.append(im)
    anns.append(pose_builder._joint_box_ann(image_id, image_id, xy, np.where(ok, 2, 0)))
  return {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": list(names)}]}


# ---- MPI-INF-3DHP -------------------------------------------------------------------------------
def _3dhp_videos(builder, root: str, split: str) -> list:
  """[(subject, sequence, annot.mat path)] of ``split``; checks every file and frame folder."""
  missing, hints, out = [], [], []
  for s, q in MPI_INF_3DHP_SEQUENCES[split]:
    seq = f"S{s}/Seq{q}"
    ann = os.path.join(root, seq, "annot.mat")
    if not os.path.isfile(ann):
      missing.append(f"{seq}/annot.mat")
      hints.append("Download the training set with the publisher's get_dataset.sh "
                   "(https://vcai.mpi-inf.mpg.de/3dhp-dataset/) and pass its root folder.")
    for cam in MPI_INF_3DHP_CAMERAS:
      rel = f"{seq}/imageSequence/video_{cam}"
      if not os.path.isdir(os.path.join(root, rel)):
        missing.append(f"{rel}/")
        hints.append(_extract_hint(root, "S*/Seq*/imageSequence/video_*.avi",
                                   os.path.join(root, rel + ".avi")))
    out.append((s, q, ann))
  if missing:
    raise _missing(builder, root, missing, hints)
  return out


def read_3dhp_annot2(report, path: str) -> dict | None:
  """{camera: annot2 [rows, 28, 2] float64} of an ``annot.mat``; None (reported) if unusable.
  Cell i belongs to camera ``cameras[i]`` (0-based; cell i = camera i when the field is absent)."""
  import scipy.io
  try:
    m = scipy.io.loadmat(path)
  except NotImplementedError as e:   # MATLAB v7.3 (HDF5) files
    report.bad("corrupt_label", path, f"not a MATLAB v5 file: {e}")
    return None
  except (ValueError, OSError, TypeError) as e:
    report.bad("corrupt_label", path, str(e))
    return None
  if "annot2" not in m:
    report.bad("corrupt_label", path, "no field 'annot2'")
    return None
  cells = np.asarray(m["annot2"], dtype=object).reshape(-1)
  cams = (np.asarray(m["cameras"]).reshape(-1).astype(int).tolist() if "cameras" in m
          else list(range(len(cells))))
  if len(cams) != len(cells):
    report.bad("corrupt_label", path,
               f"field 'cameras' has {len(cams)} entries for {len(cells)} annot2 cells")
    return None
  out = {}
  n = len(MPI_INF_3DHP_ALL_JOINTS)
  for cam, cell in zip(cams, cells):
    a = np.asarray(cell, np.float64)
    if a.ndim != 2 or a.shape[1] != 2 * n:
      report.bad("keypoint_count", path,
                 f"field 'annot2', camera {cam}: shape {a.shape}, expected [frames, {2 * n}]")
      return None
    out[cam] = a.reshape(-1, n, 2)
  return out


def _3dhp_records(builder, root: str, videos: list):
  report = builder.report
  for s, q, path in videos:
    annot2 = read_3dhp_annot2(report, path)
    if annot2 is None:
      continue
    img_rel = f"S{s}/Seq{q}/imageSequence"
    for cam in MPI_INF_3DHP_CAMERAS:
      if cam not in annot2:
        report.bad("corrupt_label", path, f"field 'annot2' has no cell for camera {cam}")
        continue
      joints = annot2[cam]
      limit = MPI_INF_3DHP_FRAMES.get((s, q), joints.shape[0])
      if joints.shape[0] > limit:
        report.drop("beyond_sequence_frames", joints.shape[0] - limit)
        joints = joints[:limit]
      if joints.shape[0] >= _stride():
        report.bad("keypoint_count", path, f"camera {cam}: {joints.shape[0]} frames, more "
                   f"than the image id scheme's {_stride() - 1}")
        continue
      folder = os.path.join(root, img_rel, f"video_{cam}")
      nums, every = frames_present(folder)
      coco = video_to_coco(
          report, joints[:, list(MPI_INF_3DHP_JOINTS_17)], MPI_INF_3DHP_JOINTS,
          id_base=((s * 10 + q) * 100 + cam) * _stride(), video_id=f"S{s}/Seq{q}/{cam}",
          folder_rel=f"video_{cam}", nums=nums, every=every, size=_frame_size(folder, nums))
      yield from builder._coco(root, lambda coco=coco: coco, path, img_rel)


def _stride() -> int:
  """Image ids: video number * this + 1-based frame (the builder's VIDEO_ID_STRIDE)."""
  from data.pose import builder as pose_builder
  return pose_builder.VIDEO_ID_STRIDE


# ---- Human3.6M ----------------------------------------------------------------------------------
def _import_cdflib():
  try:
    import cdflib
  except ImportError as e:
    raise ImportError(
        "reading Human3.6M's .cdf pose files (MyPoseFeatures/D2_Positions) needs the cdflib "
        "package: pip install cdflib") from e
  return cdflib


def _h36m_videos(builder, root: str, split: str) -> list:
  """[(subject, action number, action, camera, cdf path)] of ``split``, actions numbered 1.. in
  name order per subject; checks every subject's pose folder and every frame folder."""
  missing, hints, out = [], [], []
  for k in H36M_SUBJECTS[split]:
    pose_rel = f"S{k}/MyPoseFeatures/D2_Positions"
    pose_dir = os.path.join(root, pose_rel)
    names = (sorted(n for n in os.listdir(pose_dir) if n.endswith(".cdf"))
             if os.path.isdir(pose_dir) else [])
    if not names:
      missing.append(f"{pose_rel}/<Action>.<camera>.cdf")
      hints.append("Extract the publisher's 2-D pose archives (D2_Positions, one per subject, "
                   "http://vision.imar.ro/human3.6m/) into the root folder.")
      continue
    stems = [n[:-len(".cdf")] for n in names]
    actions = sorted({st.rsplit(".", 1)[0] for st in stems if not st.startswith("_ALL")})
    for name, stem in zip(names, stems):
      action, _, camera = stem.rpartition(".")
      if stem.startswith("_ALL"):
        builder.report.drop("all_actions_file")
        continue
      rel = f"S{k}/Videos/{stem}"
      if not os.path.isdir(os.path.join(root, rel)):
        if f"S{k}/{stem}" in H36M_CORRUPT_VIDEOS:
          builder.report.drop("corrupt_video")
          continue
        missing.append(f"{rel}/")
        hints.append(_extract_hint(root, "S*/Videos/*.mp4",
                                   os.path.join(root, rel + ".mp4")))
      out.append((k, actions.index(action) + 1, action, camera, os.path.join(pose_dir, name)))
  if missing:
    raise _missing(builder, root, missing, hints)
  return out


def read_h36m_pose(report, path: str, cdflib) -> np.ndarray | None:
  """``Pose`` of a D2_Positions .cdf as [frames, 32, 2] float64; None (reported) if unusable."""
  try:
    pose = np.asarray(cdflib.CDF(path).varget("Pose"), np.float64)
  except Exception as e:  # cdflib raises bare ValueError/KeyError/OSError/struct errors
    report.bad("corrupt_label", path, f"field 'Pose': {type(e).__name__}: {e}")
    return None
  if pose.ndim == 3 and pose.shape[0] == 1:
    pose = pose[0]
  n = H36M_NUM_SOURCE_JOINTS
  if pose.ndim != 2 or pose.shape[1] != 2 * n:
    report.bad("keypoint_count", path,
               f"field 'Pose': shape {pose.shape}, expected [1, frames, {2 * n}]")
    return None
  return pose.reshape(-1, n, 2)


def _h36m_records(builder, root: str, split: str, videos: list, cdflib):
  report = builder.report
  step = H36M_VAL_FRAME_STEP if split == "val" else 1
  for k, a, action, camera, path in videos:
    if camera not in H36M_CAMERAS:
      report.bad("corrupt_label", path,
                 f"file name: camera {camera!r} is not one of {list(H36M_CAMERAS)}")
      continue
    if a >= 100:
      report.bad("corrupt_label", path, f"more than 99 actions in S{k}: no image id left")
      continue
    pose = read_h36m_pose(report, path, cdflib)
    if pose is None:
      continue
    if pose.shape[0] >= _stride():
      report.bad("keypoint_count", path, f"{pose.shape[0]} frames, more than the image id "
                 f"scheme's {_stride() - 1}")
      continue
    img_rel = f"S{k}/Videos"
    folder = os.path.join(root, img_rel, f"{action}.{camera}")
    nums, every = frames_present(folder)
    c = H36M_CAMERAS.index(camera) + 1
    coco = video_to_coco(
        report, pose[:, list(H36M_JOINTS_17)], H36M_JOINTS,
        id_base=((k * 100 + a) * 10 + c) * _stride(), video_id=f"S{k}/{action}.{camera}",
        folder_rel=f"{action}.{camera}", nums=nums, every=every,
        size=_frame_size(folder, nums), step=step)
    yield from builder._coco(root, lambda coco=coco: coco, path, img_rel)
