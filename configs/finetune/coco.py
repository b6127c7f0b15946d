"""Finetuning on COCO-2017 keypoints (in-dataset pose; AP). Evaluation uses ground-truth
boxes (split 'val'); ``--config.datasets.coco.eval_split=val_dets`` evaluates on the person
detections as the authors did (needs the detection file at build time). The downstream suite
(path_jax.suite) picks 'val_dets' by itself when it is prepared and labels the row "det boxes"
or "GT boxes"."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.3 (pose/coco yaml): linear warm-up 1e-7 -> 5e-4 over 1,500 steps, x0.1 at
  # 35,250 and 42,300 of 47,000 steps (75 % / 90 %), 160 images per step (50 epochs), AdamW
  # wd 0.1 (-> Adafactor), layer decay 0.75, drop-path 0.3, UDP targets, flip test.
  # Backbone lr x0.8 (bmp) not expressible.
  # Counts from the prepared data's metadata.json (paper: COCO: 17 joints).
  return finetune_config(
      "coco", arg, steps=47_000, schedule="step", peak_lr=5e-4, init_lr=1e-7,
      warmup_steps=1500, boundary_fractions=(0.75, 0.9), factors=(0.1, 0.1), weight_decay=0.1,
      drop_path_rate=0.3)
