"""What the demo leaves behind (issue 15): an export whose files all have the ordinary mode, and
pictures of every pretraining task (each pretraining set has an eval split and a visualiser)."""
import importlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from path_jax import export
from path_jax.model import vit


@pytest.fixture(scope="module")
def tiny_params():
  module = vit.ViT(width=32, depth=1, num_heads=2, mlp_dim=64, patch_size=16, cls_token=True)
  shapes = nn.unbox(jax.eval_shape(module.init, jax.random.key(0, impl="rbg"),
                                   jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8))["params"])
  return jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_export_files_follow_the_umask(tiny_params, tmp_path, umask):
  arch = export.arch_from_config(dict(variant="mu/16", width=32, depth=1, num_heads=2,
                                      mlp_dim=64, patch_size=16, cls_token=True, pos_grid=(14, 14)))
  old = os.umask(umask)
  try:
    paths = export.export_backbone(tmp_path / "out", tiny_params, arch, torch_state_dict=True)
  finally:
    os.umask(old)
  mode = lambda p: os.stat(p).st_mode & 0o777
  want = 0o666 & ~umask
  assert mode(paths["json"]) == want                # an ordinary file, for reference
  assert mode(paths["safetensors"]) == want, oct(mode(paths["safetensors"]))
  assert os.path.getsize(paths["safetensors"]) > 0


def test_demo_pretraining_sets_all_get_pictures():
  """demo.py evaluates the pretraining checkpoint with this config: every set must have an eval
  split and its task a visualiser, and pictures must be on, or a task's pictures go missing."""
  from configs import demo
  cfg = demo.get_config("pretrain")
  assert cfg.evaluate.pictures > 0 and not cfg.evaluate.split
  tasks = set()
  for name, d in cfg.datasets.items():
    assert d.get("eval_split", ""), name
    module = importlib.import_module(f"path_jax.tasks.{d.task}.visualize")
    assert callable(module.draw)
    tasks.add(d.task)
  assert {"pose", "parsing", "detection", "reid", "attributes"} <= tasks
