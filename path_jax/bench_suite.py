"""The accelerator benchmark suite: ``python -m path_jax.bench suite [--json=FILE]``.

One run (``launch/gpu_bench.sh`` wraps it for a lent GPU) prints and returns:

1. the device, the platform and the versions of Python, jax, jaxlib, flax, optax (and the CUDA
   plugin when there is one);
2. the bf16 matrix-multiply peak measured on the spot (best of several sizes), the reference of
   every MFU below, next to the data-sheet peak where :data:`path_jax.bench.PEAK_BF16` knows the
   card;
3. the ViT-B/16 backbone forward+backward at 224x224 in bf16 (``bench model``), at growing
   batches until one does not fit or the time budget is spent: images/s and MFU per batch, the
   best batch; the attention implementations compared at the best batch ('xla' against the
   platform default, cuDNN's fused kernel on GPUs);
4. the PATH train step (``bench step``) on the paper's mixture scaled to one device (default:
   ``configs/vitb.py:scale=16,divisor=1``, the 23 non-detection datasets at 1/16 of the paper's
   batch; halved again while it does not fit), bf16, the config's remat: step time, images/s,
   model FLOPs, MFU against the measured peak;
5. optionally the same backbone through PyTorch + timm (``--torch``) as a peer on the same card.

Only JAX, Flax, Optax and ml-collections are needed (no TensorFlow, tfds, grain or clu), so it
runs on a bare accelerator image. Each part is timed against ``--budget_s`` and a part that fails
(out of memory, a missing kernel) is reported with its error instead of ending the run.
"""
from __future__ import annotations

import argparse
import platform as platform_lib
import time
import traceback

from path_jax import bench as bench_lib


def add_args(p: argparse.ArgumentParser) -> None:
  p.add_argument("--variant", default="B/16")
  p.add_argument("--size", default="224x224")
  p.add_argument("--batches", default="64,128,256,512,1024",
                 help="backbone batches tried in order (stops at the first that does not fit)")
  p.add_argument("--iters", type=int, default=10)
  p.add_argument("--step_config", default="configs/vitb.py:scale=16,divisor=1")
  p.add_argument("--step_skip_tasks", default="detection",
                 help="tasks left out of the step (detection's 1344x1344 inputs dominate a "
                      "one-device step; '' keeps them)")
  p.add_argument("--step_only", default="", help="comma-separated datasets of the step")
  p.add_argument("--step_halvings", type=int, default=3,
                 help="times the step's batches are halved while it does not fit")
  p.add_argument("--step_set", action="append", default=[],
                 help="key=value override of the step's config (repeatable)")
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  p.add_argument("--matmul_sizes", default="4096,8192")
  p.add_argument("--torch", action="store_true", help="also time the PyTorch + timm peer")
  p.add_argument("--budget_s", type=float, default=420.0,
                 help="stop starting new parts after this many seconds")


def _versions() -> dict:
  import importlib.metadata as md
  out = {"python": platform_lib.python_version()}
  for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections",
              "jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu", "torch", "timm"):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      pass
  return out


def _oom(e: BaseException) -> bool:
  text = f"{type(e).__name__}: {e}"
  return any(s in text for s in ("RESOURCE_EXHAUSTED", "Out of memory", "out of memory", "OOM"))


def _error(e: BaseException) -> str:
  return f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"


def _model_args(args, batch, attention=None, fwd=False):
  return argparse.Namespace(variant=args.variant, size=args.size, batch=batch, dtype=args.dtype,
                            cls=False, remat=False, remat_policy="full", scan=False,
                            attention=attention, iters=args.iters, warmup=2, fwd=fwd)


def _backbone(args, peak: float, deadline: float, log) -> dict:
  out = {"runs": [], "best": None}
  for b in (int(x) for x in args.batches.split(",") if x):
    if time.perf_counter() > deadline:
      out["stopped"] = "time budget"
      break
    try:
      r = bench_lib.bench_model(_model_args(args, b))
    except Exception as e:   # noqa: BLE001 (reported; a bigger batch would not fit either)
      out["runs"].append({"batch": b, "error": _error(e)})
      log(f"  batch {b}: {_error(e)}")
      if _oom(e):
        break
      continue
    flops = 3 * r["gflops_per_image_fwd"] * 1e9 * b / (r["fwd_bwd_ms"] / 1e3)
    run = {"batch": b, "images_per_s": r["fwd_bwd_images_per_s"], "ms": r["fwd_bwd_ms"],
           "mfu_measured_peak": flops / peak, "mfu_datasheet": r["mfu_fwd_bwd"],
           "compile_s": r["compile_s"]["fwd_bwd"]}
    out["runs"].append(run)
    log(f"  batch {b}: {run['images_per_s']:.0f} img/s, MFU {run['mfu_measured_peak']:.1%} "
        f"of the measured peak")
    if out["best"] is None or run["images_per_s"] > out["best"]["images_per_s"]:
      out["best"] = run
  return out


def _attention(args, batch: int, peak: float, log) -> dict:
  import jax
  from path_jax.model import attention
  default = attention.resolve_impl(None, jax.default_backend())
  out = {"default": default}
  for impl in dict.fromkeys(["xla", default]):
    try:
      r = bench_lib.bench_model(_model_args(args, batch, attention=impl))
      out[impl] = {"images_per_s": r["fwd_bwd_images_per_s"],
                   "mfu_measured_peak": 3 * r["gflops_per_image_fwd"] * 1e9 * batch
                   / (r["fwd_bwd_ms"] / 1e3) / peak}
      log(f"  attention {impl}: {out[impl]['images_per_s']:.0f} img/s")
    except Exception as e:   # noqa: BLE001
      out[impl] = {"error": _error(e)}
      log(f"  attention {impl}: {_error(e)}")
  return out


def _step(args, peak: float, deadline: float, log) -> dict:
  tries = []
  for h in range(args.step_halvings + 1):
    if time.perf_counter() > deadline:
      tries.append({"batch_divisor": 2 ** h, "error": "time budget"})
      break
    ns = argparse.Namespace(
        config=args.step_config, set=list(args.step_set), batch_divisor=2 ** h,
        only=args.step_only, skip_tasks=args.step_skip_tasks, dtype=args.dtype, remat=False,
        remat_policy="", scan=False, compile_only=False, profile=None, iters=args.iters,
        placement="shared")
    try:
      r = bench_lib.bench_step(ns)
    except Exception as e:   # noqa: BLE001
      tries.append({"batch_divisor": 2 ** h, "error": _error(e)})
      log(f"  step at 1/{2 ** h} of the config's batch: {_error(e)}")
      if _oom(e):
        continue
      break
    import jax
    r["mfu_measured_peak"] = (r["model_tflops_per_step"] * 1e12 / (r["step_ms"] / 1e3)
                              / (peak * jax.device_count()))
    r["batch_divisor"] = 2 ** h
    log(f"  step ({sum(r['batch_per_dataset'].values())} images, "
        f"{len(r['batch_per_dataset'])} datasets): {r['step_ms']:.0f} ms, "
        f"{r['images_per_s']:.0f} img/s, MFU {r['mfu_measured_peak']:.1%} of the measured peak")
    return {"result": r, "tries": tries}
  return {"result": None, "tries": tries}


def _torch_peer(args, batch: int, peak: float, log) -> dict:
  """timm's ViT-B/16 forward+backward under bf16 autocast (the usual PyTorch recipe)."""
  try:
    import timm
    import torch
  except ImportError as e:
    return {"error": _error(e)}
  if not torch.cuda.is_available():
    return {"error": "no CUDA device for PyTorch"}
  h, w = (int(v) for v in args.size.lower().split("x"))
  name = {"B/16": "vit_base_patch16_224", "L/16": "vit_large_patch16_224"}.get(args.variant)
  if name is None:
    return {"error": f"no timm model for {args.variant}"}
  model = timm.create_model(name, pretrained=False, num_classes=0, img_size=(h, w)).cuda()
  x = torch.randn(batch, 3, h, w, device="cuda")

  def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
      loss = model.forward_features(x).float().square().mean()
    loss.backward()

  for _ in range(3):
    step()
  torch.cuda.synchronize()
  times = []
  for _ in range(args.iters):
    t = time.perf_counter()
    step()
    torch.cuda.synchronize()
    times.append(time.perf_counter() - t)
  times.sort()
  t = times[len(times) // 2]
  from path_jax.model import flops, vit
  kw = vit.variant(args.variant)
  per_img = flops.vit_forward_flops(kw["width"], kw["depth"], kw["mlp_dim"], kw["patch_size"],
                                    h, w, cls_token=True)
  out = {"model": name, "batch": batch, "images_per_s": batch / t,
         "mfu_measured_peak": 3 * per_img * batch / t / peak, "torch": torch.__version__}
  log(f"  PyTorch {name}: {out['images_per_s']:.0f} img/s, MFU {out['mfu_measured_peak']:.1%}")
  return out


def run(args) -> dict:
  import jax
  t0 = time.perf_counter()
  deadline = t0 + args.budget_s
  lines = []

  def log(msg):
    print(msg, flush=True)
    lines.append(msg)

  dev = jax.devices()[0]
  res = {"bench": "suite", "device": dev.device_kind, "platform": dev.platform,
         "devices": jax.device_count(), "versions": _versions()}
  log(f"device: {dev.device_kind} ({dev.platform}) x {jax.device_count()}")
  log("versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()))

  sizes = [int(x) for x in args.matmul_sizes.split(",") if x]
  measured = max(bench_lib.measure_matmul_peak(n, args.dtype) for n in sizes)
  sheet, sheet_src = (bench_lib.device_peak(args.dtype) if dev.platform != "cpu"
                      else (float("nan"), "no data sheet for a CPU"))
  res["peak"] = {"measured_flops_per_s": measured, "dtype": args.dtype, "sizes": sizes,
                 "datasheet_flops_per_s": sheet, "datasheet_source": sheet_src}
  log(f"{args.dtype} matmul peak measured: {measured / 1e12:.1f} TFLOP/s "
      f"(data sheet: {sheet / 1e12:.0f})")

  log(f"backbone {args.variant} forward+backward at {args.size}, {args.dtype}:")
  res["backbone"] = _backbone(args, measured, deadline, log)
  best = res["backbone"]["best"]
  if best and time.perf_counter() < deadline:
    res["attention"] = _attention(args, best["batch"], measured, log)
  log(f"PATH step, {args.step_config} without {args.step_skip_tasks or 'nothing'}:")
  res["step"] = _step(args, measured, deadline, log)
  if args.torch and best and time.perf_counter() < deadline:
    try:
      res["torch"] = _torch_peer(args, best["batch"], measured, log)
    except Exception as e:   # noqa: BLE001
      res["torch"] = {"error": _error(e), "traceback": traceback.format_exc()[-2000:]}
  res["wall_s"] = time.perf_counter() - t0
  log(f"suite done in {res['wall_s']:.0f} s")
  return res
