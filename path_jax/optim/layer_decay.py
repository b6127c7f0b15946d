"""Layer-wise learning-rate decay: a tree of per-leaf multipliers built from parameter paths.

Backbone layer ids (paper rule, BEiT style with ``depth + 2`` layers):
``patch_embed``, ``pos_embed``, ``cls_token``, ``cls_pos_embed`` -> 0; ``block_i`` -> ``i + 1``;
final ``norm`` -> ``depth + 1``; multiplier ``decay ** (depth + 1 - id)``. Everything outside
``backbone`` (projectors, heads) gets 1.

Authors' rule (``authors_num_layers=N``, REFERENCE.md §4.4): multiplier
``decay ** (N - id - 1)`` with ``patch_embed`` -> 0, ``block_i`` -> ``i + 1``, and
``pos_embed``/``cls_token``/``cls_pos_embed`` -> ``N - 1`` when ``authors_lpe_lr`` (else 0),
final ``norm`` -> ``N - 1``. With N = 12 and depth 12, block 11 gets ``1 / decay``.

Scanned blocks (a ``blocks`` subtree whose leaves have a leading depth axis) get a float32
array ``[depth, 1, ..., 1]`` (the leaf's ndim) that broadcasts over the leaf.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from path_jax.optim import tree_paths

_EMBED_NAMES = ("pos_embed", "cls_token", "cls_pos_embed")
BLOCK_PATTERN = re.compile(r"block_(\d+)")


def backbone_depth(params, backbone_key: str = "backbone",
                   stacked_names: Sequence[str] = ("blocks",)) -> int:
  """Number of transformer blocks: ``block_i`` children (must be 0..depth-1) or the leading
  axis of a scanned ``blocks`` subtree."""
  if backbone_key not in params:
    raise ValueError(f"no '{backbone_key}' entry in the parameter tree (top-level keys: "
                     f"{sorted(params)}); pass the full model params or set backbone_key.")
  backbone = params[backbone_key]
  looped = sorted(int(m.group(1)) for k in backbone if (m := BLOCK_PATTERN.fullmatch(k)))
  scanned = [k for k in backbone if k in stacked_names]
  if looped and scanned:
    raise ValueError(f"backbone has both looped blocks (block_i) and scanned '{scanned[0]}'; "
                     "use one layout.")
  if scanned:
    sizes = {int(leaf.shape[0]) for _, leaf in tree_paths.leaves_with_paths(backbone[scanned[0]])}
    if len(sizes) != 1:
      raise ValueError(f"scanned backbone/{scanned[0]} leaves disagree on the depth axis: "
                       f"{sorted(sizes)}")
    return sizes.pop()
  if looped != list(range(len(looped))):
    raise ValueError(f"backbone blocks must be block_0..block_{{depth-1}}; found {looped}")
  return len(looped)


def layer_decay_multipliers(params, decay: float = 0.75, *, backbone_key: str = "backbone",
                            stacked_names: Sequence[str] = ("blocks",),
                            authors_num_layers: int | None = None,
                            authors_lpe_lr: bool = True,
                            pos_embed_multiplier: float = 1.0):
  """Tree (params' structure) of lr multipliers: python floats, or float32 arrays
  ``[depth, 1, ...]`` for scanned blocks.

  Args:
    params: model params (arrays or ``jax.ShapeDtypeStruct``s) with a ``backbone`` subtree.
    decay: per-layer decay rate (0.75 in the paper); 1.0 gives all ones.
    authors_num_layers: if set, the authors' rule with that ``num_layers`` (12).
    authors_lpe_lr: authors' ``lpe_lr`` (positional embeddings and cls at the top layer).
    pos_embed_multiplier: extra factor for backbone leaves whose name contains 'pos_embed'
      (authors' ``pos_embed_multiplier``; 2.0 in their ViT-L yaml).

  Raises:
    ValueError naming any backbone parameter that no rule places in a layer.
  """
  depth = backbone_depth(params, backbone_key, stacked_names)
  if authors_num_layers is None:
    top = depth + 1
    embed_id = 0
  else:
    top = authors_num_layers - 1
    embed_id = top if authors_lpe_lr else 0
  uncovered = []

  def multiplier(path, leaf):
    if not path or path[0] != backbone_key:
      return 1.0
    name = path[1] if len(path) > 1 else ""
    extra = pos_embed_multiplier if any("pos_embed" in n for n in path[1:]) else 1.0
    if name == "patch_embed":
      layer = 0
    elif name in _EMBED_NAMES or name.startswith("pos_embed_"):   # keyed: pos_embed_<key>
      layer = embed_id
    elif (m := BLOCK_PATTERN.fullmatch(name)):
      layer = int(m.group(1)) + 1
    elif name in stacked_names:
      ids = np.arange(1, depth + 1, dtype=np.float64)
      values = (decay ** (top - ids)) * extra
      return values.astype(np.float32).reshape((depth,) + (1,) * (len(leaf.shape) - 1))
    elif name == "norm":
      layer = top
    else:
      uncovered.append(tree_paths.path_str(path))
      return 1.0
    return float(decay ** (top - layer) * extra)

  tree = tree_paths.map_with_paths(multiplier, params)
  if uncovered:
    raise ValueError(
        f"layer decay: no layer id for backbone parameter(s) {uncovered[:10]}; known backbone "
        f"children are patch_embed, {', '.join(_EMBED_NAMES)}, block_<i>, "
        f"{', '.join(stacked_names)}, norm. Extend path_jax/optim/layer_decay.py.")
  return tree


def describe(tree) -> list[str]:
  """One line per leaf, ``path: multiplier`` (arrays shown flattened), for logs."""
  lines = []
  for path, value in tree_paths.leaves_with_paths(tree):
    shown = np.round(np.ravel(value), 6).tolist() if np.ndim(value) else round(float(value), 6)
    lines.append(f"{tree_paths.path_str(path)}: {shown}")
  return lines
