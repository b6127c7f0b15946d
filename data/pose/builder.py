"""2-D pose builder: COCO-style keypoint JSON (one record per person) and MPII mmpose JSON.

COCO-style records: ``image`` (the full image), ``bbox`` [4] float32 xywh pixels (clipped to the
image), ``keypoints`` [K, 3] float32 (x, y, visibility 0/1/2), ``image_id`` int64,
``instance_id`` int64 (annotation id; -1 for detections), ``area`` float32, ``score`` float32
(1 for ground truth, the detector score in the ``val_dets`` split), ``filename`` text.
Crowd, keypoint-less and degenerate boxes are dropped (counted); a box entirely outside its
image is skipped with a warning. K comes from the file (``categories[0].keypoints`` or the
first annotation), after ``drop_joints``.

For every COCO-style split but 'train' the builder also writes the split's ground truth, as
``COCOeval`` needs it, next to the prepared data: ``<version folder>/coco_gt_<split>.json``
(:data:`GT_FILE`), a COCO keypoint json of every image and every person annotation (crowd and
keypoint-less ones included: COCOeval ignores them, and detections on them must not count as
false positives), with ``drop_joints`` removed and ``num_keypoints`` recounted, ``area`` and
``iscrowd`` filled where absent, segmentations left out. Keypoint AP (split 'val' on
ground-truth boxes, 'val_dets' on person detections) is scored against it.

MPII records: ``image``, ``center`` [2] and ``scale`` [2] float32 (mmpose convention, scale in
units of 200 px), ``keypoints`` [16, 3], ``head_box`` [4] float32 (x1, y1, x2, y2, from the
optional ``mpii_gt_<split>.mat`` next to the json, NaN without it), ``image_id`` int64 (position
in the list), ``filename``. The adjustment of the mmpose reader is applied here, once: 1-based -> 0-based
(center and joints -1), center y += 15 * scale, scale *= 1.25.

Publishers' own layouts (configs ``*_native``; the archives extracted as distributed) are
converted in memory to the COCO keypoint dict above and then read like COCO, records and all:
AI Challenger (:meth:`Pose._aic_to_coco`), Halpe (its COCO-style json, ``keep_joints`` picks the
20 body joints) and Penn Action (:meth:`Pose._penn_action_to_coco`, a ``video`` config whose
records carry ``common.VIDEO_KEY`` / ``common.FRAME_KEY`` for the base class's frame sampling),
LV-MHP v2 (:meth:`Pose._mhp_to_coco`), 3DPW (:meth:`Pose._3dpw_to_coco`, video), AIST++
(:meth:`Pose._aist`, video, one sequence's dict at a time), PoseTrack 2018
(:meth:`Pose._posetrack_to_coco`, video, the per-sequence jsons merged) and JRDB-Pose
(:meth:`Pose._jrdb_to_coco`, video, the per-sequence jsons merged).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from data import common

_AIC_TRAIN = "ai_challenger_keypoint_train_20170909"
_AIC_VAL = "ai_challenger_keypoint_validation_20170911"
# AI Challenger joint order (the challenge's README; PATH's 'aic' rows use it unchanged).
AIC_JOINTS = ("right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
              "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee",
              "left_ankle", "head_top", "neck")
# Penn Action joint order (the dataset's README: x, y, visibility are [nframes, 13] in it).
PENN_ACTION_JOINTS = ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                      "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                      "right_knee", "left_ankle", "right_ankle")
# Penn Action image ids: video number * this + 1-based frame number (frames per video < 1e5).
PENN_ACTION_ID_STRIDE = 100_000
# LV-MHP v2 joint order (rows 0-15 of each person_<n> matrix of pose_annos/<image>.mat; the MHP
# annotation tool, github.com/ZhaoJ9014/Multi-Human-Parsing Annotation_Tools/Multi-Human_Pose):
# MPII's order, which the pose_mhp row (MPII flip pairs) uses unchanged.
MHP_JOINTS = ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
              "pelvis", "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow",
              "right_shoulder", "left_shoulder", "left_elbow", "left_wrist")
# 3DPW poses2d joint order (its README: "2D joint detections in Coco-Format", OpenPose's 18-joint
# COCO model, [N, 3, 18] per actor); the pose_3dpw row's flip pairs (2,5) ... (16,17) are this.
TDPW_JOINTS = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
               "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
               "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
# AIST++ keypoints2d joint order: COCO's 17 (aistplusplus_api loader: "COCO-format 2D keypoints").
AIST_JOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
               "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
AIST_VIEWS = tuple(f"c{i:02d}" for i in range(1, 10))
# AIST++ joints whose detector score is below this are unlabelled (the publisher's own threshold
# when triangulating them: aistplusplus_api processing/run_estimate_keypoints.py, kpt_thre).
AIST_MIN_SCORE = 0.15
# 3DPW and AIST++ image ids: (sequence number * 10 + view) * this + 1-based frame number.
VIDEO_ID_STRIDE = 100_000
# Boxes of 3DPW and AIST++ (no published boxes): the labelled joints' tight box widened by this
# fraction of its size on every side (the body reaches past its joints: head top, feet).
JOINT_BOX_PAD = 0.1
# PoseTrack 2018 joint order (``categories[0].keypoints`` of every sequence json; COCO's order
# with head_bottom, head_top in place of the eyes; the ears, 3 and 4, are never annotated and
# the posetrack configs drop them -> the pose_posetrack row's 15 joints).
POSETRACK_JOINTS = ("nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder",
                    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                    "right_ankle")
# JRDB-Pose joint order, as published (``categories[0].keypoints`` of every sequence json; the
# JRDB toolkit ships one such file: github.com/JRDB-dataset/jrdb_toolkit,
# pose_eval/labels_2d_pose_stitched_coco/).
JRDB_JOINTS = ("head", "right_eye", "left_eye", "right_shoulder", "center_shoulder",
               "left_shoulder", "right_elbow", "left_elbow", "center_hip", "right_wrist",
               "right_hip", "left_hip", "left_wrist", "right_knee", "left_knee", "right_foot",
               "left_foot")
# JRDB joints in the order the pose_jrdb2022 row's flip pairs assume (configs/humanbench.py
# JRDB_FLIP_PAIRS, shared with MPI-INF-3DHP in the B-yaml): head, neck (center shoulder),
# r shoulder, elbow, wrist, l shoulder, elbow, wrist, r hip, knee, foot, l hip, knee, foot,
# center hip (3DHP's pelvis slot 14), r eye, l eye. An assumption: the authors' converted json
# is not public. Slots 15, 16 (3DHP: spine, head) have no flip pair, so the eyes are not
# swapped when a crop is flipped unless (15, 16) is added to JRDB's flip pairs.
JRDB_TO_HUMANBENCH = (0, 4, 3, 6, 9, 5, 7, 12, 10, 13, 15, 11, 14, 16, 8, 1, 2)

# The ground-truth file of a COCO-style split, in the prepared dataset's version folder
# (path_jax.evaluate.COCO_GT_FILE reads it).
GT_FILE = "coco_gt_{split}.json"


@dataclasses.dataclass
class PoseConfig(tfds.core.BuilderConfig):
  """``splits``: split -> (annotation json, image folder), relative to manual_dir; splits in
  ``optional_splits`` are built only when their json exists. ``num_joints``: expected K after
  ``drop_joints`` (None: whatever the file says). ``keep_joints``: the source joints kept, in
  output order (instead of ``drop_joints``; e.g. Halpe's 20 body joints of 136). ``det_json``:
  optional COCO-results person detections over the 'val' images, built as split 'val_dets'.
  ``layout``: 'coco' (COCO keypoint json), 'mpii' (mmpose json list) or a publisher's own
  layout read natively ('aic', 'penn_action', 'posetrack', 'jrdb', ...; their annotation
  "json" may be a folder of per-video files). ``video``: the records are video frames, one
  frame of every few kept in 'train' (data/common.py, 'Video hook'); None: as listed in
  ``common.VIDEO_CONFIGS``."""
  layout: str = "coco"
  splits: tuple = ()
  optional_splits: tuple = ()
  num_joints: int | None = None
  drop_joints: tuple = ()
  keep_joints: tuple = ()
  det_json: str = ""
  video: bool | None = None


def _uniform(name, k=None, drop=(), optional=("val",), desc=""):
  return PoseConfig(
      name=name, layout="coco", num_joints=k, drop_joints=drop, optional_splits=optional,
      splits=(("train", "annotations/train.json", "images"),
              ("val", "annotations/val.json", "images")),
      description=desc or f"{name} keypoints in COCO format (the authors' converted json).")


class Pose(common.HumanBenchBuilder):
  """Top-down pose datasets."""
  BUILDER_CONFIGS = [
      PoseConfig(name="coco", layout="coco", num_joints=17,
                 splits=(("train", "annotations/person_keypoints_train2017.json", "train2017"),
                         ("val", "annotations/person_keypoints_val2017.json", "val2017")),
                 det_json="person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
                 description="COCO-2017 keypoints (+ optional person detections for val)."),
      _uniform("aic", 14, optional=()),
      _uniform("posetrack", 15, drop=(3, 4),
               desc="PoseTrack in COCO format; joints 3, 4 (unannotated ears) dropped -> 15."),
      _uniform("halpe"), _uniform("jrdb"), _uniform("mhp"), _uniform("penn_action"),
      _uniform("3dpw"), _uniform("mpi_inf_3dhp"), _uniform("h36m", optional=()), _uniform("aist"),
      PoseConfig(name="mpii", layout="mpii", num_joints=16,
                 splits=(("train", "annotations/mpii_train.json", "images"),
                         ("val", "annotations/mpii_val.json", "images")),
                 description="MPII in the mmpose json list format."),
      # ---- publishers' own layouts, archives extracted as distributed ---------------------
      PoseConfig(
          name="aic_native", layout="aic", num_joints=14, optional_splits=("val",),
          splits=(("train", f"{_AIC_TRAIN}/keypoint_train_annotations_20170909.json",
                   f"{_AIC_TRAIN}/keypoint_train_images_20170902"),
                  ("val", f"{_AIC_VAL}/keypoint_validation_annotations_20170911.json",
                   f"{_AIC_VAL}/keypoint_validation_images_20170911")),
          description="AI Challenger keypoints (14 joints) read from the challenge's own json."),
      PoseConfig(
          name="halpe_native", layout="coco", num_joints=20, keep_joints=tuple(range(20)),
          optional_splits=("val",),
          splits=(("train", "annotations/halpe_train_v1.json",
                   "hico_20160224_det/images/train2015"),
                  ("val", "annotations/halpe_val_v1.json", "val2017")),
          description="Halpe-FullBody json (136 keypoints) -> the 20 body joints (COCO 17 + "
                      "head, neck, hip)."),
      PoseConfig(
          name="penn_action_native", layout="penn_action", num_joints=13, video=True,
          splits=(("train", "labels", "frames"), ("val", "labels", "frames")),
          description="Penn Action per-video .mat labels + frame folders (13 joints); "
                      "val = the videos with train == -1."),
      PoseConfig(
          name="mhp_native", layout="mhp", num_joints=16, optional_splits=("val",),
          splits=(("train", "train/pose_annos", "train/images"),
                  ("val", "val/pose_annos", "val/images")),
          description="LV-MHP v2 per-image pose .mat files (16 joints, MPII order)."),
      PoseConfig(
          name="3dpw_native", layout="3dpw", num_joints=18, video=True,
          optional_splits=("val",),
          splits=(("train", "sequenceFiles/train", "imageFiles"),
                  ("val", "sequenceFiles/validation", "imageFiles")),
          description="3DPW sequence pickles (poses2d, 18 OpenPose-COCO joints) + imageFiles."),
      PoseConfig(
          name="aist_native", layout="aist", num_joints=17, video=True,
          splits=(("train", "keypoints2d", "frames"),),
          description="AIST++ keypoints2d pickles (9 views x frames x 17 COCO joints) + frames "
                      "extracted from the AIST Dance videos."),
      # Motion-capture sets read by data/pose/mocap.py (its constants fix the subjects, cameras
      # and joints; the paths here are the first sequence / subject of each split).
      PoseConfig(
          name="mpi_inf_3dhp_native", layout="3dhp", num_joints=17, video=True,
          splits=(("train", "S1/Seq1/annot.mat", "S1/Seq1/imageSequence"),),
          description="MPI-INF-3DHP training set (S1-S8, annot.mat annot2, 28 joints -> the "
                      "17 of the test set) + frames extracted from the 8 'vnect' camera videos."),
      PoseConfig(
          name="h36m_native", layout="h36m", num_joints=17, video=True,
          splits=(("train", "S1/MyPoseFeatures/D2_Positions", "S1/Videos"),
                  ("val", "S9/MyPoseFeatures/D2_Positions", "S9/Videos")),
          description="Human3.6M D2_Positions .cdf (32 joints -> the standard 17) + frames "
                      "extracted from the videos; train S1,5,6,7,8, val S9,11 (every 5th frame)."),
      PoseConfig(
          name="posetrack_native", layout="posetrack", num_joints=15, drop_joints=(3, 4),
          video=True, optional_splits=("val",),
          splits=(("train", "annotations/train", "images/train"),
                  ("val", "annotations/val", "images/val")),
          description="PoseTrack 2018 per-sequence json (17 joints; the unannotated ears 3, 4 "
                      "dropped -> 15), labelled frames only."),
      PoseConfig(
          name="jrdb_native", layout="jrdb", num_joints=17, keep_joints=JRDB_TO_HUMANBENCH,
          video=True,
          splits=(("train", "labels/labels_2d_pose_stitched_coco", "images"),),
          description="JRDB-Pose (JRDB 2022) per-sequence COCO-style json on the stitched 360° "
                      "frames (17 joints, reordered to the B-yaml's JRDB layout)."),
  ]

  def _features(self):
    c = self.builder_config
    if c.layout == "mpii":
      return tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(None, None, 3)),
          "center": tfds.features.Tensor(shape=(2,), dtype=np.float32),
          "scale": tfds.features.Tensor(shape=(2,), dtype=np.float32),
          "keypoints": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
          "head_box": tfds.features.Tensor(shape=(4,), dtype=np.float32,
                                           doc="x1, y1, x2, y2 pixels (0-based); NaN if none"),
          "image_id": tfds.features.Scalar(np.int64),
          "filename": tfds.features.Text(),
      })
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "bbox": tfds.features.Tensor(shape=(4,), dtype=np.float32, doc="xywh pixels"),
        "keypoints": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
        "image_id": tfds.features.Scalar(np.int64),
        "instance_id": tfds.features.Scalar(np.int64),
        "area": tfds.features.Scalar(np.float32),
        "score": tfds.features.Scalar(np.float32),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    if config.layout == "penn_action":
      return {"labels/<video>.mat": "per-video labels (x, y, visibility [nframes, 13], bbox "
                                    "[nframes, 4] x1 y1 x2 y2, dimensions [H, W, nframes], "
                                    "train 1 / -1)",
              "frames/<video>/<frame:06d>.jpg": "frames, 1-based numbering"}
    if config.layout == "aist":
      return {"keypoints2d/<sequence>.pkl": "per-sequence 2-D keypoints (keypoints2d [9 views, "
                                            "frames, 17, 3], det_scores, timestamps)",
              "ignore_list.txt": "optional: sequences the publisher excludes",
              "frames/<video>/<frame:06d>.jpg": "frames extracted from videos/<video>.mp4, 0-based "
                                                "(ffmpeg -i <video>.mp4 -start_number 0 "
                                                "frames/<video>/%06d.jpg)"}
    if config.layout in ("3dhp", "h36m"):
      from data.pose import mocap
      return mocap.layout(config.layout)
    out = {}
    for split, ann, img in config.splits:
      opt = " (optional)" if split in config.optional_splits else ""
      if config.layout == "aic":
        out[ann] = (f"{split} annotations, AI Challenger json list (image_id, "
                    f"human_annotations, keypoint_annotations){opt}")
        out[f"{img}/<image_id>.jpg"] = "images, named by the json's image_id"
        continue
      if config.layout == "mhp":
        out[f"{ann}/<image>.mat"] = (f"{split} poses, person_<n> [20, 3] (16 joints x, y, flag; "
                                     f"head box; person box){opt}")
        out[f"{img}/<image>.jpg"] = "images, named as the .mat files"
        continue
      if config.layout == "3dpw":
        out[f"{ann}/<sequence>.pkl"] = (f"{split} sequences (latin1 pickle: poses2d [N, 3, 18] "
                                        f"per actor, campose_valid){opt}")
        out.setdefault(f"{img}/<sequence>/image_<frame:05d>.jpg", "frames, 0-based")
        continue
      if config.layout == "posetrack":
        out[f"{ann}/<sequence>.json"] = (f"{split} sequences, PoseTrack 2018 json (images with "
                                         f"is_labeled, annotations with keypoints [x, y, v] x 17, "
                                         f"bbox, track_id){opt}")
        out[f"{img}/<sequence>/<frame:06d>.jpg"] = ("frames, named by the json's file_name "
                                                    f"('{img}/<sequence>/<frame>.jpg')")
        continue
      if config.layout == "jrdb":
        out[f"{ann}/<sequence>.json"] = (f"{split} sequences, JRDB-Pose COCO-style json (images, "
                                         "annotations with keypoints [x, y, v] x 17, track_id)")
        out[f"{img}/image_stitched/<sequence>/<frame:06d>.jpg"] = (
            f"stitched 360° frames, named by the json's file_name (relative to {img}/)")
        continue
      fmt = "mmpose json list" if config.layout == "mpii" else "COCO keypoint json"
      out[ann] = f"{split} annotations, {fmt}{opt}"
      if config.layout == "mpii":
        out[_mpii_gt(ann)] = (f"optional: {split} head boxes (mmpose mpii_gt_{split}.mat: "
                              "headboxes_src [2, 2, N], 1-based, json order), needed for PCKh")
      out.setdefault(f"{img}/<file_name>", "images, named as in the annotation json")
    if config.det_json:
      out[config.det_json] = "optional person detections (COCO results) on the val images"
    return out

  def _required(self, root):
    c = self.builder_config
    return list(dict.fromkeys(p for split, ann, img in c.splits
                              if split not in c.optional_splits for p in (ann, img)))

  def _static_metadata(self):
    c = self.builder_config
    return {"layout": c.layout, "dropped_joints": list(c.drop_joints),
            "kept_joints": list(c.keep_joints),
            "bbox": "xywh pixels, clipped to the image",
            "mpii_adjustment": "center,joints -1 (0-based); center y += 15*scale; scale *= 1.25"}

  def _splits(self, root):
    c = self.builder_config
    out = {}
    for split, ann, img in c.splits:
      if split in c.optional_splits and not os.path.exists(os.path.join(root, ann)):
        continue
      if c.layout == "mpii":
        out[split] = self._mpii(root, ann, img)
        continue
      if c.layout in ("3dhp", "h36m"):  # data/pose/mocap.py: one video at a time, no GT json
        from data.pose import mocap
        out[split] = mocap.records(self, root, split)
        continue
      path = os.path.join(root, ann)
      # A loader, not the loaded dict: the train json is only read when its records are.
      if c.layout == "aic":
        load = lambda path=path: self._aic_to_coco(path)
      elif c.layout == "penn_action":
        load = lambda path=path, split=split: self._penn_action_to_coco(path, split)
      elif c.layout == "mhp":
        load = lambda path=path: self._mhp_to_coco(path)
      elif c.layout == "3dpw":
        load = lambda path=path: self._3dpw_to_coco(path)
      elif c.layout == "posetrack":
        load = lambda ann=ann, img=img: self._posetrack_to_coco(root, ann, img)
      elif c.layout == "jrdb":
        load = lambda ann=ann, img=img: self._jrdb_to_coco(root, ann, img)
      elif c.layout == "aist":
        out[split] = self._aist(root, path, img)
        continue
      else:
        load = lambda path=path: _read_json(path)
      if split != "train":
        coco = load()  # converted once: a converter's drops are counted once
        self._write_coco_gt(coco, path, split)
        load = lambda coco=coco: coco
      out[split] = self._coco(root, load, path, img)
      if split == "val" and c.det_json and os.path.exists(os.path.join(root, c.det_json)):
        out["val_dets"] = self._dets(root, load, path, img, c.det_json)
    return out

  # ---- COCO-style -------------------------------------------------------------------------
  def _joint_count(self, path, coco) -> int:
    """K in the file (before ``drop_joints`` / ``keep_joints``); checks it against the config."""
    cats = [ct for ct in coco.get("categories", []) if ct.get("keypoints")]
    if cats:
      k = len(cats[0]["keypoints"])
    else:
      anns = coco.get("annotations", [])
      k = len(anns[0]["keypoints"]) // 3 if anns else 0
    c = self.builder_config
    if c.keep_joints and max(c.keep_joints) >= k:
      raise common.BadInputError(
          f"{path}: {k} keypoints per person but config {c.name!r} keeps joints up to "
          f"{max(c.keep_joints)}; is this the right annotation file for this config?")
    k_out = len(self._selection(k))
    want = c.num_joints
    if want is not None and k_out != want:
      raise common.BadInputError(
          f"{path}: {k} keypoints per person (minus {len(c.drop_joints)} "
          f"dropped = {k_out}) but config {c.name!r} expects {want}; "
          "is this the right annotation file for this config?")
    self.info.metadata["num_joints"] = k_out
    return k

  def _selection(self, k: int) -> np.ndarray:
    """Source joint indices of the output joints, in output order."""
    c = self.builder_config
    if c.keep_joints:
      return np.asarray(c.keep_joints, np.int64)
    return np.asarray([j for j in range(k) if j not in c.drop_joints], np.int64)

  def _coco(self, root, load, path, img_rel):
    """Records of a COCO keypoint dict (``load()``; ``path`` names it in messages)."""
    coco = load()
    k = self._joint_count(path, coco)
    sel = self._selection(k)
    by_image = {}
    for a in coco.get("annotations", []):
      by_image.setdefault(a["image_id"], []).append(a)
    for im in sorted(coco["images"], key=lambda im: im["id"]):
      anns = by_image.get(im["id"], [])
      good = []
      for a in sorted(anns, key=lambda a: a["id"]):
        if a.get("iscrowd", 0):
          self.report.drop("crowd")
          continue
        kp = np.asarray(a.get("keypoints", []), np.float32)
        if kp.size != 3 * k:
          self.report.bad("keypoint_count", path,
                          f"annotation {a['id']}: {kp.size // 3} joints, expected {k}")
          continue
        kp = kp.reshape(k, 3)
        bad_v = set(np.unique(kp[:, 2]).tolist()) - {0.0, 1.0, 2.0}
        if bad_v:
          self.report.bad("label_out_of_range", path,
                          f"annotation {a['id']}: keypoint visibility {sorted(bad_v)} not in "
                          "{0, 1, 2}")
          continue
        if not (kp[sel, 2] > 0).any():
          self.report.drop("no_keypoints")
          continue
        good.append((a, kp[sel]))
      if not good:
        continue
      img_path = os.path.join(root, img_rel, im["file_name"])
      img = common.load_image(img_path, self.report)
      if img is None:
        continue
      # A native video reader names each image's video and 0-based frame index; the base
      # class's frame sampling reads them (and drops them before writing).
      video = ({common.VIDEO_KEY: im["video_id"], common.FRAME_KEY: im["frame_index"]}
               if "video_id" in im else {})
      for a, kp in good:
        box = self._clip_box(a["bbox"], img, img_path, f"annotation {a['id']}")
        if box is None or a.get("area", 1) <= 0:
          continue
        yield f"{im['id']}/{a['id']}", {
            "image": img.data, "bbox": box, "keypoints": kp, "image_id": im["id"],
            "instance_id": a["id"], "area": float(a.get("area", box[2] * box[3])),
            "score": 1.0, "filename": os.path.join(img_rel, im["file_name"]), **video}

  def _write_coco_gt(self, coco, path: str, split: str) -> None:
    """Writes :data:`GT_FILE` for ``split`` (COCO dict ``coco``, read from ``path``) into the
    dataset folder being prepared."""
    k = self._joint_count(path, coco)
    reselect = bool(self.builder_config.drop_joints or self.builder_config.keep_joints)
    sel = self._selection(k)
    images = [{key: im[key] for key in ("id", "file_name", "width", "height") if key in im}
              for im in sorted(coco["images"], key=lambda im: im["id"])]
    anns = []
    for a in sorted(coco.get("annotations", []), key=lambda a: a["id"]):
      if a.get("category_id", 1) != 1:
        continue
      kp = np.asarray(a.get("keypoints", []), np.float64)
      if kp.size == 3 * k:
        kp = kp.reshape(k, 3)[sel]
      else:   # malformed (reported when the records are read): ignored by COCOeval
        kp = np.zeros((len(sel), 3))
      x, y, w, h = (float(v) for v in a["bbox"])
      num = (int((kp[:, 2] > 0).sum()) if reselect or "num_keypoints" not in a
             else int(a["num_keypoints"]))
      anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": 1,
                   "bbox": [x, y, w, h], "area": float(a.get("area", w * h)),
                   "iscrowd": int(bool(a.get("iscrowd", 0))), "num_keypoints": num,
                   "keypoints": [float(v) for v in kp.reshape(-1)]})
    cats = [c for c in coco.get("categories", []) if c.get("id", 1) == 1]
    cat = {"id": 1, "name": "person"}
    if cats and len(cats[0].get("keypoints", [])) == k:
      cat["keypoints"] = [cats[0]["keypoints"][j] for j in sel]
    out = os.path.join(os.fspath(self.data_dir), GT_FILE.format(split=split))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
      json.dump({"images": images, "annotations": anns, "categories": [cat]}, f)

  def _clip_box(self, xywh, img, img_path, what):
    """Clips an xywh box to the image; None (counted) if nothing of it is left."""
    x, y, w, h = (float(v) for v in xywh)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(img.width - 1.0, x + max(0.0, w - 1)), min(img.height - 1.0, y + max(0.0, h - 1))
    if x2 > x1 and y2 > y1:
      return np.array([x1, y1, x2 - x1, y2 - y1], np.float32)
    if w > 1 and h > 1:
      self.report.bad("box_outside_image", img_path, f"{what}: box {list(xywh)} in "
                      f"{img.width}x{img.height} image")
    else:
      self.report.drop("degenerate_box")
    return None

  def _dets(self, root, load, path, img_rel, det_rel):
    coco = load()
    k = len(self._selection(self._joint_count(path, coco)))
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    with open(os.path.join(root, det_rel)) as f:
      dets = json.load(f)
    by_image = {}
    for i, d in enumerate(dets):
      if d.get("category_id", 1) == 1:
        by_image.setdefault(d["image_id"], []).append((i, d))
    for image_id in sorted(by_image):
      if image_id not in files:
        self.report.bad("unknown_image_id", os.path.join(root, det_rel), f"image_id {image_id}")
        continue
      img_path = os.path.join(root, img_rel, files[image_id])
      img = common.load_image(img_path, self.report)
      if img is None:
        continue
      for i, d in by_image[image_id]:
        box = self._clip_box(d["bbox"], img, img_path, f"detection {i}")
        if box is None:
          continue
        yield f"{image_id}/det{i}", {
            "image": img.data, "bbox": box, "keypoints": np.zeros((k, 3), np.float32),
            "image_id": image_id, "instance_id": -1, "area": float(box[2] * box[3]),
            "score": float(d["score"]), "filename": os.path.join(img_rel, files[image_id])}

  # ---- publishers' layouts -> COCO keypoint dicts -----------------------------------------
  def _aic_to_coco(self, path: str) -> dict:
    """AI Challenger keypoint json -> COCO keypoint dict.

    The challenge's json (its README, also what its evaluation script reads) is a list of
    ``{image_id: "<sha1>", human_annotations: {"human1": [x1, y1, x2, y2], ...},
    keypoint_annotations: {"human1": [x, y, v] * 14, ...}}`` with v 1 = visible, 2 = labelled
    but occluded, 3 = not labelled. Here v -> 3 - v (COCO's 2 visible / 1 occluded / 0 not
    labelled; x, y of unlabelled joints set to 0 as in COCO), any other v -> -1 (reported as out
    of range), box -> x1, y1, x2 - x1, y2 - y1, area = box w * h (AIC has no masks). Ids:
    image_id = 1-based position in the list (file name ``<image_id>.jpg``), instance_id =
    1-based running person number in file order (images, then human1, human2, ...); COCOeval
    needs ids > 0.
    """
    entries = _read_json(path)
    images, anns = [], []
    for i, e in enumerate(entries, 1):
      images.append({"id": i, "file_name": f"{e['image_id']}.jpg"})
      boxes = e.get("human_annotations", {})
      for name in sorted(boxes, key=_human_number):
        kp = np.asarray(e.get("keypoint_annotations", {}).get(name, []), np.float64)
        if kp.size and kp.size % 3 == 0:
          kp = kp.reshape(-1, 3)
          v = np.select([kp[:, 2] == 1, kp[:, 2] == 2, kp[:, 2] == 3], [2, 1, 0], -1)
          kp = np.stack([np.where(v == 0, 0, kp[:, 0]), np.where(v == 0, 0, kp[:, 1]), v], 1)
        x1, y1, x2, y2 = (float(t) for t in boxes[name])
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                     "iscrowd": 0, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": int((kp.reshape(-1)[2::3] > 0).sum())})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(AIC_JOINTS)}]}

  def _penn_action_to_coco(self, label_dir: str, split: str) -> dict:
    """Penn Action ``labels/<video>.mat`` -> COCO keypoint dict of ``split``'s frames.

    Per the dataset's README each mat holds ``x``, ``y``, ``visibility`` [nframes, 13] (joint
    order :data:`PENN_ACTION_JOINTS`, visibility 1/0), ``bbox`` [nframes, 4] x1 y1 x2 y2,
    ``dimensions`` [H, W, nframes] and ``train`` (1 train, -1 test; the test videos are split
    'val' here); frame f (0-based) is ``frames/<video>/<f+1:06d>.jpg``. Coordinates are kept
    as published. Visibility 1 -> 2, 0 -> 0 (x, y zeroed: Penn gives guesses for invisible
    joints, which no loss uses); other values -> -1 (reported). Box -> x1, y1, x2 - x1,
    y2 - y1. A frame past the end of ``bbox`` (some videos have one box fewer than frames) is
    dropped as ``no_box``. One person per frame: image_id = instance_id = video number *
    :data:`PENN_ACTION_ID_STRIDE` + f + 1; each image dict carries ``video_id`` (the folder
    name) and ``frame_index`` (f).
    """
    import scipy.io
    want = 1 if split == "train" else -1
    images, anns = [], []
    for name in sorted(os.listdir(label_dir)):
      video, ext = os.path.splitext(name)
      if ext != ".mat":
        continue
      path = os.path.join(label_dir, name)
      try:
        m = scipy.io.loadmat(path)
        is_train = int(np.asarray(m["train"]).reshape(-1)[0])
        xs, ys, vis = (np.asarray(m[key], np.float64) for key in ("x", "y", "visibility"))
        boxes = np.asarray(m["bbox"], np.float64).reshape(-1, 4)
        h, w = (int(t) for t in np.asarray(m["dimensions"]).reshape(-1)[:2])
      except (KeyError, ValueError, OSError, IndexError) as e:
        if split == "train":  # every split reads every mat; report a bad one once
          self.report.bad("corrupt_label", path, str(e))
        continue
      if is_train != want:
        continue
      n = xs.shape[0]
      if not video.isdigit() or any(a.shape != (n, len(PENN_ACTION_JOINTS))
                                    for a in (xs, ys, vis)):
        self.report.bad("keypoint_count", path,
                        f"x/y/visibility shapes {xs.shape}, {ys.shape}, {vis.shape}; expected "
                        f"[nframes, {len(PENN_ACTION_JOINTS)}] in a numbered file")
        continue
      for f in range(n):
        image_id = int(video) * PENN_ACTION_ID_STRIDE + f + 1
        images.append({"id": image_id, "file_name": f"{video}/{f + 1:06d}.jpg", "height": h,
                       "width": w, "video_id": video, "frame_index": f})
        if f >= len(boxes):
          self.report.drop("no_box")
          continue
        v = np.select([vis[f] == 1, vis[f] == 0], [2, 0], -1)
        kp = np.stack([np.where(v == 0, 0, xs[f]), np.where(v == 0, 0, ys[f]), v], 1)
        x1, y1, x2, y2 = (float(t) for t in boxes[f])
        anns.append({"id": image_id, "image_id": image_id, "category_id": 1,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                     "iscrowd": 0, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": int((v > 0).sum())})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(PENN_ACTION_JOINTS)}]}

  def _mhp_to_coco(self, ann_dir: str) -> dict:
    """LV-MHP v2 ``pose_annos/<image>.mat`` files -> COCO keypoint dict.

    Each mat holds one ``person_<n>`` float matrix [20, 3] per annotated person (the MHP
    annotation tool, Annotation_Tools/Multi-Human_Pose of github.com/ZhaoJ9014/Multi-Human-Parsing,
    writes them): rows 0-15 the joints in :data:`MHP_JOINTS` order as (x, y, flag), flag 0
    visible / 1 occluded / 2 out of image, x = y = -1 where no point was placed; rows 16-17 the
    head box corners, rows 18-19 the person box corners (x, y). Here: a joint with a placed point
    gets v 2 (flag 0) or 1 (flag 1); unplaced ones and flag 2 v 0 (x, y = 0); a placed point
    with any other flag v -1 (reported). Box = min/max of the two person-box corners (the tool
    records them in drag order) -> x, y, w, h; area = w * h. Ids: image_id = 1-based position
    of the mat in natural name order (file ``<name>.jpg``), instance_id = 1-based running
    person number (images, then person_0, person_1, ...). A matrix of another shape is
    reported and skipped.
    """
    import scipy.io
    images, anns = [], []
    names = sorted((n for n in os.listdir(ann_dir) if n.endswith(".mat")), key=_natural_key)
    for i, name in enumerate(names, 1):
      path = os.path.join(ann_dir, name)
      try:
        m = scipy.io.loadmat(path)
      except (ValueError, OSError) as e:
        self.report.bad("corrupt_label", path, str(e))
        continue
      images.append({"id": i, "file_name": f"{name[:-len('.mat')]}.jpg"})
      for key in sorted((k for k in m if k.startswith("person_")), key=_natural_key):
        p = np.asarray(m[key], np.float64)
        if p.shape != (20, 3):
          self.report.bad("keypoint_count", path,
                          f"{key}: shape {p.shape}, expected (20, 3): 16 joints, 2 head-box "
                          "and 2 person-box corners")
          continue
        placed = (p[:16, :2] >= 0).all(1)
        flag = p[:16, 2]
        v = np.select([~placed, flag == 0, flag == 1, flag == 2], [0, 2, 1, 0], -1)
        kp = np.stack([np.where(v == 0, 0, p[:16, 0]), np.where(v == 0, 0, p[:16, 1]), v], 1)
        (x1, x2), (y1, y2) = np.sort(p[18:20, 0]), np.sort(p[18:20, 1])
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                     "iscrowd": 0, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": int((v > 0).sum())})
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(MHP_JOINTS)}]}

  def _3dpw_to_coco(self, seq_dir: str) -> dict:
    """3DPW ``sequenceFiles/<split>/<sequence>.pkl`` -> COCO keypoint dict of the split.

    Per the dataset's README each pickle (Python-2, read with ``encoding='latin1'``) holds,
    among the SMPL fields, ``sequence`` (name), ``poses2d`` (per actor [N, 3, 18]: x, y and
    OpenPose confidence of the :data:`TDPW_JOINTS`, N = image frames) and ``campose_valid``
    (per actor [N] bool: the camera pose, and with it the actor's association with the image,
    is valid); frame f is ``imageFiles/<sequence>/image_<f:05d>.jpg``. Here: confidence > 0 ->
    v 2, else v 0 (x, y = 0); frames with campose_valid False are dropped (``campose_invalid``);
    box = the labelled joints' tight box widened by :data:`JOINT_BOX_PAD` of its size on every
    side (3DPW publishes no 2-D boxes), area = its w * h. Ids: image_id = (sequence number * 10)
    * :data:`VIDEO_ID_STRIDE` + f + 1 (sequences numbered 1.. in name order),
    instance_id = image_id * 10 + actor + 1; each image dict carries ``video_id`` (the
    sequence) and ``frame_index`` (f).
    """
    import pickle
    images, anns = [], []
    names = sorted(n for n in os.listdir(seq_dir) if n.endswith(".pkl"))
    for s, name in enumerate(names, 1):
      path = os.path.join(seq_dir, name)
      try:
        with open(path, "rb") as f:
          seq = pickle.load(f, encoding="latin1")
        poses = [np.asarray(a, np.float64) for a in seq["poses2d"]]
        valid = [np.asarray(a).reshape(-1).astype(bool) for a in seq["campose_valid"]]
        video = str(seq.get("sequence", name[:-len(".pkl")]))
      except (KeyError, ValueError, OSError, pickle.UnpicklingError, EOFError, TypeError) as e:
        self.report.bad("corrupt_label", path, str(e))
        continue
      n = poses[0].shape[0] if poses else 0
      if (not poses or len(valid) != len(poses) or n >= VIDEO_ID_STRIDE
          or any(a.shape != (n, 3, len(TDPW_JOINTS)) for a in poses)
          or any(a.shape != (n,) for a in valid)):
        self.report.bad("keypoint_count", path,
                        f"poses2d shapes {[a.shape for a in poses]}, campose_valid shapes "
                        f"{[a.shape for a in valid]}; expected [N, 3, {len(TDPW_JOINTS)}] and "
                        "[N] per actor")
        continue
      for f in range(n):
        image_id = s * 10 * VIDEO_ID_STRIDE + f + 1
        images.append({"id": image_id, "file_name": f"{video}/image_{f:05d}.jpg",
                       "video_id": video, "frame_index": f})
        for a, (pose, ok) in enumerate(zip(poses, valid)):
          if not ok[f]:
            self.report.drop("campose_invalid")
            continue
          xy, conf = pose[f, :2].T, np.nan_to_num(pose[f, 2])
          anns.append(_joint_box_ann(image_id * 10 + a + 1, image_id, xy,
                                     np.where(conf > 0, 2, 0)))
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(TDPW_JOINTS)}]}

  def _aist(self, root: str, kp_dir: str, img_rel: str):
    """Records of AIST++ (``keypoints2d/<sequence>.pkl``), one sequence's COCO dict at a time
    (the whole set is ~10 M frames; a split-wide dict would not fit in memory).

    Per the AIST++ API (aistplusplus_api ``loader.py``) each pickle holds ``keypoints2d``
    [9 views, N, 17, 3] (x, y, detector score of the :data:`AIST_JOINTS`), ``det_scores``
    [9, N] and ``timestamps`` [N]; view i is camera ``c0<i+1>`` and its video is the sequence
    name with ``cAll`` replaced by the camera; frame f of a view is frame f of that 60 fps
    video, here ``frames/<video>/<f:06d>.jpg`` (extracted beforehand, see data/README.md).
    Sequences (or single videos) named in ``ignore_list.txt`` are skipped (``ignored``).
    Here: score >= :data:`AIST_MIN_SCORE` -> v 2, else v 0 (x, y = 0); a frame whose person
    detection score is below 0 or NaN (the publisher's det_thre) is dropped
    (``no_detection``); box as 3DPW's. One person per frame: image_id = instance_id =
    (sequence number * 10 + view number) * :data:`VIDEO_ID_STRIDE` + f + 1 (sequences
    numbered 1.. in name order); ``video_id`` = the video name, ``frame_index`` = f.
    """
    import pickle
    ignore_path = os.path.join(root, "ignore_list.txt")
    ignored = set()
    if os.path.exists(ignore_path):
      with open(ignore_path) as f:
        ignored = {line.strip() for line in f if line.strip()}
    names = sorted(n for n in os.listdir(kp_dir) if n.endswith(".pkl"))
    for s, name in enumerate(names, 1):
      seq = name[:-len(".pkl")]
      if seq in ignored:
        self.report.drop("ignored")
        continue
      path = os.path.join(kp_dir, name)
      try:
        with open(path, "rb") as f:
          data = pickle.load(f)
        kps = np.asarray(data["keypoints2d"], np.float64)
        det = np.asarray(data["det_scores"], np.float64)
      except (KeyError, ValueError, OSError, pickle.UnpicklingError, EOFError, TypeError) as e:
        self.report.bad("corrupt_label", path, str(e))
        continue
      if (kps.ndim != 4 or kps.shape[0] != len(AIST_VIEWS) or kps.shape[2:] != (len(AIST_JOINTS), 3)
          or det.shape != kps.shape[:2] or kps.shape[1] >= VIDEO_ID_STRIDE):
        self.report.bad("keypoint_count", path,
                        f"keypoints2d {kps.shape}, det_scores {det.shape}; expected "
                        f"[{len(AIST_VIEWS)}, N, {len(AIST_JOINTS)}, 3] and [{len(AIST_VIEWS)}, N]")
        continue
      coco = self._aist_to_coco(seq, s, kps, det, ignored)
      yield from self._coco(root, lambda coco=coco: coco, path, img_rel)

  def _aist_to_coco(self, seq, s, kps, det, ignored) -> dict:
    """One AIST++ sequence (``keypoints2d`` ``kps``, ``det_scores`` ``det``) -> COCO dict."""
    images, anns = [], []
    for view_i, view in enumerate(AIST_VIEWS):
      video = seq.replace("cAll", view)
      if video in ignored:
        self.report.drop("ignored")
        continue
      for f in range(kps.shape[1]):
        image_id = (s * 10 + view_i + 1) * VIDEO_ID_STRIDE + f + 1
        images.append({"id": image_id, "file_name": f"{video}/{f:06d}.jpg",
                       "video_id": video, "frame_index": f})
        if not det[view_i, f] >= 0:
          self.report.drop("no_detection")
          continue
        xy, score = kps[view_i, f, :, :2], np.nan_to_num(kps[view_i, f, :, 2])
        anns.append(_joint_box_ann(image_id, image_id, xy,
                                   np.where(score >= AIST_MIN_SCORE, 2, 0)))
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(AIST_JOINTS)}]}

  def _sequence_files(self, root: str, ann_rel: str) -> list[str]:
    """The ``<sequence>.json`` files of ``root/ann_rel`` in name order (PoseTrack, JRDB);
    :class:`common.MissingInputError` naming the folder and the layout when there is none."""
    ann_dir = os.path.join(root, ann_rel)
    names = sorted(n for n in os.listdir(ann_dir) if n.endswith(".json"))
    if not names:
      raise common.MissingInputError(common.missing_message(
          self.name, self.builder_config, root, [f"{ann_rel}/<sequence>.json (folder is empty)"],
          type(self).layout(self.builder_config)))
    return [os.path.join(ann_dir, n) for n in names]

  def _read_sequence(self, path: str) -> dict | None:
    """A COCO-like sequence json with ``images`` and ``annotations`` lists; None (reported as
    ``corrupt_label``, naming the file and the field) otherwise."""
    try:
      seq = _read_json(path)
    except (ValueError, OSError) as e:
      self.report.bad("corrupt_label", path, str(e))
      return None
    for field in ("images", "annotations"):
      if not isinstance(seq, dict) or not isinstance(seq.get(field), list):
        self.report.bad("corrupt_label", path, f"no '{field}' list")
        return None
    return seq

  def _posetrack_to_coco(self, root: str, ann_rel: str, img_rel: str) -> dict:
    """PoseTrack 2018 ``annotations/<split>/<sequence>.json`` files -> one COCO keypoint dict.

    The format (posetrack.net, read by its evaluation toolkit github.com/leonid-pishchulin/poseval;
    restated in PoseTrack21's doc/dataset_structure.md, "the same format proposed in
    PoseTrack18"): per sequence, ``images`` [{id (= frame_id), file_name
    'images/<split>/<sequence>/<frame:06d>.jpg' relative to the dataset root, vid_id, nframes,
    is_labeled, ignore_regions_x/y}] listing every frame, ``annotations`` [{id, image_id,
    track_id, bbox x y w h, bbox_head, keypoints [x, y, v] x 17 in :data:`POSETRACK_JOINTS`
    order, v 1 annotated / 0 not (PoseTrack marks no occlusion)}] and ``categories``. Here: only
    frames with ``is_labeled`` true are kept (persons on other frames: ``unlabelled_frame``);
    v 1 -> 2, 0 -> 0 (x, y = 0), other values -> -1 (reported as out of range); an empty
    ``keypoints`` list (head-box-only persons) -> all zeros (dropped as ``no_keypoints``); box =
    ``bbox`` as published (the labelled joints' box + :data:`JOINT_BOX_PAD` where missing),
    area = w * h. Ids as published (unique over the whole set: image id = '1' + the 6-digit
    video number + the 4-digit frame, annotation id = image id * 100 + person); a file repeating
    an image id of an earlier one is reported and skipped. Each image carries ``video_id`` (the
    sequence: the json's name) and ``frame_index`` (the frame number in ``file_name``);
    ``file_name`` is made relative to ``img_rel``. ``ignore_regions`` (unannotated people) are
    not needed for top-down crops and not read.
    """
    images, anns, seen = [], [], set()
    for path in self._sequence_files(root, ann_rel):
      seq = self._read_sequence(path)
      if seq is None:
        continue
      try:
        frames = {int(im["id"]): str(im["file_name"]) for im in seq["images"]
                  if im.get("is_labeled")}
      except (KeyError, TypeError, ValueError, AttributeError) as e:
        self.report.bad("corrupt_label", path, f"images: missing or malformed field {e}")
        continue
      if seen & frames.keys():
        self.report.bad("duplicate_id", path, f"image ids {sorted(seen & frames.keys())[:3]} "
                        "already used by another sequence file")
        continue
      seen |= frames.keys()
      video = os.path.basename(path)[:-len(".json")]
      for image_id, name in frames.items():
        images.append({"id": image_id, "file_name": os.path.relpath(name, img_rel),
                       "video_id": video, "frame_index": _frame_number(name)})
      for a in seq["annotations"]:
        try:
          ann_id, image_id = int(a["id"]), int(a["image_id"])
          kp = np.asarray(a.get("keypoints") or [0.0] * 3 * len(POSETRACK_JOINTS), np.float64)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
          self.report.bad("corrupt_label", path, f"annotations: missing or malformed field {e}")
          continue
        if image_id not in frames:
          self.report.drop("unlabelled_frame")
          continue
        if kp.shape != (3 * len(POSETRACK_JOINTS),):
          self.report.bad("keypoint_count", path, f"annotation {ann_id}: {kp.size} keypoint "
                          f"values, expected 3 x {len(POSETRACK_JOINTS)}")
          continue
        kp = kp.reshape(-1, 3)
        v = np.select([kp[:, 2] == 1, kp[:, 2] == 0], [2, 0], -1)
        anns.append(_joint_box_ann(ann_id, image_id, kp[:, :2], v, a.get("bbox")))
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(POSETRACK_JOINTS)}]}

  def _jrdb_to_coco(self, root: str, ann_rel: str, img_rel: str) -> dict:
    """JRDB-Pose ``labels/labels_2d_pose_stitched_coco/<sequence>.json`` -> one COCO dict.

    The format (JRDB 2022 'train_dataset_with_activity' download, jrdb.erc.monash.edu; the JRDB
    toolkit's pose_eval reads these files and ships one, github.com/JRDB-dataset/jrdb_toolkit
    pose_eval/labels_2d_pose_stitched_coco/meyer-green-2019-03-16_0.json): per sequence,
    ``images`` [{id 1.., file_name 'image_stitched/<sequence>/<frame:06d>.jpg' relative to
    ``images/``, width, height}] (every frame; the toolkit's copy says 752 x 480, the individual
    cameras' size, for 3760 px wide panoramas, so sizes are never taken from the json),
    ``annotations`` [{id, image_id, track_id, category_id 1, is_crowd, keypoints [x, y, v] x 17
    in :data:`JRDB_JOINTS` order, num_keypoints}] (no person box: the toolkit derives one from
    the joints) and ``categories``. v: 0 invisible, 1 occluded, 2 visible (the JRDB-Pose paper's
    three visibility labels; the numeric codes are inferred from the released files, where 2 is
    the most common and x, y are given for all three, and from third-party readers, not from
    a published spec) -> COCO's 0 (x, y zeroed: no loss uses them), 1, 2; other values -> -1
    (reported). Box = the labelled joints' tight box + :data:`JOINT_BOX_PAD` (a published
    ``bbox``, if any, is used instead, read as COCO's x, y, w, h), area = w * h. A person whose
    labelled joints span more than half the image width straddles the panorama's seam (joints
    at both ends; the toolkit's box code special-cases such persons) and is dropped
    (``wraps_seam``). Joints are
    reordered by the config's ``keep_joints`` (:data:`JRDB_TO_HUMANBENCH`) when read. Ids:
    image_id = sequence number * 10 * :data:`VIDEO_ID_STRIDE` + the json's image id
    (sequences numbered 1.. in name order; every json restarts its ids at 1), instance_id =
    1-based running number of the annotations in file order; ``video_id`` = the sequence (the
    json's name), ``frame_index`` = the frame number in ``file_name``.

    Unconfirmed: posepile (github.com/isarandi/posepile, datasets2d/jrdb) shifts the frames of
    the individual-camera labels (labels_2d_pose_coco) by 2 ("annotations are mismatched with
    the frames in the released dataset"); nothing says so of the stitched labels read here, and
    no shift is applied.
    """
    from PIL import Image
    img_dir = os.path.join(root, img_rel)
    widths: dict[str, int | None] = {}

    def width(name):
      if name not in widths:
        try:
          with Image.open(os.path.join(img_dir, name)) as im:   # header only
            widths[name] = im.width
        except (OSError, ValueError):
          widths[name] = None   # the record reader reports the image
      return widths[name]

    images, anns, n = [], [], 0
    for s, path in enumerate(self._sequence_files(root, ann_rel), 1):
      seq = self._read_sequence(path)
      if seq is None:
        continue
      try:
        frames = {int(im["id"]): str(im["file_name"]) for im in seq["images"]}
      except (KeyError, TypeError, ValueError, AttributeError) as e:
        self.report.bad("corrupt_label", path, f"images: missing or malformed field {e}")
        continue
      if any(not 0 < i < 10 * VIDEO_ID_STRIDE for i in frames):
        self.report.bad("corrupt_label", path, f"images: ids outside 1..{10 * VIDEO_ID_STRIDE - 1}")
        continue
      video = os.path.basename(path)[:-len(".json")]
      base = s * 10 * VIDEO_ID_STRIDE
      for i, name in frames.items():
        images.append({"id": base + i, "file_name": name, "video_id": video,
                       "frame_index": _frame_number(name)})
      for a in seq["annotations"]:
        n += 1
        try:
          local = int(a["image_id"])
          kp = np.asarray(a["keypoints"], np.float64)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
          self.report.bad("corrupt_label", path, f"annotations: missing or malformed field {e}")
          continue
        if local not in frames:
          self.report.bad("unknown_image_id", path, f"annotation {a.get('id')}: image_id {local}")
          continue
        if kp.shape != (3 * len(JRDB_JOINTS),):
          self.report.bad("keypoint_count", path, f"annotation {a.get('id')}: {kp.size} "
                          f"keypoint values, expected 3 x {len(JRDB_JOINTS)}")
          continue
        kp = kp.reshape(-1, 3)
        v = np.select([kp[:, 2] == 2, kp[:, 2] == 1, kp[:, 2] == 0], [2, 1, 0], -1)
        xs = kp[v > 0, 0]
        w = width(frames[local]) if xs.size else None
        if w is not None and xs.max() - xs.min() > w / 2:
          self.report.drop("wraps_seam")
          continue
        ann = _joint_box_ann(n, base + local, kp[:, :2], v, a.get("bbox"))
        ann["iscrowd"] = int(bool(a.get("is_crowd", a.get("iscrowd", 0))))
        anns.append(ann)
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": list(JRDB_JOINTS)}]}

  # ---- MPII -------------------------------------------------------------------------------
  def _mpii(self, root, ann_rel, img_rel):
    path = os.path.join(root, ann_rel)
    with open(path) as f:
      anns = json.load(f)
    self.info.metadata["num_joints"] = self.builder_config.num_joints
    head_boxes = self._mpii_head_boxes(os.path.join(root, _mpii_gt(ann_rel)), len(anns))
    for i, a in enumerate(anns):
      joints = np.asarray(a["joints"], np.float32)
      vis = np.asarray(a["joints_vis"], np.float32)
      if joints.shape != (self.builder_config.num_joints, 2) or vis.shape != joints.shape[:1]:
        self.report.bad("keypoint_count", path, f"record {i}: joints {joints.shape}")
        continue
      if set(np.unique(vis).tolist()) - {0.0, 1.0}:
        self.report.bad("label_out_of_range", path,
                        f"record {i}: joints_vis {sorted(set(vis.tolist()))} not in {{0, 1}}")
        continue
      img_path = os.path.join(root, img_rel, a["image"])
      img = common.load_image(img_path, self.report)
      if img is None:
        continue
      center = np.asarray(a["center"], np.float32)
      scale = np.full((2,), float(a["scale"]), np.float32)
      if center[0] != -1:
        # mmpose: move the center down and pad so that limbs are not cropped.
        center[1] += 15 * scale[1]
        scale = scale * 1.25
      center -= 1  # MATLAB 1-based -> 0-based.
      kp = np.concatenate([joints - 1, vis[:, None]], axis=1)
      yield f"{i:08d}", {"image": img.data, "center": center, "scale": scale,
                         "keypoints": kp.astype(np.float32), "head_box": head_boxes[i],
                         "image_id": i, "filename": os.path.join(img_rel, a["image"])}

  @staticmethod
  def _mpii_head_boxes(mat_path: str, n: int) -> np.ndarray:
    """``[n, 4]`` head boxes (x1, y1, x2, y2, 0-based) from mmpose's ``mpii_gt_<split>.mat``
    (``headboxes_src [2 corners, 2 (x, y), N]``, MATLAB 1-based, one column per json record in
    order, as mmpose's MPII evaluation reads it); all NaN when the file is absent (train)."""
    if not os.path.exists(mat_path):
      return np.full((n, 4), np.nan, np.float32)
    import scipy.io
    boxes = np.asarray(scipy.io.loadmat(mat_path)["headboxes_src"], np.float64)
    if boxes.shape != (2, 2, n):
      raise ValueError(f"{mat_path}: headboxes_src has shape {boxes.shape}, expected (2, 2, {n}) "
                       "(one head box per record of the json next to it, in order); use the "
                       "mat file that belongs to this json.")
    return (np.concatenate([boxes[0].T, boxes[1].T], axis=1) - 1).astype(np.float32)


def _mpii_gt(ann_rel: str) -> str:
  """annotations/mpii_val.json -> annotations/mpii_gt_val.mat (mmpose's file names)."""
  folder, name = os.path.split(ann_rel)
  return os.path.join(folder, name.replace("mpii_", "mpii_gt_").replace(".json", ".mat"))


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _human_number(name: str):
  """AIC person keys 'human1', 'human2', ... in numeric order (human10 after human9)."""
  digits = name[len("human"):]
  return (0, int(digits), "") if digits.isdigit() else (1, 0, name)


def _natural_key(name: str):
  """'person_2' before 'person_10', '9.mat' before '10.mat'."""
  return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


def _frame_number(file_name: str):
  """'<...>/000012.jpg' -> 12; a name that is not a number stays text (ordered naturally)."""
  stem = os.path.splitext(os.path.basename(file_name))[0]
  return int(stem) if stem.isdigit() else stem


def _joint_box_ann(ann_id: int, image_id: int, xy: np.ndarray, v: np.ndarray,
                   published=None) -> dict:
  """COCO annotation of joints ``xy`` [K, 2] with visibility ``v`` [K] (0 unlabelled: x, y set
  to 0; 1 or 2 labelled): bbox = ``published`` (x, y, w, h) when it is 4 numbers, else the
  labelled joints' tight box widened by :data:`JOINT_BOX_PAD` of its size on every side (all
  zeros when no joint is labelled: the reader drops it as ``no_keypoints``)."""
  xy = np.where(v[:, None] > 0, np.nan_to_num(xy), 0.0)
  box = [0.0, 0.0, 0.0, 0.0]
  if isinstance(published, (list, tuple)) and len(published) == 4:
    box = [float(t) for t in published]
  elif (v > 0).any():
    lo, hi = xy[v > 0].min(0), xy[v > 0].max(0)
    pad = (hi - lo) * JOINT_BOX_PAD
    lo, hi = lo - pad, hi + pad
    box = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
  kp = np.concatenate([xy, v[:, None].astype(np.float64)], 1)
  return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": box,
          "area": box[2] * box[3], "iscrowd": 0, "keypoints": kp.reshape(-1).tolist(),
          "num_keypoints": int((v > 0).sum())}
