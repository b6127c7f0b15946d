"""Finetuning on PA-100K (in-dataset attributes; mA)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.2 (attr/full/pa100k): SGD 1e-4 -> 1e-2 with a 500-step warm-up, x0.1 at
  # 31,640 and 40,077 of 42,187 steps (75 % / 95 %), 64 images per step (30 epochs), drop-path
  # 0.3. SGD -> Adafactor with PETA's Adafactor lr (1e-5 -> 1e-3) and decay 0.05 (see
  # configs/finetune/__init__.py). Head protocol: Adafactor to 1e-1 without decay (PETA's head
  # recipe); partial: decay 0. Backbone lr x0.5 and head decay 0 not expressible.
  # Counts from the prepared data's metadata.json (paper: PA-100K: 26 attributes).
  return finetune_config(
      "pa100k", arg, steps=42_187, schedule="step", peak_lr=1e-3, init_lr=1e-5,
      warmup_steps=500, boundary_fractions=(31_640 / 42_187, 40_077 / 42_187),
      factors=(0.1, 0.1), weight_decay=0.05,
      drop_path_rate=0.3,
      head=dict(peak_lr=1e-1, weight_decay=0.0),
      partial=dict(weight_decay=0.0))
