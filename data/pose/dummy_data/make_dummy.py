"""Writes the pose dummy data (COCO keypoint json, COCO results detections, MPII mmpose json,
and the publishers' own layouts of AI Challenger, Halpe, Penn Action, LV-MHP v2, 3DPW, AIST++,
PoseTrack 2018 and JRDB-Pose).
Run from the repo root: ``python -m data.pose.dummy_data.make_dummy``."""
import os

import numpy as np

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def keypoints(k, seed, vis=2):
  rng = np.random.default_rng(seed)
  xy = rng.uniform(2, 30, size=(k, 2)).round(1)
  v = np.full((k, 1), vis)
  v[::4] = 0  # Some unlabelled joints, as in COCO.
  kp = np.concatenate([xy, v], 1)
  kp[kp[:, 2] == 0, :2] = 0
  return kp.reshape(-1).tolist()


def coco_like(root, k, images, anns, ann_rel, img_rel, names=None):
  for im in images:
    dummy.write_image(os.path.join(root, img_rel, im["file_name"]), im["id"], im["height"],
                      im["width"])
  cats = [{"id": 1, "name": "person",
           "keypoints": names or [f"j{i}" for i in range(k)], "skeleton": []}]
  dummy.write_json(os.path.join(root, ann_rel),
                   {"images": images, "annotations": anns, "categories": cats})


def ann(i, image_id, bbox, kp, **kw):
  n = sum(1 for v in kp[2::3] if v > 0)
  return {"id": i, "image_id": image_id, "category_id": 1, "bbox": bbox, "keypoints": kp,
          "num_keypoints": n, "iscrowd": 0, "area": bbox[2] * bbox[3], **kw}


def coco():
  root = dummy.fresh(os.path.join(HERE, "coco"))
  train_images = [{"id": 1, "file_name": "000000000001.jpg", "height": 32, "width": 32},
                  {"id": 2, "file_name": "000000000002.jpg", "height": 24, "width": 32},
                  {"id": 3, "file_name": "000000000003.jpg", "height": 32, "width": 32}]
  train_anns = [
      ann(10, 1, [4, 4, 20, 24], keypoints(17, 10)),                 # kept
      ann(11, 1, [0, 0, 30, 30], keypoints(17, 11), iscrowd=1),      # crowd: dropped
      ann(12, 1, [2, 2, 10, 10], [0] * 51),                          # no keypoints: dropped
      ann(13, 1, [40, 40, 10, 10], keypoints(17, 13)),               # outside the image: skipped
      ann(20, 2, [-3, 5, 20, 30], keypoints(17, 20)),                # kept, clipped to 0..31/23
      ann(30, 3, [5, 5, 0, 8], keypoints(17, 30)),                   # zero width: dropped
  ]
  coco_like(root, 17, train_images, train_anns, "annotations/person_keypoints_train2017.json",
            "train2017")
  val_images = [{"id": 5, "file_name": "000000000005.jpg", "height": 32, "width": 32}]
  coco_like(root, 17, val_images, [ann(50, 5, [6, 3, 16, 26], keypoints(17, 50))],
            "annotations/person_keypoints_val2017.json", "val2017")
  dummy.write_json(
      os.path.join(root, "person_detection_results",
                   "COCO_val2017_detections_AP_H_56_person.json"),
      [{"image_id": 5, "category_id": 1, "bbox": [5.5, 2.5, 17.0, 27.0], "score": 0.9},
       {"image_id": 5, "category_id": 1, "bbox": [20.0, 20.0, 30.0, 30.0], "score": 0.3},
       {"image_id": 5, "category_id": 2, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.8}])


def posetrack():
  root = dummy.fresh(os.path.join(HERE, "posetrack"))
  images = [{"id": 7, "file_name": "train/000001_mpii/000000.jpg", "height": 32, "width": 32}]
  coco_like(root, 17, images, [ann(70, 7, [3, 3, 25, 25], keypoints(17, 70))],
            "annotations/train.json", "images")


def mpii():
  root = dummy.fresh(os.path.join(HERE, "mpii"))
  recs = []
  for i in range(2):
    rng = np.random.default_rng(400 + i)
    name = f"{10000 + i:09d}.jpg"
    dummy.write_image(os.path.join(root, "images", name), 400 + i, 32, 32)
    joints = rng.uniform(1, 32, size=(16, 2)).round(1)
    vis = (np.arange(16) % 3 != 0).astype(int)
    recs.append({"image": name, "center": [16.0 + i, 15.0], "scale": 0.12 + 0.01 * i,
                 "joints": joints.tolist(), "joints_vis": vis.tolist()})
  dummy.write_json(os.path.join(root, "annotations", "mpii_train.json"), recs)
  dummy.write_json(os.path.join(root, "annotations", "mpii_val.json"), recs[:1])


def aic_native():
  """AI Challenger as the challenge distributes it: a json list per split, <image_id>.jpg."""
  root = dummy.fresh(os.path.join(HERE, "aic_native"))

  def person(seed, vis):
    rng = np.random.default_rng(seed)
    xy = rng.integers(1, 30, size=(14, 2))
    xy[np.asarray(vis) == 3] = 0   # AIC writes 0, 0 for unlabelled joints.
    return np.concatenate([xy, np.asarray(vis)[:, None]], 1).reshape(-1).tolist()

  train_dir = "ai_challenger_keypoint_train_20170909"
  ids = ["3f2a9c0d1e", "b71c44e8aa"]
  dummy.write_image(os.path.join(root, train_dir, "keypoint_train_images_20170902",
                                 f"{ids[0]}.jpg"), 600, 32, 32)
  dummy.write_image(os.path.join(root, train_dir, "keypoint_train_images_20170902",
                                 f"{ids[1]}.jpg"), 601, 24, 32)
  vis_a = [1, 2, 3, 1, 1, 1, 2, 2, 3, 1, 1, 1, 1, 1]
  entries = [
      {"image_id": ids[0],
       # Keys deliberately out of order: the reader sorts human1, human2, human10.
       "human_annotations": {"human2": [2, 3, 12, 20], "human10": [5, 5, 25, 30],
                             "human1": [4, 2, 28, 30]},
       "keypoint_annotations": {"human2": person(602, [3] * 14),    # nothing labelled: dropped
                                "human10": person(603, [2] * 14),
                                "human1": person(604, vis_a)}},
      {"image_id": ids[1],
       "human_annotations": {"human1": [-4, 3, 20, 40]},               # clipped to the image
       "keypoint_annotations": {"human1": person(605, [1] * 13 + [2])}},
  ]
  dummy.write_json(os.path.join(root, train_dir, "keypoint_train_annotations_20170909.json"),
                   entries)
  val_dir = "ai_challenger_keypoint_validation_20170911"
  dummy.write_image(os.path.join(root, val_dir, "keypoint_validation_images_20170911",
                                 "c0ffee0001.jpg"), 606, 32, 32)
  dummy.write_json(
      os.path.join(root, val_dir, "keypoint_validation_annotations_20170911.json"),
      [{"image_id": "c0ffee0001", "human_annotations": {"human1": [3, 4, 27, 29]},
        "keypoint_annotations": {"human1": person(607, [1, 3] * 7)}}])


def halpe_native():
  """Halpe-FullBody: COCO-style json with 136 keypoints per person (26 body, 68 face, 42 hand);
  train images from HICO-DET, val images from COCO val2017."""
  root = dummy.fresh(os.path.join(HERE, "halpe_native"))
  body_only_face = [0] * (3 * 26) + keypoints(68, 702)[:3 * 68] + [0] * (3 * 42)
  train_images = [{"id": 1, "file_name": "HICO_train2015_00000001.jpg", "height": 32,
                   "width": 32}]
  coco_like(root, 136, train_images,
            [ann(1, 1, [3, 2, 22, 26], keypoints(136, 700)),
             ann(2, 1, [8, 8, 10, 12], keypoints(136, 701)),
             ann(3, 1, [1, 1, 20, 20], body_only_face)],   # no body joint labelled: dropped
            "annotations/halpe_train_v1.json", "hico_20160224_det/images/train2015")
  val_images = [{"id": 139, "file_name": "000000000139.jpg", "height": 32, "width": 32}]
  coco_like(root, 136, val_images, [ann(5, 139, [4, 4, 20, 24], keypoints(136, 703))],
            "annotations/halpe_val_v1.json", "val2017")


def penn_action_native():
  """Penn Action: labels/<video>.mat (x, y, visibility [n, 13], bbox, dimensions, train) and
  frames/<video>/<frame:06d>.jpg."""
  import scipy.io
  root = dummy.fresh(os.path.join(HERE, "penn_action_native"))
  for video, n, train, h, w, boxes in (
      ("0001", 3, 1, 32, 32, 2),   # one box fewer than frames (as in some real videos)
      ("0002", 2, -1, 24, 32, 2)):
    rng = np.random.default_rng(int(video))
    x = rng.uniform(1, w - 1, size=(n, 13)).round(2)
    y = rng.uniform(1, h - 1, size=(n, 13)).round(2)
    vis = (rng.uniform(size=(n, 13)) > 0.3).astype(np.float64)
    bbox = np.stack([x.min(1) - 1, y.min(1) - 1, x.max(1) + 1, y.max(1) + 1], 1)[:boxes]
    for f in range(n):
      dummy.write_image(os.path.join(root, "frames", video, f"{f + 1:06d}.jpg"),
                        800 + 10 * int(video) + f, h, w)
    os.makedirs(os.path.join(root, "labels"), exist_ok=True)
    scipy.io.savemat(os.path.join(root, "labels", f"{video}.mat"), {
        "action": "tennis_serve", "pose": "back", "x": x, "y": y, "visibility": vis,
        "train": np.array([[train]], np.int16), "bbox": bbox,
        "dimensions": np.array([[h, w, n]], np.uint16), "nframes": np.array([[n]], np.uint16)})


def mhp_native():
  """LV-MHP v2 (pose part): <split>/pose_annos/<image>.mat with one person_<n> [20, 3] matrix
  per person (16 MPII-order joints x, y, flag 0 visible / 1 occluded / 2 out of image, -1, -1
  where unplaced; head-box corners; person-box corners) and <split>/images/<image>.jpg."""
  import scipy.io
  root = dummy.fresh(os.path.join(HERE, "mhp_native"))

  def person(seed, flags, box):
    rng = np.random.default_rng(seed)
    p = np.zeros((20, 3))
    p[:16, :2] = rng.integers(1, 30, size=(16, 2))
    p[:16, 2] = flags
    p[:16][np.asarray(flags) == 2, :2] = -1    # out of image: no point placed
    p[16:18, :2] = [[10, 2], [16, 8]]           # head box
    p[18:20, :2] = np.asarray(box, np.float64).reshape(2, 2)
    return p

  flags_a = [0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0]
  for split, images in (
      ("train", {"1": (32, 32, {"person_0": person(900, flags_a, [3, 2, 28, 30]),
                                # Corners in drag order (bottom-right first).
                                "person_10": person(901, [0] * 16, [25, 30, 6, 4]),
                                "person_2": person(902, [2] * 16, [1, 1, 9, 9])}),  # no joint
                 "10": (24, 32, {"person_0": person(903, [1] * 8 + [0] * 8, [-3, 2, 20, 30])})}),
      ("val", {"7": (32, 32, {"person_0": person(904, [0, 2] * 8, [4, 4, 27, 29])})})):
    for stem, (h, w, persons) in images.items():
      dummy.write_image(os.path.join(root, split, "images", f"{stem}.jpg"),
                        910 + int(stem), h, w)
      os.makedirs(os.path.join(root, split, "pose_annos"), exist_ok=True)
      scipy.io.savemat(os.path.join(root, split, "pose_annos", f"{stem}.mat"),
                       {k: v.astype(np.float32) for k, v in persons.items()})


def tdpw_native():
  """3DPW: sequenceFiles/<split>/<sequence>.pkl (Python-2 era pickles, read with latin1;
  poses2d [N, 3, 18] per actor, campose_valid [N] per actor, SMPL fields left out) and
  imageFiles/<sequence>/image_<f:05d>.jpg."""
  import pickle
  root = dummy.fresh(os.path.join(HERE, "3dpw_native"))
  for split, seq, n, actors in (("train", "courtyard_basketball_00", 10, 2),
                                ("validation", "downtown_bar_00", 2, 1)):
    rng = np.random.default_rng(len(seq))
    poses = []
    for a in range(actors):
      p = np.zeros((n, 3, 18))
      p[:, 0] = rng.uniform(2, 22, size=(n, 18)).round(2)
      p[:, 1] = rng.uniform(2, 30, size=(n, 18)).round(2)
      p[:, 2] = rng.uniform(0.2, 1.0, size=(n, 18)).round(3)
      p[:, :, 16 + a] = 0      # an ear not detected: x, y, confidence 0
      poses.append(p)
    valid = [np.ones(n, bool) for _ in range(actors)]
    if split == "train":
      poses[0][5] = 0          # actor 0, frame 5: no joint detected -> no_keypoints
      valid[1][3] = False      # actor 1, frame 3: camera pose not aligned -> campose_invalid
    for f in range(n):
      dummy.write_image(os.path.join(root, "imageFiles", seq, f"image_{f:05d}.jpg"),
                        950 + f + 20 * len(split), 32, 24)
    path = os.path.join(root, "sequenceFiles", split, f"{seq}.pkl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
      pickle.dump({"sequence": seq, "poses2d": poses, "campose_valid": valid,
                   "img_frame_ids": np.arange(n), "genders": ["m"] * actors}, fh, protocol=2)


def aist_native():
  """AIST++: keypoints2d/<sequence>.pkl (keypoints2d [9 views, N, 17, 3], det_scores [9, N],
  timestamps [N]), ignore_list.txt, and frames/<video>/<f:06d>.jpg as extracted from the AIST
  Dance videos with ffmpeg (videos/ itself is not read)."""
  import pickle
  root = dummy.fresh(os.path.join(HERE, "aist_native"))
  seq, n = "gBR_sBM_cAll_d04_mBR0_ch01", 9
  rng = np.random.default_rng(1000)
  kps = np.zeros((9, n, 17, 3))
  kps[..., 0] = rng.uniform(2, 30, size=(9, n, 17)).round(2)
  kps[..., 1] = rng.uniform(2, 22, size=(9, n, 17)).round(2)
  kps[..., 2] = rng.uniform(0.3, 1.0, size=(9, n, 17)).round(3)
  kps[:, :, 0, 2] = 0.1                  # nose score below 0.15 in every frame: unlabelled
  kps[2, 4, :, 2] = 0.05                 # view c03, frame 4: nothing above 0.15 -> no_keypoints
  det = np.ones((9, n))
  det[0, 1] = -1.0                       # view c01, frame 1: no person detected -> no_detection
  with open(os.path.join(dummy.fresh(os.path.join(root, "keypoints2d")), f"{seq}.pkl"),
            "wb") as fh:
    pickle.dump({"keypoints2d": kps, "det_scores": det,
                 "timestamps": (np.arange(n) * 1e6 / 60).astype(np.int64)}, fh)
  # An ignored sequence: its pickle is there, its frames are not (never read).
  ignored = "gJB_sBM_cAll_d07_mJB3_ch05"
  with open(os.path.join(root, "keypoints2d", f"{ignored}.pkl"), "wb") as fh:
    pickle.dump({"keypoints2d": np.zeros((9, 1, 17, 3)), "det_scores": np.ones((9, 1)),
                 "timestamps": np.zeros(1, np.int64)}, fh)
  dummy.write_text(os.path.join(root, "ignore_list.txt"), [ignored])
  for v in range(9):
    video = seq.replace("cAll", f"c{v + 1:02d}")
    for f in range(n):
      dummy.write_image(os.path.join(root, "frames", video, f"{f:06d}.jpg"),
                        1100 + 10 * v + f, 24, 32)


POSETRACK_JOINTS = ["nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder",
                    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
                    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                    "right_ankle"]


def posetrack_native():
  """PoseTrack 2018 as distributed (the posetrack_data folder of the label and image archives):
  annotations/<split>/<sequence>.json, one COCO-like json per video (format: PoseTrack21's
  doc/dataset_structure.md, "the same format proposed in PoseTrack18"; poseval reads it) with
  every frame in ``images`` (is_labeled marks the annotated ones; file_name relative to the
  root), ``annotations`` (keypoints [x, y, v] x 17, v 1 annotated / 0 not, ears never
  annotated; bbox x y w h; track_id) and images/<split>/<sequence>/<frame:06d>.jpg."""
  root = dummy.fresh(os.path.join(HERE, "posetrack_native"))

  def person(seed, image_id, k, box, skip=()):
    rng = np.random.default_rng(seed)
    kp = np.zeros((17, 3))
    kp[:, 0] = rng.uniform(box[0] + 1, box[0] + box[2] - 1, 17).round(1)
    kp[:, 1] = rng.uniform(box[1] + 1, box[1] + box[3] - 1, 17).round(1)
    kp[:, 2] = 1
    kp[[3, 4, *skip]] = 0          # ears never annotated; x, y, v written as 0
    return {"bbox_head": [box[0], box[1], 6, 6], "keypoints": kp.reshape(-1).tolist(),
            "track_id": k, "image_id": image_id, "bbox": box, "scores": [],
            "category_id": 1, "id": image_id * 100 + k}

  for split, seq, n, unlabelled in (("train", "000001_bonn_train", 11, (4,)),
                                    ("train", "000002_mpii_train", 3, ()),
                                    ("val", "000342_mpii_test", 3, (2,))):
    vid = seq[:6]
    images, anns = [], []
    for f in range(n):
      image_id = int(f"1{vid}{f:04d}")
      name = f"images/{split}/{seq}/{f:06d}.jpg"
      images.append({"has_no_densepose": True, "is_labeled": f not in unlabelled,
                     "file_name": name, "nframes": n, "frame_id": image_id, "vid_id": vid,
                     "id": image_id, "ignore_regions_x": [], "ignore_regions_y": []})
      dummy.write_image(os.path.join(root, name), image_id % 100_000, 24, 32)
      if f in unlabelled and split == "val":
        continue                  # an unlabelled frame without persons
      # One person per frame (frame 9: with an unlabelled left wrist), on an unlabelled frame
      # too (dropped by the reader); in frame 0 also a head-box-only person (no keypoints).
      anns.append(person(image_id, image_id, 0, [3.0 + f % 3, 2.0, 22.0, 20.0],
                         skip=(9,) if f == 9 else ()))
      if f == 0:
        anns.append({**person(0, image_id, 1, [1.0, 1.0, 8.0, 8.0]), "keypoints": [],
                     "bbox": [20.0, 1.0, 10.0, 9.0]})
    dummy.write_json(os.path.join(root, "annotations", split, f"{seq}.json"), {
        "images": images, "annotations": anns,
        "categories": [{"supercategory": "person", "id": 1, "name": "person",
                        "keypoints": POSETRACK_JOINTS, "skeleton": []}]})


JRDB_JOINTS = ["head", "right eye", "left eye", "right shoulder", "center shoulder",
               "left shoulder", "right elbow", "left elbow", "center hip", "right wrist",
               "right hip", "left hip", "left wrist", "right knee", "left knee", "right foot",
               "left foot"]


def jrdb_native():
  """JRDB-Pose as in the JRDB 2022 train download (train_dataset_with_activity): per sequence a
  COCO-style labels/labels_2d_pose_stitched_coco/<sequence>.json (the JRDB toolkit ships one:
  github.com/JRDB-dataset/jrdb_toolkit pose_eval/labels_2d_pose_stitched_coco/; ids restart at
  1 in every file; the image width/height fields say 752 x 480 there, not the panorama's
  size; annotations have track_id, is_crowd, 17 keypoints [x, y, v] with v 0 invisible /
  1 occluded / 2 visible and x, y given for all; no bbox) and the stitched frames
  images/image_stitched/<sequence>/<frame:06d>.jpg (here 64 x 24 instead of 3760 x 480)."""
  root = dummy.fresh(os.path.join(HERE, "jrdb_native"))
  width, height = 64, 24
  n_ann = 0
  for s, (seq, n) in enumerate((("bytes-cafe-2019-02-07_0", 10),
                                ("gates-ai-lab-2019-02-08_0", 2))):
    rng = np.random.default_rng(1200 + s)
    images, anns = [], []
    for f in range(n):
      name = f"image_stitched/{seq}/{f:06d}.jpg"
      images.append({"id": f + 1, "width": 752, "height": 480, "file_name": name,
                     "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0})
      dummy.write_image(os.path.join(root, "images", name), 1200 + 20 * s + f, height, width)
      persons = 2 if s == 0 else 1
      for p in range(persons):
        kp = np.zeros((17, 3))
        x0 = 4 + 30 * p
        kp[:, 0] = rng.uniform(x0, x0 + 20, 17).round(1)
        kp[:, 1] = rng.uniform(2, 21, 17).round(1)
        kp[:, 2] = rng.choice([1, 2], 17, p=[0.3, 0.7])
        if p == 0:
          kp[1, 2] = 0            # right eye invisible (its x, y are still given)
        if s == 0 and f == 3 and p == 1:
          kp[:8, 0] = rng.uniform(1, 3, 8).round(1)    # straddles the 360° seam: joints at
          kp[8:, 0] = rng.uniform(60, 63, 9).round(1)  # both ends of the panorama
        n_ann += 1
        anns.append({"id": 1900 + n_ann, "track_id": p + 1, "image_id": f + 1,
                     "category_id": 1, "is_crowd": 0, "keypoints": kp.reshape(-1).tolist(),
                     "num_keypoints": 17})
    dummy.write_json(
        os.path.join(root, "labels", "labels_2d_pose_stitched_coco", f"{seq}.json"),
        {"licenses": [{"name": "", "id": 0, "url": ""}],
         "info": {"description": "JRDB-Pose", "url": "https://jrdb.erc.monash.edu/",
                  "version": "1.0", "year": "2022"},
         "categories": [{"id": 1, "name": "person", "keypoints": JRDB_JOINTS,
                         "skeleton": []}],
         "images": images, "annotations": anns})


if __name__ == "__main__":
  coco()
  posetrack()
  mpii()
  aic_native()
  halpe_native()
  penn_action_native()
  mhp_native()
  tdpw_native()
  aist_native()
  posetrack_native()
  jrdb_native()
