"""Finetuning on CrowdHuman (in-dataset detection; AP, MR^-2, recall)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.2 (peddet/full/crowdhuman): Adafactor (clip 1.0, decay 0.05), cosine
  # 5e-7 -> 5e-4 (500-step warm-up) -> 5e-7 over 46,875 steps, 32 images per update
  # (100 epochs), drop-path 0.2. Head/partial: decay 0; partial opens the last 8 blocks
  # ("Open_Last8"). Backbone lr x0.5 and head decay 1e-3 not expressible; the authors also
  # froze the positional embedding (no lpe_lr).
  return finetune_config(
      "crowdhuman", arg, steps=46_875, schedule="cosine", peak_lr=5e-4, init_lr=5e-7,
      warmup_steps=500, eta_min=5e-7, weight_decay=0.05, drop_path_rate=0.2, open_last=8,
      head=dict(weight_decay=0.0), partial=dict(weight_decay=0.0))
