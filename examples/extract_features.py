"""Extract features with a PATH backbone in your own JAX code (runs anywhere, no downloads).

    python examples/extract_features.py                     # a tiny random backbone
    python examples/extract_features.py --checkpoint=W.pth --variant=B/16

Without --checkpoint the script makes a tiny random ViT ("mu/16"), writes it as a PyTorch-layout
safetensors file with path_jax.model.convert (the format the released PATH / MAE weights use),
and loads it back with path_jax.api.load_backbone, the same call that reads a real checkpoint or
an export directory of ours. It then extracts features at two input sizes: the positional
embedding is resized to each patch grid, so one backbone serves 224x224 and 256x128 inputs.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from path_jax import api
from path_jax.model import convert, vit


def make_random_checkpoint(path: str, variant: str = "mu/16") -> None:
  """Writes a randomly initialised backbone (with a cls token) to ``path`` in the MAE layout."""
  module = vit.ViT(**vit.variant(variant), cls_token=True)
  params = module.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))["params"]
  convert.save_state_dict(convert.export_backbone(nn.unbox(params)), path)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", default="",
                      help="export directory or .pth/.safetensors/.npz (default: a random one)")
  parser.add_argument("--variant", default="mu/16", help="ViT variant of a checkpoint file")
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    path = args.checkpoint
    if not path:
      path = os.path.join(tmp, "backbone.safetensors")
      make_random_checkpoint(path, args.variant)
      print(f"wrote a random {args.variant} backbone to {path}")
    variant = None if os.path.isdir(path) else args.variant
    backbone = api.load_backbone(path, variant=variant)

  rng = np.random.default_rng(0)
  for h, w in ((224, 224), (256, 128)):
    images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)   # uint8 RGB, any size
    tokens = backbone.features(images)                             # [B, patches, C]
    pooled = backbone.features(images, pooled=True)                # [B, C], mean patch token
    line = f"{h}x{w}: tokens {tuple(tokens.shape)}, pooled {tuple(pooled.shape)}"
    if backbone.module.cls_token:
      cls = backbone.features(images, use_cls=True, pooled=True)  # [B, C], the cls token
      line += f", cls {tuple(cls.shape)}"
    print(line)


if __name__ == "__main__":
  main()
