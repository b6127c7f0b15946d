"""Dataset-level config fields of a crowd-counting dataset (ShanghaiTech A/B, downstream only)."""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  """Fields a counting dataset's config subtree carries (all have working defaults).

  Head (read by ``make_head``):
  * ``decoder_channels``: widths of the conv decoder; the first conv keeps the patch stride and
    every further entry adds one x2 bilinear upsampling, so (256, 128, 64) gives stride 16/4 = 4.
  * ``output_stride``: stride of the density map in input pixels; must equal
    patch size / 2**(len(decoder_channels) - 1) (checked when the head runs).
  * ``output_activation``: 'linear' (CSRNet's output layer; lets the head reach zero density
    without dead units) or 'relu' (DM-Count's density layer).
  * ``density_scale``: the head predicts ``density_scale x density`` (C^3-Framework's
    LOG_PARA = 100): the true per-pixel densities are ~1e-3 and their squared error would
    otherwise vanish next to the other tasks' losses. Decoding divides it out.

  Targets (read by :func:`path_jax.tasks.counting.targets.make_targets` in the pipeline):
  * ``sigma``: Gaussian std in input pixels (fixed kernel; C^3-Framework uses 4).
  * ``adaptive_knn``: 0 = fixed ``sigma``; k > 0 = geometry-adaptive kernels (MCNN, the usual
    choice for ShanghaiTech A): sigma_i = ``adaptive_beta`` x mean distance to the k nearest
    other heads, ``sigma`` for a lone head.
  * ``adaptive_beta``: the beta above (MCNN: 0.3).
  * ``truncate``: kernels are cut at ``truncate`` sigmas (scipy.ndimage's default 4) and each is
    renormalised to unit mass over the cells left inside the image.
  """
  return ml_collections.ConfigDict({
      "decoder_channels": (256, 128, 64),
      "output_stride": 4,
      "output_activation": "linear",
      "density_scale": 100.0,
      "sigma": 4.0,
      "adaptive_knn": 0,
      "adaptive_beta": 0.3,
      "truncate": 4.0,
  })


def require(cfg: Mapping[str, Any], key: str) -> Any:
  """``cfg[key]``, with an error that names the missing field and where defaults come from."""
  if key not in cfg or cfg.get(key, None) is None:
    raise KeyError(f"counting dataset config has no value for {key!r}; start the dataset's "
                   f"subtree from path_jax.tasks.counting.default_config() and set {key!r}.")
  return cfg[key]
