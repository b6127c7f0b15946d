"""Shared drawing helpers for pictures of predictions (NumPy + PIL; no JAX, no TensorFlow).

Every task package has a ``visualize.draw(...) -> [H, W, 3] uint8`` built from these pieces:
colour constants and palettes, image fitting, frames, text captions in PIL's default font, tile
grids, and :func:`write_pictures`, which writes a PNG under ``workdir/pictures/`` and, given a clu
metric writer, an image summary. Drawing is deterministic: text is rendered without
anti-aliasing, so the same inputs give the same bytes, and marks have exact colours that tests
can look for.

Coordinates: pixel (row r, col c) covers [c, c+1) x [r, r+1) ("continuous"); PIL draws a
point at (x, y) into the pixel (floor(x), floor(y)).
"""
from __future__ import annotations

import functools
import math
import os
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]

# Predictions and ground truth keep the same colours in every task's pictures.
PRED: Colour = (0, 200, 255)        # cyan: predicted keypoints, boxes
TRUE: Colour = (255, 0, 255)        # magenta: ground truth
CORRECT: Colour = (0, 200, 0)       # green: right identity / correct attribute
WRONG: Colour = (230, 0, 0)         # red: wrong identity / false positive
MISSED: Colour = (255, 160, 0)      # orange: a true attribute the model did not predict
NEUTRAL: Colour = (128, 128, 128)   # grey: ignore regions, unlabelled attributes, query frames
WHITE: Colour = (255, 255, 255)
BACKGROUND: Colour = (32, 32, 32)   # grid and caption background

FONT_SIZE = 11                      # pixels, PIL's default (embedded) font
LINE_HEIGHT = FONT_SIZE + 3
# Pixels per space in captions. The default font's own space is 2 px at this size, under the
# 1 px its glyphs leave between letters plus their side bearing, so that "3 right 1 wrong" read
# as "3right1wrong" and "attr_1 0.67" as "attr_10.67": text is drawn word by word this far apart.
SPACE_WIDTH = 5


def as_image(image: Any, what: str = "image") -> np.ndarray:
  """``[H, W, 3]`` uint8 RGB from uint8 or float (0..255) ``[H, W]``, ``[H, W, 1]`` or RGB."""
  x = np.asarray(image)
  if x.ndim == 3 and x.shape[-1] == 1:
    x = x[:, :, 0]
  if x.ndim == 2:
    x = np.repeat(x[:, :, None], 3, axis=-1)
  if x.ndim != 3 or x.shape[-1] != 3:
    raise ValueError(f"{what} must be [H, W, 3] RGB (or grey [H, W]), got shape {x.shape}.")
  if x.dtype != np.uint8:
    x = np.clip(np.rint(x.astype(np.float64)), 0, 255).astype(np.uint8)
  return np.ascontiguousarray(x)


def fit(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
  """Shrinks ``image`` so that its longer side is at most ``max_side`` pixels (never enlarges).

  Returns the image and the scale factor applied to coordinates (1.0 when unchanged). Marks are
  drawn after fitting, so lines keep their width on large inputs (detection's 1344 px canvas).
  """
  h, w = image.shape[:2]
  if max_side is None or max(h, w) <= max_side:
    return image, 1.0
  scale = max_side / max(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  out = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
  return np.asarray(out), scale


def label_palette(n: int) -> np.ndarray:
  """``[n, 3]`` uint8 distinct colours for class ids (the PASCAL VOC bit-interleaving map).

  Class 0 (background in every parsing label set) is black; bits of the id are spread over the
  high bits of R, G and B, so neighbouring ids differ strongly.
  """
  ids = np.arange(n)
  out = np.zeros((n, 3), np.int64)
  for shift in range(8):
    for ch in range(3):
      bit = (ids >> (3 * shift + ch)) & 1
      out[:, ch] |= bit << (7 - shift)
  return out.astype(np.uint8)


# Anchors of the heat-map colour scale (black -> purple -> red -> yellow -> white): monotone
# in brightness, so the maps read correctly in grey too.
_HEAT_ANCHORS = np.array([[0, 0, 0], [90, 0, 140], [220, 30, 40], [255, 200, 0], [255, 255, 255]],
                         np.float64)


def heat_colours(values: np.ndarray, vmax: float) -> np.ndarray:
  """Maps ``values`` (any shape, >= 0) to heat colours ``[..., 3]`` uint8; ``vmax`` -> white.

  Negative values (a linear head's undershoot) show as 0.
  """
  t = np.clip(np.asarray(values, np.float64) / max(float(vmax), 1e-12), 0.0, 1.0)
  pos = t * (len(_HEAT_ANCHORS) - 1)
  lo = np.minimum(np.floor(pos).astype(np.int64), len(_HEAT_ANCHORS) - 2)
  frac = (pos - lo)[..., None]
  rgb = _HEAT_ANCHORS[lo] * (1.0 - frac) + _HEAT_ANCHORS[lo + 1] * frac
  return np.rint(rgb).astype(np.uint8)


def blend(image: np.ndarray, colours: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
  """``image`` with ``alpha * colours + (1 - alpha) * image`` where ``mask`` is true.

  ``image``, ``colours``: ``[H, W, 3]`` uint8; ``mask``: ``[H, W]`` bool.
  """
  mixed = alpha * colours.astype(np.float64) + (1.0 - alpha) * image.astype(np.float64)
  return np.where(mask[:, :, None], np.rint(mixed), image).astype(np.uint8)


def frame(image: np.ndarray, colour: Colour, width: int = 3) -> np.ndarray:
  """``image`` padded by ``width`` pixels of ``colour`` on every side."""
  out = np.empty((image.shape[0] + 2 * width, image.shape[1] + 2 * width, 3), np.uint8)
  out[...] = np.asarray(colour, np.uint8)
  out[width:width + image.shape[0], width:width + image.shape[1]] = image
  return out


@functools.lru_cache(maxsize=4)
def font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
  """PIL's default font (the embedded one; no font files needed)."""
  return ImageFont.load_default(size=size)


def draw_on(image: np.ndarray) -> tuple[Image.Image, ImageDraw.ImageDraw]:
  """A PIL copy of ``image`` and a drawing context that renders text without anti-aliasing."""
  pil = Image.fromarray(np.ascontiguousarray(image))
  draw = ImageDraw.Draw(pil)
  draw.fontmode = "1"   # binary glyphs: exact colours, identical bytes on every run
  return pil, draw


def _words(text: str) -> list[tuple[int, str]]:
  """``(x offset, word)`` of each word of ``text`` drawn :data:`SPACE_WIDTH` apart per space."""
  out, x = [], 0
  for word in text.split(" "):
    out.append((x, word))
    x += int(math.ceil(font().getlength(word))) + SPACE_WIDTH
  return out


def text_width(text: str) -> int:
  """Width in pixels of ``text`` in the default font, spaces :data:`SPACE_WIDTH` wide."""
  x, word = _words(text)[-1]
  return x + int(math.ceil(font().getlength(word)))


def put_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str,
             colour: Colour) -> None:
  """Draws ``text`` at ``xy`` (top left) in the default font with :data:`SPACE_WIDTH` spaces."""
  for dx, word in _words(text):
    if word:
      draw.text((xy[0] + dx, xy[1]), word, fill=colour, font=font())


def caption(image: np.ndarray, lines: Sequence[str | tuple[str, Colour]], *,
            min_width: int = 0) -> np.ndarray:
  """``image`` with a strip of text lines below it (each line a string or ``(text, colour)``).

  The strip is as wide as the widest of the image, the text and ``min_width``; text never covers
  the picture, so marks stay visible. Colour defaults to white.
  """
  items = [(l, WHITE) if isinstance(l, str) else (str(l[0]), tuple(l[1])) for l in lines]
  width = max([image.shape[1], min_width] + [text_width(t) + 4 for t, _ in items])
  out = np.empty((image.shape[0] + LINE_HEIGHT * len(items) + 2, width, 3), np.uint8)
  out[...] = np.asarray(BACKGROUND, np.uint8)
  out[:image.shape[0], :image.shape[1]] = image
  pil, draw = draw_on(out)
  for i, (text, colour) in enumerate(items):
    put_text(draw, (2, image.shape[0] + 1 + LINE_HEIGHT * i), text, colour)
  return np.asarray(pil)


def hstack(tiles: Sequence[np.ndarray], pad: int = 4) -> np.ndarray:
  """Tiles side by side, top-aligned, ``pad`` pixels of background between them."""
  h = max(t.shape[0] for t in tiles)
  w = sum(t.shape[1] for t in tiles) + pad * (len(tiles) - 1)
  out = np.empty((h, w, 3), np.uint8)
  out[...] = np.asarray(BACKGROUND, np.uint8)
  x = 0
  for t in tiles:
    out[:t.shape[0], x:x + t.shape[1]] = t
    x += t.shape[1] + pad
  return out


def grid(tiles: Sequence[np.ndarray], cols: int | None = None, pad: int = 4) -> np.ndarray:
  """Tiles on a grid of equal cells (the largest tile's size), row-major, top-left aligned.

  ``cols`` defaults to the count that makes the grid roughly square in pixels. The grid has a
  ``pad``-pixel background border around and between cells.
  """
  if not tiles:
    raise ValueError("grid needs at least one tile; draw functions need max_examples >= 1 and a "
                     "non-empty batch.")
  ch = max(t.shape[0] for t in tiles)
  cw = max(t.shape[1] for t in tiles)
  n = len(tiles)
  if cols is None:
    cols = max(1, min(n, round(math.sqrt(n * ch / cw))))
  rows = -(-n // cols)
  out = np.empty((pad + rows * (ch + pad), pad + cols * (cw + pad), 3), np.uint8)
  out[...] = np.asarray(BACKGROUND, np.uint8)
  for i, t in enumerate(tiles):
    r, c = divmod(i, cols)
    y, x = pad + r * (ch + pad), pad + c * (cw + pad)
    out[y:y + t.shape[0], x:x + t.shape[1]] = t
  return out


def num_examples(batch_size: int, max_examples: int) -> int:
  """How many examples a picture shows: ``min(batch_size, max_examples)``, at least one."""
  if max_examples < 1:
    raise ValueError(f"max_examples must be >= 1, got {max_examples}.")
  if batch_size < 1:
    raise ValueError("cannot draw an empty batch (batch size 0).")
  return min(batch_size, max_examples)


def take(tree: dict[str, Any], keys: Iterable[str], where: str) -> list[np.ndarray]:
  """``[np.asarray(tree[k]) for k in keys]`` with an error naming the missing key and ``where``."""
  out = []
  for k in keys:
    if k not in tree:
      raise KeyError(f"{where} has no {k!r} (keys: {sorted(tree)}).")
    out.append(np.asarray(tree[k]))
  return out


def _file_name(name: str, step: int) -> str:
  parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
  if not parts:
    raise ValueError(f"picture name {name!r} has no usable path component; use e.g. 'pose/coco'.")
  return os.path.join(*parts[:-1], f"{parts[-1]}_{int(step)}.png")


def write_pictures(workdir: str | os.PathLike, step: int, name: str, image: np.ndarray,
                   writer: Any = None) -> str:
  """Writes ``image`` to ``workdir/pictures/<name>_<step>.png``; returns the path.

  ``name`` may hold '/' (``'pose/coco'`` -> ``pictures/pose/coco_<step>.png``). The PNG is
  written to a temporary name and renamed, so a crash never leaves a truncated picture. When
  ``writer`` (a clu ``MetricWriter``) is given, also ``writer.write_images(step, {name:
  image[None]})`` for TensorBoard.
  """
  image = as_image(image, f"picture {name!r}")
  path = os.path.join(os.fspath(workdir), "pictures", _file_name(name, step))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  Image.fromarray(image).save(tmp, format="PNG")
  os.replace(tmp, path)
  if writer is not None:
    writer.write_images(int(step), {name: image[None]})
  return path
