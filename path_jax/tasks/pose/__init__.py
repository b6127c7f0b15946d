"""Top-down pose estimation (task ``'pose'``); REFERENCE.md §3.1, §6.4, §7.1; paper §4.3-4.4.

Batch fields the loss expects (one dataset's sub-batch of person crops):

* ``'image'``: ``[B, H, W, 3]`` uint8 RGB crop (256x192 in pretraining).
* ``'target'``: ``[B, h, w, K]`` float32 UDP Gaussian heatmaps (NHWC), ``h, w = H/4, W/4``, from
  :func:`udp_heatmap_targets` (which returns ``[K, h, w]``; move the joint axis last).
* ``'target_weight'``: ``[B, K]`` float32, 1 for a labelled joint inside the heatmap, else 0.

Head outputs: ``{'heatmaps': [B, 4*Hp, 4*Wp, K] float32}``.

:meth:`PoseTask.decode` returns ``'keypoints' [B, K, 2]`` (x, y in input-crop pixels),
``'scores' [B, K]`` and ``'heatmap_xy'``; when the batch also has ``'center' [B, 2]`` and
``'box_size' [B, 2]`` (the crop's centre and (w, h) in original-image pixels, mmpose's
``scale * 200``) it adds ``'keypoints_image' [B, K, 2]``. For the flip test the caller runs the
model on ``image[:, :, ::-1]`` too and passes that run's heatmaps as
``outputs['heatmaps_flipped']``; with ``cfg.flip_test`` they are flipped back, left/right joints
swapped (``cfg.flip_pairs``), and averaged in.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections

from path_jax.tasks.base import Task, register
from path_jax.tasks.pose.decode import (crop_to_image, decode_heatmaps, flip_back,  # noqa: F401
                                        flip_permutation, gaussian_blur, post_dark_udp)
from path_jax.tasks.pose.head import PoseHead
from path_jax.tasks.pose.loss import heatmap_argmax, joints_mse, pck_accuracy  # noqa: F401
from path_jax.tasks.pose.targets import udp_heatmap_targets  # noqa: F401

# COCO's 17 keypoints: eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left, right).
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))


def default_config() -> ml_collections.ConfigDict:
  """Dataset-level fields of a pose dataset (defaults: COCO, 17 joints, 256x192 crops)."""
  return ml_collections.ConfigDict({
      "num_joints": 17,
      "image_size": (256, 192),          # (H, W) of the crop, pixels; heatmaps are (H/4, W/4)
      "sigma": 2.0,                      # UDP target Gaussian std, heatmap pixels
      "deconv_features": (256, 256),     # channels of the two stride-2 transposed convs
      "flip_pairs": COCO_FLIP_PAIRS,     # left/right joint pairs swapped by a horizontal flip
      "flip_test": True,
      "dark_kernel": 11,                 # Gaussian blur size of the DARK refinement
      "pck_threshold": 0.05,             # training-time PCK threshold (mmpose normalisation)
      "dtype": "float32",                # computation dtype of the head
      # Transposed-conv form (path_jax.tasks.pose.head.TorchDeconv): 'phase' | 'dilated';
      # None = chosen for the platform the model is built for ('phase' on CPU).
      "deconv_impl": ml_collections.config_dict.placeholder(str),
  })


class PoseTask(Task):
  name = "pose"

  def make_head(self, cfg):
    flip_permutation(int(cfg["num_joints"]), cfg["flip_pairs"])  # raises on bad pairs
    return PoseHead(num_joints=int(cfg["num_joints"]),
                    deconv_features=tuple(int(f) for f in cfg["deconv_features"]),
                    dtype=jnp.dtype(cfg["dtype"]),
                    deconv_impl=str(cfg.get("deconv_impl", None) or "phase"))

  def loss(self, outputs, batch, cfg):
    heatmaps, target = outputs["heatmaps"], batch["target"]
    weight = batch["target_weight"]
    if heatmaps.shape != target.shape:
      raise ValueError(
          f"pose heatmaps {heatmaps.shape} and batch['target'] {target.shape} differ; targets must "
          f"be [B, H/4, W/4, K] for [B, H, W] crops with H, W multiples of 16 and K = num_joints.")
    if weight.shape != heatmaps.shape[:1] + heatmaps.shape[3:]:
      raise ValueError(f"batch['target_weight'] must be [B, K] = "
                       f"{heatmaps.shape[:1] + heatmaps.shape[3:]}, got {weight.shape}.")
    loss = joints_mse(heatmaps, target, weight)
    pck = pck_accuracy(heatmaps, target, weight, float(cfg["pck_threshold"]))
    return loss, {"loss": loss, "pck": pck}

  def example_batch(self, cfg, batch_size, rng):
    h, w = cfg["image_size"]
    k = int(cfg["num_joints"])
    return {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8),
            "target": rng.random((batch_size, h // 4, w // 4, k)).astype(np.float32),
            "target_weight": (rng.random((batch_size, k)) > 0.2).astype(np.float32)}

  def decode(self, outputs, batch, cfg) -> dict[str, jax.Array]:
    flipped = outputs.get("heatmaps_flipped") if cfg["flip_test"] else None
    if cfg["flip_test"] and flipped is None:
      raise KeyError("pose cfg.flip_test is set but outputs has no 'heatmaps_flipped'; run the "
                     "model on the flipped image too, or set flip_test=False.")
    image_hw = tuple(batch["image"].shape[1:3])
    out = decode_heatmaps(outputs["heatmaps"], image_hw, flipped, cfg["flip_pairs"],
                          int(cfg["dark_kernel"]))
    if "center" in batch and "box_size" in batch:
      out["keypoints_image"] = crop_to_image(out["keypoints"], image_hw, batch["center"],
                                             batch["box_size"])
    return out


register(PoseTask())
