"""Finetuning on MPII (out-of-dataset pose; PCKh@0.5)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.3 (pose/mpii yaml): the COCO recipe with a 1,000-step warm-up and x0.1
  # at 5,250 and 6,300 of 7,000 steps (75 % / 90 %), 160 images per step.
  # Counts from the prepared data's metadata.json (paper: MPII: 16 joints).
  return finetune_config(
      "mpii", arg, steps=7_000, schedule="step", peak_lr=5e-4, init_lr=1e-7,
      warmup_steps=1000, boundary_fractions=(0.75, 0.9), factors=(0.1, 0.1), weight_decay=0.1,
      drop_path_rate=0.3)
