"""Anchor-DETR style query decoder for pedestrian detection (REFERENCE.md §3.5, paper §4.3).

Memory: the projected patch tokens ``[B, Hp*Wp, C]`` -> ``input_proj`` (1x1 conv = Dense C->D) plus
a learned level embedding. Queries: ``num_patterns`` content embeddings x ``num_anchors`` learned
anchor points (x, y) in [0, 1]; query ``k`` pairs content ``k // num_anchors`` with anchor
``k % num_anchors``. Positions: ``adapt_pos2d(pos2posemb2d(point))`` for the anchors (queries) and,
with the *same* MLP, for the normalised centres of the patch grid (keys). Each decoder layer is
post-norm cross-attention -> self-attention -> FFN (ReLU), LayerNorm eps 1e-5. After every layer a
shared LayerNorm feeds a 1-logit classifier and a 3-layer box MLP whose (cx, cy) are offsets, in
logit space, from the query's anchor: ``box = sigmoid(mlp + [logit(anchor), 0, 0])``.

Parameter layout::

  input_proj/{kernel [C,D], bias [D]}   level_embed [1,D]   anchors [A,2]   query_feat [P,D]
  adapt_pos2d/{fc1,fc2}/{kernel [D,D], bias [D]}
  layer_0 .. layer_{L-1}/
    cross_attn/{query,key,value,out}/{kernel [D,D], bias [D]}  norm1/{scale,bias}
    self_attn/{query,key,value,out}/...                         norm2/{scale,bias}
    ffn/{fc1/{kernel [D,F]}, fc2/{kernel [F,D]}}                norm3/{scale,bias}
  decoder_norm/{scale,bias}   class_embed/{kernel [D,1], bias [1]}
  bbox_embed/{fc0,fc1}/{kernel [D,D]}, bbox_embed/fc2/{kernel [D,4]}
"""
from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from path_jax.model import attention as attention_lib
from path_jax.tasks.base import HeadInputs

# The reference's `fan_in` arch: every weight matrix ~ N(0, 1/fan_in), untruncated.
FAN_IN = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
# Detectron2's c2_xavier_fill (kaiming_uniform, a=1) for input_proj: U(+-sqrt(3/fan_in)).
C2_XAVIER = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
LN_EPS = 1e-5
INVERSE_SIGMOID_EPS = 1e-5


def _dense(features: int, axes: tuple[str | None, str | None], dtype, name: str,
           kernel_init=FAN_IN) -> nn.Dense:
  return nn.Dense(
      features, dtype=dtype, param_dtype=jnp.float32, name=name,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axes[1],)))


def _layer_norm(dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)))


def inverse_sigmoid(x: jax.Array, eps: float = INVERSE_SIGMOID_EPS) -> jax.Array:
  """logit(x) with x clamped to [0, 1] and both x and 1 - x floored at ``eps``."""
  x = jnp.clip(x, 0.0, 1.0)
  return jnp.log(jnp.maximum(x, eps) / jnp.maximum(1.0 - x, eps))


def pos2posemb2d(points: jax.Array, num_feats: int, temperature: float = 10000.0) -> jax.Array:
  """Sine embedding ``[..., 2 * num_feats]`` of normalised points ``[..., 2]`` given as (x, y).

  Each coordinate is scaled by 2*pi and divided by ``temperature ** (2 * (k // 2) / num_feats)``;
  even features take the sine, odd ones the cosine; the output is ``concat(emb_y, emb_x)``.
  """
  if num_feats % 2:
    raise ValueError(f"pos2posemb2d: num_feats={num_feats} must be even; make hidden_dim "
                     "divisible by 4.")
  k = jnp.arange(num_feats, dtype=jnp.float32)
  dim_t = temperature ** (2.0 * (k // 2) / num_feats)
  scaled = points.astype(jnp.float32)[..., None] * (2.0 * math.pi) / dim_t    # [..., 2, F]
  emb = jnp.stack([jnp.sin(scaled[..., 0::2]), jnp.cos(scaled[..., 1::2])], axis=-1)
  emb = emb.reshape(*points.shape[:-1], 2, num_feats)                          # interleaved sin/cos
  return jnp.concatenate([emb[..., 1, :], emb[..., 0, :]], axis=-1)


def grid_centres(grid: tuple[int, int]) -> np.ndarray:
  """``[Hp*Wp, 2]`` (x, y) centres of the row-major patch grid, normalised to [0, 1]."""
  h, w = grid
  ys, xs = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
  return np.stack([xs.reshape(-1), ys.reshape(-1)], axis=-1).astype(np.float32)


class MultiHeadAttention(nn.Module):
  """PyTorch ``nn.MultiheadAttention`` semantics: separate q/k/v/out projections with bias."""
  num_heads: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None   # path_jax.model.attention (resolved for the platform)

  @nn.compact
  def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """``q [B, Tq, D]``, ``k, v [B, Tk, D]`` -> ``[B, Tq, D]``."""
    d = q.shape[-1]
    if d % self.num_heads:
      raise ValueError(f"hidden_dim={d} is not divisible by num_heads={self.num_heads}.")
    hd = d // self.num_heads

    def heads(x, name):
      y = _dense(d, ("embed", "qkv"), self.dtype, name)(x)
      return y.reshape(*y.shape[:-1], self.num_heads, hd)

    out = attention_lib.dot_product_attention(heads(q, "query"), heads(k, "key"),
                                              heads(v, "value"), scale=hd ** -0.5,
                                              impl=self.attention_impl)
    return _dense(d, ("qkv", "embed"), self.dtype, "out")(out.reshape(*q.shape[:-1], d))


class Mlp(nn.Module):
  """Dense layers with ReLU between them (none after the last).

  ``layers`` gives, per layer, ``(name, features, logical axes of the kernel)``.
  """
  layers: tuple[tuple[str, int, tuple[str | None, str | None]], ...]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, (name, features, axes) in enumerate(self.layers):
      x = _dense(features, axes, self.dtype, name)(x)
      if i < len(self.layers) - 1:
        x = nn.relu(x)
    return x


class DecoderLayer(nn.Module):
  """Post-norm cross-attention -> self-attention -> FFN."""
  num_heads: int
  ffn_dim: int
  dtype: Any = jnp.float32
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, tgt: jax.Array, memory: jax.Array, query_pos: jax.Array,
               key_pos: jax.Array) -> jax.Array:
    """``tgt [B, Q, D]``, ``memory [B, T, D]``, ``query_pos [Q, D]``, ``key_pos [T, D]``."""
    q = tgt + query_pos
    y = MultiHeadAttention(self.num_heads, self.dtype, self.attention_impl, name="cross_attn")(
        q, memory + key_pos, memory)
    tgt = _layer_norm(self.dtype, "norm1")(tgt + y)
    q = tgt + query_pos
    y = MultiHeadAttention(self.num_heads, self.dtype, self.attention_impl,
                           name="self_attn")(q, q, tgt)
    tgt = _layer_norm(self.dtype, "norm2")(tgt + y)
    d = tgt.shape[-1]
    y = Mlp((("fc1", self.ffn_dim, ("embed", "mlp")), ("fc2", d, ("mlp", "embed"))), self.dtype,
            name="ffn")(tgt)
    return _layer_norm(self.dtype, "norm3")(tgt + y)


class DetectionHead(nn.Module):
  """Query-based detection decoder; returns per-layer logits and normalised cxcywh boxes.

  Attributes mirror the dataset config fields of the same names (see ``default_config``).
  """
  hidden_dim: int = 256
  num_heads: int = 8
  ffn_dim: int = 2048
  num_layers: int = 9
  num_anchors: int = 300
  num_patterns: int = 3
  remat: bool = False
  dtype: Any = jnp.float32
  attention_impl: str | None = None   # path_jax.model.attention; None: jax.default_backend()'s
  # Decoder layers as one scanned body (parameters 'layers', stacked) instead of layer_0..: the
  # same numbers, a 9x smaller program to compile (pod pretraining configs turn it on).
  scan: bool = False

  @nn.compact
  def __call__(self, inputs: HeadInputs, train: bool = False) -> dict[str, jax.Array]:
    """Returns ``logits [L, B, Q]`` and ``boxes [L, B, Q, 4]`` (normalised cxcywh, float32).

    ``L = num_layers``, ``Q = num_patterns * num_anchors``. ``train`` is unused (no dropout, as
    the reference decoder), accepted for the common head signature.
    """
    del train
    d = self.hidden_dim
    memory = _dense(d, ("embed", None), self.dtype, "input_proj", kernel_init=C2_XAVIER)(
        inputs.tokens)
    level = self.param("level_embed", nn.with_logical_partitioning(FAN_IN, (None, "embed")), (1, d))
    memory = memory + level[0].astype(self.dtype)

    anchors = self.param(
        "anchors", nn.with_logical_partitioning(nn.initializers.uniform(1.0), (None, None)),
        (self.num_anchors, 2))
    content = self.param("query_feat", nn.with_logical_partitioning(FAN_IN, (None, "embed")),
                         (self.num_patterns, d))
    # Query k = content k // A with anchor k % A.
    query_points = jnp.tile(anchors, (self.num_patterns, 1))                    # [Q, 2]
    tgt = jnp.repeat(content, self.num_anchors, axis=0).astype(self.dtype)     # [Q, D]
    tgt = jnp.broadcast_to(tgt, (inputs.tokens.shape[0],) + tgt.shape)

    adapt = Mlp((("fc1", d, ("embed", "mlp")), ("fc2", d, ("mlp", "embed"))), self.dtype,
                name="adapt_pos2d")
    query_pos = adapt(pos2posemb2d(query_points, d // 2).astype(self.dtype))
    key_pos = adapt(pos2posemb2d(jnp.asarray(grid_centres(inputs.grid)), d // 2).astype(self.dtype))

    layer_cls = nn.remat(DecoderLayer) if self.remat else DecoderLayer
    decoder_norm = _layer_norm(self.dtype, "decoder_norm")
    class_embed = _dense(1, ("embed", None), self.dtype, "class_embed")
    bbox_embed = Mlp((("fc0", d, ("embed", "mlp")), ("fc1", d, ("mlp", "embed")),
                      ("fc2", 4, ("embed", None))), self.dtype, name="bbox_embed")
    ref = jnp.concatenate([inverse_sigmoid(query_points), jnp.zeros_like(query_points)], axis=-1)

    if self.scan:   # one layer body in the program; parameters stacked under 'layers'
      body = lambda mdl, carry, _: (lambda y: (y, y))(mdl(carry, memory, query_pos, key_pos))
      stack = nn.scan(body, variable_axes={"params": 0}, split_rngs={"params": True},
                      length=self.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
      _, outs = stack(layer_cls(self.num_heads, self.ffn_dim, self.dtype, self.attention_impl,
                                name="layers"), tgt, None)                    # [L, B, Q, D]
    else:
      outs = []
      for i in range(self.num_layers):
        tgt = layer_cls(self.num_heads, self.ffn_dim, self.dtype, self.attention_impl,
                        name=f"layer_{i}")(tgt, memory, query_pos, key_pos)
        outs.append(tgt)
      outs = jnp.stack(outs)
    # The norm and prediction heads are shared by the layers: applied to all of them at once.
    h = decoder_norm(outs)
    logits = class_embed(h)[..., 0].astype(jnp.float32)
    boxes = jax.nn.sigmoid(bbox_embed(h).astype(jnp.float32) + ref)
    return {"logits": logits, "boxes": boxes}
