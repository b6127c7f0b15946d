"""Ahead-of-time compilation for TPU topologies on this CPU host (path_jax.compile).

The compile tests need libtpu (``pip install -e '.[tpu]'``) and are skipped without it; the
topology-name, mesh and config-check tests run everywhere.
"""
import importlib.util
import json
import os
import subprocess
import sys

import jax
import pytest

os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

from configs import demo  # noqa: E402
from path_jax import compile as compile_lib  # noqa: E402
from path_jax import train  # noqa: E402
from path_jax.model import attention, path as path_lib  # noqa: E402
from path_jax.parallel import mesh as mesh_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_libtpu = pytest.mark.skipif(importlib.util.find_spec("libtpu") is None,
                                  reason="libtpu not installed (pip install -e '.[tpu]')")


def tiny_config(names=("mini_market", "mini_coco"), scan=False):
  """The demo's tiny model on two of its datasets: a real PATH step that compiles in seconds."""
  cfg = demo.get_config("pretrain")
  for name in list(cfg.datasets):
    if name not in names:
      del cfg.datasets[name]
  cfg.model.backbone.scan = scan
  cfg.data_dir = "/nonexistent/prepared/data"   # AOT needs no data
  return cfg


def test_topology_names():
  assert compile_lib.parse_topology("v5p-128") == ("v5p", "v5p:4x4x4", 64)
  assert compile_lib.parse_topology("v5p:4x4x4") == ("v5p", "v5p:4x4x4", 64)
  assert compile_lib.parse_topology("v4-8") == ("v4", "v4:2x2x1", 4)
  assert compile_lib.parse_topology("v5e-16") == ("v5e", "v5e:4x4", 16)
  assert compile_lib.parse_topology("v5litepod-16") == ("v5e", "v5e:4x4", 16)
  assert compile_lib.parse_topology("v6e-64") == ("v6e", "v6e:8x8", 64)
  with pytest.raises(ValueError, match="v5p:"):
    compile_lib.parse_topology("v5p-6")
  with pytest.raises(ValueError, match="Google's name"):
    compile_lib.parse_topology("tpu-big")


def test_attention_resolved_for_the_target_platform():
  """The model is built for the mesh's platform, not for the host's default backend."""
  assert attention.resolve_impl(None, "cpu") == "chunked"
  assert attention.resolve_impl(None, "tpu") == "flash"
  assert attention.resolve_impl(None, "gpu") == "gpu"   # cuDNN where the operands allow it
  assert attention.resolve_impl("chunked", "tpu") == "chunked"   # an explicit choice is kept
  with pytest.raises(ValueError, match="attention_impl"):
    attention.resolve_impl("cudnn", "tpu")
  cfg = tiny_config(("mini_market", "mini_coco", "mini_crowdhuman"))
  train.fill_from_metadata(cfg, placeholders=True)
  assert jax.default_backend() == "cpu"
  tpu_model = path_lib.from_config(cfg, platform="tpu")
  cpu_model = path_lib.from_config(cfg)
  assert tpu_model.backbone.attention_impl == "flash"
  assert cpu_model.backbone.attention_impl == "chunked"
  det = {s.name: s for s in tpu_model.datasets}["mini_crowdhuman"]
  assert det.cfg.attention_impl == "flash"   # the detection decoder follows the backbone
  pose = {s.name: s for s in tpu_model.datasets}["mini_coco"]
  assert pose.cfg.deconv_impl == "dilated"   # one transposed conv on TPU, phases on CPU
  assert {s.name: s for s in cpu_model.datasets}["mini_coco"].cfg.deconv_impl == "phase"
  assert cfg.datasets.mini_crowdhuman.attention_impl is None   # the config is left as given


def test_batch_that_does_not_divide_names_the_divisor():
  cfg = tiny_config()
  cfg.datasets.mini_coco.batch_size = 6
  mesh = mesh_lib.make_mesh((4, 1, 1), devices=jax.devices()[:4])
  with pytest.raises(ValueError) as e:
    train.check_config(cfg, mesh, num_hosts=2, check_data=False)
  assert "config.datasets.mini_coco.batch_size=6" in str(e.value)
  assert "divisor=4" in str(e.value)
  cfg.datasets.mini_coco.batch_size = 12
  with pytest.raises(ValueError, match="8 hosts"):   # hosts of the target topology count too
    train.check_config(cfg, mesh, num_hosts=8, check_data=False)
  train.check_config(cfg, mesh, num_hosts=4, check_data=False)


@needs_libtpu
def test_multislice_mesh_puts_slices_on_the_data_axis():
  devices = compile_lib.topology_devices("v5p:2x2x1", num_slices=2)
  assert mesh_lib.num_slices(devices) == 2
  mesh = mesh_lib.from_config(demo.get_config("pretrain").mesh, devices)
  assert dict(mesh.shape) == {"data": 8, "fsdp": 1, "model": 1}
  rows = mesh.devices.reshape(2, 4)   # the outer data factor crosses slices, the inner stays
  assert {d.slice_index for d in rows[0]} == {0} and {d.slice_index for d in rows[1]} == {1}


@needs_libtpu
def test_aot_train_step_on_compile_only_tpu_devices():
  """The step main would run, compiled for a TPU topology on this CPU host: abstract state
  (no jax.random.key on compile-only devices), TPU attention, a memory report that fits."""
  cfg = tiny_config()
  report = compile_lib.run(cfg, "v5p:2x2x1", min_headroom=0.2)
  assert report["chips"] == 4 and report["mesh"] == {"data": 4, "fsdp": 1, "model": 1}
  assert report["attention_impl"] == "flash"
  assert report["placeholders"] == ["config.datasets.mini_market.num_classes"]
  mem = report["memory"]
  assert 0 < mem["peak"] < mem["hbm"] and report["fits"]
  assert mem["peak"] == (mem["arguments"] + mem["outputs"] + mem["temporaries"]
                         + mem["generated_code"] - mem["aliased"])
  assert mem["aliased"] > 0   # the state is donated
  fl = report["flops"]
  # The compiled program does at least the model's matmuls (plus element-wise and optimiser work).
  assert fl["hlo_tflops_per_chip"] >= 0.9 * fl["model_tflops_per_chip"]
  t = report["time"]
  assert 0 < t["at_peak_s"] <= t["estimate_s"]
  assert 0 < report["estimated_mfu"] <= 1
  assert set(t["per_category"]) >= {"backbone", "heads", "optimizer"}


@needs_libtpu
def test_cost_model_counts_scanned_steps_like_unscanned_ones():
  """XLA's cost analysis counts the scanned backbone's body once; the compile report's count
  (path_jax.cost_model: loop bodies x trip counts) matches the unscanned program's."""
  looped = compile_lib.run(tiny_config(("mini_market",), scan=False), "v5p:2x2x1")["flops"]
  scanned = compile_lib.run(tiny_config(("mini_market",), scan=True), "v5p:2x2x1")["flops"]
  assert scanned["loops"] >= 1 and looped["loops_unknown_trip_count"] == 0
  assert abs(scanned["hlo_tflops_per_chip"] / looped["hlo_tflops_per_chip"] - 1) < 0.05
  assert abs(looped["xla_cost_analysis_tflops_per_chip"] / looped["hlo_tflops_per_chip"]
             - 1) < 0.02
  assert scanned["xla_cost_analysis_tflops_per_chip"] < 0.8 * scanned["hlo_tflops_per_chip"]


@needs_libtpu
@pytest.mark.slow
def test_compile_command_line(tmp_path):
  """``python -m path_jax.compile`` as a user runs it: report printed, JSON written, exit 0 when
  it fits, 1 when the required headroom is not there, 2 for a batch that does not divide."""
  base = [sys.executable, "-m", "path_jax.compile", "--config=configs/demo.py",
          "--topology=v5p-8", "--config.datasets.mini_crowdhuman.batch_size=4"]
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  env.pop("MALLOC_ARENA_MAX", None)
  out = tmp_path / "r.json"
  p = subprocess.run(base + [f"--json={out}"], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=900)
  assert p.returncode == 0, p.stdout + p.stderr
  assert "FITS" in p.stdout and "per-chip memory" in p.stdout
  report = json.loads(out.read_text())
  assert report["chips"] == 4 and report["attention_impl"] == "flash"
  if _glibc():
    assert report["host_malloc_arenas"] == 2 and "malloc arenas capped at 2" in p.stdout
  p = subprocess.run(base + ["--min_headroom=0.9999"], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=900)
  assert p.returncode == 1 and "DOES NOT FIT" in p.stdout
  p = subprocess.run(base[:-1] + ["--config.datasets.mini_crowdhuman.batch_size=6"], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=900)
  assert p.returncode == 2 and "divisor=4" in p.stderr


def _glibc() -> bool:
  import ctypes
  return hasattr(ctypes.CDLL(None), "gnu_get_libc_version")


_ARENAS = """
import ctypes, sys, threading
sys.path.insert(0, {root!r})
from path_jax import compile as c
print("cap", c.limit_malloc_arenas({cap}))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
alive = threading.Barrier(6)
def work():
  for _ in range(200):
    libc.malloc(4096)
  alive.wait()   # all six alive at once: no thread inherits an exited one's arena
ts = [threading.Thread(target=work) for _ in range(6)]
[t.start() for t in ts]; [t.join() for t in ts]
libc.malloc_stats()   # one 'Arena N:' block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_arena_cap_takes_effect():
  """``--malloc_arenas`` (default 2) really caps the arenas that threads allocate from: six
  allocating threads get their own arenas by default and share two under the cap; a
  MALLOC_ARENA_MAX in the environment wins."""
  if not _glibc():
    pytest.skip("not glibc")
  env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

  def arenas(cap, extra=None):
    p = subprocess.run([sys.executable, "-c", _ARENAS.format(root=ROOT, cap=cap)],
                       env=dict(env, **(extra or {})), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()[1], p.stderr.count("Arena ")

  assert arenas(0) == ("None", 7)          # the main arena + one per thread
  assert arenas(2) == ("2", 2)
  assert arenas(2, {"MALLOC_ARENA_MAX": "3"}) == ("3", 3)


@needs_libtpu
def test_flash_attention_compiles_for_tpu_and_is_counted():
  """'flash' lowers to the Pallas TPU kernels, mapped over the batch shards (no all-gather of
  activations), and the cost model counts the kernels' FLOPs (forward: its cost estimate;
  backward: 4 + 3 matmuls from the operand shapes)."""
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  from path_jax import cost_model
  devices = compile_lib.topology_devices("v5p:2x2x1")
  mesh = mesh_lib.make_mesh((4, 1, 1), devices=devices)
  b, t, h, d = 8, 1000, 4, 64   # padded to 1024 tokens, the padding masked by segment ids

  def loss(q, k, v):
    out = attention.dot_product_attention(q, k, v, scale=d ** -0.5, impl="flash")
    return jnp.sum(out.astype(jnp.float32) ** 2)

  x = jax.ShapeDtypeStruct((b, t, h, d), jnp.bfloat16, sharding=NamedSharding(mesh, P("data")))
  # conftest asks for 'highest' matmuls, which Mosaic refuses for bfloat16 tiles; runs use the
  # default precision.
  with jax.set_mesh(mesh), jax.default_matmul_precision("default"):
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(x, x, x).lower().compile()
  text = compiled.as_text()
  assert text.count('custom_call_target="tpu_custom_call"') == 3   # forward, dK/dV, dQ
  assert "all-gather" not in text
  cost = cost_model.analyze_hlo(text)
  per_device_matmul = 2.0 * (b // 4) * h * 1024 * 1024 * d
  assert cost.matmul_flops == pytest.approx((2 + 4 + 3) * per_device_matmul, rel=0.02)


@needs_libtpu
def test_save_matmuls_keeps_the_flash_forward():
  """Under remat, 'save_matmuls' keeps the flash kernel's output and statistics (one forward
  kernel per block); 'save_projections' runs the forward kernel again in the backward pass."""
  import re
  import flax.linen as nn
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  from path_jax.model import vit
  mesh = mesh_lib.make_mesh((4, 1, 1), devices=compile_lib.topology_devices("v5p:2x2x1"))
  counts = {}
  for policy in ("save_matmuls", "save_projections"):
    model = vit.ViT(width=128, depth=2, num_heads=2, mlp_dim=256, scan=True, remat=True,
                    remat_policy=policy, attention_impl="flash", dtype=jnp.bfloat16)
    params = jax.eval_shape(lambda m=model: nn.unbox(
        m.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.uint8))["params"]))
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(
        s.shape, s.dtype, sharding=NamedSharding(mesh, P())), params)
    x = jax.ShapeDtypeStruct((4, 480, 480, 3), jnp.uint8, sharding=NamedSharding(mesh, P("data")))

    def loss(p, x, m=model):
      return jnp.mean(jnp.square(m.apply({"params": p}, x)[0].astype(jnp.float32)))

    with jax.set_mesh(mesh), jax.default_matmul_precision("default"):
      text = jax.jit(jax.grad(loss)).trace(params, x).lower().compile().as_text()
    counts[policy] = len(re.findall(r"%flash_attention[.0-9]* = ", text))
  assert counts == {"save_matmuls": 1, "save_projections": 2}


@needs_libtpu
def test_evaluation_config_compiles_each_inference_program():
  cfg = tiny_config()
  cfg.mode = "evaluate"
  report = compile_lib.run(cfg, "v5p-8")
  assert set(report["evaluated_datasets"]) == {"mini_market", "mini_coco"}
  assert report["largest_program"] in report["evaluated_datasets"]
  assert report["fits"] and report["memory"]["peak"] > 0
  cfg.mode = "export"
  with pytest.raises(ValueError, match="no step to compile"):
    compile_lib.run(cfg, "v5p-8")


@needs_libtpu
def test_parts_compile_each_task_alone():
  rows = compile_lib.compile_parts(tiny_config(), "v5p-8")
  assert sorted((r["task"], r["datasets"]) for r in rows) == [("pose", 1), ("reid", 1)]
  assert all(r["compile_s"] > 0 and r["hlo_instructions"] > 100 for r in rows)


@needs_libtpu
def test_sliced_step_compiles_one_program_per_group_on_two_slices():
  """Placement 'slices' on 2 x v5p:2x2x1: each task group gets the same block of rows in each
  slice (a program spanning slices needs as many devices in each), one program per group plus
  the update, each reported."""
  from path_jax.parallel import placement as placement_lib
  cfg = tiny_config()
  cfg.placement.mode = "slices"
  cfg.placement.round_batches = True
  devices = compile_lib.topology_devices("v5p:2x2x1", num_slices=2)
  s = train.setup(cfg.copy_and_resolve_references(), devices=devices, check_data=False)
  assert placement_lib.data_slices(s.mesh) == 2
  for g in s.placement.groups:   # the same even number of rows in every slice
    per_slice = {}
    for row in s.placement.submeshes[g.name].devices:
      (i,) = {d.slice_index for d in row.flat}
      per_slice[i] = per_slice.get(i, 0) + 1
    assert set(per_slice) == {0, 1} and per_slice[0] == per_slice[1] and per_slice[0] % 2 == 0
  report = compile_lib.run(cfg, "v5p:2x2x1", num_slices=2, min_headroom=0.2)
  assert set(report["programs"]) == {"reid", "pose", "update"}
  assert report["fits"] and 0 < report["estimated_mfu"] <= 1
  groups = {n: r for n, r in report["programs"].items() if n != "update"}
  assert sum(r["rows"] for r in groups.values()) == 8
  t = report["time"]
  assert t["estimate_s"] == pytest.approx(max(r["estimate_s"] for r in groups.values())
                                          + report["programs"]["update"]["estimate_s"])
  rows = dict(kv.split("=") for kv in report["suggested_rows"].split(","))
  assert sum(int(v) for v in rows.values()) == 8
  # The suggestion is a placement the same topology accepts.
  cfg2 = tiny_config()
  cfg2.placement.mode = "slices"
  cfg2.placement.round_batches = True
  cfg2.placement.rows = report["suggested_rows"]
  s2 = train.setup(cfg2, devices=devices, check_data=False)
  assert {g.name: g.rows for g in s2.placement.groups} == {k: int(v) for k, v in rows.items()}
