"""Attribute head: pooled patch tokens -> Linear -> BatchNorm1d -> logits (REFERENCE §3.3)."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from path_jax.tasks.base import HeadInputs


class AttributeHead(nn.Module):
  """PATH ``pedattr_cls_vit_A``.

  Outputs (dict): 'logits' [B, A].
  Parameters: 'fc' {kernel [C, A], bias [A]}, 'bn' {scale [A], bias [A]}; batch_stats 'bn'.
  """
  num_attributes: int
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5

  @nn.compact
  def __call__(self, inputs: HeadInputs, *, train: bool) -> dict[str, jax.Array]:
    pooled = jnp.mean(inputs.tokens, axis=1)                     # AdaptiveAvgPool2d(1): [B, C]
    fan_in = pooled.shape[-1]
    # PyTorch Linear's default init, U(+-1/sqrt(fan_in)), so that from-scratch heads match the
    # reference; the bias is redundant before the BatchNorm but kept for checkpoint parity.
    logits = nn.Dense(
        self.num_attributes,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), ("embed", None)),
        bias_init=nn.with_logical_partitioning(_uniform(1.0 / fan_in ** 0.5), (None,)),
        name="fc")(pooled)
    # Statistics over the global batch: under jit with the batch sharded, a BatchNorm without
    # axis_name reduces over every device's shard.
    logits = nn.BatchNorm(
        use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones, (None,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)),
        name="bn")(logits)
    return {"logits": logits}


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init
