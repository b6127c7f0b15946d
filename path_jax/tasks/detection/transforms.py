"""Pedestrian-detection input transforms (REFERENCE.md §7.5, DETR style), NumPy/PIL.

Geometry is in *continuous* pixel coordinates (boxes x1, y1, x2, y2 as DETR). Train:
horizontal flip (p 0.5); then with p 0.5 a resize of the short side to a size drawn from
``train_scales`` (long side capped at ``max_size``), else a resize to a short side from
``crop_scales`` (no cap), a random crop of ``crop_size`` (each side drawn in the range, at most
the image), and a resize as in the first branch. The crop and both resizes are one resampling
of the original image (PIL ``resize(box=...)``). Boxes are clipped to the crop; boxes left
without area are dropped. Eval: short side ``eval_scale``, long side at most ``max_size``.

Then, for static shapes, the image is shrunk further if it exceeds the canvas ``image_size``
(H, W) and zero-padded on the right/bottom to it. The real sizes (800 / 1333) are the defaults;
scaled-down runs set ``train_scales``, ``max_size``, ``crop_*``, ``eval_scale`` and
``image_size`` in the dataset config.

Targets (detection package's batch fields): ``boxes [G, 4]`` normalised cxcywh by the unpadded
image size ``image_hw``, ``box_mask [G]``; ignore regions likewise in ``ignore_boxes [I, 4]`` /
``ignore_mask [I]``. ``G = max_boxes`` and ``I = max_ignore`` default to a budget that keeps
every person of CrowdHuman (:mod:`.budget`). Persons beyond ``max_boxes`` become ignore regions
while there is room (no loss either way, rather than being taught as background); beyond that
they are dropped; either way the image is counted and logged as a warning that names the field
to raise (:class:`.budget.OverflowLog`, ``transform.overflow.counts``).
Eval examples add ``orig_hw`` (the record's image size) for decoding to original pixels and,
when the record has the builder's ``visible_ratio``, ``visible_ratio [G]`` float32 aligned with
``boxes`` (0 in empty slots): the visible fraction of each person, which Caltech's
heavy-occlusion evaluation selects on.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from path_jax.input import image_ops
from path_jax.input.fields import hw, option
from path_jax.tasks.detection import budget

DEFAULTS = {
    "image_size": (1344, 1344),                     # static padded canvas (H, W)
    "train_scales": tuple(range(480, 801, 32)),     # short side choices
    "max_size": 1333,                               # cap on the long side
    "crop_prob": 0.5,                               # probability of the resize-crop-resize branch
    "crop_scales": (400, 500, 600),
    "crop_size": (384, 600),                        # RandomSizeCrop(min, max)
    "eval_scale": 800,
    "flip_prob": 0.5,
    "max_boxes": budget.DEFAULT_MAX_BOXES,          # person slots per image
    "max_ignore": budget.DEFAULT_MAX_IGNORE,        # ignore-region slots per image
}


def _opt(cfg, key):
  return option(cfg, key, DEFAULTS, "detection.transforms")


def size_with_max(hw_in: tuple[float, float], short: int, max_size: int | None) -> tuple[int, int]:
  """DETR ``get_size_with_aspect_ratio``: (h, w) with short side ``short``, long <= max_size."""
  h, w = hw_in
  if max_size is not None:
    lo, hi = float(min(h, w)), float(max(h, w))
    if hi / lo * short > max_size:
      short = int(round(max_size * lo / hi))
  if (w <= h and w == short) or (h <= w and h == short):
    return int(h), int(w)
  if w < h:
    return int(short * h / w), int(short)
  return int(short), int(short * w / h)


def _cxcywh(boxes: np.ndarray, hw_out: tuple[int, int]) -> np.ndarray:
  h, w = hw_out
  c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2 / w, (boxes[:, 1] + boxes[:, 3]) / 2 / h,
                (boxes[:, 2] - boxes[:, 0]) / w, (boxes[:, 3] - boxes[:, 1]) / h], axis=1)
  return c.astype(np.float32)


def _pad(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
  out = np.zeros((n, 4), np.float32)
  mask = np.zeros((n,), bool)
  k = min(len(rows), n)
  out[:k], mask[:k] = rows[:k], True
  return out, mask


class _Base:

  def __init__(self, cfg: Mapping[str, Any]):
    self.canvas = hw(_opt(cfg, "image_size"), "detection image_size")
    self.max_size = int(_opt(cfg, "max_size"))
    self.max_boxes = int(_opt(cfg, "max_boxes"))
    self.max_ignore = int(_opt(cfg, "max_ignore"))
    name = cfg.get("tfds_name", None) if cfg is not None else None
    self.overflow = budget.OverflowLog(
        self.max_boxes, self.max_ignore,
        f"the dataset reading {name!r}" if name else "a detection dataset")

  def _finish(self, image: np.ndarray, region: tuple[float, float, float, float],
              out_hw: tuple[int, int], boxes: np.ndarray, ignore: np.ndarray,
              person_values: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Resamples ``region`` (x0, y0, x1, y1 of the original image) to ``out_hw`` (shrunk to the
    canvas if needed), pads, and maps boxes given in original coordinates.

    ``person_values [P]`` (one per person box, e.g. the visible ratio) follow the persons that
    keep a slot and come back padded as ``'person_values' [G]`` float32.
    """
    oh, ow = out_hw
    fit = min(1.0, self.canvas[0] / oh, self.canvas[1] / ow)
    if fit < 1.0:
      oh, ow = max(1, int(oh * fit)), max(1, int(ow * fit))
    x0, y0, x1, y1 = region
    scale = np.array([ow / (x1 - x0), oh / (y1 - y0)] * 2)
    shift = np.array([x0, y0] * 2)

    def place(b):
      b = (b.reshape(-1, 4) - shift) * scale
      b = np.clip(b, 0.0, np.array([ow, oh, ow, oh], np.float64))
      keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
      return b[keep], keep

    (persons, kept), (ignores, _) = place(boxes), place(ignore)
    self.overflow.record(len(persons), len(ignores))
    # Persons that do not fit the static slots become ignore regions (no loss), not background.
    ignores = np.concatenate([ignores, persons[self.max_boxes:]], axis=0)
    persons = persons[:self.max_boxes]
    resized = image_ops.resize(image, (oh, ow), "bilinear", box=(x0, y0, x1, y1))
    canvas = image_ops.pad_crop(resized, self.canvas, 0, 0, 0)
    b, bm = _pad(_cxcywh(persons, (oh, ow)), self.max_boxes)
    ib, im = _pad(_cxcywh(ignores, (oh, ow)), self.max_ignore)
    out = {"image": canvas, "boxes": b, "box_mask": bm, "ignore_boxes": ib, "ignore_mask": im,
           "image_hw": np.array([oh, ow], np.int32)}
    if person_values is not None:
      values = np.asarray(person_values, np.float32).reshape(-1)[kept][:self.max_boxes]
      out["person_values"] = np.zeros((self.max_boxes,), np.float32)
      out["person_values"][:len(values)] = values
    return out


def _ignore_flags(record) -> np.ndarray:
  n = np.asarray(record["boxes"]).reshape(-1, 4).shape[0]
  return np.asarray(record.get("is_ignore", np.zeros(n, bool)), bool).reshape(-1)


def _boxes(record) -> tuple[np.ndarray, np.ndarray]:
  boxes = np.asarray(record["boxes"], np.float64).reshape(-1, 4)
  ignore = _ignore_flags(record)
  return boxes[~ignore], boxes[ignore]


class TrainTransform(_Base):
  """``(record, rng) -> {'image', 'boxes', 'box_mask', 'ignore_boxes', 'ignore_mask', 'image_hw'}``."""

  def __init__(self, cfg: Mapping[str, Any]):
    super().__init__(cfg)
    self.scales = tuple(int(s) for s in _opt(cfg, "train_scales"))
    self.crop_prob = float(_opt(cfg, "crop_prob"))
    self.crop_scales = tuple(int(s) for s in _opt(cfg, "crop_scales"))
    self.crop_min, self.crop_max = (int(s) for s in _opt(cfg, "crop_size"))
    self.flip_prob = float(_opt(cfg, "flip_prob"))

  def __call__(self, record: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    image = image_ops.as_rgb(record["image"])
    persons, ignore = _boxes(record)
    h, w = image.shape[:2]
    if rng.random() < self.flip_prob:
      image = np.ascontiguousarray(image[:, ::-1])
      flip = lambda b: np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)  # noqa: E731
      persons, ignore = flip(persons), flip(ignore)
    region = (0.0, 0.0, float(w), float(h))
    if rng.random() >= self.crop_prob:
      short = self.scales[int(rng.integers(len(self.scales)))]
      out_hw = size_with_max((h, w), short, self.max_size)
    else:
      # Resize (no cap) -> RandomSizeCrop on the resized image -> resize with the cap; only the
      # crop window, mapped back to original pixels, and the final size matter for one resample.
      mid_h, mid_w = size_with_max((h, w), self.crop_scales[int(rng.integers(len(self.crop_scales)))],
                                   None)
      cw = int(rng.integers(self.crop_min, max(self.crop_min, min(mid_w, self.crop_max)) + 1))
      ch = int(rng.integers(self.crop_min, max(self.crop_min, min(mid_h, self.crop_max)) + 1))
      cw, ch = min(cw, mid_w), min(ch, mid_h)
      top = int(rng.integers(0, mid_h - ch + 1))
      left = int(rng.integers(0, mid_w - cw + 1))
      sx, sy = w / mid_w, h / mid_h
      region = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
      short = self.scales[int(rng.integers(len(self.scales)))]
      out_hw = size_with_max((ch, cw), short, self.max_size)
    return self._finish(image, region, out_hw, persons, ignore)


class EvalTransform(_Base):
  """``record -> {... train fields, 'orig_hw'[, 'visible_ratio']}``: short side ``eval_scale``, no
  augmentation."""

  def __init__(self, cfg: Mapping[str, Any]):
    super().__init__(cfg)
    self.scale = int(_opt(cfg, "eval_scale"))

  def __call__(self, record: Mapping[str, Any]) -> dict[str, np.ndarray]:
    image = image_ops.as_rgb(record["image"])
    persons, ignore = _boxes(record)
    h, w = image.shape[:2]
    visible = None
    if "visible_ratio" in record:
      ratio = np.asarray(record["visible_ratio"], np.float32).reshape(-1)
      flags = _ignore_flags(record)
      if ratio.shape != flags.shape:
        raise ValueError(f"detection record {record.get('image_id', '?')!r}: visible_ratio has "
                         f"{ratio.size} values for {flags.size} boxes; rebuild the dataset with "
                         "data/build.py.")
      visible = ratio[~flags]
    out = self._finish(image, (0.0, 0.0, float(w), float(h)),
                       size_with_max((h, w), self.scale, self.max_size), persons, ignore,
                       person_values=visible)
    if visible is not None:
      out["visible_ratio"] = out.pop("person_values")
    out["orig_hw"] = np.array([h, w], np.int32)
    return out


def train_transform(cfg: Mapping[str, Any]) -> TrainTransform:
  return TrainTransform(cfg)


def eval_transform(cfg: Mapping[str, Any]) -> EvalTransform:
  return EvalTransform(cfg)
