"""Detection target budget (issue 16): every person of a crowded image stays a target.

A CrowdHuman-format (.odgt) image with 300 people goes through the real builder (data/build.py)
and the real transforms with the default budget and with the budget taken from the builder's
metadata; the builder records the per-image maxima; an image over a (deliberately small) budget
is counted and logged; padding slots change neither the loss nor its gradient.
"""
import json
import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import dummy  # noqa: E402
from path_jax.input import sources  # noqa: E402
from path_jax.tasks import get  # noqa: E402
from path_jax.tasks.detection import budget, default_config  # noqa: E402
from path_jax.tasks.detection import transforms as det_t  # noqa: E402
from path_jax.tasks.detection.losses import detection_loss  # noqa: E402

CROWD = 300              # persons in the crowded image
H, W = 400, 600


def _gt(tag, fbox, ignore=0):
  return {"tag": tag, "fbox": fbox, "vbox": fbox, "hbox": fbox[:2] + [4, 4],
          "extra": {"box_id": 0, "occ": 0, "ignore": ignore}, "head_attr": {}}


def _crowd_boxes():
  """300 xywh person boxes on a 20 x 15 grid of the 400x600 image, none touching the border."""
  return [[c * 40 + 5, r * 20 + 2, 30, 16] for r in range(20) for c in range(15)]


def _write_odgt(root):
  """train: the 300-person image (+ 4 mask regions, 2 persons marked ignore) and a small one;
  val: one image with 7 persons and 1 mask region."""
  crowd = [_gt("person", b) for b in _crowd_boxes()]
  crowd += [_gt("mask", [10 + 50 * i, 5, 20, 10]) for i in range(4)]
  crowd += [_gt("person", [100 + 60 * i, 300, 30, 40], ignore=1) for i in range(2)]
  small = [_gt("person", [10, 10, 20, 40]), _gt("person", [50, 10, 20, 40])]
  val = [_gt("person", [10 + 40 * i, 10, 20, 40]) for i in range(7)] + [_gt("mask", [0, 0, 9, 9])]
  splits = {"annotation_train.odgt": [("1,crowd", crowd, H, W), ("2,small", small, 80, 120)],
            "annotation_val.odgt": [("3,val", val, 100, 320)]}
  for name, recs in splits.items():
    with open(os.path.join(root, name), "w") as f:
      f.write("".join(json.dumps({"ID": i, "gtboxes": g}) + "\n" for i, g, _, _ in recs))
    for k, (image_id, _, h, w) in enumerate(recs):
      dummy.write_image(os.path.join(root, "Images", f"{image_id}.jpg"), 7 + k, h, w)


@pytest.fixture(scope="module")
def crowd_data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("crowdhuman_src"))
  _write_odgt(root)
  data_dir = str(tmp_path_factory.mktemp("crowdhuman_tfds"))
  build_mod.build("detection/crowdhuman", root, data_dir)
  return data_dir


def _metadata(data_dir):
  with open(os.path.join(sources.dataset_dir("detection/crowdhuman", data_dir),
                         "metadata.json")) as f:
    return json.load(f)


def _crowd_record(data_dir):
  src = tfds.data_source("detection/crowdhuman", data_dir=data_dir)["train"]
  return max((src[i] for i in range(len(src))), key=lambda r: len(r["boxes"]))


def test_builder_records_the_most_persons_and_ignore_regions_per_image(crowd_data):
  meta = _metadata(crowd_data)
  assert meta["max_persons_per_image"] == CROWD
  assert meta["max_ignore_per_image"] == 6
  assert meta["box_counts"]["train"] == {"images": 2, "persons": CROWD + 2, "ignore": 6,
                                         "mean_persons": (CROWD + 2) / 2,
                                         "max_persons": CROWD, "max_ignore": 6}
  assert meta["box_counts"]["val"]["max_persons"] == 7
  assert meta["box_counts"]["val"]["max_ignore"] == 1


def _cfg(**kw):
  """The dataset's transform options: the task defaults (1344 canvas, the default budget)."""
  c = default_config()
  c.update(kw)
  return c


def test_300_people_stay_targets_with_the_default_budget(crowd_data):
  record = _crowd_record(crowd_data)
  assert int((~np.asarray(record["is_ignore"])).sum()) == CROWD
  cfg = _cfg()
  assert cfg.max_boxes is None and budget.slots(cfg)[0] >= CROWD   # unset: the default budget
  ev = det_t.eval_transform(cfg)
  out = ev(record)
  assert out["box_mask"].sum() == CROWD and out["ignore_mask"].sum() == 6
  # The same boxes, in order: normalised cxcywh of the record's xyxy pixels.
  xyxy = np.asarray(record["boxes"], np.float64)[~np.asarray(record["is_ignore"])]
  expect = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2 / W, (xyxy[:, 1] + xyxy[:, 3]) / 2 / H,
                     (xyxy[:, 2] - xyxy[:, 0]) / W, (xyxy[:, 3] - xyxy[:, 1]) / H], 1)
  np.testing.assert_allclose(out["boxes"][:CROWD], expect, atol=1e-5)
  # Training (resize branch; crops may legitimately cut people out of the picture).
  train = det_t.train_transform(_cfg(crop_prob=0.0))
  for seed in range(3):
    out = train(record, np.random.default_rng(seed))
    assert out["box_mask"].sum() == CROWD and out["ignore_mask"].sum() == 6
  assert ev.overflow.counts["images"] == train.overflow.counts["images"] == 0


def test_budget_from_the_builders_metadata_keeps_all_300(crowd_data):
  meta = _metadata(crowd_data)
  d = ml_collections.ConfigDict({"max_boxes": None, "max_ignore": None})
  assert budget.fill_from_metadata(d, meta, name="crowdhuman") == []
  assert (d.max_boxes, d.max_ignore) == (CROWD, 6)
  out = det_t.eval_transform(_cfg(max_boxes=d.max_boxes, max_ignore=d.max_ignore))(
      _crowd_record(crowd_data))
  assert out["boxes"].shape == (CROWD, 4) and out["box_mask"].all() and out["ignore_mask"].all()
  # No metadata: the defaults. A value set in the config is kept, with a warning when the data
  # holds more.
  d = ml_collections.ConfigDict({"max_boxes": None, "max_ignore": None})
  budget.fill_from_metadata(d, {}, name="crowdhuman")
  assert (d.max_boxes, d.max_ignore) == (budget.DEFAULT_MAX_BOXES, budget.DEFAULT_MAX_IGNORE)
  d = ml_collections.ConfigDict({"max_boxes": 8, "max_ignore": 600})
  (warning,) = budget.fill_from_metadata(d, meta, name="crowdhuman", where="metadata.json")
  assert (d.max_boxes, d.max_ignore) == (8, 600)
  assert "config.datasets.crowdhuman.max_boxes=8" in warning
  assert "--config.datasets.crowdhuman.max_boxes=300" in warning
  # More persons than queries: the budget stops at the queries, and says so.
  d = ml_collections.ConfigDict({"max_boxes": None, "max_ignore": None, "num_queries": 200})
  (warning,) = budget.fill_from_metadata(d, meta, name="crowdhuman")
  assert d.max_boxes == 200 and "capped at 200" in warning


def test_the_default_budget_fits_the_decoder():
  """Above the most crowded CrowdHuman image (391 boxes of any kind, train + val) and within the
  queries, so the default head builds."""
  c = default_config()
  max_boxes, max_ignore = budget.slots(c)   # unset in the task's config: the defaults
  assert 391 < max_boxes <= c.num_queries and max_ignore > 391
  task = get("detection")
  task.make_head(c)
  # A config whose budget is not filled yet (None) reads as the defaults everywhere.
  unset = ml_collections.ConfigDict(dict(c.to_dict(), max_boxes=None, max_ignore=None,
                                         image_size=(32, 32)))
  assert budget.slots(unset) == (budget.DEFAULT_MAX_BOXES, budget.DEFAULT_MAX_IGNORE)
  task.make_head(unset)
  batch = task.example_batch(unset, 2, np.random.default_rng(0))
  assert batch["boxes"].shape == (2, budget.DEFAULT_MAX_BOXES, 4)
  assert batch["ignore_mask"].shape == (2, budget.DEFAULT_MAX_IGNORE)
  assert 0 < batch["box_mask"].sum() < 200       # about 23 valid boxes per image, as CrowdHuman


def test_an_image_over_the_budget_is_counted_and_logged(caplog):
  image = np.zeros((60, 120, 3), np.uint8)
  persons = [[10 * i + 1, 5, 10 * i + 8, 25] for i in range(10)]
  record = {"image": image, "boxes": np.asarray(persons + [[0, 40, 20, 59]], np.float32),
            "is_ignore": np.array([False] * 10 + [True]), "image_id": "x"}
  cfg = {"image_size": (64, 128), "eval_scale": 60, "max_size": 128, "max_boxes": 5,
         "max_ignore": 3, "tfds_name": "detection/crowdhuman"}
  t = det_t.eval_transform(cfg)
  with caplog.at_level(logging.WARNING, logger=budget.__name__):
    out = t(record)
  # 5 persons in their slots, 2 more as ignore regions (room for 2 beside the real one), 3 lost.
  assert out["box_mask"].sum() == 5 and out["ignore_mask"].sum() == 3
  assert t.overflow.counts == {"images": 1, "persons_to_ignore": 2, "persons_dropped": 3,
                               "ignore_dropped": 0, "largest_persons": 10, "largest_ignore": 1}
  (msg,) = [r.getMessage() for r in caplog.records]
  assert "'detection/crowdhuman'" in msg
  assert "config.datasets.<name>.max_boxes (now 5) to at least 10" in msg
  assert "3 persons and 0 ignore regions were dropped" in msg
  # Loud but bounded: the 1st, 2nd, 4th, 8th ... such image.
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger=budget.__name__):
    for _ in range(7):
      t(record)
  assert t.overflow.counts["images"] == 8 and len(caplog.records) == 3
  # Within the budget nothing is counted or logged.
  t2 = det_t.eval_transform(dict(cfg, max_boxes=10))
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger=budget.__name__):
    t2(record)
  assert t2.overflow.counts["images"] == 0 and not caplog.records


def test_padding_slots_change_neither_loss_nor_gradient():
  """The same 4 persons and 1 ignore region in 6/2 slots and in the default 500/500 slots (the
  padding holding garbage): equal loss and gradients."""
  rng = np.random.default_rng(0)
  queries, layers, batch = 512, 2, 2
  cfg = default_config()
  outputs = {"logits": jnp.asarray(rng.normal(size=(layers, batch, queries)), jnp.float32),
             "boxes": jnp.asarray(np.concatenate(
                 [rng.uniform(0.2, 0.8, (layers, batch, queries, 2)),
                  rng.uniform(0.05, 0.3, (layers, batch, queries, 2))], -1), jnp.float32)}

  def batch_of(g, i):
    boxes = np.concatenate([rng.uniform(0.2, 0.8, (batch, g, 2)),
                            rng.uniform(-0.5, 0.3, (batch, g, 2))], -1)   # padding: garbage
    boxes[:, :4] = real_boxes
    ign = rng.uniform(-1, 2, (batch, i, 4))
    ign[:, :1] = real_ign
    mask = np.zeros((batch, g), bool)
    mask[:, :4] = True
    imask = np.zeros((batch, i), bool)
    imask[:, :1] = True
    return {"boxes": jnp.asarray(boxes, jnp.float32), "box_mask": jnp.asarray(mask),
            "ignore_boxes": jnp.asarray(ign, jnp.float32), "ignore_mask": jnp.asarray(imask)}

  real_boxes = np.concatenate([rng.uniform(0.2, 0.8, (batch, 4, 2)),
                               rng.uniform(0.05, 0.3, (batch, 4, 2))], -1)
  real_ign = np.concatenate([rng.uniform(0.3, 0.7, (batch, 1, 2)),
                             rng.uniform(0.2, 0.4, (batch, 1, 2))], -1)
  results = []
  for g, i in ((6, 2), budget.slots(cfg)):
    c = default_config()
    c.update(max_boxes=g, max_ignore=i)
    b = batch_of(g, i)
    fn = jax.jit(jax.value_and_grad(lambda o, b=b, c=c: detection_loss(o, b, c)[0]))
    results.append(fn(outputs))
  (loss_a, grad_a), (loss_b, grad_b) = results
  assert np.isfinite(float(loss_a))
  np.testing.assert_allclose(float(loss_b), float(loss_a), rtol=1e-6)
  for k in ("logits", "boxes"):
    np.testing.assert_allclose(np.asarray(grad_b[k]), np.asarray(grad_a[k]), rtol=1e-5,
                               atol=1e-7)


def test_a_run_start_takes_the_budget_from_the_prepared_data(crowd_data):
  """path_jax.train.fill_from_metadata (every run's start, the suite, the compile tool) fills an
  unset budget from the builder's maxima and keeps a set one."""
  from path_jax import train
  cfg = ml_collections.ConfigDict({"data_dir": crowd_data, "datasets": {
      "crowdhuman": dict(default_config().to_dict(), task="detection",
                         tfds_name="detection/crowdhuman", data_dir=""),
      "set": dict(default_config().to_dict(), task="detection",
                  tfds_name="detection/crowdhuman", data_dir="", max_boxes=12)}})
  train.fill_from_metadata(cfg)
  assert (cfg.datasets.crowdhuman.max_boxes, cfg.datasets.crowdhuman.max_ignore) == (CROWD, 6)
  assert cfg.datasets.set.max_boxes == 12 and cfg.datasets.set.max_ignore == 6
