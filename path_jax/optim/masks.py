"""Per-leaf masks from parameter paths: where weight decay applies, which leaves train.

Weight decay (DESIGN.md "Optimisation"): none on biases, norm parameters, positional
embeddings, cls tokens and projector gates; decay on kernels. Rules are ``(regex, value)``
pairs fullmatched against the '/'-joined path, first match wins, and they must cover every
leaf. (The authors' code also decays custom-norm weights in heads and the gate scalars,
REFERENCE.md §4.4; pass other rules to reproduce that.)

Freezing (REFERENCE.md §6.1):

* ``'none'``: everything trains.
* ``'backbone'``: every backbone leaf frozen (head-only finetuning).
* ``'partial'``: the backbone frozen except its last ``open_last`` blocks and the final
  ``norm`` ("OpenLast2" for 2). Scanned ``blocks`` leaves get a bool array ``[depth, 1, ...]``
  that is true for the open layers.
* ``'pos_embed'``: only ``backbone/pos_embed`` (and keyed ``pos_embed_<key>``) frozen.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from path_jax.optim import tree_paths
from path_jax.optim.layer_decay import BLOCK_PATTERN, backbone_depth

DEFAULT_WEIGHT_DECAY_RULES: tuple[tuple[str, bool], ...] = (
    (r"(.*/)?bias", False),
    (r"(.*/)?scale", False),            # LayerNorm / BatchNorm / GroupNorm scales
    (r".*pos_embed.*", False),          # pos_embed, cls_pos_embed
    (r".*cls_token.*", False),
    (r".*gate_alpha.*", False),         # projector gate scalars
    (r"(.*/)?embedding", False),        # nn.Embed tables (authors exclude nn.Embedding)
    # Detection decoder tables that are nn.Embedding in the reference (REFERENCE.md §3.5):
    # anchor points, content queries, level embedding.
    (r"(.*/)?(anchors|query_feat|level_embed)", False),
    (r"(.*/)?kernel", True),            # Dense / Conv / ConvTranspose
)

FREEZE_MODES = ("none", "backbone", "partial", "pos_embed")


def weight_decay_mask(params, rules: Sequence[tuple[str, bool]] = DEFAULT_WEIGHT_DECAY_RULES):
  """Tree of bools (params' structure): True where decoupled weight decay applies."""
  return tree_paths.match_rules(params, rules, "weight-decay mask")


def trainable_mask(params, freeze: str = "none", *, open_last: int = 2,
                   backbone_key: str = "backbone", stacked_names: Sequence[str] = ("blocks",)):
  """Tree of bools, or bool arrays ``[depth, 1, ...]`` for partially frozen scanned stacks:
  True where the parameter trains."""
  if freeze not in FREEZE_MODES:
    raise ValueError(f"unknown freeze mode '{freeze}'; use one of {FREEZE_MODES}.")
  if freeze == "none":
    return tree_paths.map_with_paths(lambda path, leaf: True, params)
  depth = backbone_depth(params, backbone_key, stacked_names)
  if freeze == "partial" and not 0 <= open_last <= depth:
    raise ValueError(f"freeze_open_last={open_last} must lie in 0..depth={depth}.")

  def trainable(path, leaf):
    if not path or path[0] != backbone_key:
      return True
    name = path[1] if len(path) > 1 else ""
    if freeze == "backbone":
      return False
    if freeze == "pos_embed":
      return not (name == "pos_embed" or name.startswith("pos_embed_"))
    # partial
    if name == "norm":
      return True
    if (m := BLOCK_PATTERN.fullmatch(name)):
      return int(m.group(1)) >= depth - open_last
    if name in stacked_names:
      layer_open = np.arange(depth) >= depth - open_last
      return layer_open.reshape((depth,) + (1,) * (len(leaf.shape) - 1))
    return False

  return tree_paths.map_with_paths(trainable, params)


def is_fully_frozen(value) -> bool:
  """Whether a :func:`trainable_mask` value freezes its whole leaf."""
  return not bool(np.any(value))


def is_partially_frozen(value) -> bool:
  """Whether a :func:`trainable_mask` value freezes some layers of a stacked leaf only."""
  return bool(np.any(value)) and not bool(np.all(value))
