"""ReID inference feature (REFERENCE §6.4: ``test_feature_name: feature_nobn``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def retrieval_feature(feature: jax.Array, eps: float = 1e-12) -> jax.Array:
  """[B, C] pre-BNNeck features -> L2-normalised float32 features (``F.normalize``, eps 1e-12).

  Squared euclidean distances between these are ``2 - 2 cos``, what the Market-1501 protocol
  ranks by.
  """
  feature = feature.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(feature * feature, axis=-1, keepdims=True))
  return feature / jnp.maximum(norm, eps)
