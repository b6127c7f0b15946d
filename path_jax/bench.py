"""Benchmarks: ``python -m path_jax.bench <what> [options]``.

  model   backbone forward and forward+backward images/s, analytic FLOPs per image, MFU
  matmul  the measured matrix-multiply peak of this machine (the MFU reference on CPU)

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
                  attention_impl=args.attention)
  x = jnp.asarray(jax.random.randint(jax.random.key(0), (args.batch, h, w, 3), 0, 256), jnp.uint8)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(0), x)["params"])

  fwd = jax.jit(lambda p, x: model.apply({"params": p}, x, use_cls=args.cls)[0])

  def loss(p, x):
    tokens, _ = model.apply({"params": p}, x, use_cls=args.cls)
    return jnp.mean(jnp.square(tokens.astype(jnp.float32)))

  fwd_bwd = jax.jit(jax.grad(loss))
  c_f, t_f = timeit(fwd, params, x, iters=args.iters)
  c_b, t_b = timeit(fwd_bwd, params, x, iters=args.iters)
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


def bench_matmul(args) -> dict:
  import jax
  peak = measure_matmul_peak(args.n, args.dtype)
  return {"bench": "matmul", "n": args.n, "dtype": args.dtype,
          "device": jax.devices()[0].device_kind, "flops_per_s": peak}


def _model_parser(p: argparse.ArgumentParser) -> None:
  p.add_argument("--variant", default="B/16")
  p.add_argument("--size", default="224x224", help="HxW in pixels")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--cls", action="store_true", help="run with the cls token (ReID)")
  p.add_argument("--remat", action="store_true")
  p.add_argument("--scan", action="store_true")
  p.add_argument("--attention", default=None, choices=[None, "xla", "cudnn"])
  p.add_argument("--iters", type=int, default=5)


def _matmul_parser(p: argparse.ArgumentParser) -> None:
  p.add_argument("--n", type=int, default=2048)
  p.add_argument("--dtype", default="float32")


# name -> (module path of a `run(args) -> dict` and an `add_args(parser)`, or local functions)
BENCHES: dict[str, tuple[Callable | str, Callable | None, str]] = {
    "model": (bench_model, _model_parser, "backbone forward / forward+backward throughput"),
    "matmul": (bench_matmul, _matmul_parser, "measured matmul peak of this machine"),
    "detection": ("path_jax.tasks.detection.bench", None,
                  "detection loss with Hungarian matching"),
}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m path_jax.bench", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--json", default=None, help="also write the result to this JSON file")
  sub = parser.add_subparsers(dest="what", required=True)
  argv = sys.argv[1:] if argv is None else list(argv)
  chosen = next((a for a in argv if not a.startswith("-")), None)
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
