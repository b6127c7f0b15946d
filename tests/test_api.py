"""Public backbone API: loads from safetensors and from an orbax export directory give the
features of path_jax.model.vit.ViT applied with the same parameters; the example script runs."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from path_jax import api, export
from path_jax.model import convert, vit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = ((224, 224), (256, 128))


@pytest.fixture(scope="module")
def reference():
  """A random mu/16 ViT with a cls token, its params, and its tokens at both sizes."""
  module = vit.ViT(**vit.variant("mu/16"), cls_token=True)
  # Random values for every parameter, from the abstract shapes (no init to compile); biases
  # and cls entries non-zero so that a mix-up of any two leaves changes the features.
  shapes = nn.unbox(jax.eval_shape(module.init, jax.random.key(0, impl="rbg"),
                                   jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8))["params"])
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map_with_path(
      lambda path, s: ((1.0 if path[-1].key == "scale" else 0.0)
                       + 0.05 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
  images = {hw: rng.integers(0, 256, (2, *hw, 3), dtype=np.uint8) for hw in SIZES}
  apply = jax.jit(lambda p, x, use_cls: module.apply({"params": p}, x, use_cls=use_cls)[0],
                  static_argnums=2)
  tokens = {(hw, c): np.asarray(apply(params, images[hw], c)) for hw in SIZES for c in (False,
                                                                                        True)}
  return params, images, tokens


def _check_features(backbone, images, tokens):
  for hw in SIZES:
    plain = tokens[(hw, False)]
    with_cls = tokens[(hw, True)]
    assert plain.shape == (2, (hw[0] // 16) * (hw[1] // 16), 64)
    np.testing.assert_allclose(backbone.features(images[hw]), plain, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(backbone.features(images[hw], use_cls=True), with_cls,
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(backbone.features(images[hw], pooled=True), plain.mean(1),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(backbone.features(images[hw], use_cls=True, pooled=True),
                               with_cls[:, 0], atol=1e-5, rtol=1e-5)


def _write_export(out_dir, params, **over):
  """An export written by the project's exporter (path_jax.export), as the export mode does."""
  cfg = dict(variant="mu/16", cls_token=True, pos_grid=(14, 14))
  cfg.update(over)
  export.export_backbone(out_dir, params, export.arch_from_config(cfg), torch_state_dict=False)


def test_load_safetensors(reference, tmp_path):
  params, images, tokens = reference
  path = str(tmp_path / "backbone.safetensors")
  convert.save_state_dict(convert.export_backbone(params), path)
  backbone = api.load_backbone(path, variant="mu/16")
  assert backbone.module.cls_token and backbone.width == 64
  for a, b in zip(jax.tree.leaves(backbone.params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  _check_features(backbone, images, tokens)
  # The stored grid resampled once at load (pos_grid) = resized on every forward pass.
  native = api.load_backbone(path, variant="mu/16", pos_grid=(16, 8))
  assert native.params["pos_embed"].shape == (16, 8, 64)
  np.testing.assert_allclose(native.features(images[(256, 128)]), tokens[((256, 128), False)],
                             atol=1e-4, rtol=1e-4)
  with pytest.raises(ValueError, match="variant="):
    api.load_backbone(path)


def test_load_export_dir_sharded_and_scanned(reference, tmp_path):
  params, images, tokens = reference
  # Saved from params spread over the 8 test devices: restores onto one device all the same.
  mesh = Mesh(np.array(jax.devices()), ("data",))
  sharded = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
  _write_export(str(tmp_path / "looped"), sharded)
  backbone = api.load_backbone(str(tmp_path / "looped"))
  assert backbone.module.cls_token and backbone.module.pos_grid == (14, 14)
  _check_features(backbone, images, tokens)
  # A scanned model's export (blocks stacked on a layer axis) loads into the same looped module.
  scanned = {k: v for k, v in params.items() if not k.startswith("block_")}
  scanned["blocks"] = jax.tree.map(lambda *xs: np.stack(xs), params["block_0"], params["block_1"])
  _write_export(str(tmp_path / "scanned"), scanned, scan=True)
  _check_features(api.load_backbone(str(tmp_path / "scanned")), images, tokens)


def test_load_errors(reference, tmp_path):
  params, images, _ = reference
  with pytest.raises(ValueError, match="without backbone.json"):
    api.load_backbone(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="no backbone"):
    api.load_backbone(str(tmp_path / "nothing.safetensors"), variant="mu/16")
  _write_export(str(tmp_path / "ok"), params)
  with pytest.raises(ValueError, match="variant"):
    api.load_backbone(str(tmp_path / "ok"), variant="Ti/16")
  assert api.load_backbone(str(tmp_path / "ok" / "backbone.json"), variant="mu/16").module.cls_token
  # A JSON edited by hand so that it no longer describes the weights.
  doc_path = tmp_path / "ok" / "backbone.json"
  doc = json.loads(doc_path.read_text())
  doc["arch"]["depth"] = 3
  doc_path.write_text(json.dumps(doc))
  with pytest.raises(ValueError, match="missing .*block_2"):
    api.load_backbone(str(tmp_path / "ok"))
  no_cls = {k: v for k, v in params.items() if k not in ("cls_token", "cls_pos_embed")}
  path = str(tmp_path / "no_cls.npz")
  convert.save_state_dict(convert.export_backbone(no_cls), path)
  backbone = api.load_backbone(path, variant="mu/16")
  assert not backbone.module.cls_token
  with pytest.raises(ValueError, match="no cls token"):
    backbone.features(images[(224, 224)], use_cls=True)
  with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
    backbone.features(images[(224, 224)][0])


def test_example_script_runs():
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  result = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "extract_features.py")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "224x224" in result.stdout and "256x128" in result.stdout
