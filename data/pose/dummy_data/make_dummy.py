"""Writes the pose dummy data (COCO keypoint json, COCO results detections, MPII mmpose json,
and the publishers' own layouts of AI Challenger, Halpe and Penn Action).
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


if __name__ == "__main__":
  coco()
  posetrack()
  mpii()
  aic_native()
  halpe_native()
  penn_action_native()
