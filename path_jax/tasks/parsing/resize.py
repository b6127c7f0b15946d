"""Bilinear resizing with PyTorch's ``align_corners=True`` geometry, as two matrix products.

``jax.image.resize`` uses half-pixel centres (``align_corners=False``); the authors' parsing
decoder upsamples with ``align_corners=True``, where the corner pixels of input and output
coincide: output index ``i`` samples input position ``i * (n_in - 1) / (n_out - 1)``. A separable
bilinear resize is a fixed ``[n_out, n_in]`` interpolation matrix per spatial axis, so the resize
is two einsums, which run on the matrix units and are differentiable.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def align_corners_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Interpolation matrix ``[n_out, n_in]`` (float32) of 1-D linear resizing, align_corners=True.

  Each row holds at most two non-zero weights summing to 1. ``n_out == 1`` samples position 0,
  as PyTorch does.
  """
  if n_in < 1 or n_out < 1:
    raise ValueError(f"resize sizes must be positive, got n_in={n_in}, n_out={n_out}.")
  scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
  pos = np.arange(n_out, dtype=np.float64) * scale
  lo = np.clip(np.floor(pos).astype(np.int64), 0, n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = pos - lo
  m = np.zeros((n_out, n_in), np.float64)
  rows = np.arange(n_out)
  np.add.at(m, (rows, lo), 1.0 - frac)
  np.add.at(m, (rows, hi), frac)
  return m.astype(np.float32)


def resize_bilinear_align_corners(x: jax.Array, size: tuple[int, int],
                                  precision=None) -> jax.Array:
  """Resizes an NHWC map ``[B, H, W, C]`` to ``[B, size[0], size[1], C]`` (align_corners=True).

  ``precision`` is passed to the einsums (None follows ``jax_default_matmul_precision``).
  """
  _, h, w, _ = x.shape
  out_h, out_w = size
  if (h, w) == (out_h, out_w):
    return x
  mh = jnp.asarray(align_corners_matrix(h, out_h), x.dtype)
  mw = jnp.asarray(align_corners_matrix(w, out_w), x.dtype)
  x = jnp.einsum("oh,bhwc->bowc", mh, x, precision=precision)
  return jnp.einsum("pw,bowc->bopc", mw, x, precision=precision)
