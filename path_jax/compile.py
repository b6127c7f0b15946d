"""Compile a config's training step for a TPU topology on any CPU host, and show whether it fits.

  python -m path_jax.compile --config=configs/vitb.py:divisor=64 --topology=v5p-128
  python -m path_jax.compile --config=configs/vitb.py:divisor=128 --topology=v5p:4x4x4 \\
      --num_slices=2 [--config.model.backbone.remat_policy=full ...] [--json=out.json]

libtpu (``pip install -e '.[tpu]'``) compiles for any TPU topology without the hardware
(maxtext's ``train_compile.py`` does the same for its users). The program compiled is exactly the
one ``python -m path_jax.main`` would run there: the same config (file, argument and
``--config.*`` overrides), the same checks (batch sizes against the mesh's batch shards and the
topology's hosts), mesh (multi-slice: the slices split the data axis unless
``config.mesh.dcn_shape`` says otherwise), logical-axis rules and shardings, dtype, remat policy,
and the attention implementation chosen for the *target* platform (XLA attention on TPU, not the
CPU's chunked one). Prepared data is not needed: counts that would come from a dataset's
metadata get shape-only placeholders (listed in the report).

Printed (and written with ``--json``):

* lower and compile seconds, the host's peak resident memory during the compile (glibc's
  malloc arenas capped at ``--malloc_arenas``, default 2: :func:`limit_malloc_arenas`);
* per-chip memory from XLA's memory analysis: arguments, outputs, temporaries, generated code,
  the donated (aliased) bytes and the peak, against the chip's HBM, with the headroom;
* model FLOPs per chip (the analytic count that MFU uses, path_jax.metrics), the step time at
  the chip's peak FLOP/s, and an estimated step time and MFU from :mod:`path_jax.cost_model`,
  which reads the compiled per-chip HLO and multiplies every loop body (scanned layers) by its
  trip count (XLA's own ``cost_analysis`` counts a scanned body once); the estimate per part of
  the step (backbone, projectors, heads, detection matcher, optimiser).

Placement 'slices' (``config.placement.mode``; ``configs/vitb.py:placement=slices``): every
task group's gradient program on its own rows and the update program, compiled one after the
other and reported one per row (compile time, host memory, per-chip memory, estimated time); the
step's estimate is the slowest group's program plus the update, with a suggested
``config.placement.rows`` when rebalancing by the estimate would help. ``--groups=a,b`` compiles
only those groups' programs and the update: what one pod host compiles.

``--parts`` compiles the step once per task, with only that task's datasets, and prints each
part's compile time, host memory and program size: where the whole step's cost goes.

Exit status: 0 when the step fits (peak <= HBM x (1 - ``--min_headroom``)), 1 when it does not,
2 for a config that cannot run on the topology (the message says which key to change, e.g. the
``divisor`` that rounds every sub-batch to the mesh's batch shards).

``--cache_dir=DIR`` turns on JAX's persistent compilation cache there (the same flag a run can
set with ``JAX_COMPILATION_CACHE_DIR``); whether a pod reuses a CPU host's entry depends on the
libtpu build matching, so treat it as a warm-up for repeated compiles on this host.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import sys
import time
from typing import Any

# Before JAX/libtpu start: no TPU metadata server on a CPU host, and a second libtpu user (a
# test runner, another compile) must not lock us out.
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")   # else libtpu logs a page of errors
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from path_jax.cost_model import ChipSpec  # noqa: E402  (NumPy only: no JAX start-up)


# ----------------------------------------------------------------------------------------------
# Chips and topology names.

GiB = 2 ** 30


# Public per-chip figures (Cloud TPU system architecture pages): dense bf16 FLOP/s, HBM bytes and
# bandwidth, inter-chip interconnect bandwidth per chip, data-centre network bandwidth per chip
# (multi-slice).
CHIPS = {
    "v4": ChipSpec("TPU v4", 275e12, 32 * GiB, 1228e9, 300e9, 6.25e9),
    "v5e": ChipSpec("TPU v5e", 197e12, 16 * GiB, 819e9, 200e9, 6.25e9),
    "v5p": ChipSpec("TPU v5p", 459e12, 95 * GiB, 2765e9, 600e9, 6.25e9),
    "v6e": ChipSpec("TPU v6e", 918e12, 32 * GiB, 1640e9, 448e9, 12.5e9),
}
# Google's names count TensorCores for v4/v5p (two per chip: v5p-128 is 64 chips) and chips for
# v5e/v6e; the physical shapes are the standard slice shapes.
_SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
              256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}
_SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
              256: "16x16"}
_ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6": "v6e"}


def parse_topology(name: str) -> tuple[str, str, int]:
  """``'v5p-128'`` or ``'v5p:4x4x4'`` -> (generation, libtpu topology name, chips)."""
  name = name.strip().lower()
  m = re.fullmatch(r"(v4|v5p|v5e|v6e|v5litepod|v5lite|v6)[:](\d+(?:x\d+){1,2})", name)
  if m:
    gen = _ALIASES.get(m.group(1), m.group(1))
    dims = [int(v) for v in m.group(2).split("x")]
    return gen, f"{gen}:{m.group(2)}", math.prod(dims)
  m = re.fullmatch(r"(v4|v5p|v5e|v6e|v5litepod|v5lite|v6)-(\d+)", name)
  if m:
    gen = _ALIASES.get(m.group(1), m.group(1))
    n = int(m.group(2))
    chips = n // 2 if gen in ("v4", "v5p") else n
    table = _SHAPES_3D if gen in ("v4", "v5p") else _SHAPES_2D
    if chips not in table:
      raise ValueError(f"--topology={name}: no standard {gen} slice of {chips} chips; give the "
                       f"shape instead, e.g. {gen}:{next(iter(table.values()))}")
    return gen, f"{gen}:{table[chips]}", chips
  raise ValueError(f"--topology={name!r}: use Google's name (v5p-128, v4-64, v5e-16, v6e-64) or "
                   f"generation:shape (v5p:4x4x4, v5e:4x4); see the README's topology table")


def topology_devices(topology: str, num_slices: int = 1):
  """Compile-only devices of ``num_slices`` slices of ``topology`` (needs libtpu)."""
  gen, shape = topology.split(":")
  # Quiets libtpu's start-up warning on a host that is not a TPU VM; the compile target is
  # ``topology_name``, whatever this says.
  cores = math.prod(map(int, shape.split("x"))) * (2 if gen in ("v4", "v5p") else 1)
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", f"{gen}-{cores}")
  try:
    from jax.experimental import topologies
    desc = topologies.get_topology_desc(topology_name=topology, platform="tpu",
                                        num_slices=num_slices)
  except Exception as e:   # libtpu missing, or a name it does not know
    raise RuntimeError(f"cannot get compile-only devices for {topology!r} x {num_slices}: {e}. "
                       f"Install libtpu with `pip install -e '.[tpu]'`.") from e
  return list(desc.devices)


# ----------------------------------------------------------------------------------------------
# Host memory.

_M_ARENA_MAX = -8   # glibc's mallopt parameter (malloc.h)


def limit_malloc_arenas(n: int) -> int | None:
  """Caps glibc's malloc arenas at ``n`` for this process (``mallopt(M_ARENA_MAX, n)``, what
  ``MALLOC_ARENA_MAX=n`` does at start-up); returns the cap in force, or None where it is glibc's
  default (``n`` <= 0, not glibc, or the call failed).

  XLA's TPU compiler allocates from several threads; glibc gives each thread its own arena (up
  to 8 per core) and freed memory stays in the arena that held it, so the process's resident set
  grows past what the compiler holds live. Two arenas took the README's main compile from 14.4
  to 12.9 GB of host memory on jax 0.10 and from 10.4 to 9.6 GB on jax 0.12 (README "Compiling
  for a TPU pod", with the compile times measured). A
  ``MALLOC_ARENA_MAX`` already in the environment wins. Call it before libtpu starts compiling:
  arenas that already exist stay."""
  env = os.environ.get("MALLOC_ARENA_MAX")
  if env:
    try:
      return int(env)
    except ValueError:
      return None
  if n <= 0:
    return None
  try:
    import ctypes
    libc = ctypes.CDLL(None)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):
      return None
    return n if mallopt(_M_ARENA_MAX, n) == 1 else None
  except OSError:
    return None


def _proc_status(key: str) -> int:
  """``VmRSS`` / ``VmHWM`` of this process in bytes (0 where /proc is unavailable)."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(key + ":"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def _reset_peak_rss() -> None:
  try:   # Linux: writing 5 resets VmHWM to the current RSS
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
  except OSError:
    pass


# ----------------------------------------------------------------------------------------------
# The step, abstractly.


def abstract_batch(cfg, mesh, placement=None) -> dict[str, dict[str, Any]]:
  """``ShapeDtypeStruct``s of one training batch (every dataset), sharded as main shards it:
  over ``mesh``, or in placement 'slices' each dataset over its group's sub-mesh."""
  import jax
  import numpy as np
  from path_jax import tasks
  from path_jax.parallel import rules as rules_lib
  rng = np.random.default_rng(0)
  out = {}
  for name in cfg.datasets:
    d = cfg.datasets[name]
    sharding = rules_lib.batch_sharding(
        mesh if placement is None else placement.submeshes[placement.group_of(name).name])
    one = tasks.get(d.task).example_batch(d, 1, rng)   # shapes of one example
    out[name] = {k: jax.ShapeDtypeStruct((int(d.batch_size),) + v.shape[1:], v.dtype,
                                         sharding=sharding) for k, v in one.items()}
  return out


def compile_train_step(cfg, devices, groups: tuple[str, ...] = ()) -> dict[str, Any]:
  """Lowers and compiles the training step of ``cfg`` for ``devices``; returns the compiled
  executable, timings and what the report needs."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  from path_jax import metrics as metrics_lib, optim, step as step_lib, train
  from path_jax.state import abstract_train_state

  s = train.setup(cfg, devices=devices, check_data=False)
  mesh = s.mesh
  abstract, info = abstract_train_state(s.model, s.make_tx, s.image_shapes, mesh, s.rules,
                                        fsdp_min_size=cfg.mesh.fsdp_min_size)
  if s.placement is not None:
    return _compile_sliced(cfg, s, abstract, info, groups)
  step_fn = step_lib.make_train_step(s.model, info.tx, mesh=mesh, state_shardings=info.shardings,
                                     schedule=optim.make_schedule(cfg.optimizer), rules=s.rules,
                                     accum_steps=cfg.train.accum_steps)
  replicated = NamedSharding(mesh, P())
  batch = abstract_batch(cfg, mesh)
  weights = jax.ShapeDtypeStruct((len(s.model.datasets),), jnp.float32, sharding=replicated)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
  t0 = time.perf_counter()
  with jax.set_mesh(mesh):
    lowered = step_fn.jitted.trace(abstract, batch, weights, key).lower()
  lower_s = time.perf_counter() - t0
  rss_before = _proc_status("VmRSS")
  _reset_peak_rss()
  t0 = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  model_flops = metrics_lib.flops_per_step(s.model, cfg.datasets)
  trunk_flops = metrics_lib.flops_per_step(s.model, cfg.datasets, heads=False)
  return dict(compiled=compiled, setup=s, lower_s=lower_s, compile_s=compile_s,
              host_rss_before_compile=rss_before, host_peak_rss_compile=_proc_status("VmHWM"),
              model_flops=model_flops, trunk_flops=trunk_flops, report=info.report)


def _compile_sliced(cfg, s, abstract, info, groups: tuple[str, ...] = ()) -> dict[str, Any]:
  """Placement 'slices': every task group's gradient program on its sub-mesh and the update
  program on the whole mesh, compiled one after the other (a pod host compiles only its own
  group's and the update). Per program: lower/compile seconds and the host's peak memory."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  from path_jax import metrics as metrics_lib, optim, train
  from path_jax.parallel import placement as placement_lib

  mesh = s.mesh
  placement_lib.check_params(info.shardings.params)
  step_fn = train.make_step(s, info, optim.make_schedule(cfg.optimizer))
  replicated = NamedSharding(mesh, P())
  batch = abstract_batch(cfg, mesh, s.placement)
  weights = jax.ShapeDtypeStruct((len(s.model.datasets),), jnp.float32, sharding=replicated)
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
  t0 = time.perf_counter()
  known = [g.name for g in s.placement.groups]
  unknown = sorted(set(groups) - set(known))
  if unknown:
    raise ValueError(f"--groups names unknown task groups {unknown}; the groups are {known}")
  lowered = step_fn.lower(abstract, batch, weights, key, groups=list(groups) or None)
  lower_s = time.perf_counter() - t0
  programs = {}
  for name, low in lowered.items():
    _reset_peak_rss()
    t0 = time.perf_counter()
    compiled = low.compile()
    # Keep what the report needs and drop the executable, so that each program's host peak
    # counts only what compiling it (and the set-up) costs, as on a pod host.
    programs[name] = dict(compile_s=time.perf_counter() - t0,
                          host_peak_rss_compile=_proc_status("VmHWM"),
                          memory=compiled.memory_analysis(), hlo=compiled.as_text())
    logging.info("compiled %s in %.1f s (host peak %.1f GB)", name, programs[name]["compile_s"],
                 programs[name]["host_peak_rss_compile"] / 1e9)
    del compiled, low
  del lowered
  group_flops = {g.name: sum(metrics_lib.flops_per_step(s.model, {n: cfg.datasets[n]})
                             for n in g.datasets) for g in s.placement.groups}
  top = max(programs.values(), key=lambda e: e["host_peak_rss_compile"])
  return dict(compiled=None, programs=programs, setup=s, lower_s=lower_s,
              compile_s=sum(e["compile_s"] for e in programs.values()),
              host_rss_before_compile=0, host_peak_rss_compile=top["host_peak_rss_compile"],
              model_flops=metrics_lib.flops_per_step(s.model, cfg.datasets),
              trunk_flops=metrics_lib.flops_per_step(s.model, cfg.datasets, heads=False),
              group_flops=group_flops, report=info.report)


def compile_eval_steps(cfg, devices) -> dict[str, Any]:
  """``config.mode='evaluate'``: the inference program of every dataset with an evaluation split
  (the forward pass, and the flipped one where the dataset tests with flips, at
  ``evaluate.batch_size`` or the dataset's batch), each its own program as main runs them. The
  report describes the largest; ``per_dataset`` lists each."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from path_jax import evaluate as eval_lib, train
  from path_jax.parallel import rules as rules_lib
  from path_jax.state import abstract_train_state

  s = train.setup(cfg, devices=devices, check_data=False)
  abstract, info = abstract_train_state(s.model, s.make_tx, s.image_shapes, s.mesh, s.rules,
                                        fsdp_min_size=cfg.mesh.fsdp_min_size)
  per_dataset, best = {}, None
  for spec in s.model.datasets:
    d = cfg.datasets[spec.name]
    if not (cfg.evaluate.split or d.get("eval_split", "")):
      continue
    b = int(cfg.evaluate.batch_size or d.batch_size)
    flip = eval_lib.FLIP_OUTPUTS.get(d.task) if d.get("flip_test", False) else None

    def forward(params, batch_stats, images, name=spec.name, flip=flip):
      variables = {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}
      with nn.logical_axis_rules(tuple(s.rules)):
        out = s.model.apply(variables, {name: images}, train=False)[name]
        if flip is not None:
          out = dict(out)
          out[f"{flip}_flipped"] = s.model.apply(variables, {name: images[:, :, ::-1]},
                                                 train=False)[name][flip]
      return out

    h, w = d.image_size
    images = jax.ShapeDtypeStruct((b, int(h), int(w), 3), jnp.uint8,
                                  sharding=rules_lib.batch_sharding(s.mesh))
    t0 = time.perf_counter()
    with jax.set_mesh(s.mesh):
      lowered = jax.jit(forward).trace(abstract.params, abstract.batch_stats, images).lower()
    lower_s = time.perf_counter() - t0
    _reset_peak_rss()
    t0 = time.perf_counter()
    compiled = lowered.compile()
    entry = dict(compiled=compiled, lower_s=lower_s, compile_s=time.perf_counter() - t0,
                 host_peak_rss_compile=_proc_status("VmHWM"), batch=b)
    per_dataset[spec.name] = entry
    peak = compiled.memory_analysis()
    size = (getattr(peak, "temp_size_in_bytes", 0) or 0) + (
        getattr(peak, "argument_size_in_bytes", 0) or 0)
    if best is None or size > best[0]:
      best = (size, spec.name)
  if best is None:
    raise ValueError("config.mode='evaluate' but no dataset has an eval_split (set "
                     "config.datasets.<name>.eval_split or config.evaluate.split)")
  top = per_dataset[best[1]]
  return dict(compiled=top["compiled"], setup=s, lower_s=sum(e["lower_s"] for e in
                                                              per_dataset.values()),
              compile_s=sum(e["compile_s"] for e in per_dataset.values()),
              host_rss_before_compile=0,
              host_peak_rss_compile=max(e["host_peak_rss_compile"] for e in per_dataset.values()),
              model_flops=0.0, trunk_flops=0.0, report=info.report, largest=best[1],
              per_dataset={n: {"batch": e["batch"], "compile_s": e["compile_s"],
                               "memory": memory_report(e["compiled"], float("inf"))}
                           for n, e in per_dataset.items()})


def memory_report(compiled, hbm_bytes: float) -> dict[str, Any]:
  """Per-chip memory of a compiled program (or of its ``memory_analysis()``)."""
  mem = compiled.memory_analysis() if hasattr(compiled, "memory_analysis") else compiled
  get = lambda k: int(getattr(mem, k, 0) or 0)   # noqa: E731
  args, out, temp = get("argument_size_in_bytes"), get("output_size_in_bytes"), get(
      "temp_size_in_bytes")
  alias, code = get("alias_size_in_bytes"), get("generated_code_size_in_bytes")
  peak = args + out + temp + code - alias
  return {"arguments": args, "outputs": out, "temporaries": temp, "generated_code": code,
          "aliased": alias, "peak": peak,
          "hbm": int(hbm_bytes) if math.isfinite(hbm_bytes) else None,
          "headroom": 1.0 - peak / hbm_bytes}


def compile_parts(cfg, topology: str, num_slices: int = 1) -> list[dict[str, Any]]:
  """Where compile time and host memory go: the step compiled once per task with only that
  task's datasets (the rest of the config as given), one after the other in this process.
  Compile cost grows roughly additively over the parts of the program, so the parts' figures
  show which to shrink. Returns one row per task."""
  _, topo_name, _ = parse_topology(topology)
  devices = topology_devices(topo_name, num_slices)
  tasks: dict[str, list[str]] = {}
  for name in cfg.datasets:
    tasks.setdefault(cfg.datasets[name].task, []).append(name)
  rows = []
  for task, names in tasks.items():
    sub = cfg.copy_and_resolve_references()
    with sub.unlocked():
      for name in list(sub.datasets):
        if name not in names:
          del sub.datasets[name]
    res = compile_train_step(sub, devices)
    rows.append({"task": task, "datasets": len(names), "lower_s": res["lower_s"],
                 "compile_s": res["compile_s"],
                 "host_peak_rss_compile_gb": res["host_peak_rss_compile"] / 1e9,
                 "hlo_instructions": res["compiled"].as_text().count("\n")})
    del res
  return rows


def run(cfg, topology: str, num_slices: int = 1, *, min_headroom: float = 0.0,
        hlo_out: str = "", groups: tuple[str, ...] = ()) -> dict[str, Any]:
  """Compiles ``cfg``'s step for ``num_slices`` x ``topology``; the report as a dict."""
  import jax
  from path_jax import cost_model

  gen, topo_name, chips_per_slice = parse_topology(topology)
  chip = CHIPS[gen]
  t0 = time.perf_counter()
  devices = topology_devices(topo_name, num_slices)
  chips = chips_per_slice * num_slices
  per_chip = max(1, len(devices) // chips)   # v4 compile-only devices are TensorCores
  out: dict[str, Any] = {
      "topology": topo_name, "num_slices": num_slices, "chips": chips, "devices": len(devices),
      "device_kind": devices[0].device_kind, "hosts": len({d.process_index for d in devices}),
      "jax": jax.__version__, "mode": cfg.mode, "dtype": cfg.model.backbone.dtype,
      "remat": bool(cfg.model.backbone.remat), "remat_policy": cfg.model.backbone.remat_policy,
      "scan": bool(cfg.model.backbone.scan), "topology_s": time.perf_counter() - t0}
  if cfg.mode in ("pretrain", "finetune"):
    if groups and cfg.get("placement", {}).get("mode", "shared") != "slices":
      raise ValueError("--groups selects task groups of placement 'slices'; set "
                       "config.placement.mode=slices (e.g. configs/vitb.py:placement=slices)")
    res = compile_train_step(cfg, devices, tuple(groups))
  elif cfg.mode == "evaluate":
    res = compile_eval_steps(cfg, devices)
    out["evaluated_datasets"] = {n: {"batch": e["batch"], "compile_s": e["compile_s"],
                                     "peak_gib": e["memory"]["peak"] / GiB}
                                 for n, e in res["per_dataset"].items()}
    out["largest_program"] = res["largest"]
  else:
    raise ValueError(f"config.mode={cfg.mode!r} runs no step to compile; compile the "
                     f"'pretrain', 'finetune' or 'evaluate' config")
  s, compiled = res["setup"], res["compiled"]
  if res.get("programs"):
    out.update(mesh=dict(s.mesh.shape), datasets=len(cfg.datasets),
               images_per_step=sum(int(cfg.datasets[n].batch_size) for n in cfg.datasets),
               batch_per_dataset={n: int(cfg.datasets[n].batch_size) for n in cfg.datasets},
               attention_impl=s.model.backbone.attention_impl, placeholders=s.placeholders,
               lower_s=res["lower_s"], compile_s=res["compile_s"], host_rss_before_compile_gb=0.0,
               host_peak_rss_compile_gb=res["host_peak_rss_compile"] / 1e9)
    return _sliced_report(out, res, chip, per_chip, min_headroom, num_slices)
  out.update(mesh=dict(s.mesh.shape), datasets=len(cfg.datasets),
             images_per_step=sum(int(cfg.datasets[n].batch_size) for n in cfg.datasets),
             batch_per_dataset={n: int(cfg.datasets[n].batch_size) for n in cfg.datasets},
             attention_impl=s.model.backbone.attention_impl, placeholders=s.placeholders,
             lower_s=res["lower_s"], compile_s=res["compile_s"],
             host_rss_before_compile_gb=res["host_rss_before_compile"] / 1e9,
             host_peak_rss_compile_gb=res["host_peak_rss_compile"] / 1e9)
  hbm = chip.hbm_bytes / per_chip
  out["memory"] = memory_report(compiled, hbm)
  out["fits"] = out["memory"]["headroom"] >= min_headroom
  out["min_headroom"] = min_headroom

  spec = dataclasses.replace(chip, peak_flops=chip.peak_flops / per_chip, hbm_bytes=hbm,
                             hbm_bw=chip.hbm_bw / per_chip, ici_bw=chip.ici_bw / per_chip,
                             dcn_bw=chip.dcn_bw / per_chip)   # per device
  text = compiled.as_text()
  if hlo_out:
    with open(hlo_out, "w") as f:
      f.write(text)
  try:
    cost = cost_model.analyze_hlo(text)
    est = cost_model.estimate_time(cost, spec, num_slices=num_slices)
  except Exception as e:   # noqa: BLE001 - the compile and memory report still stand
    logging.exception("the cost model could not read this program")
    out["cost_model_error"] = f"{type(e).__name__}: {e}"
    return out
  xla = compiled.cost_analysis() or {}
  if isinstance(xla, (list, tuple)):
    xla = xla[0] if xla else {}
  model_per_device = res["model_flops"] / len(devices)   # 0 for evaluation programs
  t_ideal = model_per_device / spec.peak_flops
  out["flops"] = {
      "model_tflops_per_step": res["model_flops"] / 1e12,
      "model_tflops_per_step_backbone_projectors": res["trunk_flops"] / 1e12,
      "model_tflops_per_chip": model_per_device * per_chip / 1e12,
      "hlo_tflops_per_chip": cost.flops * per_chip / 1e12,
      "xla_cost_analysis_tflops_per_chip": float(xla.get("flops", float("nan"))) * per_chip / 1e12,
      "loops": len(cost.while_loops), "loops_unknown_trip_count": cost.unknown_trip_loops}
  out["time"] = {"at_peak_s": t_ideal, **{k: v for k, v in est.items() if k != "per_category"}}
  out["time"]["per_category"] = {k: {kk: vv for kk, vv in v.items() if kk.endswith("_s")}
                                 for k, v in est.get("per_category", {}).items()}
  step_s = est["estimate_s"]
  out["estimated_mfu"] = t_ideal / step_s if step_s > 0 and t_ideal > 0 else float("nan")
  # Bound: XLA overlaps asynchronous collectives (the gradient all-reduce) with compute.
  rl = est["roofline_s"]
  out["estimated_mfu_collectives_hidden"] = t_ideal / rl if rl > 0 and t_ideal > 0 else float(
      "nan")
  return out


def _per_device_spec(chip: ChipSpec, per_chip: int) -> ChipSpec:
  return dataclasses.replace(chip, peak_flops=chip.peak_flops / per_chip,
                             hbm_bytes=chip.hbm_bytes / per_chip, hbm_bw=chip.hbm_bw / per_chip,
                             ici_bw=chip.ici_bw / per_chip, dcn_bw=chip.dcn_bw / per_chip)


def _sliced_report(out, res, chip, per_chip, min_headroom, num_slices) -> dict[str, Any]:
  """Placement 'slices': one row per program (compile cost, per-chip memory, estimated time),
  the step's per-chip memory (the largest program's peak), its estimated time (the slowest
  group's program, then the update) and MFU."""
  from path_jax import cost_model
  s = res["setup"]
  spec = _per_device_spec(chip, per_chip)
  hbm = chip.hbm_bytes / per_chip
  rows, groups = {}, {g.name: g for g in s.placement.groups}
  devices_per_row = s.mesh.devices[0].size
  for name, e in res["programs"].items():
    mem = memory_report(e["memory"], hbm)
    sub = s.placement.submeshes[name] if name in groups else s.mesh
    slices = len({getattr(d, "slice_index", 0) for d in sub.devices.flat})
    row = {"compile_s": e["compile_s"], "host_peak_rss_compile_gb":
           e["host_peak_rss_compile"] / 1e9, "peak_gib": mem["peak"] / GiB,
           "headroom": mem["headroom"], "memory": mem, "devices": int(sub.devices.size)}
    if name in groups:
      g = groups[name]
      row.update(rows=g.rows, datasets=list(g.datasets),
                 batch={n: int(s.cfg.datasets[n].batch_size) for n in g.datasets},
                 model_tflops_per_device=res["group_flops"][name] / (g.rows * devices_per_row)
                 / 1e12)
    try:
      cost = cost_model.analyze_hlo(e["hlo"])
      est = cost_model.estimate_time(cost, spec, num_slices=slices)
      row.update(estimate_s=est["estimate_s"], roofline_s=est["roofline_s"],
                 collective_s=est["collective_s"], hlo_tflops_per_device=cost.flops / 1e12,
                 per_category={k: v["estimate_s"] for k, v in est["per_category"].items()})
    except Exception as err:   # noqa: BLE001 - the compile and memory report still stand
      row["cost_model_error"] = f"{type(err).__name__}: {err}"
    rows[name] = row
  out["placement"] = "slices"
  out["programs"] = rows
  worst = max(rows.values(), key=lambda r: r["memory"]["peak"])
  out["memory"] = worst["memory"]
  out["fits"] = out["memory"]["headroom"] >= min_headroom
  out["min_headroom"] = min_headroom
  out["longest_program_compile_s"] = max(r["compile_s"] for r in rows.values())
  out["host_peak_rss_one_host_gb"] = max(
      r["host_peak_rss_compile_gb"] for n, r in rows.items())   # a pod host: its group + update
  if any("cost_model_error" in r for r in rows.values()):
    out["cost_model_error"] = "; ".join(f"{n}: {r['cost_model_error']}" for n, r in rows.items()
                                        if "cost_model_error" in r)
    return out
  if set(groups) - set(rows):   # --groups: one host's programs; no whole-step estimate
    out["partial"] = sorted(set(rows) - {"update"})
    return out
  t_ideal = res["model_flops"] / len(s.mesh.devices.flat) / spec.peak_flops
  slowest = max(groups, key=lambda n: rows[n]["estimate_s"])
  step_s = rows[slowest]["estimate_s"] + rows["update"]["estimate_s"]
  hidden = rows[slowest]["roofline_s"] + rows["update"]["roofline_s"]
  out["flops"] = {"model_tflops_per_step": res["model_flops"] / 1e12,
                  "model_tflops_per_step_backbone_projectors": res["trunk_flops"] / 1e12,
                  "model_tflops_per_chip": res["model_flops"] / len(s.mesh.devices.flat)
                  * per_chip / 1e12}
  out["time"] = {"at_peak_s": t_ideal, "estimate_s": step_s, "slowest_group": slowest,
                 "slowest_group_s": rows[slowest]["estimate_s"],
                 "update_s": rows["update"]["estimate_s"], "collectives_hidden_s": hidden}
  out["estimated_mfu"] = t_ideal / step_s
  out["estimated_mfu_collectives_hidden"] = t_ideal / hidden
  # Rebalance by the estimate: a group's work is its time x its rows; the same assignment rule
  # as the start-up one (placement.assign_rows), on these weights, for config.placement.rows.
  from path_jax.parallel import placement as placement_lib
  work = {n: rows[n]["estimate_s"] * groups[n].rows for n in groups}
  suggested = placement_lib.suggest_rows(work, int(s.mesh.shape["data"]),
                                         placement_lib.data_slices(s.mesh))
  out["suggested_rows"] = ",".join(f"{n}={r}" for n, r in suggested.items())
  out["suggested_slowest_group_s"] = max(work[n] / suggested[n] for n in groups)
  return out


# ----------------------------------------------------------------------------------------------
# Command line.


def _fmt_bytes(b: float) -> str:
  return f"{b / GiB:.2f} GiB"


def _ms(seconds: float) -> str:
  ms = 1e3 * seconds
  return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms:.3f} ms"


def print_report(r: dict[str, Any], file=sys.stdout) -> None:
  p = lambda *a: print(*a, file=file)   # noqa: E731
  mem = r["memory"]
  p(f"topology {r['topology']} x {r['num_slices']} slice(s): {r['chips']} chips "
    f"({r['devices']} devices, {r['device_kind']}), {r['hosts']} hosts; mesh {r['mesh']}")
  p(f"config: mode {r['mode']}, {r['datasets']} datasets, {r['images_per_step']} images/step, "
    f"dtype {r['dtype']}, scan {r['scan']}, remat {r['remat']} ({r['remat_policy']}), "
    f"attention {r['attention_impl']}")
  if r["placeholders"]:
    p(f"shape-only placeholders (no prepared data here): {', '.join(r['placeholders'])}")
  arenas = r.get("host_malloc_arenas")
  p(f"lower {r['lower_s']:.1f} s, compile {r['compile_s']:.1f} s, host peak memory during the "
    f"compile {r['host_peak_rss_compile_gb']:.1f} GB"
    + (f" (malloc arenas capped at {arenas})" if arenas else ""))
  p(f"per-chip memory: arguments {_fmt_bytes(mem['arguments'])}, outputs "
    f"{_fmt_bytes(mem['outputs'])} ({_fmt_bytes(mem['aliased'])} donated), temporaries "
    f"{_fmt_bytes(mem['temporaries'])}, code {_fmt_bytes(mem['generated_code'])}; peak "
    f"{_fmt_bytes(mem['peak'])} of {_fmt_bytes(mem['hbm'])} HBM, headroom "
    f"{100 * mem['headroom']:.1f} %")
  for name, e in (r.get("evaluated_datasets") or {}).items():
    p(f"  evaluation program {name}: batch {e['batch']}, compile {e['compile_s']:.1f} s, peak "
      f"{e['peak_gib']:.2f} GiB")
  if r.get("programs"):
    _print_programs(r, p)
  if "cost_model_error" in r:
    p(f"no time estimate: the cost model failed ({r['cost_model_error']})")
  elif r.get("partial"):
    p(f"only the programs of {r['partial']} and the update were compiled (--groups): no "
      f"whole-step estimate")
  elif r.get("programs"):
    t = r["time"]
    p(f"step time: {_ms(t['at_peak_s'])} at peak FLOP/s; estimated {_ms(t['estimate_s'])} "
      f"(slowest group {t['slowest_group']!r} {_ms(t['slowest_group_s'])} + update "
      f"{_ms(t['update_s'])}) -> MFU {100 * r['estimated_mfu']:.1f} % "
      f"({100 * r['estimated_mfu_collectives_hidden']:.1f} % if the collectives overlap "
      f"compute entirely)")
    if r["suggested_slowest_group_s"] < 0.97 * t["slowest_group_s"]:
      p(f"  rebalanced by this estimate, the slowest group would take about "
        f"{_ms(r['suggested_slowest_group_s'])}: --config.placement.rows="
        f"{r['suggested_rows']} (sub-batches re-round to the new rows)")
  else:
    _print_estimate(r, p)
  p(("FITS" if r["fits"] else "DOES NOT FIT") + f" (required headroom "
    f"{100 * r['min_headroom']:.0f} %)")


def _print_programs(r: dict[str, Any], p) -> None:
  p(f"placement 'slices': {len(r['programs'])} programs; the longest compile "
    f"{r['longest_program_compile_s']:.1f} s (a pod host compiles its group's and the update)")
  for name, row in r["programs"].items():
    what = (f"{row['rows']} rows ({row['devices']} devices), {len(row['datasets'])} datasets, "
            f"{sum(row['batch'].values())} images, {row['model_tflops_per_device']:.2f} model "
            f"TFLOP per device" if "rows" in row else f"{row['devices']} devices")
    est = f", estimated {_ms(row['estimate_s'])}" if "estimate_s" in row else ""
    p(f"  {name:<16} {what}: compile {row['compile_s']:.1f} s, host peak "
      f"{row['host_peak_rss_compile_gb']:.1f} GB, per-chip peak {row['peak_gib']:.2f} GiB"
      f"{est}")


def _print_estimate(r: dict[str, Any], p) -> None:
  fl, t = r["flops"], r["time"]
  p(f"FLOPs per chip: model {fl['model_tflops_per_chip']:.2f} T (analytic), compiled program "
    f"{fl['hlo_tflops_per_chip']:.2f} T (loops x trip counts; XLA's cost_analysis says "
    f"{fl['xla_cost_analysis_tflops_per_chip']:.2f} T)")
  p(f"step time: {_ms(t['at_peak_s'])} at peak FLOP/s; estimated {_ms(t['estimate_s'])} -> MFU "
    f"{100 * r['estimated_mfu']:.1f} % ({100 * r['estimated_mfu_collectives_hidden']:.1f} % if "
    f"the collectives overlap compute entirely)")
  p(f"  all the program's FLOPs at peak {_ms(t['compute_s'])} (beyond the model FLOPs: remat, "
    f"the flash-attention backward, element-wise work), memory-bound excess "
    f"{_ms(t['roofline_s'] - t['compute_s'])}, collectives {_ms(t['collective_s'])}")
  parts = t.get("per_category") or {}
  for k, v in sorted(parts.items(), key=lambda kv: -kv[1]["estimate_s"]):
    if v["estimate_s"] >= 0.01 * t["estimate_s"]:
      p(f"  {k}: {_ms(v['estimate_s'])} ({_ms(v['compute_s'])} of it at peak FLOP/s, "
        f"{_ms(v['roofline_s'] - v['compute_s'])} memory-bound, {_ms(v['collective_s'])} "
        f"collectives)")


def main(argv=None) -> int:
  from absl import app, flags
  from ml_collections import config_flags

  config = config_flags.DEFINE_config_file(
      "config", None, "Config file (configs/*.py), optionally with ':arg'.", lock_config=True)
  topology = flags.DEFINE_string("topology", None,
                                 "TPU topology: v5p-128 or v5p:4x4x4 (README table)")
  num_slices = flags.DEFINE_integer("num_slices", 1, "slices (multi-slice over DCN)")
  min_headroom = flags.DEFINE_float("min_headroom", 0.0,
                                    "fail (exit 1) unless this fraction of HBM stays free")
  json_out = flags.DEFINE_string("json", "", "also write the report to this JSON file")
  hlo_out = flags.DEFINE_string("hlo", "", "write the compiled per-chip HLO text here")
  cache_dir = flags.DEFINE_string("cache_dir", "", "JAX persistent compilation cache folder")
  groups = flags.DEFINE_list("groups", [], "placement 'slices': compile only these task groups' "
                             "programs and the update (what one pod host compiles)")
  parts = flags.DEFINE_bool("parts", False, "compile each task's datasets alone and print where "
                            "compile time and host memory go (instead of the whole step)")
  arenas = flags.DEFINE_integer("malloc_arenas", 2, "cap glibc's malloc arenas (less host memory "
                                "for the same compile; 0 = glibc's default; MALLOC_ARENA_MAX wins)")
  flags.mark_flags_as_required(["config", "topology"])

  def _main(args):
    if len(args) > 1:
      raise app.UsageError(f"unexpected arguments: {args[1:]}")
    from path_jax import logs
    logs.setup()
    arena_cap = limit_malloc_arenas(arenas.value)
    import jax
    jax.config.update("jax_platforms", "cpu")   # the host; the TPU devices are compile-only
    if cache_dir.value:
      jax.config.update("jax_compilation_cache_dir", cache_dir.value)
      jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    try:
      if parts.value:
        rows = compile_parts(config.value, topology.value, num_slices.value)
        for r in rows:
          print(f"{r['task']:<12} {r['datasets']:>3} datasets: lower {r['lower_s']:.1f} s, "
                f"compile {r['compile_s']:.1f} s, host peak {r['host_peak_rss_compile_gb']:.1f} "
                f"GB, {r['hlo_instructions']} HLO lines")
        if json_out.value:
          with open(json_out.value, "w") as f:
            json.dump(rows, f, indent=2)
        return 0
      report = run(config.value, topology.value, num_slices.value,
                   min_headroom=min_headroom.value, hlo_out=hlo_out.value,
                   groups=tuple(groups.value))
    except (ValueError, KeyError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    report["host_malloc_arenas"] = arena_cap
    if json_out.value:   # first: a long compile's numbers must survive anything below
      with open(json_out.value, "w") as f:
        json.dump(report, f, indent=2, default=str)
    print_report(report)
    return 0 if report["fits"] else 1

  try:
    app.run(_main, argv=argv)
  except SystemExit as e:
    return int(e.code or 0)
  return 0


if __name__ == "__main__":
  sys.exit(main())
