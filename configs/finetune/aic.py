"""Finetuning on AI Challenger keypoints (in-dataset pose; AP with AIC's OKS sigmas)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The authors recorded no AIC finetuning: the COCO recipe (REFERENCE.md §6.3).
  # Counts from the prepared data's metadata.json (paper: AI Challenger: 14 joints).
  return finetune_config(
      "aic", arg, steps=47_000, schedule="step", peak_lr=5e-4, init_lr=1e-7,
      warmup_steps=1500, boundary_fractions=(0.75, 0.9), factors=(0.1, 0.1), weight_decay=0.1,
      drop_path_rate=0.3)
