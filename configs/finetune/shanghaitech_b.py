"""Finetuning on ShanghaiTech part B (unseen-task counting; MAE / MSE, lower is
better)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The authors' code has no counting (REFERENCE.md §3.6): our recipe, the detection one
  # (dense prediction on scene images): cosine 5e-7 -> 5e-4 (500-step warm-up) -> 5e-7, decay
  # 0.05, drop-path 0.1, 16 random 512x512 crops per step, 10,000 steps
  # (400 epochs of the 400 training images).
  return finetune_config(
      "shanghaitech_b", arg, steps=10_000, schedule="cosine", peak_lr=5e-4, init_lr=5e-7,
      warmup_steps=500, eta_min=5e-7, weight_decay=0.05, drop_path_rate=0.1)
