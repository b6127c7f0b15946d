"""The pedestrian-attribute :class:`~path_jax.tasks.base.Task`."""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from path_jax.tasks.attributes import decode as decode_lib
from path_jax.tasks.attributes import loss as loss_lib
from path_jax.tasks.attributes.config import require
from path_jax.tasks.attributes.head import AttributeHead
from path_jax.tasks.base import Task


class AttributeTask(Task):
  """Multi-label pedestrian attribute recognition with missing labels."""

  name = "attributes"

  def make_head(self, cfg: Mapping[str, Any]) -> nn.Module:
    return AttributeHead(num_attributes=int(require(cfg, "num_attributes")),
                         bn_momentum=float(require(cfg, "bn_momentum")),
                         bn_epsilon=float(require(cfg, "bn_epsilon")))

  def loss(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
           cfg: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    logits, labels = outputs["logits"], batch["labels"]
    ratios = _ratios(cfg, logits.shape[-1])
    loss = loss_lib.weighted_bce(logits, labels, ratios)
    return loss, {"bce": loss, "accuracy": loss_lib.label_accuracy(logits, labels)}

  def example_batch(self, cfg, batch_size, rng):
    h, w = cfg["image_size"]
    a = int(cfg["num_attributes"])
    return {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8),
            "labels": rng.integers(-1, 2, (batch_size, a)).astype(np.int32)}

  def decode(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
             cfg: Mapping[str, Any]) -> dict[str, jax.Array]:
    del batch, cfg  # predictions depend on the logits alone
    return decode_lib.predict(outputs["logits"])


def _ratios(cfg: Mapping[str, Any], num_attributes: int) -> jax.Array:
  ratios = list(require(cfg, "positive_ratios"))
  if len(ratios) != num_attributes:
    raise ValueError(f"positive_ratios has {len(ratios)} entries but the head predicts "
                     f"{num_attributes} attributes; give one positive ratio per attribute.")
  return jnp.asarray(ratios, jnp.float32)
