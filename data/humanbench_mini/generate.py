"""Writes humanbench_mini: every task's source tree, in the real datasets' on-disk formats.

    python -m data.humanbench_mini.generate --out=DIR --seed=0 [--size=default|tiny]

Output: DIR/manifest.json (what was written: task, role, builder configs, split sizes) and one
folder per dataset, DIR/<task>/<name>/, which is the ``--manual_dir`` of the builder config
named in ``DATASETS`` (layouts: data/README.md):

    reid/mini_market, reid/mini_dukemtmc      Market-1501: bounding_box_train/ bounding_box_test/
                                              query/, names PID_cCsS_FRAME_NN.jpg
    pose/mini_coco                            COCO: annotations/person_keypoints_{train,val}2017.json
    pose/mini_mpii                            MPII (mmpose): annotations/mpii_{train,val}.json, images/
    parsing/mini_lip                          LIP: data/{train,val}_id.txt, data/{split}_images/,
                                              TrainVal_parsing_annotations/{split}_segmentations/
    parsing/mini_atr                          ATR: {train,val}_id.txt, humanparsing/JPEGImages/,
                                              humanparsing/SegmentationClassAug/
    attributes/mini_pa100k, .../mini_peta     Rethinking-PAR: dataset.pkl, data/<06d>.jpg
    detection/mini_crowdhuman                 CrowdHuman: annotation_{train,val}.odgt, Images/<ID>.jpg
    detection/mini_caltech                    COCO detection: annotations/{train,val}.json, images/
    counting/mini_shanghaitech                ShanghaiTech: part_{A,B}/{train,test}_data/
                                              {images/IMG_n.jpg, ground-truth/GT_IMG_n.mat}

Everything is a pure function of (seed, dataset name, split, index): each image draws from its own
``np.random.default_rng([seed, crc32(name), split, index])``, so the files are byte-identical
across runs and one dataset's content does not depend on which others are generated.
See data/humanbench_mini/README.md for what each dataset is.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import pickle
import sys
import time
import zlib
from typing import Any, Callable

import numpy as np
from PIL import Image

if __package__ in (None, ""):  # run as a script: make `data.humanbench_mini` importable
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.humanbench_mini import draw  # noqa: E402

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "query": 3, "gallery": 4, "meta": 9}


def rng_for(seed: int, name: str, split: str, index: int) -> np.random.Generator:
  """The random stream of one image (or of a dataset's metadata with split='meta')."""
  return np.random.default_rng([seed, zlib.crc32(name.encode()), SPLIT_CODES[split], index])


def save_jpeg(path: str, rgb: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(rgb).save(path, format="JPEG", quality=95)


def save_png(path: str, labels: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(labels, mode="L").save(path, format="PNG", compress_level=6)


# ----------------------------------------------------------------------------------------------
# Scene helpers


def _fits(sk: draw.Skeleton, app: draw.Appearance, hw: tuple[int, int]):
  """The figure's sprite when all of it lies inside an image of size ``hw``, else None."""
  hh, ww = hw
  pts = np.concatenate([sk.joints, sk.head[None] - sk.head_r, sk.head[None] + sk.head_r])
  if pts.min() < 0 or pts[:, 0].max() >= ww or pts[:, 1].max() >= hh:
    return None  # cheap necessary test before rendering
  sprite = draw.render(sk, app)
  x0, y0, x1, y1 = sprite.box()
  return sprite if x0 >= 0 and y0 >= 0 and x1 <= ww and y1 <= hh else None


def _place_figures(rng: np.random.Generator, scene: draw.Scene, n: int, heights: tuple[float, float],
                   arm_range: float, inside: bool, pelvis_y: tuple[float, float] = (0.4, 0.8),
                   tries: int = 20):
  """Adds ``n`` random figures in depth order (feet lower in the image = closer = drawn later).

  With ``inside`` every figure lies wholly in the image (placements are redrawn up to ``tries``
  times, then the figure is shrunk by 15 % and tried again). Returns, in drawing order,
  [(instance id, skeleton, appearance, sprite)]; the sprite (the figure alone, for its amodal
  box) only with ``inside``, else None.
  """
  hh, ww = scene.hw
  figs = []
  for _ in range(n):
    app = draw.random_appearance(rng)
    pose = draw.random_pose(rng, arm_range)
    height = float(rng.uniform(*heights))
    sprite = None
    while True:
      for _ in range(tries):
        sk = draw.skeleton(pose, height, (float(rng.uniform(0.1, 0.9)) * ww,
                                          float(rng.uniform(*pelvis_y)) * hh))
        if not inside or (sprite := _fits(sk, app, (hh, ww))) is not None:
          break
      else:
        height *= 0.85
        continue
      break
    figs.append((float(sk.joints[15:17, 1].max()), sk, app, sprite))
  figs.sort(key=lambda f: f[0])
  return [(scene.add(sk, app), sk, app, sprite) for _, sk, app, sprite in figs]


def _style(rng: np.random.Generator, strength: float = 1.0) -> dict[str, Any]:
  """A camera: colour gains, brightness, blur radius (pixels), scale of the figure, backdrop."""
  return {"tint": tuple(float(v) for v in rng.uniform(1 - 0.15 * strength, 1 + 0.15 * strength, 3)),
          "brightness": float(rng.uniform(1 - 0.2 * strength, 1 + 0.2 * strength)),
          "blur": float(rng.uniform(0.0, 0.8 * strength)),
          "scale": float(rng.uniform(0.82, 1.0)),
          "base": tuple(int(v) for v in rng.integers(60, 200, 3))}


def _person_crop(rng: np.random.Generator, hw: tuple[int, int], app: draw.Appearance,
                 cam: dict[str, Any]) -> tuple[np.ndarray, draw.Scene]:
  """One pedestrian crop as ReID and attribute sets have: full body, centred, camera style."""
  h, w = hw
  scene = draw.Scene(draw.background(rng, h, w, base=np.asarray(cam["base"]) + rng.integers(
      -12, 13, 3), clutter=2))
  height = h * cam["scale"] * float(rng.uniform(0.78, 0.86))
  pose = draw.random_pose(rng, arm_range=math.radians(35))
  px = w / 2 + float(rng.uniform(-0.06, 0.06)) * w
  py = h / 2 + float(rng.uniform(-0.03, 0.05)) * h
  scene.add(draw.skeleton(pose, height, (px, py)), app)
  rgb = draw.camera_effect(scene.rgb, cam["tint"], cam["brightness"], cam["blur"])
  return rgb, scene


# ----------------------------------------------------------------------------------------------
# ReID: Market-1501 layout


def write_reid(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """Market-1501 tree. Train and test identities are disjoint; every identity is seen by
  >= 2 cameras; each (test id, camera) gives one query, its other images go to the gallery with
  distractors (pid 0000) and junk crops (pid -1), as in the real set."""
  meta = rng_for(seed, name, "meta", 0)
  n_cams = p["cameras"]
  cams = [_style(meta, p.get("camera_strength", 1.0)) for _ in range(n_cams)]
  n_ids = p["train_ids"] + p["test_ids"]
  pids = np.sort(meta.choice(np.arange(1, 1502), n_ids, replace=False))
  is_train = np.zeros(n_ids, bool)
  is_train[meta.choice(n_ids, p["train_ids"], replace=False)] = True
  counts = {"bounding_box_train": 0, "query": 0, "bounding_box_test": 0}
  for k, pid in enumerate(pids):
    rng = rng_for(seed, name, "train" if is_train[k] else "test", int(pid))
    app = draw.random_appearance(rng)
    cam_ids = np.sort(rng.choice(n_cams, int(rng.integers(2, p["cams_per_id"] + 1)),
                                 replace=False)) + 1
    for c in cam_ids:
      seq = int(rng.integers(1, 7))
      frame = int(rng.integers(1, 2000)) * 25
      n_img = int(rng.integers(p["images_per_cam"][0], p["images_per_cam"][1] + 1))
      query_at = int(rng.integers(n_img))
      for i in range(n_img):
        rgb, _ = _person_crop(rng, p["crop"], app, cams[c - 1])
        frame += int(rng.integers(5, 60))
        fname = f"{pid:04d}_c{c}s{seq}_{frame:06d}_{1 + int(rng.integers(0, 3)):02d}.jpg"
        folder = ("bounding_box_train" if is_train[k] else
                  "query" if i == query_at else "bounding_box_test")
        save_jpeg(os.path.join(out, folder, fname), rgb)
        counts[folder] += 1
  # Distractors (0000: a person of no test identity) and junk (-1: a bad detection, here a crop
  # of background with at most a sliver of a figure) in the gallery, as Market-1501 has.
  for kind, n in (("0000", p["distractors"]), ("-1", p["junk"])):
    for i in range(n):
      rng = rng_for(seed, name, "gallery", (1 if kind == "-1" else 2) * 100000 + i)
      c = int(rng.integers(1, n_cams + 1))
      if kind == "0000":
        rgb, _ = _person_crop(rng, p["crop"], draw.random_appearance(rng), cams[c - 1])
      else:
        rgb = draw.camera_effect(draw.background(rng, *p["crop"], base=cams[c - 1]["base"]),
                                 cams[c - 1]["tint"], cams[c - 1]["brightness"])
      # Frame numbers unique per image (no two distractors can share a name).
      frame = 1000 * (i + 1) + int(rng.integers(0, 1000))
      fname = f"{kind}_c{c}s{int(rng.integers(1, 7))}_{frame:06d}_00.jpg"
      save_jpeg(os.path.join(out, "bounding_box_test", fname), rgb)
      counts["bounding_box_test"] += 1
  return {"identities": {"train": int(is_train.sum()), "test": int((~is_train).sum())},
          "images": counts, "cameras": n_cams, "crop_hw": list(p["crop"])}


# ----------------------------------------------------------------------------------------------
# Pose: COCO keypoint JSON, MPII (mmpose json list)


def _rle(mask: np.ndarray) -> dict[str, Any]:
  from pycocotools import mask as mask_util  # only COCO pose needs it
  rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
  return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _write_json(path: str, obj: Any) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def _pose_scene(rng: np.random.Generator, p: dict[str, Any]):
  """A scene of ``p['persons']`` figures, some partly out of frame or occluded."""
  h, w = p["image_hw"]
  scene = draw.Scene(draw.background(rng, h, w))
  n = int(rng.integers(p["persons"][0], p["persons"][1] + 1))
  figs = _place_figures(rng, scene, n, p["heights"], math.radians(150), inside=False,
                        pelvis_y=p["pelvis_y"])
  return scene, figs


def write_pose(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """COCO keypoint tree (annotations/person_keypoints_{train,val}2017.json, {train,val}2017/).

  Per person: ``bbox`` is the tight xywh box of its *visible* pixels (COCO's convention: the box
  of the instance mask), ``segmentation`` that mask as RLE, ``area`` its pixel count, and
  ``keypoints`` flat (x, y, v) with v=2 on visible pixels, v=1 hidden by another figure, and
  (0, 0, 0) outside the image. Fully hidden figures get no annotation.
  """
  h, w = p["image_hw"]
  summary = {}
  ann_id = 0
  for split, folder, n_images in (("train", "train2017", p["train"]), ("val", "val2017", p["val"])):
    images, anns = [], []
    for i in range(n_images):
      rng = rng_for(seed, name, split, i)
      image_id = (1 if split == "train" else 500000) + i
      scene, figs = _pose_scene(rng, p)
      fname = f"{image_id:012d}.jpg"
      save_jpeg(os.path.join(out, folder, fname), scene.rgb)
      images.append({"id": image_id, "file_name": fname, "height": h, "width": w, "license": 1})
      for inst, sk, _, _ in figs:
        mask = scene.instance == inst
        box = draw.mask_box(mask)
        if box is None:
          continue
        v = draw.keypoint_visibility(scene, inst, sk.joints)
        kps = np.concatenate([np.where(v[:, None] > 0, sk.joints, 0.0), v[:, None]], 1)
        ann_id += 1
        anns.append({
            "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
            "area": int(mask.sum()), "segmentation": _rle(mask),
            "num_keypoints": int((v > 0).sum()),
            "keypoints": [round(float(x), 2) if k % 3 < 2 else int(x)
                          for k, x in enumerate(kps.reshape(-1))]})
    _write_json(os.path.join(out, "annotations", f"person_keypoints_{folder}.json"), {
        "info": {"description": f"humanbench_mini {name} (synthetic)", "version": "1.0",
                 "year": 2024},
        "licenses": [{"id": 1, "name": "CC-BY-4.0 (synthetic, generated)", "url": ""}],
        "images": images, "annotations": anns,
        "categories": [{"supercategory": "person", "id": 1, "name": "person",
                        "keypoints": list(draw.KEYPOINT_NAMES),
                        "skeleton": [list(s) for s in draw.COCO_SKELETON]}]})
    summary[split] = {"images": len(images), "persons": len(anns)}
  return {"splits": summary, "image_hw": [h, w]}


# MPII joint order as COCO joints (a pair = their midpoint); 6-9 are computed from the skeleton.
MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder",
               "l_elbow", "l_wrist")
_MPII_FROM_COCO = {0: 16, 1: 14, 2: 12, 3: 11, 4: 13, 5: 15, 10: 10, 11: 8, 12: 6, 13: 5, 14: 7,
                   15: 9}


def mpii_joints(sk: draw.Skeleton) -> np.ndarray:
  """The 16 MPII joints of a skeleton, [16, 2] 0-based pixels."""
  out = np.zeros((16, 2))
  for m, c in _MPII_FROM_COCO.items():
    out[m] = sk.joints[c]
  up = (sk.head - sk.neck) / max(np.linalg.norm(sk.head - sk.neck), 1e-6)
  out[6] = (sk.joints[11] + sk.joints[12]) / 2
  out[7] = (sk.joints[5] + sk.joints[6]) / 2
  out[8] = sk.neck
  out[9] = sk.head + up * sk.head_r
  return out


def write_mpii(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """MPII tree as mmpose ships it: annotations/mpii_{train,val}.json (a list of
  {image, center, scale, joints [16][2], joints_vis [16]}) and images/.

  Coordinates are MATLAB 1-based like the real file. ``joints_vis`` = 1 for joints inside the
  image (MPII annotates occluded joints too), else 0 with joints (-1, -1). ``scale`` is the
  person's height / 200 px and ``center`` the body centre moved up by 15 * scale, the
  convention that readers undo (y += 15 * scale, scale *= 1.25). The val split also gets
  annotations/mpii_gt_val.mat as mmpose ships it for PCKh: ``headboxes_src`` [2, 2, N] (the
  head disc's bounding square, corners x1y1 / x2y2, 1-based), ``pos_gt_src`` [16, 2, N] and
  ``jnt_visible`` [16, N], one column per json record in order.
  """
  h, w = p["image_hw"]
  summary = {}
  for split, n_images in (("train", p["train"]), ("val", p["val"])):
    entries, head_boxes = [], []
    for i in range(n_images):
      rng = rng_for(seed, name, split, i)
      scene, figs = _pose_scene(rng, p)
      fname = f"{int(rng.integers(1, 10**8)):09d}.jpg"
      save_jpeg(os.path.join(out, "images", fname), scene.rgb)
      for _, sk, _, _ in figs:
        joints = mpii_joints(sk)
        vis = ((joints[:, 0] >= 0) & (joints[:, 0] < w) & (joints[:, 1] >= 0)
               & (joints[:, 1] < h)).astype(int)
        if not vis.any():
          continue
        top, bottom = joints[9, 1], float(sk.joints[15:17, 1].max())
        scale = (bottom - top) / 200.0
        centre = np.array([(joints[:, 0].min() + joints[:, 0].max()) / 2, (top + bottom) / 2])
        entries.append({
            "image": fname, "scale": round(scale, 4),
            "center": [round(float(centre[0]) + 1, 2), round(float(centre[1]) + 1 - 15 * scale, 2)],
            "joints": [[round(float(x) + 1, 2), round(float(y) + 1, 2)] if v else [-1.0, -1.0]
                       for (x, y), v in zip(joints, vis)],
            "joints_vis": [int(v) for v in vis]})
        head_boxes.append(np.stack([sk.head - sk.head_r, sk.head + sk.head_r]) + 1)
    _write_json(os.path.join(out, "annotations", f"mpii_{split}.json"), entries)
    if split == "val":
      savemat_deterministic(os.path.join(out, "annotations", "mpii_gt_val.mat"), {
          "headboxes_src": np.stack(head_boxes, axis=-1).reshape(2, 2, -1),
          "pos_gt_src": np.stack([e["joints"] for e in entries], axis=-1),
          "jnt_visible": np.stack([e["joints_vis"] for e in entries], axis=-1)})
    summary[split] = {"images": n_images, "persons": len(entries)}
  return {"splits": summary, "image_hw": [h, w], "joints": list(MPII_JOINTS)}


# ----------------------------------------------------------------------------------------------
# Parsing: LIP and ATR layouts

_PARSING_LAYOUTS = {
    # layout: (id list, image, label) path patterns; class map; class names; flip pairs
    "lip": ("data/{split}_id.txt", "data/{split}_images/{id}.jpg",
            "TrainVal_parsing_annotations/{split}_segmentations/{id}.png", draw.to_lip,
            draw.LIP_CLASSES, draw.LIP_FLIP_PAIRS),
    "atr": ("{split}_id.txt", "humanparsing/JPEGImages/{id}.jpg",
            "humanparsing/SegmentationClassAug/{id}.png", draw.to_atr, draw.ATR_CLASSES,
            draw.ATR_FLIP_PAIRS),
}


def write_parsing(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """Parsing tree in LIP or ATR layout (``p['layout']``): images and PNG class maps drawn with
  the same geometry. Some figures are cut by the image border, as LIP's partial crops are."""
  ids_pat, img_pat, lab_pat, to_classes, classes, pairs = _PARSING_LAYOUTS[p["layout"]]
  h, w = p["image_hw"]
  summary = {}
  for split, n_images in (("train", p["train"]), ("val", p["val"])):
    ids = []
    for i in range(n_images):
      rng = rng_for(seed, name, split, i)
      scene = draw.Scene(draw.background(rng, h, w))
      n = int(rng.integers(p["persons"][0], p["persons"][1] + 1))
      _place_figures(rng, scene, n, p["heights"], math.radians(150), inside=False,
                     pelvis_y=p["pelvis_y"])
      sid = f"{i + 1:06d}_{int(rng.integers(100000, 999999))}"
      ids.append(sid)
      save_jpeg(os.path.join(out, img_pat.format(split=split, id=sid)), scene.rgb)
      save_png(os.path.join(out, lab_pat.format(split=split, id=sid)), to_classes(scene.labels))
    path = os.path.join(out, ids_pat.format(split=split))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write("".join(s + "\n" for s in ids))
    summary[split] = {"images": n_images}
  return {"splits": summary, "image_hw": [h, w], "classes": list(classes),
          "flip_pairs": [list(q) for q in pairs]}


# ----------------------------------------------------------------------------------------------
# Attributes: Rethinking-PAR dataset.pkl


def write_attributes(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """Rethinking-PAR tree: ``dataset.pkl`` (a plain dict with the EasyDict's keys) and
  ``data/<06d>.jpg`` pedestrian crops whose labels are read off the drawn appearance.

  ``label`` holds every attribute of ``draw.ATTRIBUTE_NAMES``; ``label_idx.eval`` lists the
  columns evaluated (``p['eval']``, default all), as PETA keeps 35 of its 105. ``partitions`` > 1
  stores ``partition[split]`` as a list of index arrays (PETA/RAP style, readers take the
  first), else as one array (PA-100K style).
  """
  names = list(draw.ATTRIBUTE_NAMES)
  eval_idx = [names.index(a) for a in p.get("eval", names)]
  n_tv, n_test = p["trainval"], p["test"]
  meta = rng_for(seed, name, "meta", 0)
  cams = [_style(meta, 0.6) for _ in range(4)]
  image_names, labels = [], []
  for i in range(n_tv + n_test):
    rng = rng_for(seed, name, "train" if i < n_tv else "test", i)
    app = draw.random_appearance(rng)
    rgb, _ = _person_crop(rng, p["crop"], app, cams[int(rng.integers(len(cams)))])
    fname = f"{i + 1:06d}.jpg"
    save_jpeg(os.path.join(out, "data", fname), rgb)
    attrs = app.attributes()
    image_names.append(fname)
    labels.append([attrs[a] for a in names])
  label = np.asarray(labels, np.int64)
  n_part = p.get("partitions", 1)

  def partition(idx: np.ndarray):
    if n_part == 1:
      return idx
    # Further partitions re-split the same images, as PETA's five random splits do.
    return [idx] + [np.sort(meta.permutation(n_tv + n_test)[:len(idx)])
                    for _ in range(n_part - 1)]

  n_train = int(round(0.8 * n_tv))
  part = {"train": partition(np.arange(n_train)), "val": partition(np.arange(n_train, n_tv)),
          "trainval": partition(np.arange(n_tv)), "test": partition(np.arange(n_tv, n_tv + n_test))}
  tv = label[:n_tv]
  dataset = {"description": name, "reorder": "group_order", "root": "data",
             "image_name": image_names, "label": label, "attr_name": names,
             "label_idx": {"eval": eval_idx, "color": [], "extra": []},
             "partition": part, "weight_train": [tv[:n_train].mean(0)] * n_part,
             "weight_trainval": [tv.mean(0)] * n_part}
  with open(os.path.join(out, "dataset.pkl"), "wb") as f:
    pickle.dump(dataset, f, protocol=4)
  return {"images": {"trainval": n_tv, "test": n_test},
          "attributes_evaluated": [names[k] for k in eval_idx],
          "positive_ratio_trainval": [round(float(r), 4) for r in tv.mean(0)[eval_idx]],
          "crop_hw": list(p["crop"])}


# ----------------------------------------------------------------------------------------------
# Detection: CrowdHuman .odgt, COCO detection JSON (Caltech)


def _xywh(box) -> list[int]:
  return [int(box[0]), int(box[1]), int(box[2] - box[0]), int(box[3] - box[1])]


def _crowd_region(rng: np.random.Generator, scene: draw.Scene) -> tuple[int, int, int, int]:
  """A far-away crowd of tiny figures, to be annotated as one ignore region."""
  h, w = scene.hw
  rw, rh = int(rng.integers(w // 5, w // 3)), int(rng.integers(h // 10, h // 6))
  x0, y0 = int(rng.integers(0, w - rw)), int(rng.integers(h // 10, h // 2 - rh))
  ids = []
  for _ in range(int(rng.integers(8, 20))):
    height = float(rng.uniform(8, 12))
    sk = draw.skeleton(draw.random_pose(rng, 0.5), height,
                       (x0 + float(rng.uniform(0.1, 0.9)) * rw, y0 + rh - 0.5 * height))
    ids.append(scene.add(sk, draw.random_appearance(rng)))
  return draw.mask_box(np.isin(scene.instance, ids))


def _poster(rng: np.random.Generator, scene: draw.Scene) -> tuple[int, int, int, int]:
  """A framed picture of a person on the wall: looks like a person, is not one."""
  h, w = scene.hw
  ph = int(rng.integers(h // 4, h // 2))
  pw = int(ph * 0.6)
  x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, h // 2 - ph // 3))
  y1 = min(h, y0 + ph)
  scene.paint_rect((x0, y0, x0 + pw, y1), rng.integers(20, 60, 3))
  scene.paint_rect((x0 + 2, y0 + 2, x0 + pw - 2, y1 - 2), rng.integers(180, 250, 3))
  sk = draw.skeleton(draw.random_pose(rng, 0.6), 0.75 * (y1 - y0), (x0 + pw / 2, (y0 + y1) / 2))
  inst = scene.add(sk, draw.random_appearance(rng))
  return draw.mask_box(scene.instance == inst)  # nothing is in front of it yet: amodal box


def _detection_scene(rng: np.random.Generator, p: dict[str, Any]):
  """A street scene: maybe a far crowd and a poster, then people wholly inside the image.

  Returns (rgb [H, W, 3] uint8, objects): each object a dict with ``kind`` ('person' |
  'crowd' | 'poster'), ``box`` (x0, y0, x1, y1) amodal, and for persons ``vbox`` (visible
  pixels' box), ``hbox`` (head), ``visible`` (fraction of the figure not hidden), ``head_hidden``.
  People hidden entirely are left out.
  """
  h, w = p["image_hw"]
  scene = draw.Scene(draw.background(rng, h, w, clutter=4))
  objects = []
  if rng.random() < p["p_crowd"]:
    objects.append({"kind": "crowd", "box": _crowd_region(rng, scene)})
  if rng.random() < p["p_poster"]:
    objects.append({"kind": "poster", "box": _poster(rng, scene)})
  n = int(rng.integers(p["persons"][0], p["persons"][1] + 1))
  for inst, sk, app, sprite in _place_figures(rng, scene, n, p["heights"], math.radians(120),
                                              inside=True, pelvis_y=(0.4, 0.75)):
    visible = scene.instance == inst
    vbox = draw.mask_box(visible)
    if vbox is None:
      continue
    r = sk.head_r
    top = sk.head[1] - r * (1.6 if app.hat is not None else 1.1)
    objects.append({
        "kind": "person", "box": sprite.box(), "vbox": vbox,
        "hbox": (max(0.0, sk.head[0] - r), max(0.0, top), min(w, sk.head[0] + r + 1),
                 min(h, sk.head[1] + r + 1)),
        "visible": float(visible.sum()) / float(sprite.mask.sum()),
        "head_hidden": bool(scene.instance[int(sk.head[1]), int(sk.head[0])] != inst)})
  return scene.rgb, objects


def write_detection(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """CrowdHuman tree: annotation_{train,val}.odgt (one JSON per line) and Images/<ID>.jpg.

  Per person ('person' tag): ``fbox`` the full (amodal) body box, ``vbox`` the box of its
  visible pixels, ``hbox`` the head box, ``extra.occ`` whether less than 90 % is visible and
  ``extra.ignore`` = 1 when less than 15 % is. A far crowd is a 'mask' region (ignore); a
  poster is 'person' with ``extra.ignore`` = 1. All boxes are integer xywh inside the image.
  """
  summary = {}
  for split, n_images in (("train", p["train"]), ("val", p["val"])):
    lines, n_person, n_ignore = [], 0, 0
    for i in range(n_images):
      rng = rng_for(seed, name, split, i)
      rgb, objects = _detection_scene(rng, p)
      gt = []
      for o in objects:
        if o["kind"] == "crowd":
          gt.append({"tag": "mask", "fbox": _xywh(o["box"]), "extra": {"ignore": 1}})
        elif o["kind"] == "poster":
          b = _xywh(o["box"])
          gt.append({"tag": "person", "fbox": b, "vbox": b, "hbox": b,
                     "head_attr": {"ignore": 1, "occ": 0, "unsure": 0},
                     "extra": {"box_id": len(gt), "ignore": 1, "occ": 0}})
        else:
          ignore = int(o["visible"] < 0.15)
          gt.append({"tag": "person", "fbox": _xywh(o["box"]), "vbox": _xywh(o["vbox"]),
                     "hbox": _xywh(o["hbox"]),
                     "head_attr": {"ignore": 0, "occ": int(o["head_hidden"]), "unsure": 0},
                     "extra": {"box_id": len(gt), "occ": int(o["visible"] < 0.9),
                               "ignore": ignore}})
          n_person += 1
          n_ignore += ignore
      image_name = f"{(1 if split == 'train' else 5) * 100000 + i},{rng.bytes(7).hex()}"
      save_jpeg(os.path.join(out, "Images", f"{image_name}.jpg"), rgb)
      lines.append(json.dumps({"ID": image_name, "gtboxes": gt}))
    with open(os.path.join(out, f"annotation_{split}.odgt"), "w") as f:
      f.write("".join(line + "\n" for line in lines))
    summary[split] = {"images": n_images, "persons": n_person, "persons_ignored": n_ignore}
  return {"splits": summary, "image_hw": list(p["image_hw"])}


def write_detection_coco(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """Caltech-style COCO detection tree: annotations/{train,val}.json and images/.

  Persons are category 1 with ``bbox`` the full box, ``vis_bbox`` the visible one and
  ``ignore`` = 1 when less than 35 % is visible (Caltech's "reasonable" subset drops heavier
  occlusion); a far crowd is category 1 with ``iscrowd`` = 1; a poster is category 2
  ('person-like'). Readers treat all but plain category-1 boxes as ignore regions.
  """
  h, w = p["image_hw"]
  summary = {}
  ann_id = 0
  for s_idx, (split, n_images) in enumerate((("train", p["train"]), ("val", p["val"]))):
    images, anns = [], []
    for i in range(n_images):
      rng = rng_for(seed, name, split, i)
      rgb, objects = _detection_scene(rng, p)
      image_id = s_idx * 100000 + i + 1
      fname = f"set{s_idx:02d}_V{i // 100:03d}_I{i % 100:05d}.jpg"
      save_jpeg(os.path.join(out, "images", fname), rgb)
      images.append({"id": image_id, "file_name": fname, "height": h, "width": w})
      for o in objects:
        ann_id += 1
        b = _xywh(o["box"])
        a = {"id": ann_id, "image_id": image_id, "bbox": b, "area": b[2] * b[3],
             "category_id": 2 if o["kind"] == "poster" else 1,
             "iscrowd": int(o["kind"] == "crowd"), "ignore": 0}
        if o["kind"] == "person":
          a["vis_bbox"] = _xywh(o["vbox"])
          a["ignore"] = int(o["visible"] < 0.35)
        anns.append(a)
    _write_json(os.path.join(out, "annotations", f"{split}.json"), {
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "person-like"}]})
    summary[split] = {"images": n_images,
                      "persons": sum(a["category_id"] == 1 and not a["iscrowd"] for a in anns),
                      "ignore_regions": sum(a["category_id"] != 1 or a["iscrowd"] or a["ignore"]
                                            for a in anns)}
  return {"splits": summary, "image_hw": [h, w]}


# ----------------------------------------------------------------------------------------------
# Counting: ShanghaiTech layout


def savemat_deterministic(path: str, mdict: dict[str, Any]) -> None:
  """scipy.io.savemat, minus the creation time it writes into the 116-byte text header (so the
  same content gives the same bytes)."""
  import scipy.io
  buf = io.BytesIO()
  scipy.io.savemat(buf, mdict, format="5", do_compression=False, oned_as="row")
  data = bytearray(buf.getvalue())
  text = b"MATLAB 5.0 MAT-file, written by humanbench_mini"
  data[:116] = text + b" " * (116 - len(text))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(bytes(data))


def image_info(points: np.ndarray) -> np.ndarray:
  """The 'image_info' value of a ShanghaiTech GT file: a 1x1 cell holding a 1x1 struct with
  'location' ([N, 2] float64, (x, y) pixels) and 'number' (1x1 float64), as the real files."""
  struct = np.empty((1, 1), dtype=[("location", object), ("number", object)])
  struct[0, 0]["location"] = np.asarray(points, np.float64).reshape(-1, 2)
  struct[0, 0]["number"] = np.array([[float(len(points))]])
  cell = np.empty((1, 1), dtype=object)
  cell[0, 0] = struct
  return cell


def write_counting(out: str, name: str, seed: int, p: dict[str, Any]) -> dict[str, Any]:
  """ShanghaiTech tree with a dense (part_A) and a sparse (part_B) flavour.

  People stand on a ground plane: their height grows linearly with the image row of their feet
  (perspective). The head point of a figure is annotated when the head centre lies in the image
  on the figure's own pixels (heads hidden behind someone closer are not counted, as annotators
  cannot see them), so ``number`` equals the number of points.
  """
  summary = {}
  for part, q in p["parts"].items():
    h, w = q["image_hw"]
    for split, folder, n_images in (("train", "train_data", q["train"]),
                                    ("test", "test_data", q["test"])):
      counts = []
      for i in range(n_images):
        rng = rng_for(seed, f"{name}/{part}", split, i)
        scene = draw.Scene(draw.background(rng, h, w, clutter=2))
        n = int(rng.integers(q["people"][0], q["people"][1] + 1))
        feet = np.sort(rng.uniform(q["horizon"] * h, 1.1 * h, n))
        figs = []
        for fy in feet:  # far to near
          t = (fy - q["horizon"] * h) / ((1.1 - q["horizon"]) * h)
          height = q["heights"][0] + t * (q["heights"][1] - q["heights"][0])
          fx = float(rng.uniform(-0.05, 1.05)) * w
          sk = draw.skeleton(draw.random_pose(rng, 0.6), height, (fx, fy - 0.48 * height))
          figs.append((scene.add(sk, draw.random_appearance(rng)), sk))
        pts = []
        for inst, sk in figs:
          x, y = sk.head
          if 0 <= x < w and 0 <= y < h and scene.instance[int(y), int(x)] == inst:
            pts.append((float(x), float(y)))  # pixels, as readers index the image
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        base = os.path.join(out, part, folder)
        save_jpeg(os.path.join(base, "images", f"IMG_{i + 1}.jpg"), scene.rgb)
        savemat_deterministic(os.path.join(base, "ground-truth", f"GT_IMG_{i + 1}.mat"),
                              {"image_info": image_info(pts)})
        counts.append(len(pts))
      summary[f"{part}/{split}"] = {"images": n_images, "min_count": int(min(counts)),
                                    "max_count": int(max(counts)),
                                    "mean_count": round(float(np.mean(counts)), 1)}
  return {"splits": summary}


# ----------------------------------------------------------------------------------------------
# The dataset list


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """One generated dataset: what it is, how it is built, and its sizes per generator size."""
  name: str
  task: str                       # reid | pose | parsing | attributes | detection | counting
  role: str                       # pretrain | downstream
  builds: tuple[str, ...]         # data/build.py <builder>/<config> names its folder feeds
  writer: Callable[[str, str, int, dict[str, Any]], dict[str, Any]]
  params: dict[str, Any]          # shared parameters
  sizes: dict[str, dict[str, Any]]  # per size: parameters that change with it

  def resolved(self, size: str) -> dict[str, Any]:
    if size not in self.sizes:
      raise ValueError(f"unknown size {size!r}; use one of {sorted(self.sizes)}")
    return {**self.params, **self.sizes[size]}


# Pretraining sets mirror HumanBench's in-dataset sets (Market-1501, COCO, LIP, PA-100K,
# CrowdHuman), downstream sets its out-of-dataset ones (MPII, ATR, PETA, Caltech; DukeMTMC's
# Market layout stands in for SenseReID, which has no train split) and ShanghaiTech A/B. Each
# uses its model's source layout, so all build side by side into one TFDS data_dir.
_REID = {"crop": (128, 64)}
DATASETS = (
    DatasetSpec("mini_market", "reid", "pretrain", ("reid/market1501",), write_reid,
                {**_REID, "cameras": 6, "cams_per_id": 4, "camera_strength": 1.0},
                {"default": {"train_ids": 50, "test_ids": 30, "images_per_cam": (2, 3),
                             "distractors": 10, "junk": 5},
                 "tiny": {"train_ids": 6, "test_ids": 6, "images_per_cam": (2, 2),
                          "distractors": 2, "junk": 2}}),
    DatasetSpec("mini_dukemtmc", "reid", "downstream", ("reid/dukemtmc",), write_reid,
                {**_REID, "cameras": 4, "cams_per_id": 3, "camera_strength": 1.3},
                {"default": {"train_ids": 30, "test_ids": 25, "images_per_cam": (2, 3),
                             "distractors": 8, "junk": 4},
                 "tiny": {"train_ids": 5, "test_ids": 6, "images_per_cam": (2, 2),
                          "distractors": 2, "junk": 2}}),
    DatasetSpec("mini_coco", "pose", "pretrain", ("pose/coco",), write_pose,
                {"image_hw": (128, 128), "persons": (1, 3), "heights": (60, 120),
                 "pelvis_y": (0.35, 0.75)},
                {"default": {"train": 300, "val": 60}, "tiny": {"train": 10, "val": 5}}),
    DatasetSpec("mini_mpii", "pose", "downstream", ("pose/mpii",), write_mpii,
                {"image_hw": (128, 128), "persons": (1, 2), "heights": (80, 130),
                 "pelvis_y": (0.45, 0.65)},
                {"default": {"train": 150, "val": 50}, "tiny": {"train": 6, "val": 4}}),
    DatasetSpec("mini_lip", "parsing", "pretrain", ("parsing/lip",), write_parsing,
                {"layout": "lip", "image_hw": (128, 96), "persons": (1, 1), "heights": (95, 125),
                 "pelvis_y": (0.5, 0.62)},
                {"default": {"train": 300, "val": 60}, "tiny": {"train": 10, "val": 5}}),
    DatasetSpec("mini_atr", "parsing", "downstream", ("parsing/atr",), write_parsing,
                {"layout": "atr", "image_hw": (128, 128), "persons": (1, 2), "heights": (80, 120),
                 "pelvis_y": (0.45, 0.65)},
                {"default": {"train": 150, "val": 50}, "tiny": {"train": 6, "val": 4}}),
    DatasetSpec("mini_pa100k", "attributes", "pretrain", ("attributes/pa100k",),
                write_attributes, {"crop": (128, 64), "partitions": 1},
                {"default": {"trainval": 500, "test": 100}, "tiny": {"trainval": 40, "test": 20}}),
    DatasetSpec("mini_peta", "attributes", "downstream", ("attributes/peta",), write_attributes,
                {"crop": (128, 64), "partitions": 2,
                 "eval": ("hat", "bag", "long_sleeve", "female", "stripes", "upper_red",
                          "upper_blue", "upper_black", "lower_black", "lower_blue")},
                {"default": {"trainval": 250, "test": 80}, "tiny": {"trainval": 30, "test": 15}}),
    DatasetSpec("mini_crowdhuman", "detection", "pretrain", ("detection/crowdhuman",),
                write_detection,
                {"image_hw": (192, 256), "persons": (3, 8), "heights": (50, 150),
                 "p_crowd": 0.4, "p_poster": 0.3},
                {"default": {"train": 150, "val": 40}, "tiny": {"train": 6, "val": 3}}),
    DatasetSpec("mini_caltech", "detection", "downstream", ("detection/caltech",),
                write_detection_coco,
                {"image_hw": (160, 224), "persons": (1, 5), "heights": (40, 120),
                 "p_crowd": 0.3, "p_poster": 0.3},
                {"default": {"train": 80, "val": 30}, "tiny": {"train": 4, "val": 3}}),
    DatasetSpec("mini_shanghaitech", "counting", "downstream",
                ("counting/shanghaitech_a", "counting/shanghaitech_b"), write_counting, {},
                {"default": {"parts": {
                    "part_A": {"image_hw": (192, 256), "people": (40, 250), "heights": (7, 22),
                               "horizon": 0.15, "train": 30, "test": 15},
                    "part_B": {"image_hw": (192, 256), "people": (10, 60), "heights": (14, 40),
                               "horizon": 0.3, "train": 30, "test": 15}}},
                 "tiny": {"parts": {
                     "part_A": {"image_hw": (96, 128), "people": (30, 80), "heights": (6, 14),
                                "horizon": 0.15, "train": 3, "test": 2},
                     "part_B": {"image_hw": (96, 128), "people": (10, 25), "heights": (10, 24),
                                "horizon": 0.3, "train": 3, "test": 2}}}}),
)
SIZES = ("default", "tiny")


def spec(name: str) -> DatasetSpec:
  for d in DATASETS:
    if d.name == name:
      return d
  raise KeyError(f"unknown humanbench_mini dataset {name!r}; known: {[d.name for d in DATASETS]}")


def dataset_dir(out: str, d: DatasetSpec) -> str:
  """The folder a dataset is written to (the builder's manual_dir)."""
  return os.path.join(out, d.task, d.name)


def generate(out: str, seed: int = 0, size: str = "default",
             only: tuple[str, ...] | None = None, verbose: bool = False) -> dict[str, Any]:
  """Writes the datasets (all, or those named in ``only``) under ``out`` and a manifest.json.

  Returns the manifest: {"seed", "size", "datasets": {name: {task, role, builds, path,
  summary}}}. Existing files of a dataset are overwritten, not cleared first.
  """
  if size not in SIZES:
    raise ValueError(f"unknown size {size!r}; use one of {SIZES}")
  chosen = [spec(n) for n in only] if only else list(DATASETS)
  manifest = {"seed": seed, "size": size, "datasets": {}}
  for d in chosen:
    t0 = time.perf_counter()
    path = dataset_dir(out, d)
    os.makedirs(path, exist_ok=True)
    summary = d.writer(path, d.name, seed, d.resolved(size))
    seconds = time.perf_counter() - t0
    manifest["datasets"][d.name] = {
        "task": d.task, "role": d.role, "builds": list(d.builds),
        "path": os.path.relpath(path, out), "summary": summary}
    if verbose:
      print(f"{d.name:>16s} ({d.task}, {d.role}): {seconds:5.1f} s  {json.dumps(summary)[:120]}")
  with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=True)
  return manifest


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True, help="output folder (created)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--size", choices=SIZES, default="default")
  parser.add_argument("--only", default="", help="comma-separated dataset names (default: all)")
  args = parser.parse_args(argv)
  t0 = time.perf_counter()
  only = tuple(s for s in args.only.split(",") if s) or None
  generate(args.out, args.seed, args.size, only, verbose=True)
  print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
  main()
