"""The downstream suite on humanbench_mini: one finetuning config per mini downstream set, CPU size.

  python -m path_jax.suite --suite=mini --backbone=DIR/export|demo_pretrain --protocol=full \
      --workdir=DIR
  python -m path_jax.main --config=configs/mini_suite.py:dataset=mini_atr,protocol=partial \\
      --config.finetune.init_from=DIR/export --workdir=DIR

``get_config('dataset=<mini set>,protocol=full|head|partial')``: the tiny backbone of
configs/demo.py (BACKBONE), no projector, the dataset's head at a small width, and a short
recipe (10 % warm-up + cosine, Adafactor at 2e-3; both follow ``train.num_steps``) sized so
that every set finetunes on 2 CPU cores in about a minute at most. Counts (ReID identities,
attributes, joints) come from the prepared data. Steps per set (``MiniSet.steps``) are what each
set needs, from a short pretraining of the demo model, to beat chance by the margins
tests/test_suite.py asserts (measured there): ReID (rank-1 9.8 % at 150 steps, 21.3 % at 250),
ATR (at 60 steps it labels everything background) and Caltech's DETR head (AP 5.9 % at 150
steps, 12.3 % at 250) get 250; both counting parts are trained at their full image size for 250
steps (part B's 128 x 128 crops of the 192 x 256 scenes stayed worse than predicting the
training-mean count; part A's 60 steps on such crops beat it by 6.5 on jax 0.10 and lost by 11.4
on jax 0.12, and by 1.7 / 2.9 at 250 steps: a chaotic, luck-bound result, where the full-size
recipe gives 8.0 / 7.3). Each mini set
stands in for one HumanBench downstream set (data/humanbench_mini/README.md) and is scored with
that set's Table 3 metric (``eval_metric``), except Caltech: the mini scenes are too small for
Caltech's heavy-occlusion subset (people >= 50 px tall, 20-65 % visible), so mini_caltech reports
MR^-2 over all non-ignored people (the builder ignores people under 35 % visible, Caltech's
"reasonable" cut). That MR^-2 stays at ~98-100 % for this tiny model (its misses at low
false-positive rates saturate), so ``check_metric`` judges mini_caltech against chance on AP
instead; the table keeps MR^-2.

The suite's w/o-FT protocol (``--protocol=none``) trains nothing: none of the seven sets above
has a pretraining head, so it adds ``IN_DATASET_SETS``, the demo pretraining sets' own evaluation
splits (:func:`in_dataset_config`), each scored by its own head (``PRETRAINED_HEADS``) with the
Table 3 metric of the in-dataset column it stands for.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections

from configs import common, humanbench
from configs.demo import BACKBONE

PROTOCOL_ARGS = dict(dataset="", protocol="full", steps=0)

# The suite's short pretraining (`python -m path_jax.suite --suite=mini --backbone=demo_pretrain`):
# configs/demo.py's pretraining less mini_crowdhuman (the DETR head costs the most to compile and
# step, and no head transfers: only the backbone is exported), PRETRAIN_STEPS steps.
PRETRAIN_SETS = ("mini_market", "mini_coco", "mini_lip", "mini_pa100k")
PRETRAIN_STEPS = 150
# Warm-up of every mini run (pretraining and each set): 10 % of its steps.
WARMUP_FRACTION = 0.1


@dataclasses.dataclass(frozen=True)
class MiniSet:
  """One mini downstream set: its config subtree, the HumanBench set it stands for, and steps."""
  name: str
  task: str
  tfds_name: str
  stands_for: str           # HumanBench downstream set (configs/humanbench.py DOWNSTREAM)
  eval_metric: str          # path_jax.paper_results.METRICS key
  batch_size: int
  steps: int
  eval_split: str
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  eval_protocol: str = ""   # detection only
  # The path_jax.paper_results.METRICS key judged against chance ('' = eval_metric), for a set
  # whose Table 3 metric saturates at this size (mini_caltech: MR^-2 stays near 100).
  check_metric: str = ""


MINI_SETS: tuple[MiniSet, ...] = (
    MiniSet("mini_atr", "parsing", "parsing/atr", "atr", "pacc", 8, 250, "val",
            dict(image_size=(96, 96), head_features=32, num_classes=18,
                 flip_pairs=humanbench.ATR_FLIP_PAIRS, flip_test=False)),
    MiniSet("mini_dukemtmc", "reid", "reid/dukemtmc", "sensereid", "top1", 32, 250,
            "query+gallery",
            dict(image_size=(128, 64), num_classes=None, classes_multiple_of=8,
                 images_per_identity=4)),
    MiniSet("mini_caltech", "detection", "detection/caltech", "caltech", "mr_all", 8, 250, "val",
            dict(image_size=(160, 224), hidden_dim=64, num_heads=4, ffn_dim=128, num_layers=2,
                 num_anchors=24, num_patterns=2, num_queries=48, max_boxes=8, max_ignore=8,
                 remat=False, train_scales=(128, 144, 160), max_size=224,
                 crop_scales=(128, 160), crop_size=(96, 160), eval_scale=160),
            eval_protocol="crowdhuman", check_metric="ap_mr"),
    MiniSet("mini_mpii", "pose", "pose/mpii", "mpii", "pckh", 16, 60, "val",
            dict(image_size=(128, 96), deconv_features=(32, 32),
                 flip_pairs=humanbench.MPII_FLIP_PAIRS, upper_body_ids=humanbench.MPII_UPPER_BODY,
                 flip_test=False)),
    MiniSet("mini_peta", "attributes", "attributes/peta", "peta", "ma", 32, 60, "test",
            dict(image_size=(128, 64), num_attributes=None, positive_ratios=None)),
    MiniSet("mini_shanghaitech_a", "counting", "counting/shanghaitech_a", "shanghaitech_a",
            "mae_mse", 8, 250, "test",
            dict(image_size=(192, 256), eval_image_size=(192, 256), decoder_channels=(32, 16, 16),
                 adaptive_knn=3)),
    MiniSet("mini_shanghaitech_b", "counting", "counting/shanghaitech_b", "shanghaitech_b",
            "mae_mse", 8, 250, "test",
            dict(image_size=(192, 256), eval_image_size=(192, 256), decoder_channels=(32, 16, 16))),
)
NAMES = tuple(s.name for s in MINI_SETS)


@dataclasses.dataclass(frozen=True)
class InDatasetSet:
  """A pretraining set's own evaluation split, standing for a Table 3 in-dataset column under
  the suite's w/o-FT protocol (``--protocol=none``): scored by that set's pretraining head, with
  the column's metric."""
  name: str                 # the pretraining set (configs/demo.py), also its head
  stands_for: str
  eval_metric: str
  eval_protocol: str = ""   # detection only


# The seven downstream sets above have no pretraining head (their columns are '-' in Table 3's
# w/o-FT row too); these are the mini suite's in-dataset evaluations.
IN_DATASET_SETS: tuple[InDatasetSet, ...] = (
    InDatasetSet("mini_market", "market1501", "map_cmc"),
    InDatasetSet("mini_coco", "coco", "coco_ap"),
    InDatasetSet("mini_lip", "lip", "miou"),
    InDatasetSet("mini_pa100k", "pa100k", "ma"),
    InDatasetSet("mini_crowdhuman", "crowdhuman", "ap_mr", eval_protocol="crowdhuman"),
)
IN_DATASET_NAMES = tuple(s.name for s in IN_DATASET_SETS)
# Suite dataset -> pretraining head (the set's own head; configs/humanbench.py PRETRAINED_HEADS
# for the HumanBench suite).
PRETRAINED_HEADS = {s.name: humanbench.PretrainedHead(s.name) for s in IN_DATASET_SETS}


def mini_set(name: str) -> MiniSet:
  found = [s for s in MINI_SETS if s.name == name]
  if not found:
    raise KeyError(f"unknown mini downstream set {name!r}; known: {list(NAMES)} "
                   "(configs/mini_suite.py MINI_SETS)")
  return found[0]


def dataset_config(s: MiniSet) -> ml_collections.ConfigDict:
  """The set's subtree; its counts (identities, attributes, joints) come from the data."""
  from configs.finetune import counts_from_data
  cfg = counts_from_data(common.dataset(s.task, s.tfds_name, batch_size=s.batch_size,
                                        eval_split=s.eval_split, **s.fields))
  cfg.eval_metric = s.eval_metric
  cfg.eval_tfds_name = ""
  cfg.check_metric = s.check_metric
  if s.task == "detection":
    cfg.eval_protocol = s.eval_protocol
  return cfg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = humanbench.parse_arg(arg, PROTOCOL_ARGS)
  if not args["dataset"]:
    raise ValueError(f"configs/mini_suite.py needs dataset=<one of {list(NAMES)}>, e.g. "
                     "--config=configs/mini_suite.py:dataset=mini_atr,protocol=full")
  if args["protocol"] not in common.PROTOCOLS:
    raise ValueError(f"protocol={args['protocol']!r}; use one of {common.PROTOCOLS}")
  s = mini_set(args["dataset"])
  steps = int(args["steps"]) or s.steps
  c = common.base_config()
  c.mode = "finetune"
  c.data_dir = common.demo_data_dir()
  c.data_kind = "humanbench_mini"
  c.model.backbone.update(BACKBONE)
  c.model.projector.enabled = False
  c.mesh.shape = (-1, 1, 1)
  c.datasets = ml_collections.ConfigDict({s.name: dataset_config(s)})
  c.finetune.protocol = args["protocol"]
  c.finetune.open_last = 2
  c.train.num_steps = steps
  c.train.log_every = 20
  c.train.checkpoint_every = 10 * steps      # only the final checkpoint
  c.train.keep_checkpoints = 1
  c.evaluate.pictures = 4
  c.optimizer.peak_lr = 2e-3
  c.optimizer.clip_threshold = 1.0
  c.optimizer.layer_decay = 0.75
  c.optimizer.schedule.name = "warmup_cosine"
  c.optimizer.schedule.warmup_fraction = WARMUP_FRACTION   # total_steps follows num_steps
  return c


def in_dataset_config(name: str) -> ml_collections.ConfigDict:
  """What the suite's w/o-FT protocol reads of in-dataset set ``name``: configs/demo.py's
  pretraining subtree (data, eval split, transforms) with the Table 3 metric; nothing trains."""
  from configs import demo
  found = [s for s in IN_DATASET_SETS if s.name == name]
  if not found:
    raise KeyError(f"unknown mini in-dataset set {name!r}; known: {list(IN_DATASET_NAMES)}")
  s = found[0]
  c = demo.get_config("pretrain")
  c.mode = "evaluate"
  d = c.datasets[name]
  d.eval_metric = s.eval_metric
  d.eval_tfds_name = ""
  d.check_metric = ""
  if d.task == "detection":
    d.eval_protocol = s.eval_protocol
  c.datasets = ml_collections.ConfigDict({name: d})
  return c


def pretrain_config(steps: int = PRETRAIN_STEPS) -> ml_collections.ConfigDict:
  """configs/demo.py's pretraining on PRETRAIN_SETS for ``steps`` steps (final checkpoint only)."""
  from configs import demo
  if steps < 1:
    raise ValueError(f"pretraining steps={steps}; use at least 1 (configs/mini_suite.py)")
  c = demo.get_config("pretrain")
  for name in list(c.datasets):
    if name not in PRETRAIN_SETS:
      del c.datasets[name]
  c.train.num_steps = steps
  c.train.checkpoint_every = 10 * steps
  c.train.keep_checkpoints = 1
  # The demo's 30 of 300 warm-up steps, as a fraction: --set=train.num_steps=N is enough.
  c.optimizer.schedule.total_steps = c.train.get_ref("num_steps").identity()
  c.optimizer.schedule.warmup_steps = None
  c.optimizer.schedule.warmup_fraction = WARMUP_FRACTION
  return c
