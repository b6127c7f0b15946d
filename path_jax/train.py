"""The training program: pretraining, finetuning, evaluation and export, chosen by ``config.mode``.

One readable loop (big_vision style), sections in order: set-up (distributed, mesh, config checks),
model and optimiser, sharded state (restored or initialised), input, the loop (step, metrics,
checkpoints, preemption, profiling, periodic evaluation), and the end (final checkpoint,
evaluation). Side effects stay here; the math lives in step.py and the task packages.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from path_jax import optim
from path_jax import step as step_lib
from path_jax.model import path as path_lib
from path_jax.parallel import mesh as mesh_lib
from path_jax.parallel import rules as rules_lib


# ----------------------------------------------------------------------------------------------
# Config checks and metadata.


def _dataset_dir(cfg, default_dir: str) -> str:
  return str(cfg.get("data_dir", "") or default_dir)


def read_metadata(tfds_name: str, data_dir: str) -> dict[str, Any]:
  """The builder's ``metadata.json`` of a prepared dataset ({} when it has none)."""
  from path_jax.input import sources
  folder = sources.dataset_dir(tfds_name, data_dir)
  path = os.path.join(folder, "metadata.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


# Shape-only stand-ins for counts that normally come from prepared data (ahead-of-time compiles
# on a host without the data): they fix parameter shapes, not values a run would train with.
PLACEHOLDER_COUNTS = {"num_classes": 1000, "num_attributes": 32, "num_joints": 17}


def fill_from_metadata(cfg: ml_collections.ConfigDict, placeholders: bool = False) -> list[str]:
  """Fills dataset fields left unset (None) from the prepared datasets' metadata: ReID class
  counts, attribute counts and positive ratios, pose joint counts.

  ``placeholders``: where the metadata is missing, fill :data:`PLACEHOLDER_COUNTS` (and positive
  ratios of 0.5) instead of failing; returns the ``config.datasets.<name>.<field>`` keys so
  filled."""
  filled = []
  for name in cfg.datasets:
    d = cfg.datasets[name]
    needs = {"reid": ("num_classes",), "attributes": ("num_attributes", "positive_ratios"),
             "pose": ("num_joints",)}.get(d.task, ())
    if not any(d.get(k, None) is None for k in needs):
      continue
    try:
      meta = read_metadata(d.tfds_name, _dataset_dir(d, cfg.data_dir))
    except FileNotFoundError:
      if not placeholders:
        raise
      meta = {}
    if placeholders:
      with d.unlocked():
        if d.task == "reid" and d.num_classes is None and "num_train_ids" not in meta:
          d.num_classes = PLACEHOLDER_COUNTS["num_classes"]
          filled.append(f"config.datasets.{name}.num_classes")
        if d.task == "pose" and d.num_joints is None and "num_joints" not in meta:
          d.num_joints = PLACEHOLDER_COUNTS["num_joints"]
          filled.append(f"config.datasets.{name}.num_joints")
        if (d.task == "attributes" and d.positive_ratios is None
            and "positive_ratio" not in meta):
          if d.num_attributes is None:
            d.num_attributes = PLACEHOLDER_COUNTS["num_attributes"]
            filled.append(f"config.datasets.{name}.num_attributes")
          d.positive_ratios = tuple([0.5] * int(d.num_attributes))
          filled.append(f"config.datasets.{name}.positive_ratios")
    with d.unlocked():
      if d.task == "reid" and d.num_classes is None:
        d.num_classes = int(_need(meta, "num_train_ids", name, "num_classes"))
      if d.task == "attributes":
        ratios = meta.get("positive_ratio")
        if d.get("positive_ratios", None) is None:
          d.positive_ratios = tuple(float(r) for r in _need(meta, "positive_ratio", name,
                                                             "positive_ratios"))
        if d.get("num_attributes", None) is None:
          d.num_attributes = len(d.positive_ratios if ratios is None else ratios)
      if d.task == "pose" and d.get("num_joints", None) is None:
        d.num_joints = int(_need(meta, "num_joints", name, "num_joints"))
  return filled


def _need(meta, key, dataset, field):
  if key not in meta:
    raise KeyError(f"config.datasets.{dataset}.{field} is unset and the prepared dataset's "
                   f"metadata.json has no {key!r}; set the field in the config")
  return meta[key]


def check_config(cfg: ml_collections.ConfigDict, mesh, *, num_hosts: int | None = None,
                 check_data: bool = True) -> None:
  """Everything that can be checked before any compute: data present, batch sizes, mesh, mode.

  ``num_hosts``: the processes that feed the mesh (default ``jax.process_count()``; an
  ahead-of-time compile passes the target topology's). ``check_data=False`` skips the checks of
  prepared data (compiling for a pod on a host without the data)."""
  num_hosts = jax.process_count() if num_hosts is None else int(num_hosts)
  from configs.common import MODES, PROTOCOLS
  from path_jax.input import sources
  if cfg.mode not in MODES:
    raise ValueError(f"config.mode={cfg.mode!r}; use one of {MODES}")
  if cfg.finetune.protocol not in PROTOCOLS:
    raise ValueError(f"config.finetune.protocol={cfg.finetune.protocol!r}; use one of {PROTOCOLS}")
  if cfg.mode != "pretrain" and cfg.finetune.protocol == "partial":
    from path_jax import export as export_lib
    depth = export_lib.arch_from_config(cfg.model.backbone)["depth"]
    if not 0 <= int(cfg.finetune.open_last) <= depth:
      raise ValueError(f"config.finetune.open_last={cfg.finetune.open_last}: protocol 'partial' "
                       f"opens the last N of the backbone's {depth} blocks, so N must lie in "
                       f"0..{depth} (config.model.backbone.depth)")
  if not len(cfg.datasets):
    raise ValueError("config.datasets is empty: add at least one dataset subtree")
  from path_jax.parallel import placement as placement_lib
  mode = cfg.get("placement", {}).get("mode", "shared")
  if mode not in placement_lib.MODES:
    raise ValueError(f"config.placement.mode={mode!r}; use one of {placement_lib.MODES}")
  # 'slices': sub-batches divide over their group's rows, checked once the groups are known.
  shared = mode == "shared"
  shards = mesh_lib.batch_shards(mesh)
  problems = []
  for name in cfg.datasets:
    d = cfg.datasets[name]
    if d.batch_size <= 0:
      problems.append(f"config.datasets.{name}.batch_size={d.batch_size}: give a positive "
                      f"number of images per step")
    elif not shared:
      pass
    elif d.batch_size % shards:
      problems.append(f"config.datasets.{name}.batch_size={d.batch_size} is not a multiple of "
                      f"the {shards} batch shards of mesh {dict(mesh.shape)}")
    if shared and d.batch_size % num_hosts:
      problems.append(f"config.datasets.{name}.batch_size={d.batch_size} does not split over "
                      f"{num_hosts} hosts")
    if not check_data:
      continue
    checks = [(d.tfds_name, d.split)] if cfg.mode in ("pretrain", "finetune") else []
    eval_name = str(d.get("eval_tfds_name", "") or d.tfds_name)
    checks += [(eval_name, s) for s in str(d.get("eval_split", "") or "").split("+") if s]
    for tfds_name, split in checks:
      try:
        sources.check_prepared(tfds_name, split, _dataset_dir(d, cfg.data_dir))
      except (FileNotFoundError, ValueError) as e:
        problems.append(f"config.datasets.{name}: {e}")
  if problems:
    unit = math.lcm(shards, num_hosts)
    if any("not a multiple" in p or "does not split" in p for p in problems):
      problems.append(f"every sub-batch must be a multiple of {unit} on this mesh: set the "
                      f"batch sizes, or for the pretraining configs (configs/vitb.py, vitl.py) "
                      f"pass ':divisor={unit}' (e.g. --config=configs/vitb.py:divisor={unit})")
    raise ValueError("the config does not fit this run:\n  " + "\n  ".join(problems))


def apply_protocol(cfg: ml_collections.ConfigDict) -> None:
  """Finetuning protocol -> optimiser freezing (head: backbone frozen; partial: last N open).

  Also applied when evaluating or exporting, so the state matches the finetuning run's
  checkpoints (a pretraining config keeps protocol 'full', i.e. nothing frozen)."""
  if cfg.mode == "pretrain":
    return
  freeze = {"full": "none", "head": "backbone", "partial": "partial"}[cfg.finetune.protocol]
  cfg.optimizer.freeze = freeze
  cfg.optimizer.freeze_open_last = int(cfg.finetune.open_last)


def loss_weights(cfg, model) -> np.ndarray:
  names = step_lib.dataset_names(model)
  if cfg.train.loss_weights == "authors":
    sw = {n: cfg.datasets[n].sample_weight for n in names}
    bad = [n for n, v in sw.items() if v <= 0]
    if bad:
      raise ValueError(f"train.loss_weights='authors' needs sample_weight > 0 for {bad}")
    w = step_lib.authors_loss_weights(sw, {n: cfg.datasets[n].batch_size for n in names})
  elif cfg.train.loss_weights == "config":
    w = {n: cfg.datasets[n].weight for n in names}
  else:
    raise ValueError(f"config.train.loss_weights={cfg.train.loss_weights!r}; use 'config' or "
                     "'authors'")
  return step_lib.loss_weight_vector(w, model)


# ----------------------------------------------------------------------------------------------
# Set-up shared by every mode.


@dataclasses.dataclass
class Setup:
  cfg: ml_collections.ConfigDict
  mesh: Any
  model: Any
  make_tx: Any
  image_shapes: dict
  rules: tuple
  placeholders: list = dataclasses.field(default_factory=list)
  placement: Any = None      # path_jax.parallel.placement.Placement in mode 'slices'


def setup(cfg: ml_collections.ConfigDict, *, devices=None, check_data: bool = True) -> Setup:
  """Mesh, config checks, model and optimiser of a run.

  ``devices``: build the mesh over these (e.g. the compile-only devices of a TPU topology,
  path_jax.compile) instead of starting jax.distributed and taking every device; the model is
  built for their platform. ``check_data=False``: no prepared data is needed (counts that would
  come from its metadata get shape-only placeholders, listed in ``Setup.placeholders``)."""
  if devices is None:
    mesh_lib.initialize_distributed(cfg.distributed)
  mesh = mesh_lib.from_config(cfg.mesh, devices)
  with cfg.unlocked():
    for name in cfg.datasets:
      if not cfg.datasets[name].get("data_dir", ""):
        cfg.datasets[name].data_dir = cfg.data_dir
  apply_protocol(cfg)
  num_hosts = len({d.process_index for d in mesh.devices.flat})
  check_config(cfg, mesh, num_hosts=num_hosts, check_data=check_data)
  placeholders = fill_from_metadata(cfg, placeholders=not check_data)
  model = path_lib.from_config(cfg, platform=mesh_lib.platform(mesh))
  placement = None
  if cfg.get("placement", {}).get("mode", "shared") == "slices":
    from path_jax.parallel import placement as placement_lib
    placement = placement_lib.make(cfg, mesh, model)
    problems = placement_lib.batch_problems(
        cfg, placement, apply_rounding=bool(cfg.placement.round_batches))
    if problems:
      raise ValueError("the config does not fit this placement:\n  " + "\n  ".join(problems))
  make_tx = functools.partial(optim.make_optimizer, cfg.optimizer)
  image_shapes = {n: tuple(cfg.datasets[n].image_size) for n in cfg.datasets}
  return Setup(cfg, mesh, model, make_tx, image_shapes, rules_lib.rules_from_config(cfg.mesh),
               placeholders, placement)


def _log_config(cfg, workdir):
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(cfg.to_json_best_effort(indent=2))


# ----------------------------------------------------------------------------------------------
# Training (pretraining and finetuning).


def flops_per_step(cfg, model) -> float:
  """Analytic model FLOPs of one training step (backbone + projectors; see path_jax.metrics)."""
  from path_jax import metrics as metrics_lib
  return metrics_lib.flops_per_step(model, cfg.datasets)


def train(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Pretrains or finetunes; resumes from ``workdir`` when it holds a checkpoint."""
  from path_jax import checkpoint as ckpt_lib
  from path_jax import metrics as metrics_lib
  from path_jax import profiling
  from path_jax.input import mixture
  from path_jax.state import abstract_train_state, create_train_state

  s = setup(cfg)
  _log_config(cfg, workdir)
  model, mesh = s.model, s.mesh
  logging.info("mesh %s over %d devices (%d processes), placement %s", dict(mesh.shape),
               mesh.size, jax.process_count(),
               "shared" if s.placement is None else "slices")
  if s.placement is not None:
    from path_jax.bench import device_peak as _peak
    from path_jax.parallel import placement as placement_lib
    placement_lib.log_balance(placement_lib.balance(cfg, model, s.placement),
                              _peak(cfg.model.backbone.dtype)[0])

  # ---- State: restore the newest complete checkpoint, else initialise (and load a backbone).
  checkpointer = ckpt_lib.Checkpointer(
      workdir, save_every=cfg.train.checkpoint_every, keep=cfg.train.keep_checkpoints,
      milestones=tuple(cfg.train.milestones))
  inputs = mixture.inputs_from_config(cfg.datasets, streams=host_streams(s))
  iterator = mixture.make_train_iterator(inputs, seed=cfg.seed,
                                         num_workers=cfg.input.num_workers,
                                         prefetch=cfg.input.prefetch,
                                         read_threads=cfg.input.read_threads)
  abstract, info = abstract_train_state(model, s.make_tx, s.image_shapes, mesh, s.rules,
                                        fsdp_min_size=cfg.mesh.fsdp_min_size)
  for line in info.report.lines():
    logging.info("sharding: %s", line)
  latest = checkpointer.latest_step()
  if latest is not None:
    state, meta = checkpointer.restore(abstract, iterator=iterator)
    logging.info("resumed from step %d of %s", int(state.step), workdir)
    elapsed0 = float(meta.get("elapsed_s", 0.0))
  else:
    state, info = create_train_state(model, s.make_tx, s.image_shapes, mesh, s.rules,
                                     seed=cfg.seed, fsdp_min_size=cfg.mesh.fsdp_min_size)
    if cfg.mode == "finetune" and cfg.finetune.init_from:
      state = load_backbone_into(state, cfg.finetune.init_from, strict=cfg.finetune.strict)
    elapsed0 = 0.0

  schedule = optim.make_schedule(cfg.optimizer)
  step_fn = make_step(s, info, schedule)
  weights = jnp.asarray(loss_weights(cfg, model))
  rng = jax.random.key(cfg.seed)
  total = int(cfg.train.num_steps)
  images_per_step = {n: int(cfg.datasets[n].batch_size) for n in cfg.datasets}
  from path_jax.bench import device_peak
  peak, _ = device_peak(cfg.model.backbone.dtype)
  logger = metrics_lib.MetricLogger(
      workdir, total_steps=total, log_every=cfg.train.log_every,
      flops_per_step=flops_per_step(cfg, model), peak_flops_per_device=peak)
  profiler = profiling.Profiler(workdir, cfg.train.profile.start_step,
                                cfg.train.profile.num_steps)

  def metadata(step_now):
    stats = iterator.stats()
    return {"config": cfg.to_dict(), "step": int(step_now),
            "examples_seen": {n: int(step_now) * images_per_step[n] for n in images_per_step},
            "epochs": {n: stats.get(n, {}).get("epoch", 0) for n in images_per_step},
            "elapsed_s": elapsed0 + logger.chrono.elapsed_s}

  step = int(jax.device_get(state.step))
  metrics = None
  preempted = False
  with ckpt_lib.PreemptionHandler() as preemption:
    while step < total:
      t_wait = time.perf_counter()
      host_batch = next(iterator)
      wait = time.perf_counter() - t_wait
      batch = to_global_batch(s, host_batch)
      profiler.step(step, metrics)
      state, metrics = step_fn(state, batch, weights, rng)
      step += 1
      logger.update(step, metrics, images=images_per_step, data_wait_s=wait,
                    data_stats=iterator.stats())
      if logger.last_fetched:   # host values one step late: no extra device sync
        step_lib.check_skips(logger.last_fetched, cfg.train.max_consecutive_skips,
                             logger.last_fetched_step)
      stop = preemption.should_stop(step)
      if stop or checkpointer.should_save(step) or step == total:
        with logger.paused():
          checkpointer.save(step, state, iterator, metadata(step), force=stop or step == total)
      if stop:
        preempted = True
        logging.warning("preemption signal: checkpoint of step %d saved, exiting", step)
        break
      if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < total:
        with logger.paused():
          _periodic_eval(cfg, s, state, logger, step)
  profiler.stop(metrics)
  with logger.paused():
    checkpointer.wait()
  result: dict[str, Any] = {"step": step, "preempted": preempted}
  if cfg.mode == "finetune" and not preempted:
    with logger.paused():
      result["eval"] = run_evaluation(cfg, s, state.params, state.batch_stats, workdir,
                                      writer=logger.writer, step=step)
  logger.close()
  checkpointer.close()
  iterator.close()
  return result


def host_streams(s: Setup) -> dict[str, tuple[int, int, int]] | None:
  """Which datasets this host reads, and how: ``{dataset: (shard_index, shard_count, host
  batch)}`` in placement 'slices' (only the datasets of groups with devices on this host; the
  records split over the group's hosts; the batch in proportion to this host's devices of the
  group); None in 'shared' (every dataset, split over every host)."""
  p = s.placement
  if p is None:
    return None
  me = jax.process_index()
  out = {}
  for g in p.groups:
    procs = p.processes(g)
    if me not in procs:
      continue
    k, shards = p.host_share(g, me)
    for n in g.datasets:
      out[n] = (procs.index(me), len(procs), int(s.cfg.datasets[n].batch_size) * k // shards)
  return out


def make_step(s: Setup, info, schedule):
  """The jitted training step of the run's placement."""
  if s.placement is None:
    return step_lib.make_train_step(s.model, info.tx, mesh=s.mesh,
                                    state_shardings=info.shardings, schedule=schedule,
                                    rules=s.rules, accum_steps=s.cfg.train.accum_steps)
  from path_jax import step_slices
  from path_jax.parallel import placement as placement_lib
  placement_lib.check_params(info.shardings.params)
  return step_slices.SlicedTrainStep(s.model, info.tx, placement=s.placement,
                                     state_shardings=info.shardings, schedule=schedule,
                                     rules=s.rules, accum_steps=s.cfg.train.accum_steps)


def to_global_batch(s: Setup, host_batch):
  """This host's sub-batches as global arrays: over the whole mesh ('shared') or each over its
  group's sub-mesh ('slices')."""
  from path_jax.input import global_batch
  if s.placement is None:
    return global_batch.to_global(host_batch, s.mesh)
  return {n: global_batch.to_global(b, s.placement.submeshes[s.placement.group_of(n).name],
                                   global_rows=int(s.cfg.datasets[n].batch_size))
          for n, b in host_batch.items()}


def load_backbone_into(state, path: str, *, strict: bool = False):
  """Replaces the state's backbone parameters by an exported (or PyTorch) backbone, keeping the
  state's shardings. The state's own (initialised) arrays are the template: with
  ``strict=False`` a backbone leaf the file lacks keeps its initial value (the cls position of
  the released ``wo_cls_token`` file, REFERENCE.md §1.4)."""
  from path_jax import export as export_lib
  template = state.params["backbone"]
  loaded, arch = export_lib.load_backbone(path, template, strict=strict)
  new_bb = jax.tree.map(lambda v, t: jax.device_put(jnp.asarray(v, t.dtype), t.sharding),
                        loaded, template)
  params = dict(state.params)
  params["backbone"] = new_bb
  logging.info("backbone initialised from %s (%s)", path, arch.get("variant", "?"))
  return state.replace(params=params)


def _periodic_eval(cfg, s, state, logger, step):
  """In-training hook: the cheap validation loss of every dataset with an eval split."""
  results = validation_losses(cfg, s, state)
  if results and jax.process_index() == 0:
    logger.writer.write_scalars(step, results)


def validation_losses(cfg, s, state) -> dict[str, float]:
  """Mean loss of ``train.eval_batches`` eval batches per dataset (no augmentation)."""
  from path_jax import tasks as tasks_lib
  from path_jax.input import eval as eval_input, global_batch, sources
  out = {}
  for spec in s.model.datasets:
    d = cfg.datasets[spec.name]
    split = str(d.get("eval_split", "") or "").split("+")[0]
    if not split or d.task == "reid":   # ReID eval splits hold unseen identities: no CE
      continue
    source = sources.open_source(d.tfds_name, split, d.data_dir)
    losses = []
    task = tasks_lib.get(spec.task)
    fn = _val_loss_fn(s.model, spec.name, s.rules)
    mesh, params, stats = s.mesh, state.params, state.batch_stats
    if s.placement is not None:   # on the dataset's own slices
      from path_jax import step_slices
      mesh = s.placement.submeshes[s.placement.group_of(spec.name).name]
      if not any(dev.process_index == jax.process_index() for dev in mesh.devices.flat):
        continue   # another host's stream: its hosts report it
      params, stats = step_slices.group_state(s.model, (spec.name,), params, stats,
                                              lambda x: step_slices.view(x, mesh))
    local = sum(dev.process_index == jax.process_index() for dev in mesh.devices.flat)
    it = eval_input.eval_iterator_for(d.task, d, source, d.batch_size * local // mesh.size)
    for i, batch in enumerate(it):
      if i >= cfg.train.eval_batches:
        break
      gb = global_batch.to_global(batch, mesh)
      with jax.set_mesh(mesh):   # the model's frozen copy of the dataset config is hashable
        losses.append(float(fn(params, stats, gb, task, spec.cfg)))
    if losses:
      out[f"val_loss/{spec.name}"] = float(np.mean(losses))
  return out


@functools.lru_cache(maxsize=64)
def _val_loss_fn(model, name, rules):
  import flax.linen as nn

  def fn(params, batch_stats, batch, task, d):
    variables = {"params": params}
    if batch_stats:
      variables["batch_stats"] = batch_stats
    with nn.logical_axis_rules(rules):
      out = model.apply(variables, {name: batch["image"]}, train=False)[name]
    return task.loss(out, batch, d)[0]

  return jax.jit(fn, static_argnums=(3, 4))


# ----------------------------------------------------------------------------------------------
# Evaluation and export.


def run_evaluation(cfg, s, params, batch_stats, workdir, *, writer=None, step=0
                   ) -> dict[str, dict[str, float]]:
  """Evaluates every dataset with an eval split; writes eval/results.json (+ pictures)."""
  from path_jax import evaluate as eval_lib
  out_dir = cfg.evaluate.output or os.path.join(workdir, "eval")
  results = {}
  for spec in s.model.datasets:
    d = cfg.datasets[spec.name]
    split = cfg.evaluate.split or str(d.get("eval_split", "") or "")
    if not split:
      continue
    # ReID pictures rank a gallery: keep a bounded one (the first examples of the eval set).
    keep = cfg.evaluate.pictures if d.task != "reid" or not cfg.evaluate.pictures else 2048
    metrics, samples = eval_lib.evaluate_dataset(
        s.model, params, batch_stats, spec.name, d, mesh=s.mesh, data_dir=d.data_dir,
        split=split, batch_size=cfg.evaluate.batch_size, rules=s.rules,
        num_workers=cfg.input.num_workers, keep_examples=keep)
    results[spec.name] = metrics
    if samples and cfg.evaluate.pictures and jax.process_index() == 0:
      _pictures(out_dir, spec, d, samples, cfg.evaluate.pictures, writer, step)
  if jax.process_index() == 0:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
    if writer is not None:
      writer.write_scalars(step, {f"eval/{n}/{k}": v for n, m in results.items()
                                  for k, v in m.items()})
  return results


def _pictures(out_dir, spec, d, samples, count, writer, step):
  """Draws predictions when the task has a visualiser (path_jax.tasks.<task>.visualize)."""
  import importlib
  try:
    vis = importlib.import_module(f"path_jax.tasks.{spec.task}.visualize")
    from path_jax import visualize
  except ModuleNotFoundError:
    return
  try:
    if spec.task == "reid":   # queries with their top-5 gallery matches
      b, p = samples["batch"], samples["predictions"]
      real = b["mask"].astype(bool)
      parts = [{"image": b["image"][sel], "feature": p["feature"][sel],
                "person_id": b["person_id"][sel], "camera_id": b["camera_id"][sel]}
               for sel in (real & b["is_query"], real & ~b["is_query"])]
      image = vis.draw(parts[0], parts[1], d, count)
    else:
      image = vis.draw(samples["batch"], samples["predictions"], d, count)
  except (KeyError, ValueError, TypeError) as e:   # a picture must never fail an evaluation
    logging.warning("no pictures for %s: %s", spec.name, e)
    return
  visualize.write_pictures(out_dir, step, spec.name, image, writer=writer)


def evaluate(cfg: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Evaluates the newest checkpoint of ``workdir`` (or, with none, ``finetune.init_from``'s
  backbone under freshly initialised heads) on every dataset's eval split."""
  from path_jax import checkpoint as ckpt_lib
  from path_jax.state import abstract_train_state, create_train_state
  s = setup(cfg)
  checkpointer = ckpt_lib.Checkpointer(workdir, save_every=1, keep=cfg.train.keep_checkpoints)
  if checkpointer.latest_step() is not None:
    abstract, _ = abstract_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules)
    state, _ = checkpointer.restore(abstract)
  else:
    state, _ = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules,
                                  seed=cfg.seed)
    if not cfg.finetune.init_from:
      raise FileNotFoundError(f"nothing to evaluate: {workdir} has no checkpoint and "
                              "config.finetune.init_from is empty")
    state = load_backbone_into(state, cfg.finetune.init_from, strict=cfg.finetune.strict)
  checkpointer.close()
  return run_evaluation(cfg, s, state.params, state.batch_stats, workdir,
                        step=int(jax.device_get(state.step)))


def export(cfg: ml_collections.ConfigDict, workdir: str) -> str:
  """Writes the backbone of the newest checkpoint of ``workdir`` (projectors and heads dropped)
  as an orbax checkpoint + backbone.json (+ backbone.safetensors in the MAE/timm layout)."""
  from path_jax import checkpoint as ckpt_lib
  from path_jax.state import abstract_train_state
  s = setup(cfg)
  checkpointer = ckpt_lib.Checkpointer(workdir, save_every=1, keep=cfg.train.keep_checkpoints)
  if checkpointer.latest_step() is None:
    raise FileNotFoundError(f"{workdir} has no complete checkpoint to export; train first "
                            f"(config.mode='pretrain') with --workdir={workdir}")
  abstract, _ = abstract_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules)
  state, _ = checkpointer.restore(abstract)
  checkpointer.close()
  out = cfg.export.output or os.path.join(workdir, "export")
  arch = backbone_arch(cfg)
  from path_jax import export as export_lib
  export_lib.export_backbone(out, path_lib.backbone_params(state.params), arch,
                             torch_state_dict=cfg.export.torch_state_dict)
  logging.info("exported the backbone of step %d to %s", int(jax.device_get(state.step)), out)
  return out


def backbone_arch(cfg) -> dict[str, Any]:
  """The backbone's architecture as plain values (what path_jax.model.vit.from_config needs)."""
  from path_jax import export as export_lib
  return export_lib.arch_from_config(cfg.model.backbone)


def run(cfg: ml_collections.ConfigDict, workdir: str) -> Any:
  """Dispatches on ``config.mode``."""
  if cfg.mode in ("pretrain", "finetune"):
    return train(cfg, workdir)
  if cfg.mode == "evaluate":
    return evaluate(cfg, workdir)
  if cfg.mode == "export":
    return export(cfg, workdir)
  from configs.common import MODES
  raise ValueError(f"config.mode={cfg.mode!r}; use one of {MODES}")
