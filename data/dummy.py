"""Helpers for the ``dummy_data/make_dummy.py`` scripts: tiny deterministic images and files.

The dummy data of every builder is written in the real on-disk format of its source datasets,
generated once by the family's ``make_dummy.py`` and committed; the tests build from it.
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image


def image(seed: int, height: int = 32, width: int = 32) -> np.ndarray:
  """A smooth ``[H, W, 3]`` uint8 image determined by ``seed`` (JPEG-friendly)."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 256, size=3)
  yy, xx = np.mgrid[0:height, 0:width]
  ramp = (yy * 3 + xx * 2) % 64
  return ((base[None, None, :] + ramp[..., None]) % 256).astype(np.uint8)


def write_image(path: str, seed: int, height: int = 32, width: int = 32) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fmt = "PNG" if path.lower().endswith(".png") else "JPEG"
  Image.fromarray(image(seed, height, width)).save(path, format=fmt)


def write_label(path: str, label: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(np.asarray(label, np.uint8), mode="L").save(path, format="PNG")


def write_text(path: str, lines) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(f"{ln}\n" for ln in lines))


def write_json(path: str, obj) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "w") as f:
    json.dump(obj, f)


def fresh(path: str) -> str:
  """Empties (or creates) a dummy_data/<config> folder so regeneration is exact."""
  import shutil
  shutil.rmtree(path, ignore_errors=True)
  os.makedirs(path)
  return path
