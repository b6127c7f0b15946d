"""Downstream finetuning configs: one file per HumanBench evaluation dataset (paper Tab. 2).

  python -m path_jax.main --config=configs/finetune/pa100k.py \\
      --config.finetune.init_from=PRETRAIN_WORKDIR/export --workdir=DIR
  python -m path_jax.main --config=configs/finetune/pa100k.py:protocol=head ...

Each ``configs/finetune/<dataset>.py`` calls :func:`finetune_config` with that dataset's recipe
(REFERENCE.md §6 where the authors recorded one; each file says where its numbers come from).
The dataset subtree is :func:`configs.humanbench.downstream_dataset`; the model is the plain
backbone (ViT-B/16, 14x14 positional grid, cls token for ReID) plus the dataset's head, no
projector (paper §4: projectors are discarded after pretraining).

Protocols (paper §3.2): ``finetune.protocol`` 'full' (default), 'head' (backbone frozen) or
'partial' (last ``finetune.open_last`` blocks and the final norm train). Overriding
``--config.finetune.protocol=partial`` changes only what trains; the argument form
``:protocol=partial`` also applies that protocol's optimiser settings where the authors recorded
them (attributes and detection: weight decay 0, and head lr for attributes).

Counts from the data: ReID identities (``num_classes``), attributes (``num_attributes``) and
joints (``num_joints``) are left None, so each run takes them from the prepared dataset's
``metadata.json`` (path_jax.train.fill_from_metadata): the same config trains a 751-way
classifier on Market-1501 and a 1,000-way one on a set with 1,000 identities. The paper's counts
(configs/humanbench.py DOWNSTREAM; each file's comment) are what the real sets give; a value set
on the command line must agree with the data, or the run stops naming both numbers. Parsing keeps
its class count (the label maps' ids and flip pairs depend on it), checked against the data too.

Durations follow the run: each recipe's warm-up is stored as a fraction of its own length
(``optimizer.schedule.warmup_fraction``), decay points as fractions too, and
``optimizer.schedule.total_steps`` follows ``train.num_steps``; so
``--config.train.num_steps=250`` gives a 250-step run with the recipe's shape (at the recipe's
length, exactly the recipe's numbers: tests/test_finetune_traps.py).

Our optimiser is Adafactor only. Where the authors finetuned with AdamW (pose, parsing, ReID) we
keep their peak lr, schedule and weight decay: both normalise the update per parameter, and both
decay as ``p -= lr * wd * p``; their gradient-norm clipping (0.01) becomes Adafactor's update
clipping (1.0, as in their Adafactor finetuning configs). Where they used SGD (PA-100k, RAPv2 full
and head) an SGD lr (1e-2, momentum 0) means nothing to a scale-free update, so we take the lr and
decay of their Adafactor recipe for the same task (PETA) and keep the SGD run's schedule shape
(warm-up, decay points, steps). Not expressible here: the authors' backbone lr multiplier
(``backbone_multiplier`` 0.1-0.8) and separate head weight decay (``decoder_wd``); each recipe
notes its values.
"""
from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

from configs import common, humanbench

# Recipe fields and their defaults (each dataset file sets what its source gives).
RECIPE_DEFAULTS: dict[str, Any] = dict(
    steps=10_000,                 # optimiser updates
    batch_size=None,              # None: the registry's (humanbench.DOWNSTREAM)
    schedule="step",              # 'step' | 'cosine' | 'warmup_cosine' (path_jax.optim.schedules)
    peak_lr=5e-4,
    init_lr=1e-7,                 # 'step' / 'cosine' warm-up start
    warmup_steps=1500,            # at ``steps`` (stored as the fraction warmup_steps / steps)
    warmup_factor=0.001,          # 'warmup_cosine' warm-up start factor
    boundary_fractions=(),        # 'step' decay points as fractions of the steps
    factors=(),                   # 'step' factor at each point
    eta_min=0.0,                  # 'cosine' final lr
    weight_decay=0.05,
    layer_decay=0.75,
    clip_threshold=1.0,
    drop_path_rate=0.1,           # backbone stochastic depth
    pos_embed_multiplier=1.0,
    open_last=2,                  # 'partial': trainable last blocks
    head=None,                    # recipe overrides for protocol 'head'
    partial=None,                 # recipe overrides for protocol 'partial'
)
PROTOCOL_ARGS = dict(protocol="full")


def finetune_config(dataset_name: str, arg: str | None = None, **overrides: Any
                    ) -> ml_collections.ConfigDict:
  """The finetuning config of downstream dataset ``dataset_name`` with recipe ``overrides``.

  ``arg`` is the config file's argument (``protocol=full|head|partial``); ``overrides`` are
  fields of ``RECIPE_DEFAULTS``. ``optimizer.schedule.total_steps`` follows ``train.num_steps``
  (until set), the warm-up and the 'step' decay points are fractions of it, so
  ``--config.train.num_steps`` rescales them. The dataset's counts are left to its prepared
  data (:func:`counts_from_data`).
  """
  from path_jax import optim

  unknown = sorted(set(overrides) - set(RECIPE_DEFAULTS))
  if unknown:
    raise KeyError(f"unknown finetune recipe field(s) {unknown} for {dataset_name!r}; valid: "
                   f"{sorted(RECIPE_DEFAULTS)}.")
  args = humanbench.parse_arg(arg, PROTOCOL_ARGS)
  protocol = args["protocol"]
  if protocol not in common.PROTOCOLS:
    raise ValueError(f"protocol={protocol!r}; use one of {common.PROTOCOLS}.")
  recipe = dict(RECIPE_DEFAULTS, **overrides)
  if protocol != "full" and recipe[protocol]:
    recipe.update(recipe[protocol])

  c = common.base_config()
  c.mode = "finetune"
  c.model.backbone.variant = "B/16"
  c.model.backbone.pos_grid = (14, 14)
  c.model.backbone.cls_token = True
  c.model.backbone.drop_path_rate = float(recipe["drop_path_rate"])
  c.model.projector.enabled = False

  ds = counts_from_data(humanbench.downstream_dataset(dataset_name, c.get_ref("data_dir")))
  if recipe["batch_size"] is not None:
    ds.batch_size = int(recipe["batch_size"])
  c.datasets = ml_collections.ConfigDict({dataset_name: ds})

  c.train.num_steps = int(recipe["steps"])
  c.train.loss_weights = "config"
  c.finetune.protocol = protocol
  c.finetune.open_last = int(recipe["open_last"])

  o = optim.default_config()
  o.peak_lr = float(recipe["peak_lr"])
  o.weight_decay = float(recipe["weight_decay"])
  o.layer_decay = float(recipe["layer_decay"])
  o.clip_threshold = float(recipe["clip_threshold"])
  o.pos_embed_multiplier = float(recipe["pos_embed_multiplier"])
  s = o.schedule
  s.name = recipe["schedule"]
  s.init_lr = float(recipe["init_lr"])
  s.warmup_steps = None
  s.warmup_fraction = int(recipe["warmup_steps"]) / int(recipe["steps"])
  s.warmup_factor = float(recipe["warmup_factor"])
  s.boundary_fractions = tuple(float(f) for f in recipe["boundary_fractions"])
  s.factors = tuple(float(f) for f in recipe["factors"])
  s.eta_min = float(recipe["eta_min"])
  c.optimizer = o
  c.optimizer.schedule.total_steps = c.train.get_ref("num_steps").identity()
  return c


# Per task, the dataset fields a run takes from the prepared data's metadata.json when None.
COUNT_FIELDS = {"reid": ("num_classes",), "attributes": ("num_attributes", "positive_ratios"),
                "pose": ("num_joints",)}


def counts_from_data(ds: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Leaves ``ds``'s counts (:data:`COUNT_FIELDS`) to the prepared data: None placeholders, which
  ``--config.datasets.<name>.<field>=N`` can still set (then it must agree with the data)."""
  for field in COUNT_FIELDS.get(ds.task, ()):
    kind = tuple if field == "positive_ratios" else int
    ds[field] = config_dict.placeholder(kind)
  return ds
