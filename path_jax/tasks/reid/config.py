"""Dataset-level config fields of a ReID dataset (REFERENCE.md §3.4)."""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
  """Fields a ReID dataset's config subtree carries; ``num_classes`` must be set.

  * ``num_classes``: number of training identities (reid_4sets 3261, LUPerson-NL 151595).
  * ``label_smoothing``: epsilon of the identity cross-entropy (PATH uses 0).
  * ``triplet_weight``: weight of the triplet term in ``CE + w * triplet`` (PATH: 1).
  * ``triplet_margin``: ``None`` = soft margin (PATH's ``tri_margin: ~``), a float = hard margin.
  * ``bn_momentum`` / ``bn_epsilon``: BNNeck statistics, flax convention (PyTorch momentum 0.1
    is flax momentum 0.9).
  * ``classifier_init_std``: std of the bias-free classifier's normal init (PATH: 0.001).
  * ``classes_multiple_of``: the classifier's class axis is padded up to a multiple of this so
    that the mesh axes can shard it evenly (151,595 = 5 x 30,319 divides by no mesh size; jit
    refuses uneven shardings). The padded columns are cut off before the loss, so they never
    receive a gradient; ``logits`` always has exactly ``num_classes`` columns. Keep it a
    multiple of the product of the mesh axes the 'classes' rule maps to.
  """
  return ml_collections.ConfigDict({
      "num_classes": config_dict.placeholder(int),
      "label_smoothing": 0.0,
      "triplet_weight": 1.0,
      "triplet_margin": config_dict.placeholder(float),
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
      "classifier_init_std": 1e-3,
      "classes_multiple_of": 1024,
  })


def require(cfg: Mapping[str, Any], key: str, *, optional: bool = False) -> Any:
  """``cfg[key]``, with an error that names the missing field and where defaults come from.

  ``optional`` fields may hold ``None`` (a meaningful value, e.g. soft-margin triplet) but must
  still be present.
  """
  value = cfg.get(key, None)
  if key not in cfg or (value is None and not optional):
    raise KeyError(f"ReID dataset config has no value for {key!r}; start the dataset's subtree "
                   f"from path_jax.tasks.reid.default_config() and set {key!r}.")
  return value
