"""Pedestrian detection (task ``detection``): Anchor-DETR style query decoder, Hungarian matching.

Head (:mod:`.head`): REFERENCE.md §3.5's decoder on the projected patch tokens; outputs
``logits [L, B, Q]`` and ``boxes [L, B, Q, 4]`` (normalised cxcywh) for every decoder layer.
Loss (:mod:`.losses`, :mod:`.matcher`): per layer, exact Hungarian matching in JAX (costs class
2 / L1 5 / GIoU 2), sigmoid focal x2 + L1 x5 + (1 - GIoU) x2, each divided by the number of
ground-truth boxes in the global batch; ignore regions as the reference.

Loss metrics: ``loss`` (the total), the last layer's unweighted ``focal``, ``l1`` and ``giou``
terms per box, ``num_boxes`` (valid boxes in the batch) and ``matched_iou`` (mean IoU of the last
layer's matched pairs). ``decode`` returns ``scores [B, Q]`` and ``boxes [B, Q, 4]`` (xyxy pixels).

Batch fields (one dataset's sub-batch; ``G = max_boxes``, ``I = max_ignore`` from the config,
by default 500 each, enough for every CrowdHuman image: :mod:`.budget`):

* ``image``        ``[B, H, W, 3]`` uint8, zero-padded on the right/bottom.
* ``boxes``        ``[B, G, 4]`` float32, ground-truth persons as normalised cxcywh: divided by
  the *unpadded* image width/height (REFERENCE.md §7.5); padding slots hold anything.
* ``box_mask``     ``[B, G]`` bool, true for real (non-ignore) ground truths.
* ``ignore_boxes`` ``[B, I, 4]`` float32, ignore regions (``iscrowd`` or non-person categories),
  normalised cxcywh like ``boxes``. They take no part in matching; unmatched predictions
  covering them by IoA >= ``ign_thr`` get no classification loss.
* ``ignore_mask``  ``[B, I]`` bool, true for real ignore regions.
* ``image_hw``     ``[B, 2]`` int32/float, the unpadded image (height, width) in pixels.
* ``orig_hw``      ``[B, 2]`` optional, the original image (height, width) before resizing;
  when present :meth:`DetectionTask.decode` reports boxes in original-image pixels.

Ignore regions are kept apart from ``boxes`` (rather than folded in with a flag) so the matcher's
rows are exactly the boxes that must be matched.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections

from path_jax.tasks import base
from path_jax.tasks.detection import boxes as box_ops
from path_jax.tasks.detection import budget
from path_jax.tasks.detection.head import DetectionHead
from path_jax.tasks.detection.losses import detection_loss


def default_config() -> ml_collections.ConfigDict:
  """Dataset-level defaults of a detection dataset (REFERENCE.md §3.5, CrowdHuman)."""
  c = ml_collections.ConfigDict()
  # Decoder.
  c.hidden_dim = 256
  c.num_heads = 8
  c.ffn_dim = 2048
  c.num_layers = 9
  c.num_anchors = 300
  c.num_patterns = 3
  c.num_queries = 900        # must equal num_anchors * num_patterns; checked by make_head
  c.remat = True             # the reference checkpoints every decoder layer
  c.scan_layers = False      # decoder layers scanned (stacked 'layers' parameters; same numbers)
  c.dtype = "float32"        # compute dtype of the head; outputs are float32
  # Attention implementation (path_jax.model.attention); None = the backbone's, resolved for the
  # platform the model is built for.
  c.attention_impl = ml_collections.config_dict.placeholder(str)
  # Static padding of the targets (pipeline) and matcher size check: person and ignore-region
  # slots per image. None: the prepared data's recorded maxima (metadata.json), filled when a
  # run starts (path_jax.train.fill_from_metadata), else budget.DEFAULT_MAX_BOXES / _IGNORE (500,
  # above CrowdHuman's most crowded image). path_jax/tasks/detection/budget.py: why, and what
  # happens to an image with more.
  c.max_boxes = ml_collections.config_dict.placeholder(int)
  c.max_ignore = ml_collections.config_dict.placeholder(int)
  # Matcher costs.
  c.cost_class = 2.0
  c.cost_bbox = 5.0
  c.cost_giou = 2.0
  # Loss weights and focal parameters.
  c.weight_class = 2.0
  c.weight_bbox = 5.0
  c.weight_giou = 2.0
  c.focal_alpha = 0.25
  c.focal_gamma = 2.0
  c.ign_thr = 0.7
  c.deep_supervision = True
  return c


class DetectionTask(base.Task):
  """Pedestrian detection: DETR-style decoder, Hungarian matching, focal/L1/GIoU losses."""
  name = "detection"

  def make_head(self, cfg: Mapping[str, Any]) -> DetectionHead:
    if cfg["num_queries"] != cfg["num_anchors"] * cfg["num_patterns"]:
      raise ValueError(
          f"detection config: num_queries={cfg['num_queries']} must equal num_anchors * "
          f"num_patterns = {cfg['num_anchors']} * {cfg['num_patterns']}; set num_queries to "
          f"{cfg['num_anchors'] * cfg['num_patterns']}.")
    max_boxes, _ = budget.slots(cfg)
    if max_boxes > cfg["num_queries"]:
      raise ValueError(f"detection config: max_boxes={max_boxes} exceeds "
                       f"num_queries={cfg['num_queries']}; every box needs its own query.")
    return DetectionHead(
        hidden_dim=cfg["hidden_dim"], num_heads=cfg["num_heads"], ffn_dim=cfg["ffn_dim"],
        num_layers=cfg["num_layers"], num_anchors=cfg["num_anchors"],
        num_patterns=cfg["num_patterns"], remat=cfg["remat"], dtype=jnp.dtype(cfg["dtype"]),
        attention_impl=cfg.get("attention_impl", None), scan=bool(cfg.get("scan_layers", False)))

  def loss(self, outputs, batch, cfg):
    return detection_loss(outputs, batch, cfg)

  def example_batch(self, cfg, batch_size, rng):
    h, w = cfg["image_size"]
    g, i = budget.slots(cfg)
    def boxes(n):
      c = rng.uniform(0.2, 0.8, (batch_size, n, 2))
      s = rng.uniform(0.05, 0.3, (batch_size, n, 2))
      return np.concatenate([c, s], -1).astype(np.float32)
    # Valid slots as in CrowdHuman (about 23 persons and 6 ignore regions per image), or half
    # and a fifth of the slots when there are fewer: the matcher's work follows the valid boxes.
    return {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8),
            "boxes": boxes(g), "box_mask": rng.random((batch_size, g)) < min(0.5, 23 / max(g, 1)),
            "ignore_boxes": boxes(i),
            "ignore_mask": rng.random((batch_size, i)) < min(0.2, 6 / max(i, 1)),
            "image_hw": np.tile(np.asarray([h, w], np.float32), (batch_size, 1))}

  def decode(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
             cfg: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Last layer's predictions for all queries, no NMS (as the reference).

    Returns ``scores [B, Q]`` (sigmoid) and ``boxes [B, Q, 4]`` xyxy in pixels of ``orig_hw``
    when the batch has it, else of ``image_hw``.
    """
    del cfg
    hw = batch["orig_hw"] if "orig_hw" in batch else batch["image_hw"]
    hw = jnp.asarray(hw, jnp.float32)
    scale = jnp.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], axis=-1)[:, None, :]
    boxes = box_ops.cxcywh_to_xyxy(outputs["boxes"][-1]) * scale
    return {"scores": jax.nn.sigmoid(outputs["logits"][-1]), "boxes": boxes}


TASK = base.register(DetectionTask())
