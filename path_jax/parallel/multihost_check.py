"""Multi-host acceptance check: the same training steps give the same numbers on any process layout.

Run it under any launcher (``launch/local_multiprocess.sh``, ``launch/gpu_multihost.sh``, SLURM,
a TPU VM slice) and once on a single process with the same total number of devices; the JSON
files must agree::

  launch/local_multiprocess.sh 2 4 -- python -m path_jax.parallel.multihost_check \\
      --steps=3 --out=/tmp/mh_2x4.json
  JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=8 python -m path_jax.parallel.multihost_check \\
      --steps=3 --out=/tmp/mh_1x8.json

What it does: :func:`path_jax.parallel.mesh.initialize_distributed`, a tiny PATH model with three
tasks (ReID, attributes, pose; two input shapes), a mesh over all global devices
(``--mesh=-1,1,1`` or e.g. ``--mesh=2,2,2``), the sharded state from
:func:`path_jax.state.create_train_state`, then for every step the *same* global batch on every
process (NumPy, from ``--seed`` and the step), of which each process keeps only the rows its own
devices hold (:func:`process_rows`) and hands them to :func:`path_jax.input.global_batch.to_global`.
Process 0 writes ``{'losses': [{metric: float} per step], 'digest': {leaf: {...}}, ...}``;
:func:`compare` checks two such files. The default optimiser is SGD with momentum, so parameters
agree to float precision; ``--optimizer=path`` uses the project's Adafactor chain, whose
parameters only agree up to rounding-noise-driven moves of zero-gradient leaves
(:func:`make_tx_factory`): compare its losses.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Mapping, Sequence

import jax
import ml_collections as mlc
import numpy as np
from jax.sharding import Mesh, NamedSharding

from path_jax.parallel import mesh as mesh_lib

# Leading values of every flattened parameter kept in the digest (beyond the sums).
DIGEST_VALUES = 4
# Metrics of a step recorded in the output: the total, every dataset's loss and the grad norm.
_METRIC_PREFIXES = ("loss", "grad_norm")
# Peak learning rate of the 'sgd' optimiser (momentum 0.9, the config's warm-up schedule).
SGD_PEAK_LR = 0.05
OPTIMIZERS = ("sgd", "path")


def model_config(seed: int = 0) -> mlc.ConfigDict:
  """A tiny three-task PATH config: ReID and attributes at 64x32 (one shared backbone pass), pose
  at 64x48 (a second pass); backbone ``mu/16``."""
  from path_jax import optim
  from path_jax.tasks import attributes, pose, reid

  cfg = mlc.ConfigDict()
  cfg.seed = seed
  cfg.model = mlc.ConfigDict({
      "backbone": {"variant": "mu/16", "cls_token": True},
      "projector": {"kind": "paper", "share": "task"}})
  r = reid.default_config()
  r.update(task="reid", num_classes=6, classes_multiple_of=8, image_size=(64, 32))
  a = attributes.default_config()
  a.update(task="attributes", num_attributes=5, positive_ratios=(0.1, 0.3, 0.5, 0.7, 0.2),
           image_size=(64, 32))
  p = pose.default_config()
  p.update(task="pose", num_joints=5, flip_pairs=((1, 2),), image_size=(64, 48),
           deconv_features=(16, 16))
  cfg.datasets = mlc.ConfigDict({"reid": r, "attributes": a, "pose": p})
  cfg.optimizer = optim.default_config()
  cfg.optimizer.peak_lr = 1e-3
  cfg.optimizer.schedule.warmup_steps = 2
  cfg.optimizer.schedule.total_steps = 100
  return cfg


def global_batch(cfg, step: int, batch_size: int, seed: int = 0
                 ) -> dict[str, dict[str, np.ndarray]]:
  """The full global batch of ``step``: ``{dataset: {field: [batch_size, ...]}}``, identical on
  every process (a NumPy generator seeded by ``(seed, step)``)."""
  rng = np.random.default_rng((seed, step))
  out = {}
  for name in cfg.datasets:
    d = cfg.datasets[name]
    h, w = d.image_size
    b = {"image": rng.integers(0, 256, (batch_size, h, w, 3), dtype=np.uint8)}
    if d.task == "reid":
      # Identities in adjacent pairs so every device's rows hold positive pairs.
      b["label"] = np.repeat(rng.integers(0, d.num_classes, batch_size // 2), 2).astype(np.int32)
    elif d.task == "attributes":
      b["labels"] = rng.integers(-1, 2, (batch_size, d.num_attributes)).astype(np.int32)
    elif d.task == "pose":
      k = d.num_joints
      b["target"] = rng.random((batch_size, h // 4, w // 4, k)).astype(np.float32)
      b["target_weight"] = (rng.random((batch_size, k)) > 0.2).astype(np.float32)
    else:
      raise ValueError(f"multihost_check.global_batch: no batch recipe for task {d.task!r} "
                       f"(dataset {name!r}); add one or drop the dataset from model_config")
    out[name] = b
  return out


def process_rows(sharding: NamedSharding, num_rows: int) -> np.ndarray:
  """Global row indices (sorted, unique) that this process's devices hold under ``sharding``
  for an array of ``num_rows`` leading rows: the process-local data, in the order
  ``jax.make_array_from_process_local_data`` maps it onto the devices."""
  index_map = sharding.addressable_devices_indices_map((num_rows,))
  # Devices that replicate a shard (other mesh axes) name the same rows: unique() keeps one copy.
  return np.unique(np.concatenate([np.arange(*index[0].indices(num_rows)[:2])
                                   for index in index_map.values()]))


def local_batch(batch: Mapping[str, Mapping[str, np.ndarray]], mesh: Mesh
                ) -> dict[str, dict[str, np.ndarray]]:
  """This process's rows of every field of the global ``batch``."""
  from path_jax.input.global_batch import batch_spec

  out = {}
  for name, fields in batch.items():
    out[name] = {}
    for k, x in fields.items():
      rows = process_rows(NamedSharding(mesh, batch_spec(mesh, x.ndim)), x.shape[0])
      out[name][k] = x[rows]
  return out


def check_global_batch(batch: Mapping[str, Mapping[str, np.ndarray]], global_arrays: Any
                       ) -> list[str]:
  """Fields where the global arrays built from every process's rows differ from ``batch`` (the
  full NumPy batch); gathers them back to every process, so all processes must call it."""
  from jax.experimental import multihost_utils

  gathered = multihost_utils.process_allgather(global_arrays, tiled=True)
  errors = []
  for name, fields in batch.items():
    for k, x in fields.items():
      got = np.asarray(gathered[name][k])
      if got.shape != x.shape or not np.array_equal(got, x):
        errors.append(f"{name}/{k}: global array {got.shape} differs from the NumPy batch "
                      f"{x.shape}")
  return errors


def make_check_mesh(mesh_shape: Sequence[int], interleave: bool = False) -> Mesh:
  """The mesh over all global devices; ``interleave`` orders them round-robin over processes
  (process 0's first device, process 1's first, ...), so that no process holds a contiguous block
  of batch rows: the layout that needs :func:`process_rows` rather than a plain slice."""
  devices = None
  if interleave:
    by_process = [[d for d in jax.devices() if d.process_index == p]
                  for p in range(jax.process_count())]
    devices = [ds[j] for j in range(len(by_process[0])) for ds in by_process]
  return mesh_lib.make_mesh(mesh_shape, devices=devices)


def digest(params: Any) -> dict[str, dict[str, Any]]:
  """``{leaf path: {'shape', 'sum', 'abs_sum', 'first'}}`` of a tree of full NumPy arrays (float64
  sums; ``first``: the first :data:`DIGEST_VALUES` values of the flattened leaf)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    x = np.asarray(leaf, np.float64)
    out[jax.tree_util.keystr(path)] = {
        "shape": list(x.shape), "sum": float(x.sum()), "abs_sum": float(np.abs(x).sum()),
        "first": [float(v) for v in x.reshape(-1)[:DIGEST_VALUES]]}
  return out


def make_tx_factory(cfg, optimizer: str):
  """``params -> optax.GradientTransformation`` for ``optimizer``:

  * ``'sgd'``: SGD with momentum, an update linear in the gradient, so float-level differences
    between layouts stay float-level in the parameters: the digest comparison is sharp.
  * ``'path'``: the project's optimiser (path_jax.optim: Adafactor, layer decay). It normalises
    every update by the gradient's RMS, so a parameter whose gradient is zero up to rounding (the
    key part of the qkv bias: softmax ignores it) moves by +-lr in a direction set by rounding
    noise. Its final values legitimately differ between layouts; compare losses only.
  """
  import optax

  from path_jax import optim

  if optimizer == "path":
    return lambda params: optim.make_optimizer(cfg.optimizer, params)
  if optimizer == "sgd":
    sgd_cfg = mlc.ConfigDict(cfg.optimizer.to_dict())
    sgd_cfg.peak_lr = SGD_PEAK_LR
    schedule = optim.make_schedule(sgd_cfg)
    return lambda params: optax.sgd(schedule, momentum=0.9)
  raise ValueError(f"--optimizer={optimizer!r}: use one of {OPTIMIZERS}")


def run(steps: int, mesh_shape: Sequence[int] = (-1, 1, 1), batch_size: int = 16, seed: int = 0,
        interleave: bool = False, optimizer: str = "sgd", rows: str = "") -> dict[str, Any]:
  """Trains ``steps`` steps on the global mesh; returns the result every process agrees on."""
  import jax.numpy as jnp
  from jax.experimental import multihost_utils

  from path_jax import optim, step as step_lib
  from path_jax.input.global_batch import to_global
  from path_jax.model import path as path_lib
  from path_jax.state import create_train_state

  cfg = model_config(seed)
  mesh = make_check_mesh(mesh_shape, interleave)
  shards = mesh_lib.batch_shards(mesh)
  if rows:   # placement 'slices' with these rows per task group
    cfg.placement = mlc.ConfigDict(dict(mode="slices", proportions="flops", weights="",
                                        rows=rows, round_batches=False))
    for name in cfg.datasets:
      cfg.datasets[name].batch_size = batch_size
  elif batch_size % shards:
    raise ValueError(f"--batch={batch_size} must be a multiple of the {shards} batch shards of "
                     f"mesh {dict(mesh.shape)}")
  model = path_lib.from_config(cfg)
  make_tx = make_tx_factory(cfg, optimizer)
  shapes = {n: tuple(cfg.datasets[n].image_size) for n in cfg.datasets}
  state, info = create_train_state(model, make_tx, shapes, mesh, seed=seed)
  placement = None
  if rows:
    from path_jax import step_slices
    from path_jax.parallel import placement as placement_lib
    placement = placement_lib.make(cfg, mesh, model)
    problems = placement_lib.batch_problems(cfg, placement)
    if problems:
      raise ValueError("--batch does not fit --rows: " + "; ".join(problems))
    train_step = step_slices.SlicedTrainStep(
        model, info.tx, placement=placement, state_shardings=info.shardings,
        schedule=optim.make_schedule(cfg.optimizer), rules=info.rules)
  else:
    train_step = step_lib.make_train_step(
        model, info.tx, mesh=mesh, state_shardings=info.shardings,
        schedule=optim.make_schedule(cfg.optimizer), rules=info.rules)
  weights = jnp.asarray(np.linspace(0.5, 1.5, len(model.datasets)), jnp.float32)
  rng = jax.random.key(seed + 1)
  losses = []
  data_errors = []
  for i in range(steps):
    full = global_batch(cfg, i, batch_size, seed)
    if placement is None:
      batch = to_global(local_batch(full, mesh), mesh)
      if i == 0:
        data_errors = check_global_batch(full, batch)
    else:   # each dataset over its group's rows, fed by the processes that own them
      batch = {}
      for g in placement.groups:
        sub = placement.submeshes[g.name]
        if any(d.process_index == jax.process_index() for d in sub.devices.flat):
          for n in g.datasets:
            batch[n] = to_global(local_batch({n: full[n]}, sub)[n], sub,
                                 global_rows=batch_size)
    state, metrics = train_step(state, batch, weights, rng)
    # Metrics are replicated scalars: every process can read them.
    metrics = jax.device_get(metrics)
    losses.append({k: float(v) for k, v in sorted(metrics.items())
                   if k.startswith(_METRIC_PREFIXES)})
  params = multihost_utils.process_allgather(state.params, tiled=True)
  return {"process_count": jax.process_count(), "device_count": jax.device_count(),
          "local_device_count": jax.local_device_count(), "mesh": dict(mesh.shape),
          "steps": steps, "batch_size": batch_size, "seed": seed, "optimizer": optimizer,
          "placement": "slices" if placement else "shared",
          "groups": {g.name: list(g.row_ids) for g in placement.groups} if placement else None,
          "datasets": list(cfg.datasets.keys()), "data_errors": data_errors, "losses": losses,
          "digest": digest(params)}


def run_data_only(steps: int, mesh_shape: Sequence[int] = (-1, 1, 1), batch_size: int = 16,
                  seed: int = 0, interleave: bool = False) -> dict[str, Any]:
  """Only the input side of :func:`run`: every step's global batch is assembled from the
  processes' rows and gathered back for comparison; no model, compiles nothing but the gather."""
  from path_jax.input.global_batch import to_global

  cfg = model_config(seed)
  mesh = make_check_mesh(mesh_shape, interleave)
  errors = []
  for i in range(steps):
    full = global_batch(cfg, i, batch_size, seed)
    errors += [f"step {i}: {e}" for e in check_global_batch(full, to_global(local_batch(full, mesh),
                                                                            mesh))]
  return {"process_count": jax.process_count(), "device_count": jax.device_count(),
          "local_device_count": jax.local_device_count(), "mesh": dict(mesh.shape),
          "steps": steps, "batch_size": batch_size, "seed": seed, "data_errors": errors}


def _rel(a: float, b: float) -> float:
  return abs(a - b) / max(abs(a), abs(b), 1e-30)


def compare(a: Mapping[str, Any], b: Mapping[str, Any], rtol: float = 1e-5,
            atol: float = 1e-6, params: bool = True) -> list[str]:
  """Differences between two results of :func:`run` (empty when they agree): the same settings,
  every step metric and (``params``) every digest number within ``rtol`` relative or ``atol``
  absolute (for values near 0); a leaf's sum relative to its sum of magnitudes. Use ``params=False`` for the ``'path'`` optimiser
  (:func:`make_tx_factory` says why)."""
  errors = [f"data: {e}" for e in list(a.get("data_errors", [])) + list(b.get("data_errors", []))]
  for key in ("steps", "batch_size", "seed", "optimizer", "mesh", "datasets"):
    if a.get(key) != b.get(key):
      errors.append(f"setting {key} differs: {a.get(key)!r} vs {b.get(key)!r}")
  if len(a["losses"]) != len(b["losses"]):
    return [f"step counts differ: {len(a['losses'])} vs {len(b['losses'])}"]
  for i, (ma, mb) in enumerate(zip(a["losses"], b["losses"])):
    if set(ma) != set(mb):
      errors.append(f"step {i}: metric names differ: {sorted(set(ma) ^ set(mb))}")
    for k in sorted(set(ma) & set(mb)):
      if not (math.isfinite(ma[k]) and math.isfinite(mb[k])):
        errors.append(f"step {i} {k}: non-finite {ma[k]} vs {mb[k]}")
      elif abs(ma[k] - mb[k]) > atol and _rel(ma[k], mb[k]) > rtol:
        errors.append(f"step {i} {k}: {ma[k]!r} vs {mb[k]!r} (rel {_rel(ma[k], mb[k]):.2e})")
  da, db = a["digest"], b["digest"]
  if not params:
    da = {k: dict(v, sum=0.0, abs_sum=0.0, first=[]) for k, v in da.items()}
    db = {k: dict(v, sum=0.0, abs_sum=0.0, first=[]) for k, v in db.items()}
  if set(da) != set(db):
    errors.append(f"parameter leaves differ: {sorted(set(da) ^ set(db))[:10]}")
  for leaf in sorted(set(da) & set(db)):
    la, lb = da[leaf], db[leaf]
    if la["shape"] != lb["shape"]:
      errors.append(f"{leaf}: shape {la['shape']} vs {lb['shape']}")
      continue
    # A sum's rounding error scales with the sum of magnitudes, not with the (cancelling) sum.
    sum_scale = max(la["abs_sum"], lb["abs_sum"])
    pairs = [("sum", la["sum"], lb["sum"], sum_scale),
             ("abs_sum", la["abs_sum"], lb["abs_sum"], 0.0)]
    pairs += [(f"first[{j}]", x, y, 0.0)
              for j, (x, y) in enumerate(zip(la["first"], lb["first"]))]
    for what, x, y, scale in pairs:
      diff = abs(x - y)
      if diff > atol and diff > rtol * max(abs(x), abs(y), scale):
        errors.append(f"{leaf} {what}: {x!r} vs {y!r} (difference {diff:.2e})")
  return errors


def _parse_shape(text: str) -> tuple[int, ...]:
  try:
    shape = tuple(int(s) for s in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"--mesh={text!r}: give three integers 'data,fsdp,model', "
                                     "one may be -1 (e.g. -1,1,1 or 2,2,2)") from None
  if len(shape) != 3:
    raise argparse.ArgumentTypeError(f"--mesh={text!r}: give three integers 'data,fsdp,model'")
  return shape


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m path_jax.parallel.multihost_check",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=3, help="training steps (default 3)")
  parser.add_argument("--out", required=True, help="JSON file that process 0 writes")
  parser.add_argument("--mesh", type=_parse_shape, default=(-1, 1, 1),
                      help="mesh shape data,fsdp,model; one entry may be -1 (default -1,1,1)")
  parser.add_argument("--batch", type=int, default=16,
                      help="global sub-batch size of every dataset (default 16)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--compare", metavar="OTHER_JSON", default="",
                      help="after writing --out, compare it with this file; exit 1 on a mismatch")
  parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                      help="sgd (default; parameters comparable to 1e-5) or path (the project's "
                      "Adafactor; compare losses only, see make_tx_factory)")
  parser.add_argument("--interleave", action="store_true",
                      help="order the mesh's devices round-robin over processes (see "
                      "make_check_mesh)")
  parser.add_argument("--data-only", action="store_true",
                      help="check only that every process's rows assemble the global batches "
                      "(no model; seconds); exit 1 when they do not")
  parser.add_argument("--rows", default="",
                      help="placement 'slices' with these data rows per task group, e.g. "
                      "'reid=1,attributes=2,pose=5' (default: placement 'shared')")
  parser.add_argument("--distributed", choices=("auto", "on", "off"), default="auto",
                      help="jax.distributed.initialize mode (mesh.initialize_distributed)")
  args = parser.parse_args(argv)
  # Must run before anything touches a JAX backend.
  mesh_lib.initialize_distributed(args.distributed)
  if args.data_only:
    result = run_data_only(args.steps, args.mesh, args.batch, args.seed, args.interleave)
  else:
    result = run(args.steps, args.mesh, args.batch, args.seed, args.interleave, args.optimizer,
                 args.rows)
  status = 1 if result["data_errors"] else 0
  if status:
    print("multihost_check: global batches differ from the NumPy batches:\n  "
          + "\n  ".join(result["data_errors"][:30]), file=sys.stderr, flush=True)
  if args.data_only:
    if jax.process_index() == 0:
      with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
      print(f"multihost_check --data-only: {result['process_count']} processes x "
            f"{result['local_device_count']} devices, mesh {result['mesh']}, "
            f"{len(result['data_errors'])} errors -> {args.out}", flush=True)
    return status
  if jax.process_index() == 0:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
    last = result["losses"][-1]["loss"] if result["losses"] else float("nan")
    print(f"multihost_check: {result['process_count']} processes x "
          f"{result['local_device_count']} devices, mesh {result['mesh']}, {args.steps} steps, "
          f"last loss {last:.6f} -> {args.out}", flush=True)
    if args.compare:
      with open(args.compare) as f:
        errors = compare(result, json.load(f), params=args.optimizer == "sgd")
      if errors:
        print("multihost_check: MISMATCH with " + args.compare + "\n  " + "\n  ".join(errors[:30]),
              file=sys.stderr, flush=True)
        return 1
      print(f"multihost_check: agrees with {args.compare}", flush=True)
  return status


if __name__ == "__main__":
  sys.exit(main())
