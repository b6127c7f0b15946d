"""Dataset-level config fields of a pedestrian-attribute dataset (REFERENCE.md §3.3)."""
from __future__ import annotations

from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict


def default_config() -> ml_collections.ConfigDict:
  """Fields an attribute dataset's config subtree carries; both must be set.

  * ``num_attributes``: A, the number of binary attributes (PA-100k 26, RAP2 54, PETA 35,
    the pretraining union rap2+PA-100k 80, 5set 154).
  * ``positive_ratios``: list of A floats, r_a = fraction of positive labels of attribute a in
    the training set (the yaml's ``sample_weight``); positives weigh exp(1 - r_a), negatives
    exp(r_a).
  * ``bn_momentum`` / ``bn_epsilon``: the logit BatchNorm1d, PyTorch defaults in flax
    convention (PyTorch momentum 0.1 = flax 0.9).
  """
  return ml_collections.ConfigDict({
      "num_attributes": config_dict.placeholder(int),
      "positive_ratios": config_dict.placeholder(list),
      "bn_momentum": 0.9,
      "bn_epsilon": 1e-5,
  })


def require(cfg: Mapping[str, Any], key: str) -> Any:
  """``cfg[key]``, with an error that names the missing field and where defaults come from."""
  if key not in cfg or cfg.get(key, None) is None:
    raise KeyError(f"attribute dataset config has no value for {key!r}; start the dataset's "
                   f"subtree from path_jax.tasks.attributes.default_config() and set {key!r}.")
  return cfg[key]
