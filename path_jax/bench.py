"""Benchmarks: ``python -m path_jax.bench <what> [options]``.

  model   backbone forward and forward+backward images/s, analytic FLOPs per image, MFU
  matmul  the measured matrix-multiply peak of this machine (the MFU reference on CPU)
  step    the multi-dataset train step of a config on synthetic batches: step time, images/s,
          model FLOPs per step, MFU, compile time, memory
  detection  detection loss with Hungarian matching (900 queries x 100 boxes)
  data    training-transform images/s per CPU core for every task
  suite   the accelerator suite (launch/gpu_bench.sh): device, versions, measured bf16 peak,
          backbone batch sweep and attention implementations, the PATH step, MFU of each

Other benchmarks register themselves in ``BENCHES`` (step, detection, data) from their owners.
Timings exclude compilation (reported separately) and block on the results.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from typing import Callable

# Peak dense bf16 FLOP/s per chip, from the vendors' data sheets (no sparsity).
PEAK_BF16 = {
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "B200": 2250e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12,
}


def device_peak(dtype: str = "bfloat16") -> tuple[float, str]:
  """(peak FLOP/s of one device, how it was obtained)."""
  import jax
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", "")
  if dev.platform != "cpu":
    for name, peak in PEAK_BF16.items():
      if name.lower() in kind.lower():
        if dtype == "float32" and dev.platform == "gpu":
          peak = peak / 2   # TF32 tensor cores: half the bf16 rate
        return peak, f"{kind} data-sheet {dtype} peak"
    return float("nan"), f"unknown peak for {kind!r}"
  return measure_matmul_peak(dtype="float32"), "measured float32 matmul peak (this CPU)"


def measure_matmul_peak(n: int = 2048, dtype: str = "float32", repeats: int = 10) -> float:
  """FLOP/s of a jitted square matmul on the first device (best of ``repeats``)."""
  import jax
  import jax.numpy as jnp
  a = jnp.ones((n, n), dtype)
  b = jnp.ones((n, n), dtype)
  f = jax.jit(lambda a, b: a @ b)
  f(a, b).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    f(a, b).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best


def timeit(fn: Callable, *args, warmup: int = 2, iters: int = 10) -> tuple[float, float]:
  """(compile+first-call seconds, median seconds per call)."""
  import jax
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - t0
  for _ in range(max(0, warmup - 1)):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  times.sort()
  return first, times[len(times) // 2]


def bench_model(args) -> dict:
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from path_jax.model import flops, vit

  h, w = (int(v) for v in args.size.lower().split("x"))
  kw = vit.variant(args.variant)
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[args.dtype]
  model = vit.ViT(**kw, cls_token=args.cls, dtype=dtype, remat=args.remat, scan=args.scan,
                  remat_policy=args.remat_policy, attention_impl=args.attention)
  x = jnp.asarray(jax.random.randint(jax.random.key(0), (args.batch, h, w, 3), 0, 256), jnp.uint8)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), x)["params"])

  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x, use_cls=args.cls)[0])

  def loss(p, x):
    tokens, _ = model.apply({"params": p}, x, use_cls=args.cls)
    return jnp.mean(jnp.square(tokens.astype(jnp.float32)))

  fwd_bwd = jax.jit(jax.grad(loss))
  if getattr(args, "fwd", True):
    c_f, t_f = timeit(fwd, params, x, warmup=args.warmup, iters=args.iters)
  else:   # forward+backward only (callers that compare step times)
    c_f, t_f = float("nan"), float("nan")
  c_b, t_b = timeit(fwd_bwd, params, x, warmup=args.warmup, iters=args.iters)
  per_img = flops.vit_forward_flops(kw["width"], kw["depth"], kw["mlp_dim"], kw["patch_size"], h,
                                    w, cls_token=args.cls)
  peak, peak_src = device_peak(args.dtype)
  ndev = 1
  res = {
      "bench": "model", "variant": args.variant, "size": [h, w], "batch": args.batch,
      "dtype": args.dtype, "device": jax.devices()[0].device_kind, "devices_used": ndev,
      "gflops_per_image_fwd": per_img / 1e9,
      "fwd_images_per_s": args.batch / t_f, "fwd_bwd_images_per_s": args.batch / t_b,
      "fwd_ms": t_f * 1e3, "fwd_bwd_ms": t_b * 1e3,
      "compile_s": {"fwd": c_f, "fwd_bwd": c_b},
      "peak_flops": peak, "peak_source": peak_src,
      "mfu_fwd": per_img * args.batch / t_f / peak,
      "mfu_fwd_bwd": 3 * per_img * args.batch / t_b / peak,
  }
  return res


def load_config(spec: str, overrides: list[str] = ()):
  """``configs/x.py[:arg]`` -> the config of its ``get_config(arg)``, with ``key=value``
  overrides (values parsed as Python literals when they parse)."""
  import ast
  import importlib.util
  import os
  path, _, arg = spec.partition(":")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if root not in sys.path:
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location("bench_config", path)
  if module_spec is None or not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} not found")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  cfg = module.get_config(arg) if arg else module.get_config()
  for item in overrides:
    key, _, value = item.partition("=")
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    node = cfg
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def bench_step(args) -> dict:
  """The multi-dataset train step of a config on synthetic batches (no data needed)."""
  import functools
  import os
  import jax
  import jax.numpy as jnp
  import numpy as np
  from path_jax import optim, step as step_lib, tasks
  from path_jax.model import path as path_lib
  from path_jax.parallel import mesh as mesh_lib, rules as rules_lib
  from path_jax.state import create_train_state
  from path_jax.train import flops_per_step

  cfg = load_config(args.config, args.set)
  mesh = mesh_lib.from_config(cfg.mesh)
  slices = args.placement == "slices"
  # 'slices' rounds every sub-batch to its own group's rows, below.
  shards = 1 if slices else mesh_lib.batch_shards(mesh)
  skip = {t for t in args.skip_tasks.split(",") if t}
  for name in list(cfg.datasets):
    if (args.only and name not in args.only.split(",")) or cfg.datasets[name].task in skip:
      del cfg.datasets[name]
      continue
    d = cfg.datasets[name]
    b = max(shards, int(round(d.batch_size / args.batch_divisor / shards)) * shards)
    d.batch_size = b
    for key, default in (("num_classes", 1000), ("num_attributes", 32), ("num_joints", 17)):
      if key in d and d[key] is None:
        d[key] = default
    if "positive_ratios" in d and d.positive_ratios is None:
      d.positive_ratios = tuple([0.3] * d.num_attributes)
  if not cfg.datasets:
    raise ValueError(f"no dataset of {args.config} is left after --only={args.only!r} and "
                     f"--skip_tasks={args.skip_tasks!r}")
  if args.dtype:
    cfg.model.backbone.dtype = args.dtype
  if args.remat:
    cfg.model.backbone.remat = True
  if args.remat_policy:
    cfg.model.backbone.remat_policy = args.remat_policy
  if args.scan:
    cfg.model.backbone.scan = True
  model = path_lib.from_config(cfg)
  rules = rules_lib.rules_from_config(cfg.mesh)
  shapes = {n: tuple(cfg.datasets[n].image_size) for n in cfg.datasets}
  placement = None
  if slices:
    from path_jax.parallel import placement as placement_lib
    cfg.placement.mode = "slices"
    placement = placement_lib.make(cfg, mesh, model)
    placement_lib.batch_problems(cfg, placement, apply_rounding=True)
  state, info = create_train_state(model, functools.partial(optim.make_optimizer, cfg.optimizer),
                                   shapes, mesh, rules, fsdp_min_size=cfg.mesh.fsdp_min_size)
  rng = np.random.default_rng(0)
  host = {n: tasks.get(cfg.datasets[n].task).example_batch(cfg.datasets[n],
                                                          cfg.datasets[n].batch_size, rng)
          for n in cfg.datasets}
  weights = jnp.ones((len(cfg.datasets),), jnp.float32)
  key = jax.random.key(0)
  if slices:
    from path_jax import step_slices
    fn = step_slices.SlicedTrainStep(model, info.tx, placement=placement,
                                     state_shardings=info.shardings, rules=rules,
                                     accum_steps=cfg.train.accum_steps)
    batch = {n: jax.device_put(host[n], rules_lib.batch_sharding(
        placement.submeshes[placement.group_of(n).name])) for n in host}
    t0 = time.perf_counter()   # compiled on the first call: compile + one step
    state, m = fn(state, batch, weights, key)
    jax.block_until_ready(m)
    compile_s, compiled, mem = time.perf_counter() - t0, None, None
  else:
    fn = step_lib.make_train_step(model, info.tx, mesh=mesh, state_shardings=info.shardings,
                                  rules=rules, accum_steps=cfg.train.accum_steps)
    batch = jax.device_put(host, rules_lib.batch_sharding(mesh))
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
      compiled = fn.jitted.lower(state, batch, weights, key).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
  mem_bytes = None if mem is None else {
      "temp": getattr(mem, "temp_size_in_bytes", None),
      "arguments": getattr(mem, "argument_size_in_bytes", None),
      "output": getattr(mem, "output_size_in_bytes", None)}
  images = sum(int(cfg.datasets[n].batch_size) for n in cfg.datasets)
  if args.compile_only:
    if slices:
      raise ValueError("--compile_only is for --placement=shared (use python -m "
                       "path_jax.compile for the 'slices' programs)")
    return {"bench": "step", "config": args.config, "compile_only": True,
            "device": jax.devices()[0].device_kind, "mesh": dict(mesh.shape),
            "dtype": cfg.model.backbone.dtype, "images_per_step": images,
            "remat": bool(cfg.model.backbone.remat), "scan": bool(cfg.model.backbone.scan),
            "remat_policy": cfg.model.backbone.remat_policy, "compile_s": compile_s,
            "memory_analysis_bytes": mem_bytes}
  state, m = fn(state, batch, weights, key)     # warm-up
  jax.block_until_ready(m)
  on_cpu = jax.devices()[0].platform == "cpu"
  times, peaks = [], []
  for _ in range(args.iters):
    t = time.perf_counter()
    state, m = fn(state, batch, weights, key)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
    if on_cpu:   # the CPU's matmul rate drifts (shared hosts): measure it beside every step
      peaks.append(measure_matmul_peak(dtype="float32"))
  t_step = float(np.median(times))
  if args.profile:   # one more step, traced (TensorBoard / xprof / Perfetto read it)
    jax.profiler.start_trace(args.profile, create_perfetto_trace=True)
    state, m = fn(state, batch, weights, key)
    jax.block_until_ready(m)
    jax.profiler.stop_trace()
    if compiled is not None:
      with open(os.path.join(args.profile, "step.hlo.txt"), "w") as f:
        f.write(compiled.as_text())
  flops = flops_per_step(cfg, model)
  from path_jax import metrics as metrics_lib
  flops_trunk = metrics_lib.flops_per_step(model, cfg.datasets, heads=False)
  if on_cpu:
    peak = float(np.median(peaks))
    peak_src = ("measured float32 matmul peak (this CPU), median of one measurement after each "
                "timed step")
    mfu = float(np.median([flops / t / p for t, p in zip(times, peaks)]))
  else:
    peak, peak_src = device_peak(cfg.model.backbone.dtype)
    mfu = flops / t_step / (peak * jax.device_count())
  ndev = jax.device_count()
  dev = jax.devices()[0]
  peak_mem = None
  if dev.platform != "cpu" and hasattr(dev, "memory_stats"):
    peak_mem = (dev.memory_stats() or {}).get("peak_bytes_in_use")
  return {
      "bench": "step", "config": args.config, "device": dev.device_kind, "devices": ndev,
      "placement": args.placement,
      "groups": None if placement is None else {g.name: g.rows for g in placement.groups},
      "mesh": dict(mesh.shape), "dtype": cfg.model.backbone.dtype,
      "batch_per_dataset": {n: int(cfg.datasets[n].batch_size) for n in cfg.datasets},
      "step_ms": t_step * 1e3, "images_per_s": images / t_step,
      "model_tflops_per_step": flops / 1e12,
      "model_tflops_per_step_backbone_projectors": flops_trunk / 1e12,
      "mfu": mfu, "peak_flops_per_device": peak,
      "step_ms_each": [t * 1e3 for t in times],
      "peak_flops_each": peaks or None,
      "peak_source": peak_src, "compile_s": compile_s,
      "memory_analysis_bytes": mem_bytes,
      "remat": bool(cfg.model.backbone.remat), "scan": bool(cfg.model.backbone.scan),
      "remat_policy": cfg.model.backbone.remat_policy,
      "peak_bytes_in_use": peak_mem, "loss": float(m["loss"]),
  }


def _step_parser(p: argparse.ArgumentParser) -> None:
  p.add_argument("--config", required=True, help="configs/x.py[:arg]")
  p.add_argument("--set", action="append", default=[], help="override key=value (repeatable)")
  p.add_argument("--batch_divisor", type=float, default=1.0,
                 help="divide every dataset's batch size (kept a multiple of the batch shards)")
  p.add_argument("--only", default="", help="comma-separated dataset names to keep")
  p.add_argument("--skip_tasks", default="",
                 help="comma-separated tasks to drop (e.g. detection: 1344x1344 inputs on a CPU)")
  p.add_argument("--dtype", default="", choices=["", "float32", "bfloat16"])
  p.add_argument("--remat", action="store_true",
                 help="recompute blocks in the backward pass (bounds memory only with --scan)")
  from path_jax.model import vit
  p.add_argument("--remat_policy", default="", choices=["", *vit.REMAT_POLICIES],
                 help="what remat keeps (path_jax.model.vit.REMAT_POLICIES; default: the config's)")
  p.add_argument("--scan", action="store_true", help="scanned backbone blocks")
  p.add_argument("--compile_only", action="store_true",
                 help="compile and report compile time and XLA's memory analysis, run nothing")
  p.add_argument("--profile", default="",
                 help="after timing, trace one more step into this folder (with the compiled HLO)")
  p.add_argument("--iters", type=int, default=5)
  p.add_argument("--placement", default="shared", choices=["shared", "slices"],
                 help="where the dataset streams run (path_jax/parallel/PLACEMENT.md)")


def bench_matmul(args) -> dict:
  import jax
  peak = measure_matmul_peak(args.n, args.dtype)
  return {"bench": "matmul", "n": args.n, "dtype": args.dtype,
          "device": jax.devices()[0].device_kind, "flops_per_s": peak}


def _model_parser(p: argparse.ArgumentParser) -> None:
  from path_jax.model import attention, vit
  p.add_argument("--variant", default="B/16")
  p.add_argument("--size", default="224x224", help="HxW in pixels")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--cls", action="store_true", help="run with the cls token (ReID)")
  p.add_argument("--remat", action="store_true")
  p.add_argument("--remat_policy", default="full", choices=list(vit.REMAT_POLICIES))
  p.add_argument("--scan", action="store_true")
  p.add_argument("--attention", default=None, choices=list(attention.IMPLS),
                 help="attention implementation (path_jax.model.attention; default: per platform)")
  p.add_argument("--iters", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2, help="calls before timing (incl. the compile)")


def _matmul_parser(p: argparse.ArgumentParser) -> None:
  p.add_argument("--n", type=int, default=2048)
  p.add_argument("--dtype", default="float32")


# name -> (module path of a `run(args) -> dict` and an `add_args(parser)`, or local functions)
BENCHES: dict[str, tuple[Callable | str, Callable | None, str]] = {
    "model": (bench_model, _model_parser, "backbone forward / forward+backward throughput"),
    "matmul": (bench_matmul, _matmul_parser, "measured matmul peak of this machine"),
    "step": (bench_step, _step_parser, "the multi-dataset train step of a config"),
    "data": ("path_jax.input.bench", None, "training-transform images/s per CPU core"),
    "detection": ("path_jax.tasks.detection.bench", None,
                  "detection loss with Hungarian matching"),
    "suite": ("path_jax.bench_suite", None,
              "device, versions, measured bf16 peak, backbone batch sweep, attention, PATH step "
              "(launch/gpu_bench.sh)"),
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m path_jax.bench", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--json", default=None, help="also write the result to this JSON file")
  sub = parser.add_subparsers(dest="what", required=True)
  argv = sys.argv[1:] if argv is None else list(argv)
  chosen = next((a for a in argv if a in BENCHES), None)
  for name, (fn, add_args, help_) in BENCHES.items():
    p = sub.add_parser(name, help=help_)
    if isinstance(fn, str):
      if name == chosen:   # import a benchmark module only when it is asked for
        importlib.import_module(fn).add_args(p)
    else:
      add_args(p)
  args = parser.parse_args(argv)
  fn = BENCHES[args.what][0]
  if isinstance(fn, str):
    fn = importlib.import_module(fn).run
  result = fn(args)
  print(json.dumps(result, indent=2, default=str))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2, default=str)
  return 0


if __name__ == "__main__":
  sys.exit(main())
