"""Finetuning on CIHP (in-dataset parsing; mIoU)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.3 (parsing yamls): WarmupCosine to 5e-4 (1,500 steps from 1 %),
  # AdamW wd 0.1 (-> Adafactor), layer decay 0.75, drop-path 0.3, 480x480 inputs. 4 images per
  # GPU on an unrecorded number of GPUs: 32 per step assumed. Backbone lr x0.8 not expressible.
  # CIHP: 35,000 steps.
  return finetune_config(
      "cihp", arg, steps=35_000, schedule="warmup_cosine", peak_lr=5e-4, warmup_steps=1500,
      warmup_factor=0.01, weight_decay=0.1, drop_path_rate=0.3)
