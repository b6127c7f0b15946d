"""Evaluation driver: one dataset's eval split(s) through the model, its task's decode and evaluator.

Every example is seen exactly once across hosts (path_jax.input.eval pads the last batch and
masks it). Predictions and batches are gathered to every host and the evaluator runs on the full
set, so every host computes the same numbers (host 0 writes them).

Eval splits: ``cfg.eval_split`` names one split, or several joined by ``+``; for ReID the
convention is ``'query+gallery'`` and each batch is tagged ``is_query`` by its split.

Where the evaluation data lives: ``eval_tfds_name`` ('' = ``tfds_name``) in ``eval_data_dir``
('' = the dataset's ``data_dir``; a pretraining row built into its own folder evaluates on a set
of the root data dir). ``eval_columns`` ``(start, stop)`` (attributes): score only those output
columns, against a set that has just those attributes (a merged pretraining row's head on one of
its sources, the suite's w/o-FT protocol).
"""
from __future__ import annotations

import importlib
import logging
import os
import time
from typing import Any, Mapping

import flax.linen as nn
import jax
import numpy as np
from jax.experimental import multihost_utils

from path_jax import tasks as tasks_lib
from path_jax.input import eval as eval_input
from path_jax.input import global_batch, sources

# The head output that a flip test averages, per task (decode reads '<key>_flipped').
FLIP_OUTPUTS = {"pose": "heatmaps", "parsing": "logits"}


# Pose datasets scored with COCO keypoint AP: OKS sigmas by joint count when the dataset config
# does not name them (``oks_sigmas``: 'coco', 'aic' or a list).
OKS_SIGMAS_BY_JOINTS = {17: "coco", 14: "aic"}
# The ground truth of a COCO-style pose split, written by data/pose/builder.py (GT_FILE) into
# the prepared dataset's version folder (training never imports the builders).
COCO_GT_FILE = "coco_gt_{split}.json"


def coco_gt_path(cfg: Mapping[str, Any], data_dir: str | None = None,
                 split: str | None = None) -> str:
  """The ground-truth file that COCO keypoint AP of ``split`` is scored against.

  The pose builder writes :data:`COCO_GT_FILE` into the prepared dataset's folder; detections
  (split ``'val_dets'``) are scored against ``'val'``. Raises FileNotFoundError naming the file
  and the command that writes it.
  """
  name = str(cfg.get("eval_tfds_name", "") or cfg.tfds_name)
  data_dir = str(data_dir or cfg.get("eval_data_dir", "") or cfg.get("data_dir", "") or "")
  split = str(split or cfg.get("eval_split", "") or "val")
  if "+" in split:
    raise ValueError(f"COCO keypoint AP evaluates one split, got eval_split={split!r} for "
                     f"{name!r}; set the dataset config's eval_split to 'val' or 'val_dets'.")
  gt_split = split[:-len("_dets")] if split.endswith("_dets") else split
  path = os.path.join(sources.dataset_dir(name, data_dir),
                      COCO_GT_FILE.format(split=gt_split))
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"COCO keypoint AP of {name!r} split {split!r} needs the ground truth {path}, which the "
        f"pose builder writes; rebuild the dataset: python data/build.py {name} "
        f"--manual_dir=<its source folder> --data_dir={data_dir} --overwrite")
  return path


def make_evaluator(task: str, cfg: Mapping[str, Any], *, data_dir: str | None = None,
                   split: str | None = None):
  """The task's evaluator for a dataset config (``eval_metric`` chooses pose's metric).

  Pose ``'coco_ap'`` reads its ground truth from the prepared data (:func:`coco_gt_path`;
  ``data_dir`` and ``split`` default to the config's ``data_dir`` and ``eval_split``) and takes
  the OKS sigmas from ``oks_sigmas`` or else the joint count (17: COCO's, 14: AIC's).
  """
  module = importlib.import_module(f"path_jax.tasks.{task}.evaluator")
  if task == "pose":
    metric = str(cfg.get("eval_metric", None) or "epe")
    if metric != "coco_ap":
      return module.Evaluator(metric)
    sigmas = cfg.get("oks_sigmas", None)
    if sigmas is None:
      joints = cfg.get("num_joints", None)
      if joints not in OKS_SIGMAS_BY_JOINTS:
        raise ValueError(f"COCO keypoint AP needs OKS sigmas for {joints} joints; set "
                         f"config.datasets.<name>.oks_sigmas ('coco', 'aic' or one per joint).")
      sigmas = OKS_SIGMAS_BY_JOINTS[joints]
    elif not isinstance(sigmas, str):
      sigmas = np.asarray(sigmas, np.float64)
    return module.Evaluator(metric, gt=coco_gt_path(cfg, data_dir, split), sigmas=sigmas)
  if task == "detection":
    return module.Evaluator(cfg, protocol=str(cfg.get("eval_protocol", None) or "crowdhuman"))
  return module.Evaluator(cfg)


def make_predict_fn(model, name: str, task: str, cfg, rules=()):
  """Jitted ``(params, batch_stats, batch) -> decoded predictions`` for one dataset."""
  task_obj = tasks_lib.get(task)
  flip_key = FLIP_OUTPUTS.get(task) if cfg.get("flip_test", False) else None

  def predict(params, batch_stats, batch):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    with nn.logical_axis_rules(tuple(rules)):
      out = model.apply(variables, {name: batch["image"]}, train=False)[name]
      if flip_key is not None:
        flipped = model.apply(variables, {name: batch["image"][:, :, ::-1]}, train=False)[name]
        out = dict(out)
        out[f"{flip_key}_flipped"] = flipped[flip_key]
    return task_obj.decode(out, batch, cfg)

  return jax.jit(predict)


def evaluate_dataset(model, params, batch_stats, name: str, cfg, *, mesh, data_dir: str,
                     split: str = "", batch_size: int = 0, rules=(), num_workers: int = 0,
                     keep_examples: int = 0, max_examples: int = 0
                     ) -> tuple[dict[str, float], dict[str, Any]]:
  """Evaluates dataset ``name`` on its eval split(s).

  Returns ``(metrics, samples)``: the evaluator's result and, when ``keep_examples`` > 0, the
  first examples' batch fields and predictions (numpy) for pictures. ``max_examples`` > 0
  evaluates only the first that many examples of each split (whole batches: up to one batch
  more), e.g. for metrics during pretraining; the result's ``num_examples`` says how many.
  """
  task = str(cfg.task)
  data_dir = str(cfg.get("eval_data_dir", "") or data_dir)
  columns = cfg.get("eval_columns", None)
  if columns is not None and task != "attributes":
    raise ValueError(f"dataset {name!r}: eval_columns selects attribute outputs; task {task!r} "
                     "has none (drop eval_columns)")
  split = split or str(cfg.get("eval_split", "") or "")
  if not split:
    raise ValueError(f"dataset {name!r} has no eval_split; set config.datasets.{name}.eval_split "
                     "(e.g. 'val', 'test', or 'query+gallery' for ReID)")
  per_host = (batch_size or int(cfg.batch_size)) // jax.process_count()
  shards = global_batch.batch_shards(mesh)
  local_shards = max(1, shards // jax.process_count())
  per_host = max(local_shards, per_host - per_host % local_shards)
  predict = make_predict_fn(model, name, task, cfg, rules)
  evaluator = make_evaluator(task, cfg, data_dir=data_dir, split=split)
  if max_examples and hasattr(evaluator, "seen_images_only"):
    evaluator.seen_images_only = True   # COCO AP over the evaluated images only
  samples: dict[str, list] = {"batch": [], "predictions": []}
  kept = 0
  t0 = time.perf_counter()
  n = 0
  for part in split.split("+"):
    kept = 0       # each split (ReID: query, gallery) keeps its own first examples
    name_ = str(cfg.get("eval_tfds_name", "") or cfg.tfds_name)
    source = sources.open_source(name_, part, data_dir)
    it = eval_input.eval_iterator_for(task, cfg, source, per_host, num_workers=num_workers)
    seen = 0
    for batch in it:
      if max_examples and seen >= max_examples:
        break
      if task == "reid":
        batch["is_query"] = np.full(batch["mask"].shape, part == "query")
      batch = {k: v for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype != object}
      gb = global_batch.to_global(batch, mesh)
      with jax.set_mesh(mesh):
        preds = predict(params, batch_stats, gb)
      preds = multihost_utils.process_allgather(preds, tiled=True)
      full = multihost_utils.process_allgather(gb, tiled=True)
      preds = jax.tree.map(np.asarray, preds)
      full = jax.tree.map(np.asarray, full)
      if columns is not None:
        preds = {k: v[:, int(columns[0]):int(columns[1])] for k, v in preds.items()}
      evaluator.update(preds, full)
      n += int(np.sum(full["mask"]))
      seen += int(np.sum(full["mask"]))
      if kept < keep_examples:
        samples["batch"].append(full)
        samples["predictions"].append(preds)
        kept += int(np.sum(full["mask"]))
  result = {k: float(v) for k, v in evaluator.result().items() if np.ndim(v) == 0}
  logging.info("evaluated %s on %s: %d examples in %.1fs: %s", name, split, n,
               time.perf_counter() - t0, {k: round(v, 4) for k, v in result.items()})
  result["num_examples"] = float(n)
  if samples["batch"]:
    samples = {k: jax.tree.map(lambda *xs: np.concatenate(xs), *v) for k, v in samples.items()}
  else:
    samples = {}
  return result, samples
