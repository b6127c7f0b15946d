"""The README demo: a tiny PATH model on humanbench_mini that runs on 2 CPU cores.

  python -m data.humanbench_mini.build_all --data_dir=/tmp/humanbench_mini/tfds
  python -m path_jax.main --config=configs/demo.py --workdir=/tmp/demo/pretrain

``get_config('pretrain')`` (default): the five pretraining sets (ReID, pose, parsing, attributes,
detection), one backbone, a projector per task, a head per dataset. ``get_config('finetune')``:
the held-out downstream sets (ReID on other identities and cameras, attributes on a PETA-style
set, crowd counting as the unseen task), projector off, partial finetuning of the exported
backbone (``--config.finetune.init_from=DIR/export``). Class counts and attribute ratios come
from the prepared datasets' metadata.
"""
import ml_collections

from configs import common

# A small ViT: 4 blocks of width 96 on 16x16 patches.
BACKBONE = dict(variant="mu/16", width=96, depth=4, num_heads=3, mlp_dim=384, patch_size=16,
                cls_token=True, drop_path_rate=0.0)


def _pretrain_datasets():
  d = {}
  d["mini_market"] = common.dataset(
      "reid", "reid/market1501", batch_size=32, image_size=(128, 64), eval_split="query+gallery",
      num_classes=None, classes_multiple_of=8, images_per_identity=4)
  d["mini_coco"] = common.dataset(
      "pose", "pose/coco", batch_size=32, image_size=(128, 96), eval_split="val",
      deconv_features=(64, 64))
  d["mini_lip"] = common.dataset(
      "parsing", "parsing/lip", batch_size=16, image_size=(128, 96), eval_split="val",
      head_features=64)
  d["mini_pa100k"] = common.dataset(
      "attributes", "attributes/pa100k", batch_size=32, image_size=(128, 64), eval_split="test",
      num_attributes=None, positive_ratios=None)
  d["mini_crowdhuman"] = common.dataset(
      "detection", "detection/crowdhuman", batch_size=8, image_size=(192, 256),
      eval_split="val", hidden_dim=64, num_heads=4, ffn_dim=256, num_layers=3, num_anchors=40,
      num_patterns=3, num_queries=120, max_boxes=16, max_ignore=8, remat=False)
  return d


def _finetune_datasets():
  d = {}
  d["mini_dukemtmc"] = common.dataset(
      "reid", "reid/dukemtmc", batch_size=32, image_size=(128, 64), eval_split="query+gallery",
      num_classes=None, classes_multiple_of=8, images_per_identity=4)
  d["mini_peta"] = common.dataset(
      "attributes", "attributes/peta", batch_size=32, image_size=(128, 64), eval_split="test",
      num_attributes=None, positive_ratios=None)
  return d


def get_config(arg: str = "pretrain"):
  arg = arg or "pretrain"
  if arg not in ("pretrain", "finetune"):
    raise ValueError(f"configs/demo.py takes 'pretrain' or 'finetune', got {arg!r}")
  c = common.base_config()
  c.mode = arg
  c.data_dir = common.demo_data_dir()
  c.data_kind = "humanbench_mini"
  c.model.backbone.update(BACKBONE)
  c.mesh.shape = (-1, 1, 1)
  c.train.log_every = 10
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 2
  c.optimizer.layer_decay = 0.75
  c.evaluate.pictures = 8
  if arg == "pretrain":
    c.datasets = ml_collections.ConfigDict(_pretrain_datasets())
    c.train.num_steps = 300
    c.optimizer.peak_lr = 2e-3
    c.optimizer.clip_threshold = 1.0
    c.optimizer.schedule.warmup_fraction = 0.1   # 30 of the 300 steps; follows train.num_steps
  else:
    c.datasets = ml_collections.ConfigDict(_finetune_datasets())
    c.model.projector.enabled = False
    c.finetune.protocol = "partial"
    c.train.num_steps = 150
    c.optimizer.peak_lr = 2e-3
    c.optimizer.clip_threshold = 1.0
    c.optimizer.schedule.name = "warmup_cosine"
    c.optimizer.schedule.warmup_fraction = 0.1   # 15 of the 150 steps
  return c
