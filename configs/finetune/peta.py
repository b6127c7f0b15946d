"""Finetuning on PETA (out-of-dataset attributes; mA; 35 attributes)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.2 (attr/full/peta): Adafactor (update clip 1.0, decay 0.05) 1e-5 -> 1e-3,
  # x0.1 at 10,687 and 12,825 of 14,250 steps (75 % / 90 %), 64 images per step (80 epochs),
  # drop-path 0.1; the warm-up is not recorded: PA-100k's 500 steps. Head: Adafactor 1e-5 ->
  # 1e-1, decay 0; partial: decay 0. Backbone lr x0.5 not expressible.
  # Counts from the prepared data's metadata.json (paper: PETA: 35 attributes).
  return finetune_config(
      "peta", arg, steps=14_250, schedule="step", peak_lr=1e-3, init_lr=1e-5,
      warmup_steps=500, boundary_fractions=(10_687 / 14_250, 12_825 / 14_250),
      factors=(0.1, 0.1), weight_decay=0.05,
      drop_path_rate=0.1,
      head=dict(peak_lr=1e-1, weight_decay=0.0),
      partial=dict(weight_decay=0.0))
