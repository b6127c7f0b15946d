"""Alternative (a) of the 'slices' placement, kept to measure it against the chosen one.

PLACEMENT.md compares two mechanisms. (b), one program per task group plus an update, is what
``path_jax.step_slices`` implements and ``main`` runs. (a), built here, is one SPMD program:
``jax.shard_map`` over the data axis. Each row switches (``lax.switch``) to its group's
computation on its own rows, and one ``psum`` sums every row's contribution.

Differences from (b):
- Every dataset's batch array covers every row. Rows of other groups hold zeros there:
  `(a)`'s input layout.
- Losses are per-row means scaled by 1 / (the group's rows), as in data-parallel PyTorch. Batch
  statistics that a task computes over the whole sub-batch (triplet mining, per-pixel means) are
  therefore per row.

Not used for training. Run it the way the README's table was measured::

  python -m path_jax.parallel.spmd_alternative --config=configs/vitb.py:placement=slices \\
      --topology=v5p:4x4x4 [--config.model.backbone.dtype=bfloat16]
"""
from __future__ import annotations

import functools
import os
import sys
import time
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from path_jax import step as step_lib
from path_jax.step_slices import group_keys


def make_step(model, tx, placement, *, metric_keys: Sequence[str], schedule=None):
  """``step(state, batches, loss_weights, rng) -> (state, metrics)``. ``batches[d]`` has
  ``rows x (B_d / group rows)`` images sharded over the data axis (see :func:`row_batches`)."""
  mesh = placement.mesh
  if mesh.shape.get("fsdp", 1) != 1 or mesh.shape.get("model", 1) != 1:
    raise ValueError("spmd_alternative: the data axis only (mesh.shape = (-1, 1, 1))")
  group_of_row = np.zeros((int(mesh.shape["data"]),), np.int32)
  for i, g in enumerate(placement.groups):
    group_of_row[list(g.row_ids)] = i

  def branch(g, params, batch_stats, batches, loss_weights, rng):
    keys = group_keys(model, g.datasets, params)
    _, metrics, stats, grads = step_lib.compute_grads(
        {k: params[k] for k in keys}, {k: batch_stats[k] for k in keys if k in batch_stats},
        {n: batches[n] for n in g.datasets}, loss_weights, rng, model=model)
    scale = 1.0 / g.rows
    full = lambda got, tree: {   # noqa: E731
        k: jax.tree.map(lambda x: x * scale, got[k]) if k in got
        else jax.tree.map(jnp.zeros_like, v) for k, v in tree.items()}
    m = {k: metrics[k] * scale if k in metrics else jnp.zeros((), jnp.float32)
         for k in metric_keys}
    return full(grads, params), full(stats, batch_stats), m

  def body(params, batch_stats, batches, loss_weights, rng, step):
    rng = jax.random.fold_in(rng, step)
    branches = [functools.partial(branch, g) for g in placement.groups]
    out = jax.lax.switch(jnp.asarray(group_of_row)[jax.lax.axis_index("data")], branches,
                         params, batch_stats, batches, loss_weights, rng)
    return jax.lax.psum(out, "data")

  def step(state, batches, loss_weights, rng):
    f = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(), P("data"), P(), P(), P()),
                      out_specs=P(), check_vma=False)
    grads, stats, metrics = f(state.params, state.batch_stats, batches, loss_weights, rng,
                              state.step)
    return step_lib.apply_grads(state, grads, metrics["loss"], metrics, stats, loss_weights,
                                model=model, tx=tx, schedule=schedule,
                                present=step_lib.dataset_names(model))

  return step


def row_batches(batches: Mapping[str, Mapping[str, np.ndarray]], placement
                ) -> dict[str, dict[str, np.ndarray]]:
  """Host batches ``{d: {field: [B_d, ...]}}`` -> (a)'s layout: ``[rows x B_d / group rows]``,
  the group's rows holding its images in order and every other row zeros."""
  rows = int(placement.mesh.shape["data"])
  out = {}
  for g in placement.groups:
    for n in g.datasets:
      out[n] = {}
      for k, x in batches[n].items():
        per = x.shape[0] // g.rows
        full = np.zeros((rows, per) + x.shape[1:], x.dtype)
        full[list(g.row_ids)] = x.reshape((g.rows, per) + x.shape[1:])
        out[n][k] = full.reshape((rows * per,) + x.shape[1:])
  return out


def main(argv=None) -> int:
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  from absl import app, flags
  from ml_collections import config_flags
  config = config_flags.DEFINE_config_file("config", None, "config file", lock_config=False)
  topology = flags.DEFINE_string("topology", None, "e.g. v5p:4x4x4")
  flags.mark_flags_as_required(["config", "topology"])

  def _main(args):
    del args
    jax.config.update("jax_platforms", "cpu")
    from path_jax import compile as compile_lib, cost_model, optim, step_slices, train
    from path_jax.state import abstract_train_state
    cfg = config.value
    cfg.placement.mode = "slices"
    cfg.placement.round_batches = True
    gen, name, _ = compile_lib.parse_topology(topology.value)
    s = train.setup(cfg, devices=compile_lib.topology_devices(name), check_data=False)
    mesh = s.mesh
    abstract, info = abstract_train_state(s.model, s.make_tx, s.image_shapes, mesh, s.rules,
                                          fsdp_min_size=cfg.mesh.fsdp_min_size)
    rep = NamedSharding(mesh, P())
    w = jax.ShapeDtypeStruct((len(s.model.datasets),), jnp.float32, sharding=rep)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=rep)
    sliced = step_slices.SlicedTrainStep(s.model, info.tx, placement=s.placement,
                                         state_shardings=info.shardings, rules=s.rules)
    sliced._build(abstract, None, w, key)   # the metric names
    base = compile_lib.abstract_batch(cfg, mesh, s.placement)
    rows, sh = int(mesh.shape["data"]), NamedSharding(mesh, P("data"))
    batches = {n: {k: jax.ShapeDtypeStruct(
        (rows * int(cfg.datasets[n].batch_size) // g.rows,) + v.shape[1:], v.dtype, sharding=sh)
        for k, v in base[n].items()} for g in s.placement.groups for n in g.datasets}
    step = make_step(s.model, info.tx, s.placement, metric_keys=sliced.metric_keys,
                     schedule=optim.make_schedule(cfg.optimizer))
    fn = jax.jit(step, donate_argnums=(0,), out_shardings=(info.shardings, None))
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
      lowered = fn.trace(abstract, batches, w, key).lower()
    lower_s = time.perf_counter() - t0
    compile_lib._reset_peak_rss()
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    chip = compile_lib.CHIPS[gen]
    mem = compile_lib.memory_report(compiled, chip.hbm_bytes)
    est = cost_model.estimate_time(cost_model.analyze_hlo(compiled.as_text()), chip)
    print(f"(a) one SPMD program on {name}: lower {lower_s:.1f} s, compile {compile_s:.1f} s, "
          f"host peak {compile_lib._proc_status('VmHWM') / 1e9:.1f} GB, per-chip peak "
          f"{mem['peak'] / 2 ** 30:.2f} GiB, estimated step {1e3 * est['estimate_s']:.1f} ms")
    return 0

  try:
    app.run(_main, argv=argv)
  except SystemExit as e:
    return int(e.code or 0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
