"""Procedural human figures: appearance, skeleton, and rendering with exact part labels.

A figure is drawn frontally (facing the camera), so the person's *left* side is on the image's
right (+x). Keypoints follow COCO order (17 joints) and LIP part classes follow LIP numbering, with
the same left/right convention, so horizontal-flip pairs (COCO left/right joints; LIP
(14,15), (16,17), (18,19)) swap consistently.

Every primitive is drawn three times with the same geometry and no anti-aliasing: colour into the
colour layer, the part class (LIP ids, plus BAG) into the label layer and the figure's id into the
id layer. Image, labels and instances therefore agree pixel for pixel (before JPEG compression).

Units: pixels; coordinates are (x, y) floats with y pointing down; pixel (i, j) covers
[j, j+1) x [i, i+1), so a point lies on pixel (floor(y), floor(x)).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# COCO keypoint order.
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle")
# COCO's skeleton (1-based joint indices), as in person_keypoints_*.json.
COCO_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))

# LIP class numbering (20 classes).
LIP_CLASSES = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat", "Socks",
    "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg",
    "Left-shoe", "Right-shoe")
BACKGROUND, HAT, HAIR, UPPER, PANTS, SKIRT, FACE = 0, 1, 2, 5, 9, 12, 13
LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = 14, 15, 16, 17, 18, 19
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))
# The label layer holds LIP ids plus BAG, an extra id: LIP has no bag class (bags are background
# there), ATR has one. `to_lip` / `to_atr` turn the layer into each dataset's class map.
BAG = 20

# ATR numbering (18 classes) and the map from the label layer to it.
ATR_CLASSES = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag",
    "Scarf")
ATR_FLIP_PAIRS = ((9, 10), (12, 13), (14, 15))
_TO_ATR = np.zeros(256, np.uint8)
for _src, _dst in ((1, 1), (2, 2), (5, 4), (12, 5), (9, 6), (18, 9), (19, 10), (13, 11), (16, 12),
                   (17, 13), (14, 14), (15, 15), (BAG, 16)):
  _TO_ATR[_src] = _dst
_TO_LIP = np.arange(256, dtype=np.uint8)
_TO_LIP[BAG] = 0


def to_lip(layer: np.ndarray) -> np.ndarray:
  """Label layer [H, W] uint8 -> LIP class map (bags become background)."""
  return _TO_LIP[layer]


def to_atr(layer: np.ndarray) -> np.ndarray:
  """Label layer [H, W] uint8 -> ATR class map."""
  return _TO_ATR[layer]


# Clothing palettes: the attribute bits name these colours, per-identity jitter keeps them apart.
SHIRT_PALETTE = {
    "red": (200, 40, 40), "green": (40, 160, 60), "blue": (40, 70, 200),
    "yellow": (225, 205, 40), "white": (235, 235, 235), "black": (30, 30, 30)}
LOWER_PALETTE = {
    "black": (25, 25, 30), "blue": (50, 70, 150), "grey": (130, 130, 130), "brown": (120, 80, 40)}
SKIN_TONES = ((255, 219, 172), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36))
HAIR_COLOURS = ((20, 15, 10), (90, 60, 30), (200, 170, 90), (130, 40, 20))

# Body proportions in units of the figure height H (pelvis centre at the origin, y down).
_NECK_Y, _HEAD_Y, _HEAD_R = -0.36, -0.44, 0.065
_SHOULDER_X, _SHOULDER_Y, _HIP_X = 0.11, -0.34, 0.06
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.17, 0.15, 0.24, 0.23
_ARM_W, _LEG_W = 0.05, 0.075


@dataclasses.dataclass(frozen=True)
class Appearance:
  """What a person wears; fixed per identity. Colours are RGB uint8 triples."""
  shirt: tuple[int, int, int]
  shirt_name: str                 # key of SHIRT_PALETTE
  lower: tuple[int, int, int]
  lower_name: str                 # key of LOWER_PALETTE
  skin: tuple[int, int, int]
  hair: tuple[int, int, int]
  shoes: tuple[int, int, int]
  hat: tuple[int, int, int] | None
  bag: tuple[int, int, int] | None
  long_sleeve: bool
  shorts: bool                    # lower garment ends at the knee
  skirt: bool                     # skirt instead of trousers (the "female" proxy)
  long_hair: bool
  stripes: bool                   # dark horizontal stripes on the shirt

  def attributes(self) -> dict[str, int]:
    """Binary attributes visible in the picture, as {name: 0|1}."""
    out = {"hat": int(self.hat is not None), "bag": int(self.bag is not None),
           "long_sleeve": int(self.long_sleeve), "shorts": int(self.shorts),
           "female": int(self.skirt), "long_hair": int(self.long_hair),
           "stripes": int(self.stripes)}
    for name in SHIRT_PALETTE:
      out[f"upper_{name}"] = int(self.shirt_name == name)
    for name in LOWER_PALETTE:
      out[f"lower_{name}"] = int(self.lower_name == name)
    return out


ATTRIBUTE_NAMES = tuple(Appearance(
    (0, 0, 0), "red", (0, 0, 0), "black", (0, 0, 0), (0, 0, 0), (0, 0, 0), None, None, False,
    False, False, False, False).attributes())


def _jitter(rng: np.random.Generator, rgb, amount: int) -> tuple[int, int, int]:
  return tuple(int(v) for v in np.clip(np.asarray(rgb) + rng.integers(-amount, amount + 1, 3),
                                       0, 255))


def random_appearance(rng: np.random.Generator, colour_jitter: int = 18) -> Appearance:
  """Draws an appearance; attribute rates are unbalanced like real attribute sets."""
  shirt_name = str(rng.choice(list(SHIRT_PALETTE)))
  lower_name = str(rng.choice(list(LOWER_PALETTE)))
  skirt = bool(rng.random() < 0.3)
  hat = _jitter(rng, rng.integers(0, 256, 3), 0) if rng.random() < 0.3 else None
  bag = _jitter(rng, (110, 70, 40), 40) if rng.random() < 0.35 else None
  return Appearance(
      shirt=_jitter(rng, SHIRT_PALETTE[shirt_name], colour_jitter), shirt_name=shirt_name,
      lower=_jitter(rng, LOWER_PALETTE[lower_name], colour_jitter), lower_name=lower_name,
      skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
      hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
      shoes=_jitter(rng, (60, 50, 45), 40), hat=hat, bag=bag,
      long_sleeve=bool(rng.random() < 0.45), shorts=bool(not skirt and rng.random() < 0.3),
      skirt=skirt, long_hair=bool(rng.random() < (0.8 if skirt else 0.15)),
      stripes=bool(rng.random() < 0.25))


@dataclasses.dataclass(frozen=True)
class Pose:
  """Limb angles in radians, measured from straight down, positive = away from the body axis.

  Index 0 is the person's left limb, 1 the right one.
  """
  upper_arm: tuple[float, float]
  forearm: tuple[float, float]     # absolute angle of the forearm
  thigh: tuple[float, float]
  shin: tuple[float, float]
  lean: float                      # upper-body rotation about the pelvis, + = towards +x


def random_pose(rng: np.random.Generator, arm_range: float = math.radians(150)) -> Pose:
  """Draws a pose; ``arm_range`` bounds how far the upper arms swing out (ReID crops: small)."""
  up = rng.uniform(-0.25, arm_range, 2)
  fore = up + rng.uniform(-0.4, 1.6, 2)
  thigh = rng.uniform(-0.15, 0.55, 2)
  shin = thigh + rng.uniform(-0.5, 0.3, 2)
  return Pose(tuple(up), tuple(fore), tuple(thigh), tuple(shin), float(rng.uniform(-0.15, 0.15)))


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """Joint positions of one figure in canvas pixels."""
  joints: np.ndarray    # [17, 2] (x, y), COCO order
  neck: np.ndarray      # [2]
  head: np.ndarray      # [2] head centre
  head_r: float         # head radius, pixels
  height: float         # figure height H, pixels


def _limb(start: np.ndarray, angle: float, length: float, side: float) -> np.ndarray:
  # side = +1 for the person's left (+x), -1 for the right.
  return start + length * np.array([side * math.sin(angle), math.cos(angle)])


def skeleton(pose: Pose, height: float, pelvis: tuple[float, float]) -> Skeleton:
  """Joint positions for a figure of ``height`` pixels whose pelvis centre is at ``pelvis``."""
  h = float(height)
  c, s = math.cos(pose.lean), math.sin(pose.lean)
  rot = np.array([[c, -s], [s, c]])

  def upper(x, y):  # upper-body point, rotated by the lean about the pelvis
    return rot @ np.array([x * h, y * h])

  head = upper(0.0, _HEAD_Y)
  r = _HEAD_R * h
  j = np.zeros((17, 2))
  j[0] = head + [0.0, 0.25 * r]
  j[1], j[2] = head + [0.4 * r, -0.15 * r], head + [-0.4 * r, -0.15 * r]
  j[3], j[4] = head + [0.8 * r, 0.05 * r], head + [-0.8 * r, 0.05 * r]
  for side, idx in ((1.0, 0), (-1.0, 1)):
    shoulder = upper(side * _SHOULDER_X, _SHOULDER_Y)
    elbow = _limb(shoulder, pose.upper_arm[idx], _UPPER_ARM * h, side)
    wrist = _limb(elbow, pose.forearm[idx], _FOREARM * h, side)
    hip = np.array([side * _HIP_X * h, 0.0])
    knee = _limb(hip, pose.thigh[idx], _THIGH * h, side)
    ankle = _limb(knee, pose.shin[idx], _SHIN * h, side)
    j[5 + idx], j[7 + idx], j[9 + idx] = shoulder, elbow, wrist
    j[11 + idx], j[13 + idx], j[15 + idx] = hip, knee, ankle
  o = np.asarray(pelvis, float)
  return Skeleton(j + o, upper(0.0, _NECK_Y) + o, head + o, r, h)


@dataclasses.dataclass
class Sprite:
  """A figure rendered alone on its own canvas, whose top-left is scene pixel (x0, y0)."""
  rgb: np.ndarray       # [h, w, 3] uint8
  labels: np.ndarray    # [h, w] uint8 label layer (LIP ids plus BAG)
  mask: np.ndarray      # [h, w] bool, pixels the figure covers (bags included)
  x0: int
  y0: int

  def box(self) -> tuple[int, int, int, int]:
    """Amodal box of the figure in scene pixels, (x0, y0, x1, y1) with exclusive ends."""
    b = mask_box(self.mask)
    return (self.x0 + b[0], self.y0 + b[1], self.x0 + b[2], self.y0 + b[3])


class _Painter:
  """Draws each primitive into a colour, a label and an id layer at once (no anti-aliasing).

  The layers are PIL images whose pixel (0, 0) is scene point ``origin``; ``ident`` is the
  value written into the id layer (255 for a sprite's mask, the instance id in a scene).
  """

  def __init__(self, rgb: Image.Image, lab: Image.Image, ids: Image.Image, origin, ident: int):
    self._d = [ImageDraw.Draw(rgb), ImageDraw.Draw(lab), ImageDraw.Draw(ids)]
    self.o = np.asarray(origin, float)
    self.ident = ident

  def _xy(self, *pts):
    return [tuple(float(v) for v in np.asarray(q) - self.o) for q in pts]

  def _each(self, colour, cls, fn):
    for d, f in zip(self._d, (colour, cls, self.ident)):
      fn(d, f)

  def limb(self, a, b, width: float, colour, cls):
    """Thick segment a-b with round ends (so the joint pixels are covered). Segments under
    3 px wide (crowds) skip the end caps: they change nothing visible and cost most."""
    w = max(1, int(round(width)))
    pa, pb = self._xy(a, b)
    rr = w / 2.0
    self._each(colour, cls, lambda d, f: d.line([pa, pb], fill=f, width=w))
    for q in ((pa, pb) if w >= 3 else ()):
      box = [q[0] - rr, q[1] - rr, q[0] + rr, q[1] + rr]
      self._each(colour, cls, lambda d, f, box=box: d.ellipse(box, fill=f))

  def disc(self, centre, rx: float, ry: float, colour, cls):
    (q,) = self._xy(centre)
    box = [q[0] - rx, q[1] - ry, q[0] + rx, q[1] + ry]
    self._each(colour, cls, lambda d, f: d.ellipse(box, fill=f))

  def polygon(self, pts, colour, cls):
    xy = self._xy(*pts)
    self._each(colour, cls, lambda d, f: d.polygon(xy, fill=f))

  def chord(self, centre, r: float, start: float, end: float, colour, cls):
    (q,) = self._xy(centre)
    box = [q[0] - r, q[1] - r, q[0] + r, q[1] + r]
    self._each(colour, cls, lambda d, f: d.chord(box, start, end, fill=f))

  # Texture: colour only, drawn inside parts already drawn, so labels and ids stay as they are.
  def texture_polygon(self, pts, colour):
    self._d[0].polygon(self._xy(*pts), fill=colour)

  def texture_line(self, a, b, width: float, colour):
    self._d[0].line(self._xy(a, b), fill=colour, width=max(1, int(round(width))))

  def texture_point(self, a, colour):
    self._d[0].point(self._xy(a), fill=colour)


def _extent(sk: Skeleton) -> tuple[int, int, int, int]:
  """A box (x0, y0, x1, y1) that surely holds everything `_paint` draws for ``sk``."""
  pts = np.concatenate([sk.joints, sk.head[None] - sk.head_r - 0.12 * sk.height,
                        sk.head[None] + sk.head_r])
  margin = 0.16 * sk.height + 2
  return (int(math.floor(pts[:, 0].min() - margin)), int(math.floor(pts[:, 1].min() - margin)),
          int(math.ceil(pts[:, 0].max() + margin)), int(math.ceil(pts[:, 1].max() + margin)))


def render(sk: Skeleton, app: Appearance) -> Sprite:
  """Renders one figure alone on a canvas just large enough for it."""
  x0, y0, x1, y1 = _extent(sk)
  rgb, lab, ids = (Image.new(m, (x1 - x0, y1 - y0)) for m in ("RGB", "L", "L"))
  _paint(_Painter(rgb, lab, ids, (x0, y0), 255), sk, app)
  return Sprite(np.asarray(rgb), np.asarray(lab), np.asarray(ids) > 0, x0, y0)


def _paint(p: _Painter, sk: Skeleton, app: Appearance) -> None:
  """Draws a figure back to front; see the module docstring for the conventions."""
  h, r, j = sk.height, sk.head_r, sk.joints
  arm_w, leg_w = max(1.0, _ARM_W * h), max(1.0, _LEG_W * h)
  ls, rs, lh, rh = j[5], j[6], j[11], j[12]
  up = (sk.neck - (lh + rh) / 2) / max(np.linalg.norm(sk.neck - (lh + rh) / 2), 1e-6)
  side = np.array([-up[1], up[0]])   # unit vector towards the person's left (+x when upright)

  if app.long_hair:  # hair falling behind the head down to below the shoulders
    top, bottom = sk.head + up * r, sk.neck - up * 0.05 * h
    p.polygon([top + side * 1.15 * r, top - side * 1.15 * r, bottom - side * 1.3 * r,
               bottom + side * 1.3 * r], app.hair, HAIR)
  # Legs, shoes and the lower garment.
  for hip, knee, ankle, leg_cls, shoe_cls in ((lh, j[13], j[15], LEFT_LEG, LEFT_SHOE),
                                              (rh, j[14], j[16], RIGHT_LEG, RIGHT_SHOE)):
    trousers = (app.lower, PANTS)
    skin = (app.skin, leg_cls)
    thigh_c, shin_c = (skin, skin) if app.skirt else (trousers, skin if app.shorts else trousers)
    p.limb(hip, knee, leg_w, *thigh_c)
    p.limb(knee, ankle, leg_w * 0.9, *shin_c)
    foot = ankle + np.array([0.0, 0.25 * leg_w])
    p.disc(foot, 0.75 * leg_w, 0.45 * leg_w, app.shoes, shoe_cls)
  if app.skirt:
    hem = 0.6 * (j[13] + j[14]) / 2 + 0.4 * (lh + rh) / 2
    flare = side * (abs(j[13][0] - j[14][0]) / 2 + 0.7 * leg_w)
    p.polygon([lh + side * 0.6 * leg_w, rh - side * 0.6 * leg_w, hem - flare, hem + flare],
              app.lower, SKIRT)
  # Torso; stripes are bands between the shoulder line and the hip line, inside the torso.
  p.polygon([ls + side * 0.02 * h, rs - side * 0.02 * h, rh - side * 0.5 * leg_w,
             lh + side * 0.5 * leg_w], app.shirt, UPPER)
  if app.stripes:
    dark = tuple(int(v * 0.45) for v in app.shirt)
    for t in (0.15, 0.38, 0.61, 0.84):
      ta, tb = t, t + 0.09
      p.texture_polygon([ls * (1 - ta) + lh * ta, rs * (1 - ta) + rh * ta,
                         rs * (1 - tb) + rh * tb, ls * (1 - tb) + lh * tb], dark)
  if app.bag is not None:  # strap across the chest (texture) and a bag at the right hip
    p.texture_line(ls, rh, 0.02 * h, tuple(int(v * 0.6) for v in app.bag))
    p.disc(rh - side * 0.9 * leg_w + up * 0.02 * h, 0.07 * h, 0.06 * h, app.bag, BAG)
  # Arms: sleeves are upper-clothes, bare skin and hands are the arm classes.
  for sh, el, wr, arm_cls in ((ls, j[7], j[9], LEFT_ARM), (rs, j[8], j[10], RIGHT_ARM)):
    p.limb(sh, el, arm_w, app.shirt, UPPER)
    if app.long_sleeve:
      p.limb(el, wr, arm_w * 0.9, app.shirt, UPPER)
    else:
      p.limb(el, wr, arm_w * 0.8, app.skin, arm_cls)
    p.disc(wr, 0.6 * arm_w, 0.6 * arm_w, app.skin, arm_cls)
  # Neck and face, hair cap, eyes, hat.
  p.limb(sk.neck, sk.head, max(1.0, 0.8 * r), app.skin, FACE)
  p.disc(sk.head, r, r, app.skin, FACE)
  p.chord(sk.head + up * 0.08 * r, 1.08 * r, 195, 345, app.hair, HAIR)
  if r >= 4:
    p.texture_point(j[1], (20, 20, 20))
    p.texture_point(j[2], (20, 20, 20))
  if app.hat is not None:  # brim across the forehead line and a crown above it
    brim = sk.head + up * 0.55 * r
    p.polygon([brim + side * 1.3 * r, brim - side * 1.3 * r, brim - side * 1.3 * r + up * 0.3 * r,
               brim + side * 1.3 * r + up * 0.3 * r], app.hat, HAT)
    p.polygon([brim + side * 0.85 * r, brim - side * 0.85 * r, brim - side * 0.75 * r + up * r,
               brim + side * 0.75 * r + up * r], app.hat, HAT)


class Scene:
  """A canvas with a per-pixel label layer (LIP ids plus BAG) and instance ids (0 = background, k = k-th figure).

  Figures are drawn straight into the scene in painter's order, so later figures occlude earlier
  ones. ``rgb``, ``labels`` and ``instance`` are read-only NumPy copies of the current state.
  """

  def __init__(self, background: np.ndarray):
    self._rgb = Image.fromarray(np.asarray(background, np.uint8))
    w, h = self._rgb.size
    self._lab = Image.new("L", (w, h))
    self._ids = Image.new("I", (w, h))
    self.count = 0
    self._cache = None

  def add(self, sk: Skeleton, app: Appearance) -> int:
    """Draws a figure over what is there; returns its instance id (1, 2, ...)."""
    self.count += 1
    self._cache = None
    _paint(_Painter(self._rgb, self._lab, self._ids, (0.0, 0.0), self.count), sk, app)
    return self.count

  def paint_rect(self, box, colour) -> None:
    """Fills (x0, y0, x1, y1), exclusive ends, with a colour; labels and ids are unchanged."""
    self._cache = None
    ImageDraw.Draw(self._rgb).rectangle([box[0], box[1], box[2] - 1, box[3] - 1],
                                        fill=tuple(int(v) for v in colour))

  def _arrays(self):
    if self._cache is None:
      self._cache = (np.asarray(self._rgb), np.asarray(self._lab),
                     np.asarray(self._ids).astype(np.int32))
    return self._cache

  @property
  def rgb(self) -> np.ndarray:
    return self._arrays()[0]

  @property
  def labels(self) -> np.ndarray:
    return self._arrays()[1]

  @property
  def instance(self) -> np.ndarray:
    return self._arrays()[2]

  @property
  def hw(self) -> tuple[int, int]:
    return self._rgb.size[1], self._rgb.size[0]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
  """Tight box (x0, y0, x1, y1), exclusive ends, of the true pixels of ``mask``; None if empty."""
  ys, xs = np.nonzero(mask)
  if ys.size == 0:
    return None
  return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def keypoint_visibility(scene: Scene, inst: int, joints: np.ndarray) -> np.ndarray:
  """COCO visibility per joint: 2 on the figure's own visible pixels, 1 inside the image but
  hidden by another figure (or not on the figure's pixels), 0 outside the image. [17] int."""
  hh, ww = scene.instance.shape
  v = np.zeros(len(joints), np.int64)
  for k, (x, y) in enumerate(joints):
    if not (0 <= x < ww and 0 <= y < hh):
      continue
    v[k] = 2 if scene.instance[int(y), int(x)] == inst else 1
  return v


def background(rng: np.random.Generator, h: int, w: int, base=None, noise: float = 10.0,
               clutter: int = 3, tint=(1.0, 1.0, 1.0), brightness: float = 1.0) -> np.ndarray:
  """A noisy backdrop: base colour, a vertical gradient, grey clutter rectangles, pixel noise.

  ``tint`` (per-channel gains) and ``brightness`` model a camera. Returns [h, w, 3] uint8.
  """
  if base is None:
    base = rng.integers(60, 200, 3)
  img = np.empty((h, w, 3), np.float32)
  img[:] = np.asarray(base, np.float32)
  img *= np.linspace(0.85, 1.15, h, dtype=np.float32)[:, None, None]
  for _ in range(clutter):
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
    x1, y1 = x0 + int(rng.integers(w // 8, w // 2 + 1)), y0 + int(rng.integers(h // 8, h // 2 + 1))
    img[y0:y1, x0:x1] = rng.integers(70, 190) + rng.integers(-15, 16, 3)
  img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
  img *= np.asarray(tint, np.float32) * brightness
  return np.clip(img, 0, 255).astype(np.uint8)


def camera_effect(rgb: np.ndarray, tint=(1.0, 1.0, 1.0), brightness: float = 1.0,
                  blur: float = 0.0) -> np.ndarray:
  """Applies a camera's colour gains, brightness and Gaussian blur (radius, pixels)."""
  img = np.clip(rgb.astype(np.float32) * np.asarray(tint, np.float32) * brightness, 0, 255)
  out = Image.fromarray(img.astype(np.uint8))
  if blur > 0:
    out = out.filter(ImageFilter.GaussianBlur(blur))
  return np.asarray(out)
