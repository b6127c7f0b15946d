"""Config building blocks shared by every config file.

A config is an ``ml_collections.ConfigDict`` returned by ``get_config(arg)`` and locked by
``config_flags`` (a mistyped ``--config.x.y`` override fails at once). Top-level fields:

  mode          'pretrain' | 'finetune' | 'evaluate' | 'export'
  seed          global seed (parameters, data order, dropout)
  data_dir      TFDS data dir of the prepared datasets (a dataset's own ``data_dir`` wins)
  data_kind     'real' | 'humanbench_mini': the kind of prepared data the config expects
  model         backbone (path_jax.model.vit) and projector (path_jax.model.projector)
  datasets      one subtree per dataset, see :func:`dataset`
  optimizer     path_jax.optim.default_config() (schedule included)
  train         loop settings: steps, logging, checkpoints, skips, accumulation, profiling
  mesh          device mesh shape ('data', 'fsdp', 'model'), multi-slice factors, rules
  input         data workers and prefetch
  finetune      init_from (exported backbone dir or .pth/.safetensors/.npz) and protocol
  evaluate      which datasets and split to evaluate, flip test, pictures
  export        what the export mode writes
  distributed   'auto' | 'off' | 'on'  (jax.distributed.initialize)

Every dataset subtree holds the dataset's task defaults (``path_jax.tasks.<task>.default_config``
and its transform ``DEFAULTS``) plus the common fields of :func:`dataset`, so one subtree says
everything about one dataset and any field can be overridden from the command line.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

PROTOCOLS = ("full", "head", "partial")
MODES = ("pretrain", "finetune", "evaluate", "export")


def task_defaults(task: str) -> ml_collections.ConfigDict:
  """The task's dataset-level defaults: head/loss fields and input-transform fields."""
  pkg = importlib.import_module(f"path_jax.tasks.{task}")
  cfg = ml_collections.ConfigDict(pkg.default_config().to_dict())
  try:
    transforms = importlib.import_module(f"path_jax.tasks.{task}.transforms")
    for k, v in transforms.DEFAULTS.items():
      if k not in cfg:
        cfg[k] = v
  except ModuleNotFoundError:
    pass
  return cfg


def dataset(task: str, tfds_name: str, *, batch_size: int, weight: float = 1.0,
            split: str = "train", eval_split: str = "", data_dir: str = "",
            sample_weight: float = 0.0, drop_path_rate: float | None = None,
            projector_group: str = "", gpus: int = 0, placement_group: str = "",
            **fields: Any) -> ml_collections.ConfigDict:
  """One dataset subtree.

  Common fields:
    task: the registered task name (path_jax.tasks).
    tfds_name: '<builder>/<config>' of the prepared dataset (data/README.md).
    split / eval_split: training split and evaluation split ('' = none).
    data_dir: TFDS data dir of this dataset ('' = the config's ``data_dir``).
    batch_size: global sub-batch size per step (a multiple of the batch shards of the mesh).
    weight: loss weight lambda_d of this dataset in ``sum_d lambda_d L_d``.
    sample_weight: if > 0 and ``train.loss_weights == 'authors'``, lambda_d is derived from it
      as the authors did (sample weight x images per step, normalised; REFERENCE.md §4.7).
    drop_path_rate: stochastic depth for this dataset's backbone pass (None = the backbone's).
    projector_group: explicit projector share group ('' = from model.projector.share).
    gpus: the authors' GPU count for this dataset (0 = unknown); placement 'slices' divides the
      mesh among task groups in these proportions (config.placement.proportions).
    placement_group: the task group of placement 'slices' ('' = the task).
  Any further keyword overrides a task field (num_classes, image_size, flip_pairs, ...).
  """
  cfg = task_defaults(task)
  common = dict(task=task, tfds_name=tfds_name, split=split, eval_split=eval_split,
                data_dir=data_dir, batch_size=int(batch_size), weight=float(weight),
                sample_weight=float(sample_weight), projector_group=projector_group,
                gpus=int(gpus), placement_group=placement_group)
  for k, v in common.items():
    cfg[k] = v
  cfg.drop_path_rate = config_dict.placeholder(float) if drop_path_rate is None else float(
      drop_path_rate)
  for k, v in fields.items():
    if k not in cfg:
      raise KeyError(f"dataset field {k!r} is not a field of task {task!r}; valid: "
                     f"{sorted(cfg.keys())}")
    cfg[k] = tuple(v) if isinstance(v, list) else v
  return cfg


def base_config() -> ml_collections.ConfigDict:
  """Every field with its default; config files change what they need."""
  from path_jax import optim

  c = ml_collections.ConfigDict()
  c.mode = "pretrain"
  c.seed = 0
  c.data_dir = os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))
  # 'real' (the datasets' own files, data/build.py) or 'humanbench_mini' (the synthetic sets,
  # which reuse the real names): a run refuses prepared data of the other kind.
  c.data_kind = "real"
  c.distributed = "auto"

  c.model = ml_collections.ConfigDict()
  c.model.backbone = ml_collections.ConfigDict(dict(
      variant="B/16", cls_token=True, drop_path_rate=0.1, dtype="float32", remat=False,
      # remat_policy: 'full' | 'save_projections' | 'save_matmuls' (path_jax.model.vit).
      remat_policy="full", scan=False, pos_grid=(14, 14),
      # Positional embedding (paper Tab. 4 c vs d): 'shared' (one pos_grid embedding resized to
      # every input, the paper's) | 'dataset' (one per dataset) | 'size' (one per input patch
      # grid), each keyed one at its input's grid. An export keeps one, resized to pos_grid:
      # export_pos_from's (a dataset name, or '<gh>x<gw>' for 'size'; '' = the mixture's first
      # dataset, or for 'size' the grid nearest pos_grid).
      pos_embed="shared", export_pos_from="",
      # None (chunked on CPU, jax.nn's choice elsewhere) | 'chunked' | 'xla' | 'cudnn'.
      attention_impl=config_dict.placeholder(str),
      # Overrides of the variant's sizes (None = the variant's).
      width=config_dict.placeholder(int), depth=config_dict.placeholder(int),
      num_heads=config_dict.placeholder(int), mlp_dim=config_dict.placeholder(int),
      patch_size=config_dict.placeholder(int)))
  # Pretraining's starting backbone ('' = random): an MAE / timm / PATH .pth, .safetensors, .npz
  # or an export directory; the positional embedding is resampled to the backbone's grid, keys
  # the backbone lacks (MAE's decoder, mask token) are skipped. Applied once, when a run starts
  # without a checkpoint; a resumed run never re-applies it. (Finetuning: finetune.init_from.)
  c.model.init_from = ""
  c.model.projector = ml_collections.ConfigDict(dict(
      enabled=True, kind="paper", share="task", dim=0, reduction=8, num_heads=2, mlp_ratio=4,
      se_reduction=16, temperature=config_dict.placeholder(float), layers="blocks"))

  c.datasets = ml_collections.ConfigDict()
  c.optimizer = optim.default_config()

  c.train = ml_collections.ConfigDict(dict(
      num_steps=80_000,
      log_every=50,
      checkpoint_every=1000,
      keep_checkpoints=3,
      milestones=(),                 # steps whose checkpoints are kept for good
      max_consecutive_skips=20,      # abort after this many non-finite steps in a row
      stop_timeout_s=300.0,          # after SIGTERM: forced exit if not stopped by then (<=0: never)
      accum_steps=1,                 # gradient accumulation micro-batches
      loss_weights="config",         # 'config' (datasets.*.weight) or 'authors' (sample_weight)
      eval_every=0,                  # validation-loss / evaluator hook period (0 = off)
      eval_batches=4,                # batches of the cheap validation loss per dataset
      # The real evaluators (mAP/CMC, OKS AP, PCKh, mIoU, mA, AP/MR^-2) on every dataset's
      # eval split every N steps (0 = off), on its first ``metrics_max_examples`` examples per
      # split (0 = all); written to TensorBoard and WORKDIR/eval_steps/<step>/results.json.
      metrics_every=0,
      metrics_max_examples=256,
      profile=ml_collections.ConfigDict(dict(start_step=-1, num_steps=5)),
  ))
  # The schedule's length follows train.num_steps until a config or override sets it (a derived
  # reference: setting it unlinks it, setting train.num_steps does not touch it once set).
  c.optimizer.schedule.total_steps = c.train.get_ref("num_steps").identity()
  c.mesh = ml_collections.ConfigDict(dict(
      shape=(-1, 1, 1), dcn_shape=config_dict.placeholder(tuple), rules=(),
      fsdp_min_size=2 ** 18))
  c.input = ml_collections.ConfigDict(dict(num_workers=0, prefetch=2, read_threads=1))
  # Where the dataset streams run (path_jax/parallel/PLACEMENT.md): 'shared' = every dataset's
  # sub-batch over every device; 'slices' = each task group on its own rows of the data axis.
  c.placement = ml_collections.ConfigDict(dict(
      mode="shared", proportions="auto", weights="", rows="", round_batches=False))
  c.finetune = ml_collections.ConfigDict(dict(
      init_from="",                  # exported backbone dir, or a PyTorch .pth/.safetensors/.npz
      protocol="full",               # 'full' | 'head' | 'partial'
      open_last=2,                   # partial: trainable last blocks (+ final norm)
      strict=False,                  # PyTorch import: refuse unknown keys
  ))
  c.evaluate = ml_collections.ConfigDict(dict(
      split="",                      # '' = each dataset's eval_split
      batch_size=0,                  # 0 = each dataset's batch_size
      pictures=8,                    # examples drawn per dataset (0 = none)
      output="",                     # results folder ('' = WORKDIR/eval)
  ))
  c.export = ml_collections.ConfigDict(dict(
      output="",                     # '' = WORKDIR/export
      torch_state_dict=True,         # also write backbone.safetensors in the MAE/timm layout
  ))
  return c


def demo_data_dir() -> str:
  """Where the README demo builds humanbench_mini (override with HUMANBENCH_MINI_DIR)."""
  return os.environ.get("HUMANBENCH_MINI_DIR", "/tmp/humanbench_mini/tfds")
