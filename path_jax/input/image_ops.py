"""Host-side image geometry for the input pipelines (NumPy + PIL; no OpenCV, no TensorFlow).

Two coordinate conventions appear in the transforms, and each function says which it uses:

* *index* coordinates: pixel (row r, col c) sits at the point (x=c, y=r). OpenCV's warpAffine
  and mmpose's keypoint transforms use these.
* *continuous* coordinates: pixel (r, c) covers [c, c+1) x [r, r+1). Boxes (DETR) and counting
  points use these; a resize by s maps x to s*x.

PIL samples at pixel centres in continuous coordinates, so an index-coordinate affine M is
converted (shifted by half a pixel on both sides) before it reaches ``Image.transform``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}


def _pil(image: np.ndarray) -> Image.Image:
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[:, :, 0]
  return Image.fromarray(np.ascontiguousarray(image))


def _np(img: Image.Image, channels: int | None) -> np.ndarray:
  out = np.asarray(img)
  if channels == 1 and out.ndim == 2:
    out = out[:, :, None]
  return out


def warp_affine(image: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int],
                resample: str = "bilinear", fill: int = 0) -> np.ndarray:
  """``cv2.warpAffine(image, matrix, (W, H))`` with PIL.

  Args:
    image: ``[H, W, C]`` or ``[H, W]`` uint8.
    matrix: ``[2, 3]`` forward map, *index* coordinates: ``dst = matrix @ [x, y, 1]``.
    out_hw: output (height, width) in pixels.
    resample: 'bilinear' (images) or 'nearest' (label maps).
    fill: value of output pixels that map outside the input.
  Returns:
    ``[out_h, out_w, C]`` (or ``[out_h, out_w]``) uint8.
  """
  m = np.concatenate([np.asarray(matrix, np.float64), [[0.0, 0.0, 1.0]]], axis=0)
  inv = np.linalg.inv(m)[:2]
  # PIL evaluates inv at continuous output points (x + 0.5) and samples the input at continuous
  # points; shift both sides by half a pixel to get index-coordinate semantics.
  a, t = inv[:, :2], inv[:, 2]
  t = t + 0.5 - a.sum(axis=1) * 0.5
  data = (a[0, 0], a[0, 1], t[0], a[1, 0], a[1, 1], t[1])
  channels = image.shape[2] if image.ndim == 3 else None
  fillcolor = (fill,) * channels if channels and channels > 1 else fill
  out = _pil(image).transform((int(out_hw[1]), int(out_hw[0])), Image.Transform.AFFINE, data,
                              resample=_RESAMPLE[resample], fillcolor=fillcolor)
  return _np(out, channels)


def resize(image: np.ndarray, out_hw: tuple[int, int], resample: str = "bilinear",
           box: tuple[float, float, float, float] | None = None) -> np.ndarray:
  """Resizes ``[H, W, C]`` uint8 to ``out_hw`` (antialiased when shrinking, as torchvision's PIL path).

  ``box`` = (x0, y0, x1, y1) in continuous input pixels resizes only that region (a crop and a
  resize in one resampling); a region reaching outside the image reads edge pixels, so callers
  keep it inside.
  """
  channels = image.shape[2] if image.ndim == 3 else None
  size = (int(out_hw[1]), int(out_hw[0]))
  out = _pil(image).resize(size, _RESAMPLE[resample], box=box)
  return _np(out, channels)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """``[N, 2]`` (x, y) -> ``matrix[:, :2] @ p + matrix[:, 2]`` (the coordinates of ``matrix``)."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  matrix = np.asarray(matrix, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def pad_crop(image: np.ndarray, out_hw: tuple[int, int], top: int, left: int,
             fill: int = 0) -> np.ndarray:
  """The ``out_hw`` window whose top-left corner is (top, left) in ``image``, ``fill`` outside.

  Negative offsets or windows past the border read padding, which makes "pad by p, then crop at
  (i, j)" the window at (i - p, j - p).
  """
  h, w = image.shape[:2]
  oh, ow = int(out_hw[0]), int(out_hw[1])
  out = np.full((oh, ow) + image.shape[2:], fill, image.dtype)
  y0, x0 = max(top, 0), max(left, 0)
  y1, x1 = min(top + oh, h), min(left + ow, w)
  if y1 > y0 and x1 > x0:
    out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
  return out


def random_erase(image: np.ndarray, rng: np.random.Generator, area: tuple[float, float],
                 aspect: float, attempts: int = 100) -> np.ndarray:
  """Fills one random rectangle with a random solid RGB colour (PATH's ``RandomSizedEarser``).

  The rectangle covers a fraction in ``area`` of the image with height/width ratio in
  [aspect, 1/aspect]; after ``attempts`` rectangles that do not fit, the image is unchanged.
  """
  h, w = image.shape[:2]
  for _ in range(attempts):
    target = rng.uniform(area[0], area[1]) * h * w
    ratio = rng.uniform(aspect, 1.0 / aspect)
    eh = int(round(np.sqrt(target * ratio)))
    ew = int(round(np.sqrt(target / ratio)))
    if 0 < eh < h and 0 < ew < w:
      y = int(rng.integers(0, h - eh + 1))
      x = int(rng.integers(0, w - ew + 1))
      image = image.copy()
      image[y:y + eh, x:x + ew] = rng.integers(0, 256, size=image.shape[2:], dtype=np.uint8)
      return image
  return image


def as_rgb(image: np.ndarray) -> np.ndarray:
  """``[H, W, 3]`` uint8, or a ValueError naming the shape (grayscale is broadcast)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"image must be uint8, got {image.dtype}; the TFDS builders store uint8 RGB.")
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[2] not in (1, 3) or 0 in image.shape[:2]:
    raise ValueError(f"image must be [H, W, 3] uint8, got shape {image.shape}.")
  if image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  return image
