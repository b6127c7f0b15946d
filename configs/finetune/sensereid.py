"""Finetuning on SenseReID (out-of-dataset ReID; top-1). SenseReID has no training split:
training reads the authors' finetuning set (the train sets of Market-1501, DukeMTMC-reID,
CUHK03-NP, MSMT17 and MARS; 3,886 ids) prepared as ``reid/sensereid_train_native`` from the
publishers' folders; evaluation reads
``reid/sensereid`` (``eval_tfds_name``)."""
from __future__ import annotations

import ml_collections

from configs.finetune import finetune_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  # REFERENCE.md §6.3 (the authors' ReID finetuning yaml): WarmupCosine to 5e-4 over 30k
  # iterations, AdamW wd 0.3 (-> Adafactor, see configs/finetune/__init__.py), layer decay 0.75,
  # drop-path 0, 256x128 crops, 64 images per step as 16 ids x 4. The warm-up is not recorded:
  # the parsing WarmupCosine's (1,500 steps from 1 %). Backbone lr x0.5 (bmp) not expressible.
  # Counts from the prepared data's metadata.json (paper: the authors' lists: 3,886 identities).
  return finetune_config(
      "sensereid", arg, steps=30_000, schedule="warmup_cosine", peak_lr=5e-4, warmup_steps=1500,
      warmup_factor=0.01, weight_decay=0.3, drop_path_rate=0.0)
