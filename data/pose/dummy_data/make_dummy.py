"""Writes the pose dummy data (COCO keypoint json, COCO results detections, MPII mmpose json).
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


if __name__ == "__main__":
  coco()
  posetrack()
  mpii()
