"""The crowd-counting :class:`~path_jax.tasks.base.Task` (downstream only)."""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from path_jax.tasks.base import Task
from path_jax.tasks.counting import decode as decode_lib
from path_jax.tasks.counting import loss as loss_lib
from path_jax.tasks.counting.config import require
from path_jax.tasks.counting.head import CountingHead


class CountingTask(Task):
  """Density-map regression; count = sum of the density map."""

  name = "counting"
  pretraining = False

  def make_head(self, cfg: Mapping[str, Any]) -> nn.Module:
    return CountingHead(decoder_channels=tuple(int(c) for c in require(cfg, "decoder_channels")),
                        output_stride=int(require(cfg, "output_stride")),
                        output_activation=str(require(cfg, "output_activation")))

  def loss(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
           cfg: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    pred, target = outputs["density"], batch["density"]
    if pred.shape != target.shape:
      raise ValueError(f"counting head predicts density maps of shape {pred.shape} but the batch "
                       f"has 'density' {target.shape}; build targets with output_stride "
                       f"{require(cfg, 'output_stride')} (counting.targets.make_targets).")
    scale = float(require(cfg, "density_scale"))
    loss = loss_lib.density_mse(pred, target, scale)
    err = loss_lib.predicted_count(pred, scale) - batch["count"].astype(jnp.float32)
    return loss, {"pixel_mse": loss, "count_mae": jnp.mean(jnp.abs(err)),
                  "count_mse": jnp.mean(err * err)}

  def example_batch(self, cfg, batch_size, rng):
    h, w = cfg["image_size"]
    s = int(require(cfg, "output_stride"))
    density = rng.random((batch_size, -(-h // s), -(-w // s))).astype(np.float32) * 1e-2
    return {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8),
            "density": density, "count": density.sum((1, 2)).astype(np.float32)}

  def decode(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
             cfg: Mapping[str, Any]) -> dict[str, jax.Array]:
    del batch
    return decode_lib.predict(outputs["density"], float(require(cfg, "density_scale")))
