"""The downstream suite: one backbone, every downstream dataset, one protocol, one results table.

  python -m path_jax.suite --backbone=PRETRAIN_DIR/export --protocol=partial --workdir=DIR \\
      [--suite=humanbench|mini] [--datasets=atr,peta] [--data_dir=...] [--set=train.num_steps=500]
      [--set=market1501:dataset.image_size=(384,128)] [--chance]
  python -m path_jax.suite --backbone=PRETRAIN_DIR --protocol=none --workdir=DIR   # w/o FT

``--set=key=value`` overrides every dataset's config (``dataset.<field>`` is the dataset's own
subtree); ``--set=<dataset>:key=value`` only that dataset's, applied after the others (a name
outside the suite fails, listing the valid ones). ``train.num_steps`` alone rescales a run: the
schedule's length, warm-up and decay points follow it.

``--backbone=random_init`` finetunes from random weights (the floor that pretraining should
raise) of the suite's architecture: ViT-B/16 for the HumanBench suite, the demo's tiny ViT for the
mini suite, or ``--variant`` (e.g. ``--variant=L/16``); the architecture is logged and written
under the table. ``--backbone=demo_pretrain`` (mini suite) first pretrains the demo model on
humanbench_mini's pretraining sets for ``--pretrain_steps`` steps
(configs/mini_suite.py:pretrain_config) into DIR/pretrain and finetunes from its export;
``--pretrain_only`` stops after the export and prints its path.

For each dataset of the suite (HumanBench: the 19 sets of configs/finetune/; mini: the seven
humanbench_mini downstream sets of configs/mini_suite.py) the suite builds the dataset's
finetuning config under the protocol, points ``finetune.init_from`` at the backbone (an export
directory also sets the backbone's architecture; a state dict's shapes set it when the run starts,
path_jax.train.adopt_backbone_arch), and checks its prepared data. Absent data gives
a *skipped* row with the command that prepares it; otherwise the dataset is finetuned and
evaluated in process (path_jax.train.run) into DIR/<dataset>/, and the metric that the paper's
Table 3 reports for it is read from the evaluation. A dataset that raises is recorded as
*failed* with the error, and the suite goes on.

Written: DIR/results.json (per dataset: status, the Table 3 metric, the paper's PATH-B number for
the protocol, the full metric dict, chance, timing, skip/failure reason and preparation commands)
and DIR/results.md (Table 3's two halves, ours beside the paper's, then skipped/failed datasets).

Protocol ``none`` ("w/o FT", Table 3's "PATH (w/o FT)" row): nothing is trained. ``--backbone``
is then a pretraining run's workdir (its checkpoints hold the full PATH model: backbone,
projectors and heads; its config.json the model's config), or ``demo_pretrain`` (mini suite:
pretrain first, into DIR/pretrain). The newest checkpoint is restored once, and each suite
dataset with a pretraining head (``configs/humanbench.py`` PRETRAINED_HEADS, mini:
``configs/mini_suite.py`` PRETRAINED_HEADS: the in-dataset evaluations) is scored by that head
through the training program's evaluation (path_jax.train.run_evaluation, as
``train.metrics_every`` runs it) on the suite dataset's own evaluation split and Table 3 metric;
the head keeps its pretraining input size. Datasets without a head are rows marked "not
pretrained (no head)". For the mini suite the protocol adds the demo pretraining sets' own
evaluation splits (mini_market, mini_coco, mini_lip, mini_pa100k, mini_crowdhuman), which stand
for Table 3's in-dataset columns; the seven downstream sets have no head.

Pose boxes: COCO keypoint AP (``eval_metric='coco_ap'``) is scored on the person detections
(split ``val_dets``, as the paper) when they are prepared, else on ground-truth boxes (``val``);
the table says which ("det boxes" / "GT boxes"). ``--set=coco:dataset.eval_split=val`` forces
ground-truth boxes.

Chance (``--chance``; on by default for the mini suite only, so a HumanBench run shows a chance
row only when asked, and its table says so): the same evaluators fed random predictions on the
same evaluation data, or for parsing and counting the constant a model without the image would
output (:func:`chance_metrics`), so each metric has a floor. Each dataset's ``check`` record is
its margin over that floor, on the table's metric or on the dataset's ``check_metric`` where the
table's saturates at the suite's size (mini_caltech: AP for MR^-2).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import logging
import math
import os
import sys
import time
import traceback
from typing import Any, Callable, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

from path_jax import paper_results  # noqa: E402

SUITES = ("humanbench", "mini")
RANDOM_INIT = "random_init"    # --backbone value: finetune from a randomly initialised backbone
DEMO_PRETRAIN = "demo_pretrain"  # --backbone value (mini suite): pretrain the demo model first
WOFT = "none"   # --protocol value: the pretraining heads evaluated directly (Table 3 "w/o FT")
PROTOCOLS = ("full", "head", "partial", WOFT)
PROTOCOL_TITLES = {"full": "FT", "head": "Head FT", "partial": "Partial FT", WOFT: "w/o FT"}
NOT_PRETRAINED = "not pretrained (no head)"
DET_SPLIT = "val_dets"     # COCO-style pose: the person detections' split (data/pose/builder.py)
MINI_BUILD = "python -m data.humanbench_mini.build_all --data_dir={data_dir}"
HUMANBENCH_BUILD = ("python data/build.py {name} --manual_dir=<{title} source folder, layout in "
                    "data/README.md ({builder})> --data_dir={data_dir}")


# ----------------------------------------------------------------------------------------------
# Suite entries: which datasets, their configs, and the Table 3 column each stands for.


@dataclasses.dataclass(frozen=True)
class Entry:
  """One dataset of a suite.

  name: the dataset (config subtree and results key); stands_for: its Table 3 column (a
  HumanBench downstream set); make_config: protocol -> finetuning ConfigDict.
  """
  name: str
  stands_for: str
  make_config: Callable[[str], Any]


def suite_entries(suite: str, protocol: str = "full") -> list[Entry]:
  """The datasets of ``suite`` in Table 3's column order (top half, then bottom half).

  Protocol ``none`` on the mini suite adds the pretraining sets' evaluations
  (configs/mini_suite.py IN_DATASET_SETS): the only mini sets with a pretraining head."""
  if suite == "humanbench":
    def make(name):
      return lambda protocol: importlib.import_module(f"configs.finetune.{name}").get_config(
          f"protocol={protocol}")
    return [Entry(n, n, make(n)) for n in paper_results.TOP_HALF + paper_results.BOTTOM_HALF]
  if suite == "mini":
    from configs import mini_suite
    order = paper_results.TOP_HALF + paper_results.BOTTOM_HALF
    sets = mini_suite.MINI_SETS + (mini_suite.IN_DATASET_SETS if protocol == WOFT else ())
    sets = sorted(sets, key=lambda s: order.index(s.stands_for))

    def make_mini(name):
      if name in mini_suite.IN_DATASET_NAMES:
        return lambda protocol: mini_suite.in_dataset_config(name)
      return lambda protocol: mini_suite.get_config(f"dataset={name},protocol={protocol}")
    return [Entry(s.name, s.stands_for, make_mini(s.name)) for s in sets]
  raise ValueError(f"--suite={suite!r}; use one of {SUITES}")


def select(entries: Sequence[Entry], datasets: Sequence[str]) -> list[Entry]:
  """The entries named in ``datasets`` (all when empty); unknown names fail naming the valid."""
  if not datasets:
    return list(entries)
  names = [e.name for e in entries]
  unknown = [d for d in datasets if d not in names]
  if unknown:
    raise ValueError(f"--datasets names {unknown}, not in this suite; valid: {names}")
  return [e for e in entries if e.name in datasets]


# ----------------------------------------------------------------------------------------------
# Config preparation: overrides, backbone, data check.


def parse_value(text: str) -> Any:
  """A --set value: a Python literal (number, tuple, bool, None) or else the plain string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def split_override(item: str) -> tuple[str, str, str]:
  """``'[dataset:]key=value'`` -> ``(dataset or '', key, value)``."""
  key, sep, value = item.partition("=")
  dataset, colon, rest = key.partition(":")
  if colon:
    key = rest
  else:
    dataset = ""
  if not sep or not key or (colon and not dataset):
    raise ValueError(f"--set {item!r}: write key=value (every dataset) or dataset:key=value "
                     "(one dataset), e.g. --set=train.num_steps=500 or "
                     "--set=market1501:dataset.batch_size=32")
  return dataset, key, value


def check_overrides(overrides: Sequence[str], names: Sequence[str],
                    selected: Sequence[str] = ()) -> None:
  """Every ``dataset:`` prefix must name a dataset of the suite (``names``); one that the run
  skips (not in ``selected``) is logged."""
  for item in overrides:
    dataset = split_override(item)[0]
    if dataset and dataset not in names:
      raise ValueError(f"--set {item!r}: {dataset!r} is not a dataset of this suite; valid: "
                       f"{list(names)}")
    if dataset and selected and dataset not in selected:
      logging.warning("suite: --set %s names %s, which this run does not include (--datasets)",
                      item, dataset)


def apply_overrides(cfg, name: str, overrides: Sequence[str]) -> None:
  """Applies ``key=value`` overrides; ``dataset.<field>`` addresses the dataset's own subtree.

  Items ``<dataset>:key=value`` apply only to dataset ``name`` == ``<dataset>``, after the
  unprefixed ones (the more specific wins). A key that is not in the config fails, naming the
  nearest keys, as a locked config would.
  """
  items = [(item, *split_override(item)) for item in overrides]
  ordered = [i for i in items if not i[1]] + [i for i in items if i[1] == name]
  for item, _, key, value in ordered:
    parts = key.split(".")
    if parts[0] == "dataset":
      parts = ["datasets", name] + parts[1:]
    node = cfg
    for i, p in enumerate(parts[:-1]):
      if p not in node:
        raise KeyError(f"--set {key}: config has no {'.'.join(parts[:i + 1])!r}; valid there: "
                       f"{sorted(node.keys())}")
      node = node[p]
    if parts[-1] not in node:
      raise KeyError(f"--set {key}: config has no {'.'.join(parts)!r}; valid there: "
                     f"{sorted(node.keys())}")
    with cfg.unlocked():
      node[parts[-1]] = parse_value(value)


def backbone_arch(path: str) -> dict[str, Any] | None:
  """The architecture in an export directory's backbone.json (None for state-dict files)."""
  from path_jax import export as export_lib
  from etils import epath
  export_dir = export_lib._export_dir(epath.Path(path))  # the format owner's resolver
  if export_dir is None:
    return None
  with open(os.path.join(str(export_dir), "backbone.json")) as f:
    return json.load(f)["arch"]


def point_at_backbone(cfg, backbone: str, arch: Mapping[str, Any] | None) -> None:
  """init_from = backbone; an export's architecture replaces the config's (the weights decide)."""
  cfg.finetune.init_from = backbone
  if arch:
    b = cfg.model.backbone
    b.variant = str(arch["variant"])
    for key in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
      if key in arch:
        b[key] = int(arch[key])
    b.pos_grid = tuple(int(g) for g in arch["pos_grid"])
    b.cls_token = bool(arch["cls_token"])


def required_data(cfg, train: bool = True) -> list[tuple[str, str, str]]:
  """Every (tfds name, split, data_dir) the finetuning run reads: training (``train``) and
  evaluation."""
  out = []
  for name in cfg.datasets:
    d = cfg.datasets[name]
    data_dir = str(d.get("data_dir", "") or cfg.data_dir)
    if train:
      out.append((str(d.tfds_name), str(d.split), data_dir))
    eval_name = str(d.get("eval_tfds_name", "") or d.tfds_name)
    eval_dir = str(d.get("eval_data_dir", "") or data_dir)
    out += [(eval_name, s, eval_dir) for s in str(d.get("eval_split", "") or "").split("+") if s]
  return out


def missing_data(cfg, train: bool = True) -> list[tuple[str, str, str, str]]:
  """(tfds name, split, data_dir, error) of every required split that is not prepared."""
  from path_jax.input import sources
  out = []
  for tfds_name, split, data_dir in required_data(cfg, train):
    try:
      sources.check_prepared(tfds_name, split, data_dir)
    except (FileNotFoundError, ValueError, OSError) as e:
      out.append((tfds_name, split, data_dir, str(e)))
  return out


def prepare_commands(suite: str, stands_for: str, missing: Sequence[tuple[str, str, str, str]]
                     ) -> list[str]:
  """The commands that prepare the missing datasets (one per tfds name and data_dir)."""
  cmds: list[str] = []
  for tfds_name, _, data_dir, _ in missing:
    if suite == "mini":
      cmd = MINI_BUILD.format(data_dir=data_dir)
    else:
      builder = tfds_name.split("/")[0]
      title = _source_title(tfds_name, stands_for)
      cmd = HUMANBENCH_BUILD.format(name=tfds_name, title=title, builder=builder,
                                    data_dir=data_dir)
    if cmd not in cmds:
      cmds.append(cmd)
  return cmds


def _source_title(tfds_name: str, stands_for: str) -> str:
  config = tfds_name.split("/")[-1]
  if config == "lists":   # SenseReID trains on the authors' merged fileList/metaList folders
    return "the authors' ReID finetuning lists (reid_4sets + MARS)"
  if config == "sensereid" or stands_for == config:
    return paper_results.TITLES.get(stands_for, stands_for)
  return config


# ----------------------------------------------------------------------------------------------
# Chance: the same evaluators on random predictions.


def fill_metadata(cfg) -> None:
  """What the training program's set-up fills in before a run: each dataset's data_dir and the
  fields left to the prepared data's metadata (class and attribute counts, joints)."""
  from path_jax import train
  with cfg.unlocked():
    for name in cfg.datasets:
      if not cfg.datasets[name].get("data_dir", ""):
        cfg.datasets[name].data_dir = cfg.data_dir
  train.fill_from_metadata(cfg)


def chance_metrics(cfg, name: str, seed: int = 0) -> dict[str, float]:
  """The evaluator's result for random predictions on ``name``'s evaluation data.

  ReID: random 16-d features. Attributes: uniform probabilities. Parsing: every pixel labelled
  the most frequent class of the training split's label maps (the constant a model without the
  image would output: on humanbench_mini, background, ~80 % pACC; uniform random labels would give
  1/num_classes, a floor that a model predicting only background clears by far).
  Pose: keypoints uniform in each person's box. Detection: ``num_queries`` boxes per image with
  uniform centres, heights uniform in [0.1, 0.9] x image height, pedestrian aspect (w = 0.41 h),
  uniform scores. Counting: every image predicted as the mean count of the training split
  (the constant a model without the image would output; random density maps would be worse).
  """
  from path_jax import evaluate as eval_lib
  from path_jax.input import eval as eval_input, sources
  fill_metadata(cfg)
  d = cfg.datasets[name]
  data_dir = str(d.get("data_dir", "") or cfg.data_dir)
  task = str(d.task)
  rng = np.random.default_rng(seed)
  evaluator = eval_lib.make_evaluator(task, d)
  mean_count = majority_class = None
  if task == "counting":
    train = sources.open_source(str(d.tfds_name), str(d.split), data_dir, decode_images=False)
    mean_count = float(np.mean(sources.read_column(train, "count")))
  if task == "parsing":
    majority_class = most_frequent_label(str(d.tfds_name), str(d.split), data_dir,
                                         int(d.num_classes))
  eval_name = str(d.get("eval_tfds_name", "") or d.tfds_name)
  eval_dir = str(d.get("eval_data_dir", "") or data_dir)
  for part in str(d.eval_split).split("+"):
    source = sources.open_source(eval_name, part, eval_dir)
    for batch in eval_input.eval_iterator_for(task, d, source, 16):
      n = batch["mask"].shape[0]
      if task == "reid":
        batch["is_query"] = np.full(n, part == "query")
        preds = {"feature": rng.normal(size=(n, 16)).astype(np.float32)}
      elif task == "attributes":
        preds = {"probs": rng.random(batch["labels"].shape).astype(np.float32)}
      elif task == "parsing":
        label = np.asarray(batch["label"])
        label = label[..., 0] if label.ndim == 4 else label
        preds = {"label": np.full(label.shape, majority_class)}
      elif task == "pose":
        k = int(d.num_joints)
        c = np.asarray(batch["center"], np.float64)[:, None, :]
        s = np.asarray(batch["box_size"], np.float64)[:, None, :]
        xy = c + (rng.random((n, k, 2)) - 0.5) * s
        preds = {"keypoints_image": xy, "scores": rng.random((n, k))}
      elif task == "detection":
        q = int(d.num_queries)
        hw = np.asarray(batch["orig_hw"] if "orig_hw" in batch else batch["image_hw"],
                        np.float64)
        h = rng.uniform(0.1, 0.9, (n, q)) * hw[:, :1]
        w = 0.41 * h
        cx, cy = rng.random((n, q)) * hw[:, 1:2], rng.random((n, q)) * hw[:, :1]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        preds = {"boxes": boxes, "scores": rng.random((n, q))}
      elif task == "counting":
        preds = {"count": np.full(n, mean_count)}
      else:
        raise ValueError(f"no chance predictions for task {task!r} (dataset {name})")
      evaluator.update(preds, batch)
  return {k: float(v) for k, v in evaluator.result().items() if np.ndim(v) == 0}


def most_frequent_label(tfds_name: str, split: str, data_dir: str, num_classes: int) -> int:
  """The class with the most pixels over a parsing split's label maps (ignore labels >=
  ``num_classes``, e.g. 255, are not counted)."""
  from path_jax.input import sources
  source = sources.open_source(tfds_name, split, data_dir)
  counts = np.zeros(num_classes, np.int64)
  for i in range(len(source)):
    label = np.asarray(source[i]["label"]).reshape(-1)
    counts += np.bincount(label[label < num_classes], minlength=num_classes)[:num_classes]
  if not counts.any():
    raise ValueError(f"{tfds_name} split {split!r} in {data_dir} has no labelled pixel below "
                     f"num_classes={num_classes}; check the dataset's num_classes")
  return int(np.argmax(counts))


# ----------------------------------------------------------------------------------------------
# COCO keypoint AP: detector or ground-truth person boxes.


def choose_pose_boxes(cfg, name: str) -> None:
  """COCO keypoint AP on the person detections (split ``val_dets``) when they are prepared, as
  the paper's number; otherwise on ground-truth boxes. Only a config left at ``val`` changes (an
  override applied afterwards still wins)."""
  from path_jax.input import sources
  d = cfg.datasets[name]
  if d.task != "pose" or str(d.get("eval_metric", "") or "") != "coco_ap":
    return
  if str(d.get("eval_split", "") or "") != "val":
    return
  eval_name = str(d.get("eval_tfds_name", "") or d.tfds_name)
  data_dir = str(d.get("eval_data_dir", "") or d.get("data_dir", "") or cfg.data_dir)
  try:
    sources.check_prepared(eval_name, DET_SPLIT, data_dir)
  except (FileNotFoundError, ValueError, OSError):
    logging.info("suite: %s: no %r split of %s in %s: COCO keypoint AP on ground-truth boxes",
                 name, DET_SPLIT, eval_name, data_dir)
    return
  with cfg.unlocked():
    d.eval_split = DET_SPLIT


def pose_boxes(cfg, name: str) -> str | None:
  """'det boxes' / 'GT boxes' for a COCO keypoint AP dataset (None for other metrics)."""
  d = cfg.datasets[name]
  if d.task != "pose" or str(d.get("eval_metric", "") or "") != "coco_ap":
    return None
  return "det boxes" if str(d.get("eval_split", "")).endswith("_dets") else "GT boxes"


# ----------------------------------------------------------------------------------------------
# Protocol none (w/o FT): the pretraining heads, restored from a pretraining run.


def pretrained_heads(suite: str) -> dict[str, Any]:
  """Suite dataset -> its pretraining head (``configs.humanbench.PretrainedHead``)."""
  if suite == "mini":
    from configs import mini_suite
    return dict(mini_suite.PRETRAINED_HEADS)
  from configs import humanbench
  return dict(humanbench.PRETRAINED_HEADS)


def _tuples(x):
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def load_run_config(workdir: str):
  """The config a training run wrote (WORKDIR/config.json, counts filled from its data), as a
  ConfigDict (JSON lists as tuples, as the config files give them)."""
  import ml_collections
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"--protocol={WOFT} evaluates a pretraining run's heads: {path} is missing; pass the "
        "workdir of a pretraining run (python -m path_jax.main --config=... --workdir=DIR), "
        f"not its export (or --backbone={DEMO_PRETRAIN} with --suite=mini)")
  with open(path) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


# Fields of the suite dataset's subtree that say what to evaluate and how to score it.
EVAL_FIELDS = ("eval_tfds_name", "eval_split", "eval_data_dir", "eval_metric", "eval_protocol",
               "oks_sigmas", "eval_columns")


class PretrainedModel:
  """A pretraining run restored once (newest checkpoint: backbone, projectors and heads) for
  evaluating its heads on other evaluation sets (:meth:`evaluate`)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.cfg = load_run_config(workdir)
    if self.cfg.mode != "pretrain":
      raise ValueError(f"{workdir} is a {self.cfg.mode!r} run; --protocol={WOFT} needs a "
                       "pretraining run's workdir (its heads are what w/o FT evaluates)")
    self._restored = None

  @property
  def rows(self) -> list[str]:
    return list(self.cfg.datasets)

  def _restore(self):
    """Set-up and the newest checkpoint, as path_jax.train.evaluate restores them; no row
    evaluates its own split (:meth:`evaluate` points one row at a time at a suite dataset)."""
    if self._restored is None:
      from path_jax import checkpoint as ckpt_lib
      from path_jax import train
      from path_jax.state import abstract_train_state
      cfg = self.cfg
      cfg.mode = "evaluate"
      cfg.evaluate.split = ""
      for name in cfg.datasets:
        cfg.datasets[name].eval_split = ""
      s = train.setup(cfg)
      checkpointer = ckpt_lib.Checkpointer(self.workdir, save_every=1,
                                           keep=cfg.train.keep_checkpoints)
      if checkpointer.latest_step() is None:
        checkpointer.close()
        raise FileNotFoundError(f"{self.workdir} has no complete checkpoint; pretrain first "
                                f"(python -m path_jax.main --config=... --workdir={self.workdir})")
      abstract, _ = abstract_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules)
      state, _ = checkpointer.restore(abstract)
      checkpointer.close()
      self._restored = (s, state)
      logging.info("suite: restored step %d of the pretraining run %s (%d heads: %s)",
                   int(jax_step(state)), self.workdir, len(self.rows), ", ".join(self.rows))
    return self._restored

  @property
  def step(self) -> int:
    return int(jax_step(self._restore()[1]))

  def evaluate(self, row: str, target, columns=None, output: str = "") -> dict[str, float]:
    """Row ``row``'s head on the evaluation split of dataset subtree ``target`` (a suite
    dataset's: its data, split and metric; the head keeps the row's input transforms), through
    path_jax.train.run_evaluation. ``columns``: the attribute outputs that are ``target``'s."""
    from path_jax import train
    s, state = self._restore()
    d = self.cfg.datasets[row]
    if d.task != target.task:
      raise ValueError(f"pretraining row {row!r} is a {d.task} head, the dataset a {target.task} "
                       "set; fix the PRETRAINED_HEADS mapping")
    values = {k: target.get(k, None) for k in EVAL_FIELDS}
    values.update(eval_tfds_name=str(target.get("eval_tfds_name", "") or target.tfds_name),
                  eval_data_dir=str(target.get("eval_data_dir", "") or target.data_dir),
                  eval_columns=None if columns is None else tuple(int(c) for c in columns))
    absent = object()
    saved = {k: d[k] if k in d else absent for k in EVAL_FIELDS}
    with d.unlocked():
      try:
        for k, v in values.items():
          if v is not None or k in d:
            d[k] = v
        return dict(train.run_evaluation(self.cfg, s, state.params, state.batch_stats,
                                         self.workdir, step=self.step, output=output)[row])
      finally:   # the row evaluates nothing again until the next call points it somewhere
        for k, v in saved.items():
          if v is absent:
            if k in d:
              del d[k]
          else:
            d[k] = v


def jax_step(state) -> int:
  import jax
  return int(jax.device_get(state.step))


def head_problem(row_cfg, target, columns) -> str:
  """Why ``row_cfg``'s head cannot score dataset ``target`` ('' when it can): the label space
  (parsing classes, pose joints, attribute columns) must be the dataset's."""
  if row_cfg.task != target.task:
    return f"the head is a {row_cfg.task} head, the dataset a {target.task} set"
  field = {"parsing": "num_classes", "pose": "num_joints", "attributes": "num_attributes"}.get(
      str(target.task))
  if field is None:
    return ""
  have = (int(columns[1]) - int(columns[0])) if columns is not None else row_cfg.get(field, None)
  want = target.get(field, None)
  if have is None or want is None or int(have) != int(want):
    what = f"columns {tuple(columns)}" if columns is not None else f"{field}={have}"
    return f"the head's {what} do not match the dataset's {field}={want}"
  return ""


# ----------------------------------------------------------------------------------------------
# Running.


def metric_of(cfg, name: str) -> paper_results.Metric:
  key = str(cfg.datasets[name].get("eval_metric", "") or "")
  if key not in paper_results.METRICS:
    raise KeyError(f"config.datasets.{name}.eval_metric={key!r} has no Table 3 reading; known: "
                   f"{sorted(paper_results.METRICS)} (path_jax/paper_results.py)")
  return paper_results.METRICS[key]


def check_metric_of(cfg, name: str) -> paper_results.Metric:
  """The metric judged against chance: ``check_metric`` where the dataset sets one (a Table 3
  metric that saturates at the suite's size, e.g. mini_caltech's MR^-2), else the table's."""
  key = str(cfg.datasets[name].get("check_metric", "") or "")
  if not key:
    return metric_of(cfg, name)
  if key not in paper_results.METRICS:
    raise KeyError(f"config.datasets.{name}.check_metric={key!r} is not a metric reading; known: "
                   f"{sorted(paper_results.METRICS)} (path_jax/paper_results.py)")
  return paper_results.METRICS[key]


def margin_over_chance(value: float | None, chance: float | None, lower_is_better: bool
                       ) -> float | None:
  """How far ``value`` is on the good side of ``chance`` (negative: worse than chance)."""
  if value is None or chance is None:
    return None
  return (chance - value) if lower_is_better else (value - chance)


def table_value(metrics: Mapping[str, float] | None, metric: paper_results.Metric
                ) -> float | None:
  """Our value in the paper's unit (None when absent)."""
  if not metrics or metric.key not in metrics:
    return None
  return float(metrics[metric.key]) * metric.scale


def run_one(entry: Entry, *, suite: str, protocol: str, backbone: str, arch, workdir: str,
            data_dir: str, overrides: Sequence[str], chance: bool) -> dict[str, Any]:
  """Finetunes and evaluates one dataset; returns its results.json record (never raises)."""
  from path_jax import train
  rec: dict[str, Any] = {"stands_for": entry.stands_for, "status": "ok",
                         "paper": paper_results.paper_value(entry.stands_for, protocol),
                         "workdir": os.path.join(workdir, entry.name)}
  t0 = time.perf_counter()
  try:
    cfg = entry.make_config(protocol)
    if data_dir:
      cfg.data_dir = data_dir
    point_at_backbone(cfg, backbone, arch)
    choose_pose_boxes(cfg, entry.name)
    apply_overrides(cfg, entry.name, overrides)
    metric = metric_of(cfg, entry.name)
    rec.update(task=str(cfg.datasets[entry.name].task), metric=dataclasses.asdict(metric))
    if pose_boxes(cfg, entry.name):
      rec["boxes"] = pose_boxes(cfg, entry.name)
    missing = missing_data(cfg)
    if missing:
      return _skipped(rec, suite, entry, missing)
    result = train.run(cfg, rec["workdir"])
    metrics = dict((result or {}).get("eval", {}).get(entry.name, {}))
    if not metrics:
      raise RuntimeError(f"the finetuning run returned no evaluation of {entry.name} "
                         f"(preempted={bool((result or {}).get('preempted'))})")
    _score(rec, cfg, entry.name, metrics, metric, chance)
  except Exception as e:  # noqa: BLE001  (one dataset's failure must not stop the suite)
    logging.error("suite: %s failed:\n%s", entry.name, traceback.format_exc())
    rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
  finally:
    rec["seconds"] = time.perf_counter() - t0
  return rec


def _skipped(rec: dict[str, Any], suite: str, entry: Entry, missing) -> dict[str, Any]:
  """``rec`` marked skipped: which splits are not prepared, and the commands that prepare them."""
  rec.update(status="skipped",
             reason="; ".join(f"{n} split {s!r} not prepared in {dd}" for n, s, dd, _ in missing),
             prepare=prepare_commands(suite, entry.stands_for, missing))
  return rec


def _score(rec: dict[str, Any], cfg, name: str, metrics: Mapping[str, float],
           metric: paper_results.Metric, chance: bool) -> None:
  """Fills ``rec`` with an evaluation's metrics, the table's value and (with ``chance``) the
  chance floor and the margin over it."""
  rec["metrics"] = metrics
  rec["value"] = table_value(metrics, metric)
  if rec["value"] is None:
    raise KeyError(f"the evaluation of {name} has no {metric.key!r} (Table 3's "
                   f"{metric.label}); it gave {sorted(metrics)}")
  if chance:
    rec["chance_metrics"] = chance_metrics(cfg, name)
    rec["chance"] = table_value(rec["chance_metrics"], metric)
    check = check_metric_of(cfg, name)
    value, floor = table_value(metrics, check), table_value(rec["chance_metrics"], check)
    rec["check"] = {"metric": dataclasses.asdict(check), "value": value, "chance": floor,
                    "margin": margin_over_chance(value, floor, check.lower_is_better)}


def run_one_woft(entry: Entry, *, suite: str, pretrained: PretrainedModel, heads: Mapping,
                 workdir: str, data_dir: str, overrides: Sequence[str], chance: bool
                 ) -> dict[str, Any]:
  """Protocol none: scores ``entry`` with its pretraining head (``heads[entry.name]``), no
  training; returns its results.json record (never raises). A dataset without a head, or whose
  head the run lacks, is recorded as ``not_pretrained``."""
  rec: dict[str, Any] = {"stands_for": entry.stands_for, "status": "ok",
                         "paper": paper_results.paper_value(entry.stands_for, WOFT),
                         "workdir": os.path.join(workdir, entry.name)}
  t0 = time.perf_counter()
  try:
    cfg = entry.make_config("full")   # only its dataset subtree is read: data, split, metric
    if data_dir:
      cfg.data_dir = data_dir
    choose_pose_boxes(cfg, entry.name)
    apply_overrides(cfg, entry.name, overrides)
    metric = metric_of(cfg, entry.name)
    rec.update(task=str(cfg.datasets[entry.name].task), metric=dataclasses.asdict(metric))
    if pose_boxes(cfg, entry.name):
      rec["boxes"] = pose_boxes(cfg, entry.name)
    head = heads.get(entry.name)
    if head is None or head.row not in pretrained.rows:
      rec.update(status="not_pretrained", reason=NOT_PRETRAINED + (
          ": pretraining has no head for this set" if head is None else
          f": the pretraining run has no {head.row!r} row (its rows: {pretrained.rows})"))
      return rec
    rec["head"] = head.row
    if head.columns is not None:
      rec["head_columns"] = list(head.columns)
    # Evaluation data only (parsing and counting chance read the training split too).
    needs_train = chance and rec["task"] in ("parsing", "counting")
    missing = missing_data(cfg, train=needs_train)
    if missing:
      return _skipped(rec, suite, entry, missing)
    fill_metadata(cfg)
    target = cfg.datasets[entry.name]
    problem = head_problem(pretrained.cfg.datasets[head.row], target, head.columns)
    if problem:
      raise ValueError(f"pretraining head {head.row!r} cannot score {entry.name}: {problem}")
    metrics = pretrained.evaluate(head.row, target, head.columns,
                                  output=os.path.join(rec["workdir"], "eval"))
    rec["step"] = pretrained.step
    _score(rec, cfg, entry.name, metrics, metric, chance)
  except Exception as e:  # noqa: BLE001  (one dataset's failure must not stop the suite)
    logging.error("suite: %s failed:\n%s", entry.name, traceback.format_exc())
    rec.update(status="failed", reason=f"{type(e).__name__}: {e}")
  finally:
    rec["seconds"] = time.perf_counter() - t0
  return rec


def run_suite(*, backbone: str, protocol: str, workdir: str, suite: str = "humanbench",
              datasets: Sequence[str] = (), data_dir: str = "", overrides: Sequence[str] = (),
              chance: bool | None = None, pretrain_steps: int | None = None,
              variant: str | None = None, pretrain_only: bool = False) -> dict[str, Any]:
  """Runs the suite; writes and returns DIR/results.json's content (also writes results.md).

  ``variant``: the ViT variant that ``backbone='random_init'`` builds (default the suite's).
  ``pretrain_only`` (with ``backbone='demo_pretrain'``): pretrain and export only; returns
  ``{'export': path, 'pretrain': {...}}`` and writes no results."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"--protocol={protocol!r}; use one of {PROTOCOLS}")
  if protocol == WOFT and backbone == RANDOM_INIT:
    raise ValueError(f"--protocol={WOFT} evaluates a pretraining run's heads: pass its workdir "
                     f"(or --backbone={DEMO_PRETRAIN} with --suite=mini), not {RANDOM_INIT}")
  if variant and backbone != RANDOM_INIT:
    raise ValueError(f"--variant={variant} applies to --backbone={RANDOM_INIT} only: an export "
                     "or a state dict brings its own architecture")
  if pretrain_only and backbone != DEMO_PRETRAIN:
    raise ValueError(f"--pretrain_only pretrains the demo backbone: use it with "
                     f"--backbone={DEMO_PRETRAIN} --suite=mini")
  all_entries = suite_entries(suite, protocol)
  entries = select(all_entries, datasets)
  check_overrides(overrides, [e.name for e in all_entries], [e.name for e in entries])
  pretrain_seconds = None
  notes: dict[str, Any] = {}
  if backbone == DEMO_PRETRAIN:
    if suite != "mini":
      raise ValueError(f"--backbone={DEMO_PRETRAIN} pretrains on humanbench_mini: use it with "
                       "--suite=mini")
    t = time.perf_counter()
    if protocol == WOFT and not pretrain_only:   # the heads are evaluated: no export
      backbone = demo_pretrain(os.path.join(workdir, "pretrain"), data_dir, pretrain_steps)
    else:
      backbone = demo_pretrain_export(os.path.join(workdir, "pretrain"), data_dir,
                                      pretrain_steps)
    pretrain_seconds = time.perf_counter() - t
    if pretrain_only:
      return {"suite": suite, "export": os.path.abspath(backbone),
              "pretrain": {"steps": pretrain_steps_or_default(pretrain_steps),
                           "seconds": pretrain_seconds}}
  if backbone == RANDOM_INIT:   # the floor: the suite's own architecture, random weights
    cfg = entries[0].make_config(protocol)
    apply_overrides(cfg, entries[0].name, overrides)
    b = cfg.model.backbone
    if variant:
      from path_jax.model import vit as vit_lib
      vit_lib.variant(variant)   # an unknown name fails, naming the known ones
      b.variant = variant
      for key in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
        b[key] = None
    from path_jax import export as export_lib
    arch = export_lib.arch_from_config(b)
    notes["random_init"] = {"arch": arch, "from": f"--variant={variant}" if variant else
                            ("configs/mini_suite.py (configs/demo.py BACKBONE)" if suite == "mini"
                             else "configs/finetune/")}
    logging.info("suite: %s builds a randomly initialised backbone: %s (from %s)", RANDOM_INIT,
                 describe_arch(arch), notes["random_init"]["from"])
    backbone = random_backbone_export(os.path.join(workdir, "random_init_export"), b)
  if protocol == WOFT and (not backbone or not os.path.isdir(backbone)):
    raise FileNotFoundError(f"--backbone={backbone!r} is not a directory; --protocol={WOFT} "
                            "takes a pretraining run's workdir (python -m path_jax.main "
                            f"--config=... --workdir=DIR) or {DEMO_PRETRAIN!r} (--suite=mini)")
  if not backbone or not os.path.exists(backbone):
    raise FileNotFoundError(f"--backbone={backbone!r} does not exist; pass an export directory "
                            "(python -m path_jax.main --config=... --config.mode=export) or a "
                            f".pth/.safetensors/.npz state dict (or {RANDOM_INIT!r})")
  chance = (suite == "mini") if chance is None else chance
  logging.info("suite: chance levels %s", "on" if chance else
               "off (--chance computes them; on by default for --suite=mini only)")
  extra: dict[str, Any] = {}
  if protocol == WOFT:   # one restore of the pretraining run, then each dataset
    pretrained = PretrainedModel(backbone)
    heads = pretrained_heads(suite)
    extra["pretrain_rows"] = pretrained.rows

    def one(entry):
      return run_one_woft(entry, suite=suite, pretrained=pretrained, heads=heads,
                          workdir=workdir, data_dir=data_dir, overrides=overrides, chance=chance)
  else:
    arch = backbone_arch(backbone)

    def one(entry):
      return run_one(entry, suite=suite, protocol=protocol, backbone=backbone, arch=arch,
                     workdir=workdir, data_dir=data_dir, overrides=overrides, chance=chance)
  os.makedirs(workdir, exist_ok=True)
  out: dict[str, Any] = {"suite": suite, "protocol": protocol,
                         "backbone": os.path.abspath(backbone), **extra, "data_dir": data_dir,
                         "overrides": list(overrides), "chance": bool(chance), **notes,
                         "datasets": {}}
  if pretrain_seconds is not None:
    out["pretrain"] = {"steps": pretrain_steps_or_default(pretrain_steps),
                       "seconds": pretrain_seconds}
  t0 = time.perf_counter()
  for entry in entries:
    logging.info("suite: %s (%s) under protocol %s", entry.name, entry.stands_for, protocol)
    out["datasets"][entry.name] = one(entry)
    write_results(out, workdir)          # partial results survive a crash of a later dataset
  out["seconds"] = time.perf_counter() - t0
  write_results(out, workdir)
  return out


def _fmt(v: float | None, digits: int = 1) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "-"
  return f"{v:.{digits}f}"


def render_markdown(results: Mapping[str, Any]) -> str:
  """Table 3's two halves (columns: datasets; rows: ours, chance, the paper's PATH-B row), then
  the skipped and failed datasets with their reasons and preparation commands."""
  protocol = results["protocol"]
  recs = results["datasets"]
  mini = results["suite"] == "mini"
  title = PROTOCOL_TITLES[protocol]
  lines = [f"# Downstream suite: {results['suite']}, protocol {protocol} ({title})", "",
           f"Backbone: `{results['backbone']}`.", ""]
  if protocol == WOFT:
    steps = sorted({r["step"] for r in recs.values() if r.get("step") is not None})
    at = f", step {', '.join(map(str, steps))}" if steps else ""
    lines[-2] = (f"Pretraining run: `{results['backbone']}`{at}: its heads evaluated without "
                 f"finetuning (heads: {', '.join(results.get('pretrain_rows', []))}).")
  if results.get("random_init"):
    r = results["random_init"]
    lines[-2] = (f"Backbone: `{results['backbone']}`: random weights ({RANDOM_INIT}), "
                 f"{describe_arch(r['arch'])} (from {r['from']}).")
  if mini:
    lines += ["humanbench_mini sets stand in for the HumanBench sets named in brackets; the "
              "paper row is PATH-B on the real set, for scale only.", ""]
  has_chance = any(r.get("chance") is not None for r in recs.values())
  for half in (paper_results.TOP_HALF, paper_results.BOTTOM_HALF):
    cols = [n for n, r in recs.items() if r["stands_for"] in half]
    cols.sort(key=lambda n: half.index(recs[n]["stands_for"]))
    if not cols:
      continue
    header, groups = ["|"], ["|"]
    for n in cols:
      r = recs[n]
      m = r.get("metric") or {}
      arrow = " (↓)" if m.get("lower_is_better") else ""
      name = paper_results.TITLES[r["stands_for"]]
      head = f"{n} ({name})" if mini else name
      boxes = f", {r['boxes']}" if r.get("boxes") else ""
      header.append(f" {head}<br>{m.get('label', '?')}{arrow}{boxes} |")
      group = [g for g, members in paper_results.GROUPS if r["stands_for"] in members][0]
      groups.append(f" {group} |")
    lines.append("| |" + "".join(groups[1:]))
    lines.append("|---|" + "---|" * len(cols))
    lines.append("| |" + "".join(header[1:]))
    ours = [_cell(recs[n]) for n in cols]
    lines.append(f"| ours ({title}) | " + " | ".join(ours) + " |")
    if has_chance:
      lines.append("| chance | " + " | ".join(_fmt(recs[n].get("chance")) for n in cols) + " |")
    paper = [_fmt(recs[n].get("paper")) for n in cols]
    label = paper_results.PROTOCOL_ROWS[protocol]
    lines.append(f"| paper PATH-B {label.removeprefix('PATH ')} | " + " | ".join(paper) + " |")
    lines.append("")
  lines.append("Metrics as Table 3: % for accuracies, AP, mA, mIoU and MR^-2; EPE in pixels; "
               "counting MSE (root mean squared count error) in heads; (↓) lower is better.")
  lines.append("")
  if results.get("chance") is False:
    lines += ["No chance row: chance levels were not computed (pass --chance; it is on by "
              "default for --suite=mini only).", ""]
  checks = {n: r["check"] for n, r in recs.items() if r.get("check")}
  if checks:
    lines += ["Margin over chance (of the metric judged against chance; + is better):", ""]
    for n, c in checks.items():
      m = c["metric"]
      own = m["key"] != (recs[n].get("metric") or {}).get("key")
      note = (f" (judged on {m['label']}: the table's {recs[n]['metric']['label']} saturates at "
              "this size)") if own else ""
      lines.append(f"- {n}: {m['label']} {_fmt(c['value'])} vs chance {_fmt(c['chance'])}, "
                   f"margin {_fmt(c['margin'])}{note}")
    lines.append("")
  if any(r.get("boxes") for r in recs.values()):
    lines += [("COCO keypoint AP: \"det boxes\" on the person detections (split val_dets, as "
               "the paper), \"GT boxes\" on ground-truth person boxes (no detections prepared: "
               "not the paper's setting)."), ""]
  heads = {n: r for n, r in recs.items() if r.get("head")}
  if heads:
    lines += ["Pretraining heads: " + "; ".join(
        f"{n} <- {r['head']}" + (f" columns {r['head_columns'][0]}-{r['head_columns'][1] - 1}"
                                 if r.get("head_columns") else "")
        for n, r in heads.items()) + ".", ""]
  unheaded = {n: r for n, r in recs.items() if r["status"] == "not_pretrained"}
  if unheaded:
    lines += ["## Not pretrained (no head)", ""]
    lines += [f"- **{n}**: {r['reason']}" for n, r in unheaded.items()]
    lines.append("")
  skipped = {n: r for n, r in recs.items() if r["status"] == "skipped"}
  failed = {n: r for n, r in recs.items() if r["status"] == "failed"}
  if skipped:
    lines += ["## Skipped (data not prepared)", ""]
    for n, r in skipped.items():
      lines.append(f"- **{n}**: {r['reason']}. Prepare with:")
      lines += [f"  `{c}`" for c in r["prepare"]]
    lines.append("")
  if failed:
    lines += ["## Failed", ""]
    lines += [f"- **{n}**: failed: {r['reason']}" for n, r in failed.items()]
    lines.append("")
  return "\n".join(lines)


def _cell(rec: Mapping[str, Any]) -> str:
  if rec["status"] == "not_pretrained":
    return NOT_PRETRAINED
  if rec["status"] != "ok":
    return rec["status"]
  return _fmt(rec.get("value"))


def write_results(results: Mapping[str, Any], workdir: str) -> None:
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, default=float)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(render_markdown(results) + "\n")


def describe_arch(arch: Mapping[str, Any]) -> str:
  """``ViT mu/16 (width 96, depth 4, 3 heads, MLP 384, patch 16, grid 14x14, cls token)``."""
  grid = "x".join(str(g) for g in arch.get("pos_grid", ()))
  return (f"ViT {arch['variant']} (width {arch['width']}, depth {arch['depth']}, "
          f"{arch['num_heads']} heads, MLP {arch['mlp_dim']}, patch {arch['patch_size']}, "
          f"grid {grid}{', cls token' if arch.get('cls_token') else ''})")


def pretrain_steps_or_default(steps: int | None) -> int:
  from configs import mini_suite
  return mini_suite.PRETRAIN_STEPS if steps is None else int(steps)


def demo_pretrain_export(workdir: str, data_dir: str = "", steps: int | None = None) -> str:
  """Pretrains configs/mini_suite.py:pretrain_config for ``steps`` steps (default PRETRAIN_STEPS)
  in ``workdir``, exports it, returns the export directory. A finished run in ``workdir`` resumes
  at its last step, so a rerun only exports again."""
  from path_jax import train
  cfg = _demo_pretrain_config(data_dir, steps)
  train.run(cfg, workdir)
  cfg.mode = "export"
  return str(train.run(cfg, workdir))


def demo_pretrain(workdir: str, data_dir: str = "", steps: int | None = None) -> str:
  """As :func:`demo_pretrain_export`, without the export: returns ``workdir`` (protocol none
  evaluates its heads)."""
  from path_jax import train
  train.run(_demo_pretrain_config(data_dir, steps), workdir)
  return workdir


def _demo_pretrain_config(data_dir: str, steps: int | None):
  from configs import mini_suite
  cfg = mini_suite.pretrain_config(pretrain_steps_or_default(steps))
  if data_dir:
    cfg.data_dir = data_dir
  missing = missing_data(cfg)
  if missing:
    raise FileNotFoundError(
        "pretraining data not prepared: " + "; ".join(f"{n} split {s!r} in {d}" for n, s, d, _
                                                      in missing) +
        f"; prepare with {MINI_BUILD.format(data_dir=cfg.data_dir)}")
  return cfg


def random_backbone_export(out_dir: str, backbone_cfg, seed: int = 0) -> str:
  """Exports a randomly initialised backbone of ``backbone_cfg`` (an export directory).

  The suite's floor: what finetuning reaches without pretraining (the slow test uses it, as a
  pretraining run would not fit the test's time budget).
  """
  import jax
  import jax.numpy as jnp
  from path_jax import export as export_lib
  from path_jax.model import vit as vit_lib
  model = vit_lib.from_config(backbone_cfg)
  grid = tuple(backbone_cfg.get("pos_grid", (14, 14)))
  patch = int(export_lib.arch_from_config(backbone_cfg)["patch_size"])
  image = jnp.zeros((1, grid[0] * patch, grid[1] * patch, 3), jnp.float32)
  params = jax.jit(model.init)(jax.random.key(seed), image)["params"]
  export_lib.export_backbone(out_dir, params, export_lib.arch_from_config(backbone_cfg),
                             torch_state_dict=False)
  return out_dir


# ----------------------------------------------------------------------------------------------
# Command line.


def main(argv):
  from absl import flags
  del argv
  f = flags.FLAGS
  import jax
  jax.config.parse_flags_with_absl()
  if jax.default_backend() != "cpu":
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")
  results = run_suite(backbone=f.backbone, protocol=f.protocol, workdir=f.workdir,
                      suite=f.suite, datasets=[d for d in f.datasets.split(",") if d],
                      data_dir=f.data_dir, overrides=f.set or (),
                      chance=None if f.chance is None else f.chance,
                      pretrain_steps=f.pretrain_steps, variant=f.variant or None,
                      pretrain_only=f.pretrain_only)
  if f.pretrain_only:
    print(f"demo backbone ({results['pretrain']['steps']} pretraining steps) exported to "
          f"{results['export']}")
    print(f"finetune from it: python -m path_jax.suite --suite=mini "
          f"--backbone={results['export']} --workdir=DIR, or python -m path_jax.main "
          f"--config=configs/mini_suite.py:dataset=mini_atr "
          f"--config.finetune.init_from={results['export']} --workdir=DIR")
    return
  print(render_markdown(results))
  print(f"results in {os.path.join(f.workdir, 'results.md')} and results.json")


def _define_flags():
  from absl import flags
  flags.DEFINE_string("backbone", None, f"--protocol={WOFT}: a pretraining run's workdir "
                      f"(checkpoints + config.json) or '{DEMO_PRETRAIN}'. Otherwise: "
                      "Exported backbone dir (its architecture is used), a "
                      ".pth/.safetensors/.npz (architecture from its shapes), "
                      f"'{RANDOM_INIT}' (random weights, the floor: ViT-B/16 for "
                      "--suite=humanbench, the demo's tiny ViT for --suite=mini, or --variant) "
                      f"or '{DEMO_PRETRAIN}' (mini suite: pretrain the demo model first).")
  flags.DEFINE_string("variant", None, f"With --backbone={RANDOM_INIT}: the ViT variant to "
                      "build (e.g. B/16, L/16, mu/16; path_jax.model.vit.VARIANTS) instead of "
                      "the suite's.")
  flags.DEFINE_integer("pretrain_steps", None, f"Steps of --backbone={DEMO_PRETRAIN}'s "
                       "pretraining (default configs/mini_suite.py PRETRAIN_STEPS).")
  flags.DEFINE_bool("pretrain_only", False, f"With --backbone={DEMO_PRETRAIN} --suite=mini: "
                    "pretrain the demo backbone into WORKDIR/pretrain, export it, print the "
                    "export's path and stop (no finetuning).")
  flags.DEFINE_enum("protocol", "full", list(PROTOCOLS), "Finetuning protocol, or "
                    f"'{WOFT}' (w/o FT: a pretraining run's heads evaluated directly; "
                    "--backbone is then the pretraining workdir).")
  flags.DEFINE_string("workdir", None, "Where each dataset's run and the results go.")
  flags.DEFINE_enum("suite", "humanbench", list(SUITES), "Which datasets.")
  flags.DEFINE_string("datasets", "", "Comma-separated subset of the suite (default: all).")
  flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = each config's data_dir).")
  flags.DEFINE_multi_string("set", [], "key=value: override of every dataset's config "
                            "('dataset.<field>' addresses the dataset subtree); "
                            "<dataset>:key=value: of that dataset only (applied last).")
  flags.DEFINE_bool("chance", None, "Compute chance levels (random predictions through the same "
                    "evaluators): a 'chance' row and each dataset's margin over it. Default: on "
                    "for --suite=mini, off for --suite=humanbench (pass --chance there).")
  flags.mark_flags_as_required(["backbone", "workdir"])


if __name__ == "__main__":
  from absl import app
  _define_flags()
  app.run(main)
