"""Finetuning on Human3.6M 2-D pose (in-dataset pose; EPE, lower is better)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # The authors recorded no Human3.6M pose finetuning: the COCO recipe (REFERENCE.md §6.3).
  # Counts from the prepared data's metadata.json (paper: Human3.6M: 17 joints).
  return finetune_config(
      "h36m_pose", arg, steps=47_000, schedule="step", peak_lr=5e-4, init_lr=1e-7,
      warmup_steps=1500, boundary_fractions=(0.75, 0.9), factors=(0.1, 0.1), weight_decay=0.1,
      drop_path_rate=0.3)
