"""``bench model`` and ``bench step`` run where only JAX, Flax, Optax (and a few carried pure-Python
wheels: ml-collections) are installed, as on the lent GPU image: TensorFlow, TensorFlow Datasets,
grain, clu and TensorBoard are made unimportable in a subprocess, and both benchmarks still run to
their JSON result."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCKED = ("tensorflow", "tensorflow_datasets", "grain", "clu", "tensorboard", "array_record")

_SITECUSTOMIZE = f'''
import sys
class _Block:
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in {BLOCKED!r}:
      raise ImportError("made unimportable by tests/test_bench_imports.py: " + name)
    return None
sys.meta_path.insert(0, _Block())
'''


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  d = tmp_path_factory.mktemp("block")
  (d / "sitecustomize.py").write_text(_SITECUSTOMIZE)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(d), REPO]), JAX_PLATFORMS="cpu")
  probe = subprocess.run([sys.executable, "-c", "import tensorflow_datasets"], env=env,
                         capture_output=True, text=True)
  assert probe.returncode != 0 and "made unimportable" in probe.stderr   # the block works
  return env


def _bench(env, tmp_path, *args):
  out = tmp_path / "result.json"
  r = subprocess.run([sys.executable, "-m", "path_jax.bench", f"--json={out}", *args], env=env,
                     cwd=REPO, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  with open(out) as f:
    return json.load(f)


def test_bench_model_needs_no_data_stack(env, tmp_path):
  res = _bench(env, tmp_path, "model", "--variant=mu/16", "--size=32x32", "--batch=2",
               "--iters=1", "--warmup=1")
  assert res["fwd_bwd_images_per_s"] > 0


def test_bench_step_needs_no_data_stack(env, tmp_path):
  res = _bench(env, tmp_path, "step", "--config=configs/demo.py", "--only=mini_market,mini_coco",
               "--iters=1")
  assert res["step_ms"] > 0 and res["loss"] == res["loss"]   # ran, finite


def test_accelerator_suite_runs_on_the_bare_stack(env, tmp_path):
  """``bench suite`` (what launch/gpu_bench.sh runs on a lent GPU), tiny: every part reports."""
  res = _bench(env, tmp_path, "suite", "--variant=mu/16", "--size=32x32", "--batches=2,4",
               "--iters=1", "--matmul_sizes=128", "--step_config=configs/demo.py",
               "--step_only=mini_market", "--step_skip_tasks=")
  assert res["versions"]["jax"] and res["peak"]["measured_flops_per_s"] > 0
  assert [r["batch"] for r in res["backbone"]["runs"]] == [2, 4]
  best = res["backbone"]["best"]
  assert best["images_per_s"] == max(r["images_per_s"] for r in res["backbone"]["runs"])
  assert set(res["attention"]) == {"default", "xla", "chunked"}   # the CPU default: chunked
  step = res["step"]["result"]
  assert step["batch_per_dataset"] == {"mini_market": step["batch_per_dataset"]["mini_market"]}
  assert 0 < step["mfu_measured_peak"] and step["dtype"] == "bfloat16"
