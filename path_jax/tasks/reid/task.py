"""The ReID :class:`~path_jax.tasks.base.Task`."""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np

from path_jax.tasks.base import Task
from path_jax.tasks.reid import decode as decode_lib
from path_jax.tasks.reid import loss as loss_lib
from path_jax.tasks.reid.config import require
from path_jax.tasks.reid.head import ReIDHead


class ReIDTask(Task):
  """Person re-identification: identity CE on the BNNeck + batch-hard triplet on the cls feature."""

  name = "reid"
  uses_cls_token = True

  def make_head(self, cfg: Mapping[str, Any]) -> nn.Module:
    return ReIDHead(
        num_classes=int(require(cfg, "num_classes")),
        bn_momentum=float(require(cfg, "bn_momentum")),
        bn_epsilon=float(require(cfg, "bn_epsilon")),
        classifier_init_std=float(require(cfg, "classifier_init_std")),
        classes_multiple_of=int(require(cfg, "classes_multiple_of")))

  def loss(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
           cfg: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    labels = batch["label"]
    ce = loss_lib.cross_entropy(outputs["logits"], labels,
                                float(require(cfg, "label_smoothing"))).mean()
    margin = require(cfg, "triplet_margin", optional=True)
    triplet = loss_lib.batch_hard_triplet(
        outputs["feature"], labels, None if margin is None else float(margin))
    total = ce + float(require(cfg, "triplet_weight")) * triplet
    metrics = {"ce": ce, "triplet": triplet,
               "accuracy": loss_lib.accuracy(outputs["logits"], labels)}
    return total, metrics

  def example_batch(self, cfg, batch_size, rng):
    h, w = cfg["image_size"]
    k = int(cfg.get("images_per_identity", 4) or 4)
    ids = rng.choice(int(require(cfg, "num_classes")), size=-(-batch_size // k))
    return {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8),
            "label": np.repeat(ids, k)[:batch_size].astype(np.int32)}

  def decode(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
             cfg: Mapping[str, Any]) -> dict[str, jax.Array]:
    del batch, cfg  # the retrieval feature depends on the outputs alone
    return {"feature": decode_lib.retrieval_feature(outputs["feature"])}
