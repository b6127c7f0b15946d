"""Every field of a config checked before anything runs or is written (path_jax.train.check_config).

:func:`field_problems` walks the top-level subtrees and every ``config.datasets.<name>`` subtree
and returns one line per problem, each naming the full key, the bad value and the valid range or
choices; :class:`ConfigError` carries the whole list, so a user sees every problem at once in one
short block (path_jax.main prints it without a traceback). Checks that need the mesh or the
prepared data (batch shards, hosts, splits) are added by ``train.check_config``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

DTYPES = ("float32", "bfloat16", "float16")
DISTRIBUTED = ("auto", "off", "on")
LOSS_WEIGHTS = ("config", "authors")
DATA_KINDS = ("real", "humanbench_mini")
SHARES = ("task", "all", "dataset")
PROJECTOR_KINDS = ("paper", "ladder")


class ConfigError(ValueError):
  """The config cannot run; ``problems`` lists every reason, each naming its key."""

  def __init__(self, problems: Sequence[str], what: str = "the config cannot run"):
    self.problems = list(dict.fromkeys(problems))   # in order, without repeats
    self.what = what
    super().__init__(f"{what}:\n  " + "\n  ".join(self.problems))


# ----------------------------------------------------------------------------------------------
# Small predicates: each appends a message to ``out`` and returns whether the value was valid.


def _fmt(v: Any) -> str:
  return repr(v)


def choice(out: list[str], key: str, value: Any, choices: Iterable[Any]) -> bool:
  choices = tuple(choices)
  if value in choices:
    return True
  import difflib
  near = difflib.get_close_matches(str(value), [str(c) for c in choices if c is not None], n=1)
  hint = f" (did you mean {near[0]!r}?)" if near else ""
  out.append(f"{key}={_fmt(value)}: use one of {', '.join(map(repr, choices))}{hint}")
  return False


def number(out: list[str], key: str, value: Any, *, lo: float | None = None,
           hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
           integer: bool = False, allow_none: bool = False) -> bool:
  """``lo <= value <= hi`` (open ends with ``lo_open``/``hi_open``), finite, int if asked."""
  if value is None:
    if allow_none:
      return True
    out.append(f"{key} is unset: give a number")
    return False
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    out.append(f"{key}={_fmt(value)}: give a number")
    return False
  if integer and not float(value).is_integer():
    out.append(f"{key}={_fmt(value)}: give a whole number")
    return False
  bad = not math.isfinite(value)
  if lo is not None:
    bad |= value <= lo if lo_open else value < lo
  if hi is not None:
    bad |= value >= hi if hi_open else value > hi
  if bad:
    left = "" if lo is None else f"{lo} {'<' if lo_open else '<='} "
    right = "" if hi is None else f" {'<' if hi_open else '<='} {hi}"
    out.append(f"{key}={_fmt(value)}: must satisfy {left}{key.rsplit('.', 1)[-1]}{right}")
    return False
  return True


def pair(out: list[str], key: str, value: Any, *, lo: float = 1, integer: bool = True) -> bool:
  """A ``(h, w)`` pair of numbers >= lo."""
  if not isinstance(value, (tuple, list)) or len(value) != 2:
    out.append(f"{key}={_fmt(value)}: give two numbers (height, width)")
    return False
  ok = True
  for i, v in enumerate(value):
    ok &= number(out, f"{key}[{i}]", v, lo=lo, integer=integer)
  return ok


# ----------------------------------------------------------------------------------------------
# Field rules. Names shared by several tasks get the same rule wherever they appear.

# field -> keyword arguments of number()
_DATASET_NUMBERS = {
    "batch_size": dict(lo=1, integer=True),
    "weight": dict(lo=0),
    "sample_weight": dict(lo=0),
    "gpus": dict(lo=0, integer=True),
    "drop_path_rate": dict(lo=0, hi=1, hi_open=True, allow_none=True),
    "num_classes": dict(lo=1, integer=True, allow_none=True),
    "num_attributes": dict(lo=1, integer=True, allow_none=True),
    "num_joints": dict(lo=1, integer=True, allow_none=True),
    "images_per_identity": dict(lo=1, integer=True),
    "classes_multiple_of": dict(lo=1, integer=True),
    "sigma": dict(lo=0, lo_open=True),
    "pad": dict(lo=0, integer=True),
    "hidden_dim": dict(lo=1, integer=True),
    "num_heads": dict(lo=1, integer=True),
    "ffn_dim": dict(lo=1, integer=True),
    "num_layers": dict(lo=1, integer=True),
    "num_anchors": dict(lo=1, integer=True),
    "num_patterns": dict(lo=1, integer=True),
    "num_queries": dict(lo=1, integer=True),
    "max_boxes": dict(lo=1, integer=True, allow_none=True),    # None: the prepared data's max
    "max_ignore": dict(lo=0, integer=True, allow_none=True),
    "max_size": dict(lo=1, integer=True),
    "eval_scale": dict(lo=1, integer=True),
    "head_features": dict(lo=1, integer=True),
    "focal_alpha": dict(lo=0, hi=1),
    "focal_gamma": dict(lo=0),
    "ign_thr": dict(lo=0, hi=1),
    "pck_threshold": dict(lo=0, lo_open=True),
    "dark_kernel": dict(lo=1, integer=True),
    "bbox_padding": dict(lo=0, lo_open=True),
    "half_body_min_joints": dict(lo=0, integer=True),
    "half_body_padding": dict(lo=0, lo_open=True),
    "scale_factor": dict(lo=0),
    "rotation_factor": dict(lo=0),
    "ignore_label": dict(lo=0, hi=255, integer=True),
}
_PAIRS = ("image_size", "eval_image_size")


def _dataset_problems(cfg, name: str, task_names: Sequence[str], train_mode: bool) -> list[str]:
  d = cfg.datasets[name]
  key = f"config.datasets.{name}"
  out: list[str] = []
  task = d.get("task", None)
  if not choice(out, f"{key}.task", task, task_names):
    return out   # the other fields are the task's: they cannot be judged against a wrong task
  if not str(d.get("tfds_name", "") or ""):
    out.append(f"{key}.tfds_name is empty: name the prepared dataset ('<builder>/<config>', "
               "e.g. 'reid/market1501')")
  if train_mode and not str(d.get("split", "") or ""):
    out.append(f"{key}.split is empty: name the training split (e.g. 'train')")
  for field, rule in _DATASET_NUMBERS.items():
    if field in d:
      number(out, f"{key}.{field}", d[field], **rule)
  for field in d.keys():
    value = d[field]
    if field.endswith("_prob"):
      number(out, f"{key}.{field}", value, lo=0, hi=1)
    elif field == "dtype":
      choice(out, f"{key}.dtype", value, DTYPES)
  for field in _PAIRS:
    if field in d:
      pair(out, f"{key}.{field}", d[field])
  if task == "reid":
    b, k = d.get("batch_size", 0), d.get("images_per_identity", 1)
    if isinstance(b, int) and isinstance(k, int) and b >= 1 and k >= 1 and b % k:
      out.append(f"{key}.batch_size={b} is not a multiple of {key}.images_per_identity={k}: "
                 f"ReID batches hold P identities x K images (e.g. batch_size={max(k, b - b % k)})")
  if task == "detection":
    a, p, q = (d.get(f, None) for f in ("num_anchors", "num_patterns", "num_queries"))
    if all(isinstance(v, int) and v >= 1 for v in (a, p, q)) and a * p != q:
      out.append(f"{key}.num_queries={q} must equal num_anchors x num_patterns = {a} x {p} = "
                 f"{a * p}")
    h, n = d.get("hidden_dim", None), d.get("num_heads", None)
    if isinstance(h, int) and isinstance(n, int) and n >= 1 and h % n:
      out.append(f"{key}.hidden_dim={h} does not split over {key}.num_heads={n}")
  pairs = d.get("flip_pairs", None)
  count = d.get("num_joints", None) if task == "pose" else (
      d.get("num_classes", None) if task == "parsing" else None)
  if pairs and isinstance(count, int):
    bad = [p for p in pairs if any(not 0 <= int(i) < count for i in p)]
    if bad:
      out.append(f"{key}.flip_pairs holds indices outside 0..{count - 1} "
                 f"({'num_joints' if task == 'pose' else 'num_classes'}={count}): {bad[:4]}")
  return out


def _is_grid_key(text: str) -> bool:
  parts = str(text).split("x")
  return len(parts) == 2 and all(p.isdigit() for p in parts)


def _backbone_problems(cfg) -> list[str]:
  from path_jax.model import attention, vit
  b = cfg.model.backbone
  key = "config.model.backbone"
  out: list[str] = []
  choice(out, f"{key}.variant", b.variant, list(vit.VARIANTS))
  choice(out, f"{key}.dtype", b.dtype, DTYPES)
  choice(out, f"{key}.remat_policy", b.remat_policy, list(vit.REMAT_POLICIES))
  choice(out, f"{key}.attention_impl", b.get("attention_impl", None), attention.IMPLS)
  number(out, f"{key}.drop_path_rate", b.drop_path_rate, lo=0, hi=1, hi_open=True)
  pair(out, f"{key}.pos_grid", b.pos_grid)
  mode = b.get("pos_embed", "shared")
  choice(out, f"{key}.pos_embed", mode, vit.POS_EMBED_MODES)
  source = b.get("export_pos_from", "")
  if source and mode == "dataset" and source not in cfg.datasets:
    out.append(f"{key}.export_pos_from={source!r} is not a dataset of this run; use one of "
               f"{sorted(cfg.datasets)} or '' (the first)")
  if source and mode == "size" and not _is_grid_key(source):
    out.append(f"{key}.export_pos_from={source!r}: with pos_embed='size' name a patch grid "
               "'<rows>x<cols>' (e.g. '14x14'), or '' (the grid nearest pos_grid)")
  for f in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
    number(out, f"{key}.{f}", b.get(f, None), lo=1, integer=True, allow_none=True)
  if not out and b.variant in vit.VARIANTS:
    sizes = vit.variant(b.variant)
    width = b.get("width", None) or sizes["width"]
    heads = b.get("num_heads", None) or sizes["num_heads"]
    if width % heads:
      out.append(f"{key}.width={width} does not split over num_heads={heads} (head size "
                 f"{width / heads:g}); pick a width that is a multiple of the heads")
    patch = b.get("patch_size", None) or sizes["patch_size"]
    for name in cfg.datasets:
      size = cfg.datasets[name].get("image_size", None)
      if (isinstance(size, (tuple, list)) and len(size) == 2
          and all(isinstance(s, int) for s in size) and (size[0] % patch or size[1] % patch)):
        out.append(f"config.datasets.{name}.image_size={tuple(size)} is not a multiple of the "
                   f"backbone's patch size {patch} ({key}.patch_size / variant)")
  p = cfg.model.projector
  key = "config.model.projector"
  choice(out, f"{key}.kind", p.kind, PROJECTOR_KINDS)
  choice(out, f"{key}.share", p.share, SHARES)
  if isinstance(p.layers, str):
    choice(out, f"{key}.layers", p.layers, ("blocks", "authors"))
  for f in ("reduction", "num_heads", "mlp_ratio", "se_reduction"):
    number(out, f"{key}.{f}", p[f], lo=1, integer=True)
  number(out, f"{key}.dim", p.dim, lo=0, integer=True)
  number(out, f"{key}.temperature", p.get("temperature", None), lo=0, lo_open=True,
         allow_none=True)
  return out


def field_problems(cfg) -> list[str]:
  """Every problem of the config's own fields (no mesh, no data), each naming its full key."""
  from configs.common import MODES, PROTOCOLS
  from path_jax import tasks as tasks_lib
  from path_jax.optim import optimizer as optimizer_lib
  tasks_lib.import_all()
  out: list[str] = []
  mode_ok = choice(out, "config.mode", cfg.mode, MODES)
  train_mode = cfg.mode in ("pretrain", "finetune")
  number(out, "config.seed", cfg.seed, integer=True)
  choice(out, "config.distributed", cfg.distributed, DISTRIBUTED)
  if "data_kind" in cfg:
    choice(out, "config.data_kind", cfg.data_kind, DATA_KINDS)
  out += _backbone_problems(cfg)

  names = sorted(tasks_lib.names())
  if not len(cfg.datasets):
    out.append("config.datasets is empty: add at least one dataset subtree")
  for name in cfg.datasets:
    out += _dataset_problems(cfg, name, names, train_mode)

  o, key = cfg.optimizer, "config.optimizer"
  choice(out, f"{key}.name", o.name, optimizer_lib.OPTIMIZERS)
  number(out, f"{key}.peak_lr", o.peak_lr, lo=0, lo_open=True)
  number(out, f"{key}.weight_decay", o.weight_decay, lo=0)
  number(out, f"{key}.layer_decay", o.layer_decay, lo=0, hi=1, lo_open=True)
  number(out, f"{key}.clip_threshold", o.clip_threshold, lo=0, lo_open=True)
  number(out, f"{key}.beta1", o.beta1, lo=0, hi=1, hi_open=True)
  choice(out, f"{key}.freeze", o.freeze, ("none", "backbone", "partial", "pos_embed"))
  from path_jax import optim
  if isinstance(cfg.train.num_steps, int) and cfg.train.num_steps >= 1:
    out += optim.schedule_problems(o, cfg.train.num_steps)

  t, key = cfg.train, "config.train"
  number(out, f"{key}.num_steps", t.num_steps, lo=1, integer=True)
  number(out, f"{key}.log_every", t.log_every, lo=1, integer=True)
  number(out, f"{key}.checkpoint_every", t.checkpoint_every, lo=1, integer=True)
  if number(out, f"{key}.keep_checkpoints", t.keep_checkpoints, integer=True) and \
      t.keep_checkpoints < 1:
    out.append(f"{key}.keep_checkpoints={t.keep_checkpoints}: keep at least 1 (the newest "
               "checkpoint is what a run resumes from)")
  number(out, f"{key}.max_consecutive_skips", t.max_consecutive_skips, lo=1, integer=True)
  if number(out, f"{key}.accum_steps", t.accum_steps, lo=1, integer=True) and t.accum_steps > 1:
    for name in cfg.datasets:
      b = cfg.datasets[name].get("batch_size", 0)
      if isinstance(b, int) and b >= 1 and b % t.accum_steps:
        out.append(f"config.datasets.{name}.batch_size={b} does not split into "
                   f"{key}.accum_steps={t.accum_steps} micro-batches")
  choice(out, f"{key}.loss_weights", t.loss_weights, LOSS_WEIGHTS)
  number(out, f"{key}.eval_every", t.eval_every, lo=0, integer=True)
  number(out, f"{key}.eval_batches", t.eval_batches, lo=1, integer=True)
  number(out, f"{key}.metrics_every", t.get("metrics_every", 0), lo=0, integer=True)
  number(out, f"{key}.metrics_max_examples", t.get("metrics_max_examples", 0), lo=0,
         integer=True)
  for i, m in enumerate(t.milestones):
    number(out, f"{key}.milestones[{i}]", m, lo=1, integer=True)
  number(out, f"{key}.profile.num_steps", t.profile.num_steps, lo=1, integer=True)

  i, key = cfg.input, "config.input"
  number(out, f"{key}.num_workers", i.num_workers, lo=0, integer=True)
  number(out, f"{key}.prefetch", i.prefetch, lo=0, integer=True)
  number(out, f"{key}.read_threads", i.read_threads, lo=1, integer=True)

  shape = tuple(cfg.mesh.shape)
  if len(shape) != 3 or sum(v == -1 for v in shape) > 1 or any(
      not isinstance(v, int) or (v < 1 and v != -1) for v in shape):
    out.append(f"config.mesh.shape={shape}: give three sizes ('data', 'fsdp', 'model'), each "
               ">= 1, at most one -1 (= the remaining devices)")

  f, key = cfg.finetune, "config.finetune"
  choice(out, f"{key}.protocol", f.protocol, PROTOCOLS)
  number(out, f"{key}.open_last", f.open_last, lo=0, integer=True)
  if f.init_from and cfg.mode in ("finetune", "evaluate"):
    from etils import epath
    if not epath.Path(f.init_from).exists():
      out.append(f"{key}.init_from={f.init_from!r} does not exist: give an export folder "
                 "(WORKDIR/export of a pretraining run) or a .pth/.safetensors/.npz file")
  init = cfg.model.get("init_from", "")
  if init and cfg.mode == "pretrain":
    from etils import epath
    if not epath.Path(init).exists():
      out.append(f"config.model.init_from={init!r} does not exist: give the MAE/timm/PATH "
                 "weights (.pth/.safetensors/.npz) or an export folder to start pretraining from "
                 "('' = random initialisation)")
  e, key = cfg.evaluate, "config.evaluate"
  number(out, f"{key}.batch_size", e.batch_size, lo=0, integer=True)
  number(out, f"{key}.pictures", e.pictures, lo=0, integer=True)
  del mode_ok
  return out
