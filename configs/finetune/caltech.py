"""Finetuning on Caltech (out-of-dataset detection; heavy-occlusion MR^-2, lower is better)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.2 (peddet/full/Caltech): CrowdHuman's recipe over 18,697 steps
  # (240 epochs), 32 images per update; the drop-path is not recorded: CrowdHuman's 0.2.
  # Head/partial: decay 0; partial opens the last 2 blocks. Backbone lr x0.1 not expressible.
  return finetune_config(
      "caltech", arg, steps=18_697, schedule="cosine", peak_lr=5e-4, init_lr=5e-7,
      warmup_steps=500, eta_min=5e-7, weight_decay=0.05, drop_path_rate=0.2, open_last=2,
      head=dict(weight_decay=0.0), partial=dict(weight_decay=0.0))
