"""Analytic FLOP counts (1 multiply-add = 2 FLOPs), for images/s -> MFU.

Counted: every matrix multiply (patch embedding, qkv, attention scores and values, output
projection, MLP) and the positional-embedding resize; element-wise work (norms, GELU, softmax) is
left out, as is usual for MFU. Forward+backward is taken as 3x forward.
"""
from __future__ import annotations


def vit_forward_flops(width: int, depth: int, mlp_dim: int, patch: int, height: int, width_px: int,
                      cls_token: bool = False, pos_grid: tuple[int, int] = (14, 14)) -> float:
  """Forward FLOPs of one image through the backbone."""
  gh, gw = -(-height // patch), -(-width_px // patch)
  n_patch = gh * gw
  n = n_patch + int(cls_token)
  c = width
  embed = 2 * n_patch * (patch * patch * 3) * c
  # Resize of the positional grid: [gh,14] @ [14,14,C] then @ [14,gw] (shared by the batch, tiny).
  block = 2 * (n * c * 3 * c       # qkv
               + n * n * c         # q k^T
               + n * n * c         # attn v
               + n * c * c         # proj
               + 2 * n * c * mlp_dim)  # fc1 + fc2
  return float(embed + depth * block)


def projector_forward_flops(width: int, dim: int, num_layers: int, num_tokens: int,
                            mlp_ratio: int = 4) -> float:
  """Forward FLOPs of the paper projector (per image) at reduced width ``dim``."""
  n, d = num_tokens, dim
  per_layer = 2 * (n * width * d                  # reduce
                   + n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * mlp_ratio * d)
  return float(num_layers * per_layer + 2 * n * d * width)
