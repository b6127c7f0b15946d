"""Finetuning on RAPv2 (in-dataset attributes; mA)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.2 (attr/full/rap2): SGD 1e-4 -> 1e-2, x0.1 at 27,867 and 33,440 of
  # 37,156 steps (75 % / 90 %), 64 images per step (35 epochs), positional-embedding lr x2,
  # drop-path 0.2. SGD -> Adafactor as PA-100k (PETA's lr and decay; warm-up 500 as PA-100k).
  # Head protocol: Adafactor to 1e-1 without decay (PETA's head recipe); partial: decay 0.
  # Counts from the prepared data's metadata.json (paper: RAPv2: 54 attributes).
  return finetune_config(
      "rapv2", arg, steps=37_156, schedule="step", peak_lr=1e-3, init_lr=1e-5,
      warmup_steps=500, boundary_fractions=(27_867 / 37_156, 33_440 / 37_156),
      factors=(0.1, 0.1), weight_decay=0.05,
      drop_path_rate=0.2, pos_embed_multiplier=2.0,
      head=dict(peak_lr=1e-1, weight_decay=0.0),
      partial=dict(weight_decay=0.0))
