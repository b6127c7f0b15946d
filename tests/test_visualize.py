"""Pictures of predictions: layout, determinism, and marks where they belong (NumPy + PIL only).

Tile positions follow from the layout rules: a grid has a ``PAD`` (4 px) border, a caption adds
``LINE_HEIGHT`` per line plus 2 px below its picture, panels of a row are ``PAD`` apart. Images in
these tests are wide enough (96 px) for every caption, so a tile is exactly as wide as its image.
"""
import numpy as np
import pytest
from PIL import Image

from path_jax import visualize as vis
from path_jax.tasks.attributes import visualize as attr_vis
from path_jax.tasks.counting import visualize as count_vis
from path_jax.tasks.detection import visualize as det_vis
from path_jax.tasks.parsing import visualize as parse_vis
from path_jax.tasks.pose import default_config as pose_config
from path_jax.tasks.pose import visualize as pose_vis
from path_jax.tasks.reid import visualize as reid_vis

PAD = 4
LH = vis.LINE_HEIGHT


def _grey(b, h, w, value=90):
  return np.full((b, h, w, 3), value, np.uint8)


def _px(image, row, col):
  return tuple(int(v) for v in image[row, col])


def _has_colour(region, colour):
  return bool(np.any(np.all(region == np.asarray(colour, np.uint8), axis=-1)))


# ----------------------------------------------------------------------------------------------
# Shared helpers.


def test_grid_and_caption_geometry():
  tiles = [np.full((10, 20, 3), i, np.uint8) for i in (1, 2, 3)]
  out = vis.grid(tiles, cols=2)
  assert out.shape == (PAD + 2 * (10 + PAD), PAD + 2 * (20 + PAD), 3)
  assert _px(out, PAD, PAD) == (1, 1, 1)
  assert _px(out, PAD, PAD + 20 + PAD) == (2, 2, 2)
  assert _px(out, PAD + 10 + PAD, PAD) == (3, 3, 3)
  assert _px(out, PAD + 10 + PAD, PAD + 20 + PAD) == vis.BACKGROUND   # empty fourth cell
  cap = vis.caption(np.zeros((10, 200, 3), np.uint8), ["a", ("b", vis.WRONG)])
  assert cap.shape == (10 + 2 * LH + 2, 200, 3)
  assert _has_colour(cap[10 + LH:], vis.WRONG) and not _has_colour(cap[:10 + LH], vis.WRONG)
  with pytest.raises(ValueError, match="at least one tile"):
    vis.grid([])


def test_palettes():
  pal = vis.label_palette(20)
  assert pal.dtype == np.uint8 and tuple(pal[0]) == (0, 0, 0)
  assert len({tuple(c) for c in pal}) == 20
  heat = vis.heat_colours(np.linspace(0.0, 2.0, 50), vmax=2.0)
  assert tuple(heat[0]) == (0, 0, 0) and tuple(heat[-1]) == (255, 255, 255)
  brightness = heat.astype(float).sum(-1)
  assert np.all(np.diff(brightness) >= 0)


def test_write_pictures_png_and_writer(tmp_path):
  image = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)

  class Writer:
    calls = []

    def write_images(self, step, images):
      self.calls.append((step, images))

  writer = Writer()
  path = vis.write_pictures(tmp_path, 7, "pose/coco", image, writer)
  assert path == str(tmp_path / "pictures" / "pose" / "coco_7.png")
  np.testing.assert_array_equal(np.asarray(Image.open(path)), image)
  (step, images), = writer.calls
  assert step == 7 and list(images) == ["pose/coco"]
  np.testing.assert_array_equal(images["pose/coco"], image[None])
  assert not list((tmp_path / "pictures" / "pose").glob("*.tmp"))
  flat = vis.write_pictures(tmp_path, 0, "reid", image)
  assert flat.endswith("pictures/reid_0.png")


# ----------------------------------------------------------------------------------------------
# Pose.


def _pose_inputs(b=2, h=64, w=96, k=17):
  rng = np.random.default_rng(1)
  kps = np.stack([rng.uniform(10, w - 10, (b, k)), rng.uniform(10, h - 10, (b, k))], -1)
  target = np.zeros((b, h // 4, w // 4, k), np.float32)
  target[:, 3, 5, :] = 1.0     # every true joint at heatmap (x=5, y=3)
  weight = np.ones((b, k), np.float32)
  weight[:, 1] = 0.0
  batch = {"image": _grey(b, h, w), "target": target, "target_weight": weight}
  return batch, {"keypoints": kps, "scores": np.full((b, k), 0.8)}


def test_pose_draw_marks_size_determinism():
  batch, pred = _pose_inputs()
  h, w = 64, 96
  out = pose_vis.draw(batch, pred, pose_config(), max_examples=1)
  assert out.dtype == np.uint8
  assert out.shape == (PAD + h + 2 * LH + 2 + PAD, PAD + w + PAD, 3)   # "score", "truth" lines
  np.testing.assert_array_equal(out, pose_vis.draw(batch, pred, pose_config(), max_examples=1))
  for x, y in pred["keypoints"][0]:
    assert _px(out, PAD + int(y), PAD + int(x)) == vis.PRED
  # True joints: heatmap (5, 3) -> crop (5 * 95 / 23, 3 * 63 / 15), drawn under the prediction.
  tx, ty = 5 * (w - 1) / (w // 4 - 1), 3 * (h - 1) / (h // 4 - 1)
  near_pred = np.any(np.hypot(pred["keypoints"][0, :, 0] - tx, pred["keypoints"][0, :, 1] - ty) < 6)
  if not near_pred:
    assert _px(out, PAD + int(ty), PAD + int(tx)) == vis.TRUE
  # Two examples give a bigger picture; a low min_score hides every predicted joint.
  assert out.size < pose_vis.draw(batch, pred, pose_config(), max_examples=2).size
  hidden = pose_vis.draw(batch, pred, pose_config(), max_examples=1, min_score=0.9)
  assert not _has_colour(hidden[PAD:PAD + h, PAD:PAD + w], vis.PRED)


def test_pose_skeleton_choice():
  assert pose_vis.skeleton(17, pose_config().flip_pairs) == pose_vis.COCO_SKELETON
  assert pose_vis.skeleton(16, pose_vis.MPII_FLIP_PAIRS) == pose_vis.MPII_SKELETON
  assert pose_vis.skeleton(6, ((0, 1), (2, 3))) == ((0, 1), (2, 3))
  with pytest.raises(ValueError, match="outside"):
    pose_vis.skeleton(4, (), limbs=((0, 9),))


def test_pose_limb_between_joints():
  b, h, w = 1, 64, 96
  kps = np.full((b, 17, 2), 5.0)
  kps[0, 5], kps[0, 6] = (20.0, 30.0), (70.0, 30.0)   # shoulders: limb (5, 6)
  scores = np.zeros((b, 17))
  scores[0, 5:7] = 1.0                                 # only the shoulders pass min_score
  out = pose_vis.draw({"image": _grey(b, h, w)}, {"keypoints": kps, "scores": scores},
                      pose_config(), 1, min_score=0.5)
  assert _px(out, PAD + 30, PAD + 45) == vis.PRED     # midpoint of the limb
  assert _px(out, PAD + 10, PAD + 45) == (90, 90, 90)
  assert _px(out, PAD + 5, PAD + 5) == (90, 90, 90)     # hidden joint, no limbs to it


# ----------------------------------------------------------------------------------------------
# Parsing.


def test_parsing_overlay_and_truth():
  b, h, w = 2, 40, 96
  pred = np.zeros((b, h, w), np.int32)
  pred[:, 10:20, 30:60] = 3
  truth = np.zeros((b, h, w), np.uint8)
  truth[:, 5:15, 5:25] = 7
  truth[:, 30:, :] = 255
  batch = {"image": _grey(b, h, w, 0), "label": truth}
  out = parse_vis.draw(batch, {"label": pred}, {"num_classes": 8, "ignore_label": 255},
                       max_examples=1, alpha=0.5)
  tile_h = h + LH + 2
  assert out.shape == (PAD + tile_h + PAD, PAD + 3 * w + 2 * PAD + PAD, 3)
  pal = vis.label_palette(8)
  x_pred, x_true = PAD + w + PAD, PAD + 2 * (w + PAD)
  assert _px(out, PAD + 15, x_pred + 40) == tuple(np.rint(0.5 * pal[3]).astype(int))
  assert _px(out, PAD + 2, x_pred + 40) == (0, 0, 0)          # background: the image
  assert _px(out, PAD + 10, x_true + 10) == tuple(np.rint(0.5 * pal[7]).astype(int))
  assert _px(out, PAD + 35, x_true + 10) == (0, 0, 0)         # ignored: the image
  assert _px(out, PAD + 15, PAD + 40) == (0, 0, 0)            # the plain image panel
  np.testing.assert_array_equal(out, parse_vis.draw(batch, {"label": pred}, {"num_classes": 8},
                                                    1, alpha=0.5))
  with pytest.raises(ValueError, match="num_classes"):
    parse_vis.draw(batch, {"label": pred}, {"num_classes": 3}, 1)


# ----------------------------------------------------------------------------------------------
# Detection.


def _det_inputs():
  b, canvas = 2, 128
  image = _grey(b, canvas, canvas)
  image[:, 100:, :] = 0       # padding below the real 100 x 120 image
  batch = {"image": image, "image_hw": np.array([[100, 120]] * b),
           "boxes": np.array([[[0.5, 0.5, 0.25, 0.4], [0.0, 0.0, 0.0, 0.0]]] * b, np.float32),
           "box_mask": np.array([[True, False]] * b),
           "ignore_boxes": np.array([[[0.85, 0.2, 0.2, 0.3]]] * b, np.float32),
           "ignore_mask": np.ones((b, 1), bool)}
  pred = {"scores": np.array([[0.9, 0.2]] * b),
          "boxes": np.array([[[20.0, 30.0, 60.0, 70.0], [70.0, 60.0, 110.0, 95.0]]] * b)}
  return batch, pred


def test_detection_boxes_ignore_threshold():
  batch, pred = _det_inputs()
  out = det_vis.draw(batch, pred, {}, max_examples=1, score_threshold=0.5)
  assert out.shape == (PAD + 100 + 2 * LH + 2 + PAD, PAD + 120 + PAD, 3)   # unpadded image only
  np.testing.assert_array_equal(out, det_vis.draw(batch, pred, {}, 1, score_threshold=0.5))
  assert _px(out, PAD + 50, PAD + 20) == vis.PRED          # left edge of the 0.9 box
  assert _px(out, PAD + 69, PAD + 40) == vis.PRED          # bottom edge (row ceil(70) - 1)
  assert _px(out, PAD + 50, PAD + 40) == (90, 90, 90)      # inside: untouched
  assert _px(out, PAD + 80, PAD + 70) == (90, 90, 90)      # 0.2 box is below the threshold
  # Truth: cx 60, cy 50, w 30, h 40 pixels -> left edge column 45.
  assert _px(out, PAD + 60, PAD + 45) == vis.TRUE
  # Ignore region: x 90..114, y 5..35, hatched grey.
  region = out[PAD + 6:PAD + 34, PAD + 91:PAD + 113]
  assert _has_colour(region, vis.NEUTRAL) and _has_colour(region, (90, 90, 90))
  low = det_vis.draw(batch, pred, {}, 1, score_threshold=0.1)
  assert _px(low, PAD + 80, PAD + 70) == vis.PRED


def test_detection_boxes_in_original_pixels():
  batch, pred = _det_inputs()
  ref = det_vis.draw(batch, pred, {}, 1)
  scaled = dict(batch, orig_hw=batch["image_hw"] * 2)
  np.testing.assert_array_equal(
      det_vis.draw(scaled, dict(pred, boxes=pred["boxes"] * 2), {}, 1), ref)


# ----------------------------------------------------------------------------------------------
# Counting.


def test_counting_heat_maps():
  b, h, w, s = 2, 32, 96, 4
  truth = np.zeros((b, h // s, w // s), np.float32)
  truth[:, 2, 3] = 0.5
  pred = np.zeros_like(truth)
  pred[:, 5, 10] = 1.0
  batch = {"image": _grey(b, h, w), "density": truth, "count": truth.sum((1, 2))}
  preds = {"density": pred, "count": pred.sum((1, 2))}
  out = count_vis.draw(batch, preds, {"output_stride": s}, max_examples=1)
  assert out.shape == (PAD + h + LH + 2 + PAD, PAD + 3 * w + 2 * PAD + PAD, 3)
  x_pred, x_true = PAD + w + PAD, PAD + 2 * (w + PAD)
  # The row's maximum (the predicted cell) is white; the true cell, half of it, is not black.
  assert _px(out, PAD + 5 * s + 1, x_pred + 10 * s + 1) == (255, 255, 255)
  assert _px(out, PAD + 0, x_pred + 0) == (0, 0, 0)
  true_px = _px(out, PAD + 2 * s + 1, x_true + 3 * s + 1)
  assert true_px == tuple(int(v) for v in vis.heat_colours(np.array(0.5), 1.0))
  assert true_px not in ((0, 0, 0), (255, 255, 255))
  np.testing.assert_array_equal(out, count_vis.draw(batch, preds, {"output_stride": s}, 1))
  no_truth = count_vis.draw({"image": batch["image"]}, preds, {"output_stride": s}, 1)
  assert no_truth.shape[1] == PAD + 2 * w + PAD + PAD


# ----------------------------------------------------------------------------------------------
# Attributes.


def test_attribute_marks():
  b, h, w = 2, 80, 32
  names = ["male", "hat", "bag", "skirt"]
  batch = {"image": _grey(b, h, w), "labels": np.array([[1, 0, 1, -1], [1, 0, 0, 0]], np.int8)}
  pred = {"pred": np.array([[1, 1, 0, 1], [1, 0, 0, 0]], bool),
          "probs": np.array([[0.9, 0.8, 0.2, 0.7], [0.9, 0.1, 0.1, 0.1]])}
  lines = attr_vis.attribute_lines(pred["pred"][0], pred["probs"][0], batch["labels"][0], names)
  assert lines[0][0] == "1 right, 1 wrong, 1 missed"
  assert [(t[0], c) for t, c in lines[1:]] == [(" ", vis.CORRECT), ("+", vis.WRONG),
                                               ("-", vis.MISSED), ("?", vis.NEUTRAL)]
  first = attr_vis.draw(batch, pred, {}, max_examples=1, names=names)
  panel = first[PAD:, PAD + w:]
  for colour in (vis.CORRECT, vis.WRONG, vis.MISSED, vis.NEUTRAL):
    assert _has_colour(panel, colour)
  only_right = attr_vis.draw({k: v[1:] for k, v in batch.items()},
                             {k: v[1:] for k, v in pred.items()}, {}, 1, names=names)
  assert _has_colour(only_right, vis.CORRECT)
  assert not any(_has_colour(only_right, c) for c in (vis.WRONG, vis.MISSED, vis.NEUTRAL))
  np.testing.assert_array_equal(first, attr_vis.draw(batch, pred, {}, 1, names=names))
  assert first.shape[0] == PAD + h + PAD     # the image is taller than the 5-line list (72 px)
  with pytest.raises(ValueError, match="names"):
    attr_vis.draw(batch, pred, {}, 1, names=names[:3])


# ----------------------------------------------------------------------------------------------
# ReID.


def test_reid_frames():
  h, w, f = 40, 96, reid_vis.FRAME
  q_feat = np.eye(4)[:2]                      # queries along axes 0 and 1
  g_feat = np.array([[1.0, 0.1, 0, 0],        # nearest to query 0, same id -> green
                     [0.1, 1.0, 0, 0],        # nearest to query 1, other id -> red
                     [0.0, 1.0, 0.05, 0],     # same id and camera as query 1 -> removed
                     [0.0, 0.0, 1.0, 0]])
  query = {"image": _grey(2, h, w, 10), "feature": q_feat, "person_id": np.array([5, 6]),
           "camera_id": np.array([1, 1])}
  gallery = {"image": _grey(4, h, w, 200), "feature": g_feat,
             "person_id": np.array([5, 7, 6, 8]), "camera_id": np.array([2, 2, 1, 2])}
  order, _ = reid_vis.rank_gallery(query, gallery, top_k=5)
  assert order[0, 0] == 0 and order[1, 0] == 1 and 2 not in order[1]
  assert order[1, -2:].tolist() == [-1, -1]   # only 3 kept gallery images for query 1
  out = reid_vis.draw(query, gallery, None, max_examples=2, top_k=2)
  tile_w, tile_h = w + 2 * f, h + 2 * f + 2 * LH + 2
  assert out.shape == (PAD + 2 * (tile_h + PAD), PAD + 3 * tile_w + 2 * PAD + PAD, 3)
  x1 = PAD + tile_w + PAD                     # first match of each row
  row1 = PAD + tile_h + PAD
  assert _px(out, PAD, PAD) == vis.NEUTRAL                    # query frame
  assert _px(out, PAD, x1) == vis.CORRECT
  assert _px(out, PAD + f + 5, x1 + f + 5) == (200, 200, 200)
  assert _px(out, row1, x1) == vis.WRONG
  np.testing.assert_array_equal(out, reid_vis.draw(query, gallery, None, 2, top_k=2))


# ----------------------------------------------------------------------------------------------
# Caption text (issue 15): words stay apart, distances say something, attributes have names.


def _captured(monkeypatch):
  """Records the lines of every caption drawn (as strings)."""
  lines = []
  real = vis.caption

  def caption(image, items, **kw):
    lines.extend(t if isinstance(t, str) else t[0] for t in items)
    return real(image, items, **kw)

  monkeypatch.setattr(vis, "caption", caption)
  return lines


def test_caption_spaces_separate_words():
  out = vis.caption(np.zeros((0, 200, 3), np.uint8), ["3 right"])
  ink = np.any(out != np.asarray(vis.BACKGROUND, np.uint8), axis=(0, 2))
  cols = np.nonzero(ink)[0]
  gaps = np.diff(cols) - 1                     # blank columns between inked ones
  assert gaps.max() >= vis.SPACE_WIDTH         # the space; letters are at most 2 apart
  assert sorted(gaps)[-2] <= 2
  assert vis.text_width("3 right") == vis.text_width("3") + vis.SPACE_WIDTH + vis.text_width(
      "right")
  assert cols.max() + 1 <= 2 + vis.text_width("3 right")   # the caption width covers the ink


def test_reid_captions_show_cosine_similarity_with_enough_digits(monkeypatch):
  assert reid_vis.similarity_digits(np.array([0.5, 0.2])) == 3
  assert reid_vis.similarity_digits(np.array([0.9988, 0.998])) == 4
  assert reid_vis.similarity_digits(np.array([0.99999, 0.9])) == 6
  assert reid_vis.similarity_digits(np.array([1.0, np.nan])) == 3
  # Features of a briefly trained model: one shared direction plus a little of their own, so
  # every squared distance reads 0.00 with two decimals.
  rng = np.random.default_rng(0)
  common = np.zeros(16)
  common[0] = 1.0
  q = common + 0.02 * rng.normal(size=(2, 16))
  g = common + 0.02 * rng.normal(size=(5, 16))
  lines = _captured(monkeypatch)
  reid_vis.draw({"image": _grey(2, 40, 96), "feature": q, "person_id": np.array([1, 2])},
                {"image": _grey(5, 40, 96), "feature": g, "person_id": np.arange(5)},
                None, max_examples=2, top_k=3)
  shown = [l for l in lines if l.startswith("cos ")]
  assert len(shown) == 6
  n = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  cos = n(q) @ n(g).T
  best = np.sort(cos, axis=1)[:, ::-1][:, :3]
  digits = reid_vis.similarity_digits(best)
  assert digits >= 4
  assert shown == [f"cos {c:.{digits}f}" for c in best.reshape(-1)]
  # The old caption (squared distance of normalised features, 2 decimals) was one value for all.
  assert {f"d {2 - 2 * c:.2f}" for c in best.reshape(-1)} == {"d 0.01"}
  assert len(set(shown)) >= 5                  # the new one tells the matches apart
  assert not any(l.startswith("d ") for l in lines)


def _prepared(root, name, meta):
  folder = root / name / "1.0.0"
  folder.mkdir(parents=True)
  (folder / "dataset_info.json").write_text('{"splits": []}')
  if meta is not None:
    (folder / "metadata.json").write_text(__import__("json").dumps(meta))


def test_attribute_names_from_the_prepared_metadata(tmp_path, monkeypatch):
  import ml_collections
  _prepared(tmp_path, "attributes/named", {"attr_names": ["hat", "bag"], "num_attributes": 2})
  _prepared(tmp_path, "attributes/three", {"attr_names": ["a", "b", "c"]})
  _prepared(tmp_path, "attributes/bare", {"num_attributes": 2})
  _prepared(tmp_path, "attributes/nometa", None)
  batch = {"image": _grey(1, 60, 32), "labels": np.array([[1, 1]], np.int8)}
  pred = {"pred": np.array([[1, 0]], bool), "probs": np.array([[0.9, 0.3]])}

  def names_drawn(cfg):
    lines = _captured(monkeypatch)
    attr_vis.draw(batch, pred, cfg, 1)
    monkeypatch.undo()
    return [l.split()[-2] for l in lines[1:]]   # "  hat 0.90" / "- bag 0.30"

  def d(name, **kw):   # the dataset config train._pictures passes
    return ml_collections.ConfigDict(dict(task="attributes", tfds_name=name,
                                          data_dir=str(tmp_path), **kw))

  assert names_drawn(d("attributes/named")) == ["hat", "bag"]
  assert attr_vis.dataset_attribute_names(d("attributes/named"), 2) == ["hat", "bag"]
  # Wrong count, no names, no metadata, nothing prepared, no config: numbered.
  for cfg in (d("attributes/three"), d("attributes/bare"), d("attributes/nometa"),
              d("attributes/absent"), {}, None):
    assert attr_vis.dataset_attribute_names(cfg, 2) == ["attr_0", "attr_1"]
  assert names_drawn({}) == ["attr_0", "attr_1"]
  # Names in the config win over the metadata.
  assert names_drawn(d("attributes/named", attribute_names=("male", "skirt"))) == ["male",
                                                                                  "skirt"]
