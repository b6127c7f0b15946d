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
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from path_jax import optim
from path_jax import step as step_lib
from path_jax.model import path as path_lib
from path_jax.model import vit as vit_lib
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
  """Takes each dataset's counts from its prepared data's ``metadata.json``: ReID classes
  (``num_train_ids``), attribute counts (and positive ratios), pose joints, parsing classes,
  and the detection target budget (``max_boxes``/``max_ignore``: the most persons / ignore
  regions in one image, path_jax.tasks.detection.budget).

  A field left unset (None) is filled; a set field that disagrees with the metadata is an error
  (:class:`path_jax.config_check.ConfigError`, every disagreement at once, each naming the key,
  both numbers and the fix). Without metadata nothing is checked. ``placeholders``: where the
  metadata is missing, fill :data:`PLACEHOLDER_COUNTS` (and positive ratios of 0.5) instead of
  failing; returns the ``config.datasets.<name>.<field>`` keys so filled."""
  from path_jax.input import sources
  # task -> (config field, metadata key, what the number counts)
  counts = {"reid": [("num_classes", "num_train_ids", "training identities")],
            "attributes": [("num_attributes", "num_attributes", "attributes")],
            "pose": [("num_joints", "num_joints", "joints")],
            "parsing": [("num_classes", "num_classes", "classes")]}
  filled, problems = [], []
  for name in cfg.datasets:
    d = cfg.datasets[name]
    if d.task == "detection":   # the target budget: the data's recorded maxima when unset
      from path_jax.tasks.detection import budget
      try:
        meta = read_metadata(d.tfds_name, _dataset_dir(d, cfg.data_dir))
        where = os.path.join(sources.dataset_dir(d.tfds_name, _dataset_dir(d, cfg.data_dir)),
                             "metadata.json")
      except (FileNotFoundError, ValueError):
        meta, where = {}, ""
      with d.unlocked():
        budget.fill_from_metadata(d, meta, name=name, where=where)
      continue
    if d.task not in counts:
      continue
    data_dir = _dataset_dir(d, cfg.data_dir)
    needs = any(d.get(f, None) is None for f, _, _ in counts[d.task]) or (
        d.task == "attributes" and d.get("positive_ratios", None) is None)
    try:
      meta = read_metadata(d.tfds_name, data_dir)
      where = os.path.join(sources.dataset_dir(d.tfds_name, data_dir), "metadata.json")
    except (FileNotFoundError, ValueError) as e:   # not prepared / no data_dir
      if needs and (not placeholders or isinstance(e, ValueError)):
        raise
      meta, where = {}, ""
    ratios = meta.get("positive_ratio") if d.task == "attributes" else None
    if d.task == "attributes" and "num_attributes" not in meta and ratios is not None:
      meta = dict(meta, num_attributes=len(ratios))
    key = f"config.datasets.{name}"

    def disagree(field, value, have, what):
      problems.append(
          f"{key}.{field}={value} but the prepared data ({where}) has {have:,} {what}; drop the "
          f"override (leave it None: the data decides) or set it to {have} "
          f"(--{key}.{field}={have})")

    with d.unlocked():
      for field, meta_key, what in counts[d.task]:
        value = d.get(field, None)
        if meta_key in meta:
          have = int(meta[meta_key])
          if value is None:
            d[field] = have
          elif int(value) != have:
            disagree(field, value, have, what)
        elif value is None and placeholders and d.task != "parsing" and not (
            d.task == "attributes" and d.get("positive_ratios", None) is not None):
          d[field] = PLACEHOLDER_COUNTS[field]
          filled.append(f"{key}.{field}")
      if d.task == "attributes":
        given = d.get("positive_ratios", None)
        if given is None and ratios is not None:
          d.positive_ratios = tuple(float(r) for r in ratios)
        elif given is None and placeholders:
          d.positive_ratios = tuple([0.5] * int(d.num_attributes))
          filled.append(f"{key}.positive_ratios")
        elif given is None:
          d.positive_ratios = tuple(float(r) for r in _need(meta, "positive_ratio", name,
                                                             "positive_ratios", where))
        elif ratios is not None and len(given) != len(ratios):
          problems.append(
              f"{key}.positive_ratios has {len(given)} entries but the prepared data ({where}) "
              f"has {len(ratios)} attributes; drop the override (leave it None: the data's "
              f"ratios are used) or give one ratio per attribute")
        if d.get("num_attributes", None) is None:
          d.num_attributes = len(d.positive_ratios)
      for field, meta_key, _ in counts[d.task]:
        if d.get(field, None) is None:
          d[field] = int(_need(meta, meta_key, name, field, where))
  if problems:
    from path_jax import config_check
    raise config_check.ConfigError(problems, "the config disagrees with the prepared data")
  return filled


def _need(meta, key, dataset, field, where: str = ""):
  if key not in meta:
    place = f" ({where})" if where else ""
    raise KeyError(f"config.datasets.{dataset}.{field} is unset and the prepared dataset's "
                   f"metadata.json{place} has no {key!r}; set the field in the config "
                   f"(--config.datasets.{dataset}.{field}=N)")
  return meta[key]


def check_config(cfg: ml_collections.ConfigDict, mesh, *, num_hosts: int | None = None,
                 check_data: bool = True) -> None:
  """Everything that can be checked before any compute or any write: every field of the config
  (path_jax.config_check), batch sizes against the mesh and hosts, prepared data present (and of
  the kind the config expects: real or humanbench_mini).

  Raises :class:`path_jax.config_check.ConfigError` listing every problem at once, each naming
  its full key. ``num_hosts``: the processes that feed the mesh (default
  ``jax.process_count()``; an ahead-of-time compile passes the target topology's).
  ``check_data=False`` skips the checks of prepared data (compiling for a pod on a host without
  the data)."""
  from path_jax import config_check
  num_hosts = jax.process_count() if num_hosts is None else int(num_hosts)
  problems = config_check.field_problems(cfg)
  if cfg.mode != "pretrain" and cfg.finetune.protocol == "partial" and not problems:
    from path_jax import export as export_lib
    depth = export_lib.arch_from_config(cfg.model.backbone)["depth"]
    if not 0 <= int(cfg.finetune.open_last) <= depth:
      problems.append(f"config.finetune.open_last={cfg.finetune.open_last}: protocol 'partial' "
                      f"opens the last N of the backbone's {depth} blocks, so N must lie in "
                      f"0..{depth} (config.model.backbone.depth)")
  from path_jax.parallel import placement as placement_lib
  mode = cfg.get("placement", {}).get("mode", "shared")
  config_check.choice(problems, "config.placement.mode", mode, placement_lib.MODES)
  # 'slices': sub-batches divide over their group's rows, checked once the groups are known.
  shared = mode == "shared"
  shards = mesh_lib.batch_shards(mesh)
  fit = []
  for name in cfg.datasets:
    b = cfg.datasets[name].get("batch_size", 0)
    if not shared or not isinstance(b, int) or b < 1:
      continue
    if b % shards:
      fit.append(f"config.datasets.{name}.batch_size={b} is not a multiple of the {shards} "
                 f"batch shards of mesh {dict(mesh.shape)}")
    if b % num_hosts:
      fit.append(f"config.datasets.{name}.batch_size={b} does not split over {num_hosts} hosts")
  if fit:
    unit = math.lcm(shards, num_hosts)
    fit.append(f"every sub-batch must be a multiple of {unit} on this mesh: set the batch sizes, "
               f"or for the pretraining configs (configs/vitb.py, vitl.py) pass ':divisor={unit}' "
               f"(e.g. --config=configs/vitb.py:divisor={unit})")
  problems += fit
  if check_data and not problems:
    problems += data_problems(cfg)
  if problems:
    raise config_check.ConfigError(problems)


MINI_BUILD = "python -m data.humanbench_mini.build_all --data_dir={data_dir}"


def data_problems(cfg) -> list[str]:
  """Prepared data: one line per missing dataset or split (evaluation splits when the run
  evaluates: finetuning, evaluation, or pretraining with ``train.eval_every`` or
  ``train.metrics_every``), the command that prepares it, and ``data_kind`` (humanbench_mini data under a real config, or the reverse, is refused)."""
  from path_jax.input import sources
  kind = cfg.get("data_kind", "real")
  missing, wrong, commands, seen = [], [], [], set()
  # Pretraining reads evaluation splits only for its periodic evaluations.
  evaluates = cfg.mode != "pretrain" or bool(
      cfg.train.get("eval_every", 0) or cfg.train.get("metrics_every", 0))
  for name in cfg.datasets:
    d = cfg.datasets[name]
    data_dir = _dataset_dir(d, cfg.data_dir)
    checks = [(d.tfds_name, d.split, data_dir)] if cfg.mode in ("pretrain", "finetune") else []
    eval_name = str(d.get("eval_tfds_name", "") or d.tfds_name)
    eval_dir = str(d.get("eval_data_dir", "") or data_dir)   # path_jax.evaluate reads it too
    if evaluates:
      checks += [(eval_name, s, eval_dir)
                 for s in str(d.get("eval_split", "") or "").split("+") if s]
    for tfds_name, split, data_dir in checks:
      if (tfds_name, data_dir) in seen:
        continue
      try:
        folder = sources.check_prepared(tfds_name, split, data_dir)
      except FileNotFoundError:
        seen.add((tfds_name, data_dir))
        missing.append(f"config.datasets.{name}: {tfds_name!r} is not prepared in {data_dir}")
        commands.append(MINI_BUILD.format(data_dir=data_dir) if kind == "humanbench_mini" else
                        f"python data/build.py {tfds_name} --manual_dir=<its source folder, "
                        f"layout in data/README.md> --data_dir={data_dir}")
        continue
      except ValueError as e:
        missing.append(f"config.datasets.{name}: {e}")
        continue
      if (tfds_name, data_dir, "kind") in seen:
        continue
      seen.add((tfds_name, data_dir, "kind"))
      built = sources.data_kind(folder)
      if built != kind:
        wrong.append(
            f"config.datasets.{name}: {folder} holds {built} data, but config.data_kind="
            f"{kind!r}; " + (
                f"the synthetic humanbench_mini sets reuse the real datasets' names: point "
                f"--config.data_dir at the real prepared data (or build it with data/build.py)"
                if kind == "real" else
                f"rebuild humanbench_mini there ({MINI_BUILD.format(data_dir=data_dir)}) or "
                f"point --config.data_dir at it"))
  out = missing + wrong
  if commands:
    out.append("prepare the missing data with:\n      " + "\n      ".join(dict.fromkeys(commands)))
  if missing:
    out.append("or point the run at prepared data with --config.data_dir=DIR (a dataset's own "
               "--config.datasets.<name>.data_dir wins)")
  return out


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
  adopt_backbone_arch(cfg)
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
  make_tx = functools.partial(optim.make_optimizer, cfg.optimizer,
                              num_steps=int(cfg.train.num_steps))
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
  logging.info("%s the train state (%.1f M parameters)...",
               "restoring" if latest is not None else "initialising",
               sum(math.prod(x.shape) for x in jax.tree.leaves(abstract.params)) / 1e6)
  if latest is not None:
    state, meta = checkpointer.restore(abstract, iterator=iterator)
    logging.info("resumed from step %d of %s", int(state.step), workdir)
    elapsed0 = float(meta.get("elapsed_s", 0.0))
  else:
    state, info = initial_state(s)
    elapsed0 = 0.0

  schedule = optim.make_schedule(cfg.optimizer, int(cfg.train.num_steps))
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
  from path_jax import watchdog as watchdog_lib
  with ckpt_lib.PreemptionHandler() as preemption, \
      watchdog_lib.StopWatchdog(cfg.train.stop_timeout_s) as watch:
    while step < total:
      watch.phase(f"step {step + 1}: reading its input batch")
      t_wait = time.perf_counter()
      host_batch = next(iterator)
      wait = time.perf_counter() - t_wait
      batch = to_global_batch(s, host_batch)
      profiler.step(step, metrics)
      first = metrics is None
      if first:
        watch.phase(f"step {step + 1}: compiling the train step")
        logging.info("compiling the train step (%d datasets, %d images/step)...",
                     len(images_per_step), sum(images_per_step.values()))
        t_compile = time.perf_counter()
      state, metrics = step_fn(state, batch, weights, rng)
      if first:
        logging.info("train step compiled and dispatched in %.1f s",
                     time.perf_counter() - t_compile)
      step += 1
      watch.phase(f"step {step}: waiting for the device (metrics of step {step - 1})")
      logger.update(step, metrics, images=images_per_step, data_wait_s=wait,
                    data_stats=iterator.stats())
      if logger.last_fetched:   # host values one step late: no extra device sync
        step_lib.check_skips(logger.last_fetched, cfg.train.max_consecutive_skips,
                             logger.last_fetched_step)
      stop = preemption.should_stop(step)
      if stop or checkpointer.should_save(step) or step == total:
        watch.phase(f"saving the checkpoint of step {step} (waits for the step to finish)")
        with logger.paused():
          checkpointer.save(step, state, iterator, metadata(step), force=stop or step == total)
      if stop:
        preempted = True
        watch.phase(f"writing the checkpoint of step {step} to disk")
        with logger.paused():
          checkpointer.wait()
        logging.warning("preemption signal: checkpoint of step %d saved, exiting (exit code 75: "
                        "run the same command again to resume)", step)
        break
      if cfg.train.eval_every and step % cfg.train.eval_every == 0 and step < total:
        watch.phase(f"step {step}: periodic evaluation")
        with logger.paused():
          _periodic_eval(cfg, s, state, logger, step)
      every = int(cfg.train.get("metrics_every", 0) or 0)
      if every and step % every == 0:
        watch.phase(f"step {step}: task metrics on the eval splits")
        with logger.paused():
          run_evaluation(cfg, s, state.params, state.batch_stats, workdir, writer=logger.writer,
                         step=step, output=os.path.join(workdir, "eval_steps", str(step)),
                         max_examples=int(cfg.train.metrics_max_examples))
    watch.phase("finishing: the last checkpoint's writes")
    profiler.stop(metrics)
    with logger.paused():
      checkpointer.wait()
  result: dict[str, Any] = {"step": step, "preempted": preempted}
  if cfg.mode == "finetune" and not preempted:
    with logger.paused():
      result["eval"] = run_evaluation(cfg, s, state.params, state.batch_stats, workdir,
                                      writer=logger.writer, step=step)
  logger.close()
  result["final_metrics"] = dict(logger.last_fetched)
  result["final_step"] = logger.last_fetched_step
  checkpointer.close()
  iterator.close()
  return result


def initial_state(s: Setup):
  """A fresh run's state: initialised, then its backbone loaded from ``finetune.init_from``
  (finetuning) or ``model.init_from`` (pretraining from MAE/timm/PATH weights, REFERENCE.md
  §1.4; heads and projectors stay initialised). Returns ``(state, info)``."""
  from path_jax.state import create_train_state
  cfg = s.cfg
  state, info = create_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules,
                                   seed=cfg.seed, fsdp_min_size=cfg.mesh.fsdp_min_size)
  if cfg.mode == "finetune" and cfg.finetune.init_from:
    state = load_backbone_into(state, cfg.finetune.init_from, strict=cfg.finetune.strict)
  elif cfg.mode == "pretrain" and cfg.model.get("init_from", ""):
    # MAE's file holds its decoder and mask token too: skipped (strict=False), as the authors'
    # load_checkpoint did.
    state = load_backbone_into(state, cfg.model.init_from, strict=False,
                               pos_grid=tuple(cfg.model.backbone.get("pos_grid", (14, 14))))
  return state, info


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


def load_backbone_into(state, path: str, *, strict: bool = False,
                       pos_grid: tuple[int, int] = (14, 14)):
  """Replaces the state's backbone parameters by an exported (or PyTorch) backbone, keeping the
  state's shardings. The state's own (initialised) arrays are the template: with
  ``strict=False`` a backbone leaf the file lacks keeps its initial value (the cls position of
  the released ``wo_cls_token`` file, REFERENCE.md §1.4)."""
  from path_jax import export as export_lib
  template = state.params["backbone"]
  keyed = vit_lib.keyed_pos_names(template)
  if keyed:
    # Per-dataset / per-size embeddings (model.backbone.pos_embed): the file holds one, in the
    # shared layout; load into that layout, then resize it to every keyed grid.
    first = template[keyed[0]]
    std = {k: v for k, v in template.items() if k not in keyed}
    std["pos_embed"] = jax.ShapeDtypeStruct(tuple(pos_grid) + first.shape[-1:], first.dtype,
                                            sharding=first.sharding)
    loaded, arch = export_lib.load_backbone(path, std, strict=strict)
    loaded = vit_lib.from_shared_pos(dict(loaded), template)
  else:
    loaded, arch = export_lib.load_backbone(path, template, strict=strict)
  new_bb = jax.tree.map(lambda v, t: jax.device_put(jnp.asarray(v, t.dtype), t.sharding),
                        loaded, template)
  params = dict(state.params)
  params["backbone"] = new_bb
  logging.info("backbone initialised from %s (%s)", path, ", ".join(
      f"{k} {arch[k]}" for k in ("variant", "width", "depth", "num_heads", "mlp_dim",
                                 "patch_size", "pos_grid") if k in arch))
  return state.replace(params=params)


def adopt_backbone_arch(cfg: ml_collections.ConfigDict) -> dict[str, Any] | None:
  """Finetuning or evaluating from ``config.finetune.init_from``: the backbone's architecture is
  the weights' (an export's backbone.json; a .pth/.safetensors/.npz state dict's tensor shapes).
  It is written into ``config.model.backbone`` before the model is built, and logged.

  Which config values count as the user's: those that differ from ``configs.common.base_config()``
  (variant 'B/16', sizes None = the variant's, pos_grid (14, 14), cls_token True: what every
  configs/finetune/ file gives; a variant other than 'B/16' declares all its sizes). A default
  value takes the weights'; a user's value that contradicts the weights is refused
  (:class:`path_jax.config_check.ConfigError` naming both). So configs/demo.py and
  configs/mini_suite.py, which pin the demo's tiny backbone, load backbones of that shape only
  (path_jax.suite writes an export's architecture into them first).

  A state dict stores no head count: ``num_heads`` is that of the standard variant with the same
  sizes (path_jax.model.vit.VARIANTS), else the config's explicit one, else refused. Its grid is
  adopted over the default only (an explicit ``pos_grid`` is resampled at load) and its cls token
  is left to the config (the loader drops it or, with ``strict=False``, keeps the initial one).
  Returns the architecture the model will have; None when the run loads no backbone (or its file
  is missing or its variant unknown: check_config reports those).
  """
  if cfg.mode not in ("finetune", "evaluate") or not cfg.finetune.init_from:
    return None
  import re
  from etils import epath
  from configs import common
  from path_jax import config_check
  from path_jax import export as export_lib
  from path_jax.model import convert, vit as vit_lib
  path = epath.Path(cfg.finetune.init_from)
  b = cfg.model.backbone
  if not path.exists() or b.variant not in vit_lib.VARIANTS:
    return None   # check_config names the missing file / the unknown variant
  sizes = ("width", "depth", "num_heads", "mlp_dim", "patch_size")
  export_dir = export_lib._export_dir(path)   # the format owner's resolver
  if export_dir is not None:
    source = os.fspath(export_dir / "backbone.json")
    with open(source) as f:
      arch = json.load(f).get("arch") or {}
    weights = {k: arch[k] for k in ("variant",) + sizes + ("pos_grid", "cls_token") if k in arch}
  else:
    source = f"{path}'s tensor shapes"
    sd = convert.load_state_dict(os.fspath(path))
    if "patch_embed.proj.weight" not in sd or "blocks.0.mlp.fc1.weight" not in sd:
      return None   # not a ViT backbone: the loader names what is missing
    kernel = sd["patch_embed.proj.weight"]
    weights = dict(width=int(kernel.shape[0]), patch_size=int(kernel.shape[-1]),
                   depth=1 + max(int(m.group(1)) for k in sd
                                 if (m := re.match(r"blocks\.(\d+)\.", k))),
                   mlp_dim=int(sd["blocks.0.mlp.fc1.weight"].shape[0]))
    rows = int(np.prod(sd["pos_embed"].shape[:-1])) if "pos_embed" in sd else 0
    for n in (rows, rows - 1):      # a square grid, or a cls row + a square grid
      side = math.isqrt(max(n, 0))
      if n > 0 and side * side == n:
        weights["pos_grid"] = [side, side]
        break
    same = [v for v, (w, d, h, m, p) in vit_lib.VARIANTS.items()
            if (w, d, m, p) == tuple(weights[k] for k in ("width", "depth", "mlp_dim",
                                                          "patch_size"))]
    if same:
      weights.update(variant=same[0], num_heads=vit_lib.VARIANTS[same[0]][2])
  default = common.base_config().model.backbone
  have = export_lib.arch_from_config(b)

  def explicit(k):
    if k in sizes:
      return b.get(k, None) is not None or b.variant != default.variant
    return json.dumps(list(b[k]) if k == "pos_grid" else b[k]) != json.dumps(
        list(default[k]) if k == "pos_grid" else default[k])

  def shown(k):
    if k in sizes and b.get(k, None) is None:
      return f"variant={b.variant!r} (its {k} {have[k]})"
    return f"{k}={have[k]!r}"

  problems, adopt = [], {}
  for k in sizes + ("pos_grid", "cls_token"):
    if k not in weights:
      if k == "num_heads" and not explicit(k):
        problems.append(
            f"config.model.backbone.num_heads: a state dict stores no head count and {source} "
            f"({', '.join(f'{j} {weights[j]}' for j in sizes if j in weights)}) match no "
            f"standard variant ({sorted(vit_lib.VARIANTS)}); set "
            f"--config.model.backbone.num_heads to the head count it was trained with")
      continue
    want = weights[k]
    if json.dumps(list(want) if k == "pos_grid" else want) == json.dumps(
        list(have[k]) if k == "pos_grid" else have[k]):
      continue
    if export_dir is None and k in ("pos_grid", "num_heads") and explicit(k):
      continue   # the loader resamples the file's grid; its head count was only a guess
    if explicit(k):
      problems.append(
          f"config.model.backbone.{shown(k)} but the backbone to load ({source}) has {k} "
          f"{want!r}: drop the override (the weights decide the architecture) or load a "
          f"backbone with {k} {have[k]!r} (config.finetune.init_from)")
    else:
      adopt[k] = want
  if problems:
    raise config_check.ConfigError(
        problems, "the config contradicts the backbone it loads (config.finetune.init_from)")
  before = {k: have[k] for k in adopt}
  if any(k in sizes for k in adopt):
    if "variant" in weights:
      b.variant = str(weights["variant"])
    for k in sizes:   # all explicit, so the variant name cannot change them
      b[k] = int(adopt.get(k, have[k]))
  if "pos_grid" in adopt:
    b.pos_grid = tuple(int(g) for g in adopt["pos_grid"])
  if "cls_token" in adopt:
    b.cls_token = bool(adopt["cls_token"])
  result = export_lib.arch_from_config(b)
  logging.info(
      "backbone architecture from %s: %s%s", source,
      ", ".join(f"{k} {result[k]}" for k in ("variant",) + sizes + ("pos_grid", "cls_token")),
      f" (adopted {', '.join(adopt)}; the config had {before})" if adopt else "")
  return result


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


def run_evaluation(cfg, s, params, batch_stats, workdir, *, writer=None, step=0, output="",
                   max_examples: int = 0) -> dict[str, dict[str, float]]:
  """Evaluates every dataset with an eval split; writes results.json (+ pictures) into
  ``output`` (default ``config.evaluate.output`` or WORKDIR/eval). ``max_examples`` > 0: only
  the first that many examples of each split (task metrics during pretraining)."""
  from path_jax import evaluate as eval_lib
  out_dir = output or cfg.evaluate.output or os.path.join(workdir, "eval")
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
        num_workers=cfg.input.num_workers, keep_examples=keep, max_examples=max_examples)
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
  bb = state.params["backbone"]
  export_lib.export_backbone(
      out, path_lib.backbone_params(state.params, cfg.model.backbone, list(cfg.datasets)), arch,
      torch_state_dict=cfg.export.torch_state_dict)
  report = export_report(workdir, int(jax.device_get(state.step)), checkpointer.set_aside)
  if vit_lib.keyed_pos_names(bb):
    source = path_lib.export_pos_source(bb, cfg.model.backbone, list(cfg.datasets))
    report["pos_embed"] = {
        "mode": cfg.model.backbone.pos_embed, "exported": source,
        "from_grid": list(bb[vit_lib.POS_PREFIX + source].shape[:2]),
        "to_grid": list(cfg.model.backbone.pos_grid),
        "not_exported": [n[len(vit_lib.POS_PREFIX):] for n in vit_lib.keyed_pos_names(bb)
                         if n != vit_lib.POS_PREFIX + source]}
    logging.info("the run has one positional embedding per %s; the export holds %r's, resized "
                 "to %s (config.model.backbone.export_pos_from)", cfg.model.backbone.pos_embed,
                 source, tuple(cfg.model.backbone.pos_grid))
  if jax.process_index() == 0:
    with open(os.path.join(out, EXPORT_REPORT), "w") as f:
      json.dump(report, f, indent=1)
  logging.info("exported the backbone of step %d to %s", report["step"], out)
  if report["fallback"]:
    logging.warning("%s", export_message(report, out))
  return out


EXPORT_REPORT = "export_report.json"


def export_report(workdir: str, step: int, set_aside) -> dict[str, Any]:
  """Which step an export came from, and every newer step that was set aside as damaged (by
  this restore, or earlier: ``checkpoints.corrupt/``), so a fallback export cannot pass
  unnoticed."""
  from path_jax import checkpoint as ckpt_lib
  newer = {}
  corrupt = os.path.join(workdir, ckpt_lib.CORRUPT_SUBDIR)
  if os.path.isdir(corrupt):
    for name in sorted(os.listdir(corrupt)):
      head = name.split(".")[0]
      if head.isdigit() and int(head) > step:
        newer[name] = {"step": int(head), "moved_to": os.path.join(corrupt, name),
                       "reason": "set aside by an earlier run (see its log)"}
  for e in set_aside:
    if int(e["step"]) > step:
      moved = e.get("moved_to") or ""
      newer[os.path.basename(str(moved)) or str(e["step"])] = {
          "step": int(e["step"]), "moved_to": moved and str(moved), "reason": str(e["reason"])}
  return {"workdir": os.path.abspath(workdir), "step": step, "fallback": bool(newer),
          "newer_steps_set_aside": sorted(newer.values(), key=lambda r: r["step"])}


def export_message(report: Mapping[str, Any], out: str) -> str:
  """The export's result in words; loud when it is not the newest step."""
  if not report["fallback"]:
    return f"exported the backbone of step {report['step']} to {out}"
  lines = [f"FALLBACK EXPORT: {out} holds step {report['step']}, NOT the newest step of the "
           f"run; newer checkpoints were damaged and set aside:"]
  lines += [f"  step {r['step']}: {r['reason']} (now {r['moved_to']})"
            for r in report["newer_steps_set_aside"]]
  lines.append("Retrain from the exported step, or repair the damaged step and export again.")
  return "\n".join(lines)


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
