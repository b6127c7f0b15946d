"""Per-task train/eval transforms: geometry of images, keypoints, masks, boxes and points agrees."""
import numpy as np
import pytest

from path_jax.input import image_ops
from path_jax.tasks.attributes import transforms as attr_t
from path_jax.tasks.counting import transforms as count_t
from path_jax.tasks.detection import transforms as det_t
from path_jax.tasks.parsing import transforms as pars_t
from path_jax.tasks.pose import transforms as pose_t
from path_jax.tasks.reid import transforms as reid_t


def _bilinear_warp_reference(image, m, out_hw):
  """cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) in plain NumPy, index coordinates."""
  inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
  ys, xs = np.mgrid[0:out_hw[0], 0:out_hw[1]]
  src = inv[:2, :2] @ np.stack([xs.ravel(), ys.ravel()]) + inv[:2, 2:]
  sx, sy = src
  x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
  fx, fy = sx - x0, sy - y0
  img = image.astype(np.float64)
  h, w = image.shape[:2]

  def px(y, x):
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    return img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)] * ok[:, None]

  out = (px(y0, x0) * ((1 - fx) * (1 - fy))[:, None] + px(y0, x0 + 1) * (fx * (1 - fy))[:, None]
         + px(y0 + 1, x0) * ((1 - fx) * fy)[:, None] + px(y0 + 1, x0 + 1) * (fx * fy)[:, None])
  inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
  return out.reshape(out_hw + (image.shape[2],)), inside.reshape(out_hw)


def test_warp_affine_matches_index_coordinate_bilinear_reference():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
  m = pose_t.warp_matrix(23.0, np.array([24.0, 19.0]), np.array([30.0, 40.0]), (32, 24))
  got = image_ops.warp_affine(image, m, (32, 24)).astype(np.float64)
  want, inside = _bilinear_warp_reference(image, m, (32, 24))
  # PIL interpolates in 8-bit fixed point: a grey level or two of rounding.
  assert np.abs(got - want)[inside].max() <= 2.0
  assert inside.mean() > 0.5


def _blob(hw, centres, sigma=2.0):
  ys, xs = np.mgrid[0:hw[0], 0:hw[1]]
  img = np.zeros(hw, np.float64)
  for x, y in centres:
    img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
  return (255 * np.clip(img, 0, 1)).astype(np.uint8)


def _centroid(plane, threshold=40):
  w = np.where(plane > threshold, plane.astype(np.float64), 0.0)
  ys, xs = np.mgrid[0:plane.shape[0], 0:plane.shape[1]]
  return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


def test_pose_train_dot_lands_on_heatmap_peak_and_flip_swaps_joints():
  h, w = 160, 200
  kp = np.array([97.0, 63.0])
  gray = _blob((h, w), [kp])
  image = np.stack([gray, np.zeros_like(gray), np.zeros_like(gray)], axis=-1)
  keypoints = np.zeros((17, 3), np.float32)
  keypoints[5] = [kp[0], kp[1], 2]           # left shoulder only
  record = {"image": image, "bbox": np.array([60, 30, 80, 100], np.float32),
            "keypoints": keypoints}
  t = pose_t.train_transform({"image_size": (128, 96)})
  stride = np.array([(96 - 1) / (24 - 1), (128 - 1) / (32 - 1)])
  seen = set()
  for seed in range(12):
    out = t(record, np.random.default_rng(seed))
    assert out["image"].shape == (128, 96, 3) and out["target"].shape == (32, 24, 17)
    joints = np.flatnonzero(out["target_weight"])
    if not len(joints) or out["image"][..., 0].max() < 200:
      continue                                # the dot left the crop
    assert list(joints) in ([5], [6])
    seen.add(int(joints[0]))
    dot = _centroid(out["image"][..., 0])
    heat = out["target"][..., joints[0]]
    peak = _centroid((heat / heat.max() * 255).astype(np.uint8), 1) * stride
    np.testing.assert_allclose(peak, dot, atol=1.0)
  assert seen == {5, 6}, "need both flipped and unflipped draws"


def test_pose_eval_heatmap_peak_matches_udp_box_mapping():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
  keypoints = np.zeros((17, 3), np.float32)
  keypoints[0] = [40.0, 50.0, 2]
  keypoints[16] = [55.0, 80.0, 1]
  bbox = np.array([20, 30, 50, 60], np.float32)
  out = pose_t.eval_transform({"image_size": (64, 48)})(
      {"image": image, "bbox": bbox, "keypoints": keypoints, "image_id": 7})
  # Independent UDP box: centre of the bbox; 50 x 60 is too wide for 48:64, so h = 50 * 64 / 48;
  # then x1.25.
  np.testing.assert_allclose(out["center"], [45.0, 60.0])
  np.testing.assert_allclose(out["box_size"], [50 * 1.25, 50 * 64 / 48 * 1.25], rtol=1e-6)
  box = out["box_size"].astype(np.float64)
  for j in (0, 16):
    x_in = (keypoints[j, :2] - out["center"] + box / 2) * np.array([47.0, 63.0]) / box
    heat = out["target"][..., j]
    peak = _centroid((heat / heat.max() * 255).astype(np.uint8), 1)
    np.testing.assert_allclose(peak * np.array([47 / 11, 63 / 15]), x_in, atol=0.6)
  assert out["target_weight"].tolist() == [1.0] + [0.0] * 15 + [1.0]
  assert out["image_id"] == 7


def test_parsing_flip_swaps_label_pairs_and_pads_with_ignore():
  h, w = 40, 60
  image = np.zeros((h, w, 3), np.uint8)
  label = np.zeros((h, w, 1), np.uint8)
  image[:, :30] = (200, 0, 0)
  label[:, :30] = 14
  image[:, 30:] = (0, 200, 0)
  label[:, 30:] = 15
  t = pars_t.train_transform({"image_size": (48, 48)})
  flips = set()
  for seed in range(16):
    out = t({"image": image, "label": label}, np.random.default_rng(seed))
    img, lab = out["image"], out["label"]
    assert img.shape == (48, 48, 3) and lab.shape == (48, 48) and lab.dtype == np.uint8
    red = (img == (200, 0, 0)).all(-1)
    green = (img == (0, 200, 0)).all(-1)
    # Flipping moves red to the right; it must then carry the swapped class.
    left_red = red[:, :24].sum() > red[:, 24:].sum() if red.any() else None
    if red.any():
      assert set(np.unique(lab[red])) <= {14, 15} and len(np.unique(lab[red])) == 1
      red_class = int(np.unique(lab[red])[0])
      if green.any():
        assert set(np.unique(lab[green])) == {29 - red_class}
      flips.add(red_class)
      if left_red is not None and green.any():
        assert (red_class == 14) == (np.argmax(red.any(0)) < np.argmax(green.any(0)))
    pad = lab == 255
    assert not img[pad].any()                 # padding: image 0, label 255
  assert flips == {14, 15}


def test_attributes_train_without_pad_is_flipped_resize():
  rng = np.random.default_rng(2)
  image = rng.integers(0, 256, (50, 30, 3), dtype=np.uint8)
  labels = np.array([1, -1, 0], np.int8)
  cfg = {"image_size": (32, 16), "pad": 0, "flip_prob": 1.0}
  out = attr_t.train_transform(cfg)({"image": image, "labels": labels}, np.random.default_rng(0))
  np.testing.assert_array_equal(out["image"], image_ops.resize(image, (32, 16))[:, ::-1])
  np.testing.assert_array_equal(out["labels"], labels)
  ev = attr_t.eval_transform(cfg)({"image": image, "labels": labels})
  np.testing.assert_array_equal(ev["image"], image_ops.resize(image, (32, 16)))


def test_reid_pad_crop_is_a_shift_and_erasing_is_one_solid_rectangle():
  rng = np.random.default_rng(3)
  image = rng.integers(1, 256, (64, 32, 3), dtype=np.uint8)
  cfg = {"image_size": (64, 32), "flip_prob": 0.0, "erase_prob": 0.0}
  out = reid_t.train_transform(cfg)({"image": image, "person_id": 5}, np.random.default_rng(4))
  assert out["label"] == 5 and out["label"].dtype == np.int32
  resized = image_ops.resize(image, (64, 32))
  # Find the shift (dy, dx) in [-10, 10]^2 that reproduces the crop from the zero-padded image.
  padded = np.pad(resized, ((10, 10), (10, 10), (0, 0)))
  hits = [(dy, dx) for dy in range(21) for dx in range(21)
          if np.array_equal(padded[dy:dy + 64, dx:dx + 32], out["image"])]
  assert len(hits) >= 1
  erased = image_ops.random_erase(np.zeros((100, 50, 3), np.uint8) + 0, np.random.default_rng(5),
                                  (0.02, 0.4), 0.3)
  changed = (erased != 0).any(-1)
  ys, xs = np.nonzero(changed)
  rect = changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
  assert rect.all()                                      # one solid rectangle
  assert len(np.unique(erased[changed], axis=0)) == 1    # of one colour
  frac = rect.size / 5000
  assert 0.015 <= frac <= 0.42
  assert 0.25 <= rect.shape[0] / rect.shape[1] <= 1 / 0.25


def test_reid_same_seed_same_output():
  image = np.random.default_rng(6).integers(0, 256, (70, 40, 3), dtype=np.uint8)
  t = reid_t.train_transform({"image_size": (32, 16)})
  a = t({"image": image, "person_id": 1}, np.random.default_rng(9))
  b = t({"image": image, "person_id": 1}, np.random.default_rng(9))
  c = [t({"image": image, "person_id": 1}, np.random.default_rng(s))["image"] for s in range(4)]
  np.testing.assert_array_equal(a["image"], b["image"])
  assert any(not np.array_equal(c[0], x) for x in c[1:])


def _det_cfg():
  return {"image_size": (96, 96), "train_scales": (40, 48, 56), "max_size": 90,
          "crop_scales": (40, 50), "crop_size": (20, 40), "eval_scale": 48, "max_boxes": 3,
          "max_ignore": 2}


def test_detection_boxes_follow_the_image():
  h, w = 60, 80
  image = np.zeros((h, w, 3), np.uint8)
  boxes = np.array([[10, 12, 30, 40], [50, 20, 70, 50]], np.float32)
  image[12:40, 10:30] = (255, 0, 0)     # person: red
  image[20:50, 50:70] = (0, 255, 0)     # ignore: green
  record = {"image": image, "boxes": boxes, "is_ignore": np.array([False, True])}
  t = det_t.train_transform(_det_cfg())
  for seed in range(10):
    out = t(record, np.random.default_rng(seed))
    assert out["image"].shape == (96, 96, 3) and out["boxes"].shape == (3, 4)
    oh, ow = out["image_hw"]
    assert not out["image"][oh:].any() and not out["image"][:, ow:].any()
    scale = np.array([ow, oh, ow, oh])
    for field, mask, ch in (("boxes", "box_mask", 0), ("ignore_boxes", "ignore_mask", 1)):
      plane = out["image"][..., ch] > 127
      if not out[mask].any():
        assert plane.sum() <= 2 * (oh + ow)            # at most a sliver was cropped away
        continue
      assert out[mask].sum() == 1
      cx, cy, bw, bh = out[field][0] * scale
      ys, xs = np.nonzero(plane)
      # Pixels are covered when their centre is inside the box: [x0, x1) -> x0 .. x1 - 1.
      np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1],
                                 [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], atol=1.5)


def test_detection_eval_size_rule_and_overflow_to_ignore():
  image = np.zeros((60, 80, 3), np.uint8)
  boxes = np.array([[i, i, i + 5, i + 6] for i in range(0, 50, 10)], np.float32)   # 5 persons
  out = det_t.eval_transform(_det_cfg())({"image": image, "boxes": boxes,
                                          "is_ignore": np.zeros(5, bool)})
  # Short side 48, long side 64 <= max 90; then 3 persons in slots and 2 moved to ignore.
  assert out["image_hw"].tolist() == [48, 64] and out["orig_hw"].tolist() == [60, 80]
  assert out["box_mask"].tolist() == [True] * 3 and out["ignore_mask"].tolist() == [True] * 2
  np.testing.assert_allclose(out["boxes"][0], [2.5 / 80, 3 / 60, 5 / 80, 6 / 60], atol=1e-6)
  assert det_t.size_with_max((100, 300), 48, 90) == (30, 90)


def test_counting_density_follows_the_point():
  image = np.zeros((80, 100, 3), np.uint8)
  image[30, 70] = 255                       # pixel (row 30, col 70): point (70.5, 30.5)
  record = {"image": image, "points": np.array([[70.5, 30.5]], np.float32)}
  t = count_t.train_transform({"image_size": (48, 48), "output_stride": 4, "sigma": 4.0})
  hits = 0
  for seed in range(12):
    out = t(record, np.random.default_rng(seed))
    assert out["image"].shape == (48, 48, 3) and out["density"].shape == (12, 12)
    np.testing.assert_allclose(out["density"].sum(), out["count"], rtol=1e-5)
    ys, xs = np.nonzero(out["image"][..., 0])
    assert out["count"] == len(ys)
    if len(ys):
      hits += 1
      d = out["density"]
      gy, gx = np.mgrid[0:12, 0:12]
      c = np.array([(d * (gx + 0.5)).sum(), (d * (gy + 0.5)).sum()]) * 4 / d.sum()
      if 8 < xs[0] < 40 and 8 < ys[0] < 40:   # away from the border, where the kernel is cut
        np.testing.assert_allclose(c, [xs[0] + 0.5, ys[0] + 0.5], atol=0.75)
  assert hits
  ev = count_t.eval_transform({"eval_image_size": (64, 64)})(record)
  assert ev["image_hw"].tolist() == [51, 64] and ev["density"].shape == (16, 16)
  assert ev["count"] == 1


@pytest.mark.parametrize("module", [reid_t, pose_t, pars_t, attr_t, det_t, count_t])
def test_unknown_option_name_is_an_error(module):
  from path_jax.input.fields import option
  with pytest.raises(KeyError, match="not a transform option"):
    option({}, "no_such_field", module.DEFAULTS, module.__name__)
