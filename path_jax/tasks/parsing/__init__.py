"""Human parsing (task ``'parsing'``): per-pixel part labels; REFERENCE.md §3.2, §6.4, §7.2.

Batch fields the loss expects (one dataset's sub-batch):

* ``'image'``: ``[B, H, W, 3]`` uint8 RGB (480x480 in pretraining).
* ``'label'``: ``[B, H, W]`` uint8 class ids in ``[0, num_classes)``, 255 = ignore (padding, and
  pixels outside the label list).

Head outputs: ``{'logits': [B, H, W, num_classes] float32}`` at the input size.

:meth:`ParsingTask.decode` returns ``{'label': [B, H, W] int32, 'logits': ...}``. For the flip test
the caller runs the model a second time on ``image[:, :, ::-1]`` and passes that run's logits as
``outputs['logits_flipped']``; with ``cfg.flip_test`` the two views' logits are averaged after
flipping back and swapping the ``cfg.flip_pairs`` classes.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections

from path_jax.tasks.base import Task, register
from path_jax.tasks.parsing.decode import (decode_labels, flip_back_logits,  # noqa: F401
                                           flip_permutation)
from path_jax.tasks.parsing.head import ParsingHead
from path_jax.tasks.parsing.loss import cross_entropy_ignore, pixel_accuracy
from path_jax.tasks.parsing.resize import (align_corners_matrix,  # noqa: F401
                                           resize_bilinear_align_corners)

# Left/right label pairs of the LIP/CIHP/VIP/PaperDoll 20-class label set (REFERENCE.md §7.2).
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))


def default_config() -> ml_collections.ConfigDict:
  """Dataset-level fields of a parsing dataset (defaults: LIP/CIHP, 20 classes, 480x480)."""
  return ml_collections.ConfigDict({
      "num_classes": 20,
      "image_size": (480, 480),         # (H, W) of the network input, pixels
      "head_features": 256,             # width of the two conv3x3 blocks
      "ignore_label": 255,
      "flip_pairs": LIP_FLIP_PAIRS,     # left/right class pairs swapped by a horizontal flip
      "flip_test": False,               # the shipped test yamls use no flip (REFERENCE.md §6.4)
      "dtype": "float32",               # computation dtype of the head
  })


def _check(cfg: Mapping[str, Any]) -> None:
  if int(cfg["num_classes"]) < 2:
    raise ValueError(f"parsing num_classes must be >= 2, got {cfg['num_classes']}.")
  flip_permutation(int(cfg["num_classes"]), cfg["flip_pairs"])  # raises on bad pairs


class ParsingTask(Task):
  name = "parsing"

  def make_head(self, cfg):
    _check(cfg)
    return ParsingHead(num_classes=int(cfg["num_classes"]),
                       features=int(cfg["head_features"]),
                       dtype=jnp.dtype(cfg["dtype"]))

  def loss(self, outputs, batch, cfg):
    logits, labels = outputs["logits"], batch["label"]
    if logits.shape[:3] != labels.shape:
      raise ValueError(f"parsing logits {logits.shape} and batch['label'] {labels.shape} differ in "
                       f"[B, H, W]; the pipeline must give labels at the network input size.")
    ignore = int(cfg["ignore_label"])
    loss, num_valid = cross_entropy_ignore(logits, labels, ignore)
    metrics = {"loss": loss, "pixel_acc": pixel_accuracy(logits, labels, ignore),
               "valid_pixels": num_valid.astype(jnp.float32)}
    return loss, metrics

  def example_batch(self, cfg, batch_size, rng):
    h, w = cfg["image_size"]
    label = rng.integers(0, int(cfg["num_classes"]), (batch_size, h, w)).astype(np.uint8)
    return {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8),
            "label": label}

  def decode(self, outputs, batch, cfg) -> dict[str, jax.Array]:
    del batch
    flipped = outputs.get("logits_flipped") if cfg["flip_test"] else None
    if cfg["flip_test"] and flipped is None:
      raise KeyError("parsing cfg.flip_test is set but outputs has no 'logits_flipped'; run the "
                     "model on the flipped image too, or set flip_test=False.")
    return decode_labels(outputs["logits"], flipped, cfg["flip_pairs"])


register(ParsingTask())
