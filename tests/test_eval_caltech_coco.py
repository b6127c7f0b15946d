"""Caltech heavy-occlusion MR^-2 and COCO keypoint AP end to end (builder -> eval transform ->
program evaluator), on tiny hand-written sources and on humanbench_mini data.

Expected values come from the source annotations (json) with NumPy, independently of the
builders and transforms.
"""
import json
import os

import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import dummy  # noqa: E402
from data.humanbench_mini import generate  # noqa: E402
from path_jax import evaluate as eval_lib  # noqa: E402
from path_jax.input import eval as eval_input  # noqa: E402
from path_jax.input import sources  # noqa: E402
from path_jax.tasks.detection import transforms as det_transforms  # noqa: E402


def _records(data_dir, full, split):
  src = tfds.data_source(full, data_dir=data_dir)[split]
  return sorted((src[i] for i in range(len(src))), key=lambda r: r["filename"])


# ---- Detection: visible boxes through the builder -----------------------------------------------

def _tiny_caltech(root):
  """A 40x32 Caltech-style COCO json with every kind of visibility annotation."""
  images = {"train": [{"id": 1, "file_name": "set00_V000_I00001.jpg", "height": 32,
                       "width": 40}],
            "val": [{"id": 2, "file_name": "set06_V000_I00001.jpg", "height": 32, "width": 40}]}
  anns = {"train": [
      # vis_bbox half of the box: ratio (10 * 10) / (10 * 20) = 0.5.
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 20], "iscrowd": 0,
       "vis_bbox": [2, 2, 10, 10]},
      # Box leaves the image (clipped to x2 = 40); vis_bbox sticks out of the box: cut to it,
      # (40 - 30) * (20 - 4) / (20 * 16) = 0.5, from the unclipped boxes.
      {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 4, 20, 16], "iscrowd": 0,
       "vis_bbox": [20, 4, 20, 16]},
      # The annotation's own vis_ratio wins over the boxes.
      {"id": 3, "image_id": 1, "category_id": 1, "bbox": [14, 6, 8, 16], "iscrowd": 0,
       "vis_bbox": [14, 6, 8, 16], "vis_ratio": 0.3},
      # No visibility annotation: NaN.
      {"id": 4, "image_id": 1, "category_id": 2, "bbox": [24, 20, 6, 10], "iscrowd": 0}],
      "val": [{"id": 5, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 20], "iscrowd": 0,
               "vis_bbox": [5, 5, 10, 4]}]}
  for split in ("train", "val"):
    for im in images[split]:
      dummy.write_image(os.path.join(root, "images", im["file_name"]), im["id"], 32, 40)
    dummy.write_json(os.path.join(root, "annotations", f"{split}.json"),
                     {"images": images[split], "annotations": anns[split],
                      "categories": [{"id": 1, "name": "person"}]})


@pytest.fixture(scope="module")
def tiny_caltech(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("caltech_src"))
  _tiny_caltech(root)
  data_dir = str(tmp_path_factory.mktemp("caltech_tfds"))
  build_mod.build("detection/caltech", root, data_dir)
  return data_dir


def test_caltech_builder_stores_visible_boxes_and_ratios(tiny_caltech):
  (r,) = _records(tiny_caltech, "detection/caltech", "train")
  np.testing.assert_allclose(r["boxes"], [[2, 2, 12, 22], [30, 4, 40, 20], [14, 6, 22, 22],
                                          [24, 20, 30, 30]])
  np.testing.assert_array_equal(r["is_ignore"], [False, False, False, True])
  np.testing.assert_allclose(r["visible_boxes"][:3], [[2, 2, 12, 12], [20, 4, 40, 20],
                                                      [14, 6, 22, 22]])
  assert np.isnan(r["visible_boxes"][3]).all()
  np.testing.assert_allclose(r["visible_ratio"][:3], [0.5, 0.5, 0.3], rtol=1e-6)
  assert np.isnan(r["visible_ratio"][3])
  (v,) = _records(tiny_caltech, "detection/caltech", "val")
  np.testing.assert_allclose(v["visible_ratio"], [0.2], rtol=1e-6)


def test_crowdhuman_vbox_gives_the_visible_ratio(tmp_path):
  """.odgt ``vbox`` (here equal to ``fbox`` in the committed dummy data) -> ratio 1."""
  root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                      "detection", "dummy_data", "crowdhuman")
  build_mod.build("detection/crowdhuman", root, str(tmp_path))
  for r in _records(str(tmp_path), "detection/crowdhuman", "train"):
    np.testing.assert_allclose(r["visible_ratio"], np.ones(len(r["boxes"])))
    np.testing.assert_allclose(r["visible_boxes"], r["boxes"])


def test_eval_transform_passes_visible_ratio_aligned_with_persons():
  """Person slots carry their own ratio (ignore regions in between are skipped); persons beyond
  max_boxes become ignore regions and their ratios go with them; padding is 0."""
  record = {"image": np.zeros((40, 60, 3), np.uint8),
            "boxes": np.array([[0, 0, 10, 20], [5, 5, 15, 25], [20, 0, 30, 30],
                               [40, 10, 50, 30], [30, 5, 40, 35]], np.float32),
            "is_ignore": np.array([False, True, False, False, False]),
            "visible_ratio": np.array([0.1, np.nan, 0.3, 0.4, 0.5], np.float32),
            "image_id": "7"}
  cfg = {"image_size": (64, 96), "eval_scale": 40, "max_size": 96, "max_boxes": 3,
         "max_ignore": 4}
  out = det_transforms.EvalTransform(cfg)(record)
  np.testing.assert_array_equal(out["box_mask"], [True, True, True])
  np.testing.assert_allclose(out["visible_ratio"], [0.1, 0.3, 0.4])
  assert out["visible_ratio"].dtype == np.float32
  # The persons' boxes are those of records 0, 2, 3 (normalised cx, cy, w, h of the 40x60 image).
  np.testing.assert_allclose(out["boxes"][:, 0], np.array([5, 25, 45]) / 60, rtol=1e-6)
  assert int(out["ignore_mask"].sum()) == 2          # the ignore region and the fourth person
  cfg["max_boxes"] = 6
  out = det_transforms.EvalTransform(cfg)(record)
  np.testing.assert_allclose(out["visible_ratio"], [0.1, 0.3, 0.4, 0.5, 0.0, 0.0])
  # Without the field (datasets prepared before it existed) nothing is added.
  old = {k: v for k, v in record.items() if k != "visible_ratio"}
  assert "visible_ratio" not in det_transforms.EvalTransform(cfg)(old)


def test_visible_ratio_reaches_eval_batches(tiny_caltech):
  d = _mini_caltech_cfg(tiny_caltech, "caltech_heavy")
  source = sources.open_source("detection/caltech", "train", tiny_caltech)
  (batch,) = list(eval_input.eval_iterator_for("detection", d, source, 2))
  assert batch["visible_ratio"].shape == batch["box_mask"].shape
  persons = batch["box_mask"][0]
  np.testing.assert_allclose(batch["visible_ratio"][0][persons], [0.5, 0.5, 0.3], rtol=1e-6)
  # A person without visibility annotation stops the heavy-occlusion evaluation, saying why.
  ev = eval_lib.make_evaluator("detection", d)
  bad = dict(batch, visible_ratio=np.where(batch["box_mask"], np.nan, 0.0).astype(np.float32))
  preds = {"scores": np.zeros((2, 1)), "boxes": np.zeros((2, 1, 4))}
  with pytest.raises(ValueError, match="vis_bbox"):
    ev.update(preds, bad)


# ---- Detection: heavy-occlusion MR^-2 on humanbench_mini scenes ---------------------------------

# Busier mini_caltech scenes than the suite's (more and taller people, so more occlusion): the
# heavy subset (>= 50 px, 20-65 % visible) then has several people.
_HEAVY_SCENES = {"image_hw": (192, 256), "persons": (6, 10), "heights": (70, 170),
                 "p_crowd": 0.3, "p_poster": 0.3, "train": 1, "val": 16}


def _mini_caltech_cfg(data_dir, protocol):
  from configs import mini_suite
  cfg = mini_suite.get_config("dataset=mini_caltech")
  d = cfg.datasets.mini_caltech
  d.data_dir = data_dir
  d.eval_protocol = protocol
  return d


@pytest.fixture(scope="module")
def heavy_caltech(tmp_path_factory):
  src = str(tmp_path_factory.mktemp("mini_caltech_src"))
  generate.write_detection_coco(src, "mini_caltech", 0, dict(_HEAVY_SCENES))
  data_dir = str(tmp_path_factory.mktemp("mini_caltech_tfds"))
  build_mod.build("detection/caltech", src, data_dir, strict=True,
                  source="humanbench_mini")   # generated scenes, run under a mini config
  with open(os.path.join(src, "annotations", "val.json")) as f:
    return data_dir, json.load(f)


def _heavy_subset(coco):
  """(heavy person boxes xyxy per image id, other non-ignore persons per image id), from the
  json: category 1, not crowd, not ignore; height >= 50 px, box visible ratio in [0.2, 0.65]."""
  heavy, other = {}, {}
  for a in coco["annotations"]:
    if a["category_id"] != 1 or a["iscrowd"] or a["ignore"]:
      continue
    x, y, w, h = a["bbox"]
    vx, vy, vw, vh = a["vis_bbox"]
    iw = max(0, min(x + w, vx + vw) - max(x, vx))
    ih = max(0, min(y + h, vy + vh) - max(y, vy))
    ratio = iw * ih / (w * h)
    target = heavy if h >= 50 and 0.2 <= ratio <= 0.65 else other
    target.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
  return heavy, other


def _perfect_detection_run(d, data_dir, pick):
  """Feeds ``pick(image id) -> xyxy boxes`` (score 1, padded with score-0 boxes) for every eval
  image to the program's evaluator; returns its result."""
  ev = eval_lib.make_evaluator("detection", d)
  source = sources.open_source("detection/caltech", "val", data_dir, decode_images=False)
  image_ids = [int(source[j]["image_id"].decode()) for j in range(len(source))]
  source = sources.open_source("detection/caltech", "val", data_dir)
  q = 16
  for batch in eval_input.eval_iterator_for("detection", d, source, 4):
    n = batch["mask"].shape[0]
    boxes, scores = np.zeros((n, q, 4)), np.zeros((n, q))
    for i in range(n):
      if not batch["mask"][i]:
        continue
      b = np.asarray(pick(image_ids[batch["index"][i]]), np.float64).reshape(-1, 4)
      boxes[i, :len(b)], scores[i, :len(b)] = b, 1.0
    ev.update({"boxes": boxes, "scores": scores}, batch)
  return ev.result()


def test_caltech_heavy_mr_end_to_end_perfect_predictions(heavy_caltech):
  data_dir, coco = heavy_caltech
  heavy, other = _heavy_subset(coco)
  n_heavy = sum(map(len, heavy.values()))
  assert n_heavy >= 5
  d = _mini_caltech_cfg(data_dir, "caltech_heavy")
  # Every non-ignore person detected: the heavy ones are true positives, the others fall on
  # ignore regions and are dropped (not false positives): MR^-2 0, AP 1 - 1/N (the toolkit's
  # trapezoid starts at the first detection).
  everyone = _perfect_detection_run(
      d, data_dir, lambda i: heavy.get(i, []) + other.get(i, []))
  assert everyone["num_gt"] == n_heavy
  assert everyone["MR"] == 0.0 and everyone["recall"] == 1.0
  assert everyone["AP"] == pytest.approx(1 - 1 / n_heavy)
  # Only the non-heavy people found: every heavy person missed, nothing counted wrong.
  missed = _perfect_detection_run(d, data_dir, lambda i: other.get(i, []))
  assert missed["num_gt"] == n_heavy and missed["MR"] == 1.0 and missed["recall"] == 0.0
  # The same detections under the CrowdHuman protocol count every non-ignore person.
  all_gt = _perfect_detection_run(_mini_caltech_cfg(data_dir, "crowdhuman"), data_dir,
                                  lambda i: other.get(i, []))
  assert all_gt["num_gt"] == n_heavy + sum(map(len, other.values()))
  assert all_gt["recall"] == pytest.approx(1 - n_heavy / all_gt["num_gt"])


# ---- Pose: COCO keypoint AP through the program's evaluator -------------------------------------

@pytest.fixture(scope="module")
def mini_coco(tmp_path_factory):
  from data.humanbench_mini import build_all
  data_dir = str(tmp_path_factory.mktemp("mini_coco_tfds"))
  index = build_all.build_all(data_dir, size="tiny", only=("mini_coco",))
  with open(os.path.join(index["sources"], "pose", "mini_coco", "annotations",
                         "person_keypoints_val2017.json")) as f:
    return data_dir, json.load(f)


def _coco_cfg(data_dir, split="val"):
  """mini_coco as a downstream COCO set: the mini suite's pose settings, 17 joints, coco_ap."""
  from configs import common, humanbench, mini_suite
  cfg = mini_suite.get_config("dataset=mini_mpii")
  d = common.dataset("pose", "pose/coco", batch_size=8, eval_split=split, image_size=(128, 96),
                     deconv_features=(32, 32), num_joints=17, flip_pairs=humanbench.COCO_FLIP_PAIRS,
                     upper_body_ids=humanbench.COCO_UPPER_BODY, flip_test=False)
  d.eval_metric = "coco_ap"
  d.eval_tfds_name = ""
  d.data_dir = data_dir
  cfg.datasets = ml_collections.ConfigDict({"mini_coco": d})
  cfg.data_dir = data_dir
  return cfg


def test_pose_builder_writes_the_coco_ground_truth(mini_coco):
  data_dir, coco = mini_coco
  path = eval_lib.coco_gt_path(_coco_cfg(data_dir).datasets.mini_coco)
  assert path == os.path.join(data_dir, "pose", "coco", "1.0.0", "coco_gt_val.json")
  with open(path) as f:
    gt = json.load(f)
  assert [im["id"] for im in gt["images"]] == sorted(im["id"] for im in coco["images"])
  src = {a["id"]: a for a in coco["annotations"]}
  assert sorted(a["id"] for a in gt["annotations"]) == sorted(src)
  for a in gt["annotations"]:
    s = src[a["id"]]
    np.testing.assert_allclose(a["keypoints"], s["keypoints"])
    assert (a["num_keypoints"], a["iscrowd"], a["area"]) == (s["num_keypoints"], 0, s["area"])
    np.testing.assert_allclose(a["bbox"], s["bbox"])
  assert "segmentation" not in gt["annotations"][0]
  assert gt["categories"][0]["keypoints"] == coco["categories"][0]["keypoints"]
  assert eval_lib.coco_gt_path(_coco_cfg(data_dir, "val_dets").datasets.mini_coco) == path
  with pytest.raises(FileNotFoundError, match="coco_gt_train.json.*data/build.py pose/coco"):
    eval_lib.coco_gt_path(_coco_cfg(data_dir).datasets.mini_coco, split="train")


def _pose_batches(cfg):
  d = cfg.datasets.mini_coco
  source = sources.open_source("pose/coco", "val", d.data_dir)
  return list(eval_input.eval_iterator_for("pose", d, source, 8))


def test_coco_ap_of_perfect_keypoints_is_one(mini_coco):
  """Ground-truth keypoints through the program's COCO evaluator: AP 1; shifted by a quarter of
  each person's box they score lower; the sigmas follow the joint count."""
  data_dir, coco = mini_coco
  cfg = _coco_cfg(data_dir)
  d = cfg.datasets.mini_coco
  perfect, shifted = eval_lib.make_evaluator("pose", d), eval_lib.make_evaluator("pose", d)
  np.testing.assert_allclose(perfect.sigmas[:3], [0.026, 0.025, 0.025])
  n = 0
  for batch in _pose_batches(cfg):
    kp = np.asarray(batch["keypoints_image"], np.float64)
    scores = np.ones(kp.shape[:2])
    perfect.update({"keypoints_image": kp[..., :2], "scores": scores}, batch)
    off = 0.25 * np.asarray(batch["box_size"], np.float64)[:, None, :] * np.array([1.0, 0.0])
    shifted.update({"keypoints_image": kp[..., :2] + off, "scores": scores}, batch)
    n += int(batch["mask"].sum())
  assert n == sum(a["num_keypoints"] > 0 for a in coco["annotations"])
  assert perfect.result()["AP"] == 1.0 and perfect.result()["AR"] == 1.0
  assert shifted.result()["AP"] < 0.5
  with d.unlocked():
    d.num_joints = 14
  assert eval_lib.make_evaluator("pose", d).sigmas.size == 14   # AIC's
  with d.unlocked():
    d.num_joints = 15
  with pytest.raises(ValueError, match="oks_sigmas"):
    eval_lib.make_evaluator("pose", d)


def test_coco_ap_of_target_heatmaps_through_decode(mini_coco):
  """The eval transform's own target heatmaps as the head output, decoded by the pose task
  (UDP + DARK, crop -> image pixels): the program path minus the network. Joints inside the
  crops are recovered, so AP is close to 1."""
  import jax.numpy as jnp
  from path_jax import tasks as tasks_lib
  data_dir, _ = mini_coco
  cfg = _coco_cfg(data_dir)
  d = cfg.datasets.mini_coco
  task = tasks_lib.get("pose")
  ev = eval_lib.make_evaluator("pose", d)
  for batch in _pose_batches(cfg):
    out = task.decode({"heatmaps": jnp.asarray(batch["target"])},
                      {k: jnp.asarray(batch[k]) for k in ("image", "center", "box_size")}, d)
    ev.update({k: np.asarray(v) for k, v in out.items()}, batch)
  ap = ev.result()["AP"]
  assert 0.95 < ap <= 1.0


def test_coco_ap_on_person_detections_val_dets(mini_coco, tmp_path):
  """Top-down on person detections (split 'val_dets', built from the COCO detections file):
  scored against the 'val' ground truth. Detections = every annotated person's box (score 0.9)
  plus one false box per image (score 0.3); the true boxes get their person's keypoints, the
  false ones keypoints scattered in the box. The false poses rank below every true one, so AP
  stays 1 while AR counts only the people; with the false poses on top, AP drops."""
  _, coco = mini_coco
  src = str(tmp_path / "src")
  generate.generate(src, seed=0, size="tiny", only=("mini_coco",))    # the fixture's sources
  root = os.path.join(src, "pose", "mini_coco")
  dets, truth = [], {}
  for a in coco["annotations"]:
    if a["num_keypoints"] > 0:
      dets.append({"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"],
                   "score": 0.9})
  for im in coco["images"]:
    dets.append({"image_id": im["id"], "category_id": 1, "bbox": [2, 2, 30, 60], "score": 0.3})
  dummy.write_json(os.path.join(root, "person_detection_results",
                                "COCO_val2017_detections_AP_H_56_person.json"), dets)
  dets_dir = str(tmp_path / "tfds")
  build_mod.build("pose/coco", root, dets_dir, strict=True)
  # A detection record's box is the clipped one (x, y kept, w, h - 1 px): match on x, y.
  for a in coco["annotations"]:
    truth[(a["image_id"], *np.float32(a["bbox"][:2]))] = np.reshape(a["keypoints"], (17, 3))
  cfg = _coco_cfg(dets_dir, "val_dets")
  d = cfg.datasets.mini_coco
  records = sources.open_source("pose/coco", "val_dets", dets_dir, decode_images=False)
  corners = [tuple(np.float32(records[j]["bbox"][:2])) for j in range(len(records))]
  rng = np.random.default_rng(0)
  results = {}
  for false_score in (0.3, 0.95):
    ev = eval_lib.make_evaluator("pose", d, split="val_dets")
    source = sources.open_source("pose/coco", "val_dets", dets_dir)
    for batch in eval_input.eval_iterator_for("pose", d, source, 8):
      n = batch["mask"].shape[0]
      kp = np.zeros((n, 17, 2))
      for i in np.flatnonzero(batch["mask"]):
        key = (int(batch["image_id"][i]), *corners[batch["index"][i]])
        if batch["score"][i] > 0.5:
          kp[i] = truth[key][:, :2]
        else:
          kp[i] = batch["center"][i] + (rng.random((17, 2)) - 0.5) * batch["box_size"][i]
      if false_score != 0.3:
        batch = dict(batch, score=np.where(batch["score"] < 0.5, false_score, batch["score"]))
      ev.update({"keypoints_image": kp, "scores": np.ones((n, 17))}, batch)
    results[false_score] = ev.result()
  assert results[0.3]["AP"] == 1.0 and results[0.3]["AR"] == 1.0
  assert results[0.95]["AP"] < 0.9


# ---- A tiny random-init model through evaluate_dataset (the program's evaluation) ---------------

def _evaluate_untrained(cfg, name):
  from path_jax import train
  from path_jax.state import create_train_state
  s = train.setup(cfg)
  state, _ = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules, seed=0)
  d = cfg.datasets[name]
  return eval_lib.evaluate_dataset(s.model, state.params, state.batch_stats, name, d,
                                   mesh=s.mesh, data_dir=d.data_dir, rules=s.rules)[0]


def test_untrained_pose_model_gets_a_finite_coco_ap(mini_coco):
  data_dir, coco = mini_coco
  metrics = _evaluate_untrained(_coco_cfg(data_dir), "mini_coco")
  assert 0.0 <= metrics["AP"] < 0.5 and np.isfinite(metrics["AR"])
  assert metrics["num_examples"] == sum(a["num_keypoints"] > 0 for a in coco["annotations"])


def test_untrained_detector_gets_a_finite_heavy_mr(heavy_caltech):
  from configs import mini_suite
  data_dir, coco = heavy_caltech
  cfg = mini_suite.get_config("dataset=mini_caltech")
  cfg.data_dir = data_dir
  cfg.datasets.mini_caltech.eval_protocol = "caltech_heavy"
  metrics = _evaluate_untrained(cfg, "mini_caltech")
  heavy, _ = _heavy_subset(coco)
  assert metrics["num_gt"] == sum(map(len, heavy.values()))
  assert 0.5 < metrics["MR"] <= 1.0 and metrics["num_images"] == len(coco["images"])
