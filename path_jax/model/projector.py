"""Task-specific projectors (paper §4.2) and the authors' ladder-side-attention variant.

Both read the backbone's stacked features ``[L+1, B, N, C]`` (embedded tokens, then every block's
output; see :class:`path_jax.model.vit.ViT`) and return ``[B, N, C]`` like the backbone's tokens.
Both work at a reduced width ``d`` (default ``C // 8``) with a linear map in per layer and one
linear map out, so a projector costs a few per cent of the backbone.

* ``kind='paper'`` (default, :class:`GatedProjector`): for each selected layer ``l``,
  ``z_l = A(E(W_l f_l))`` with ``E`` squeeze-and-excitation channel attention and ``A`` a pre-norm
  self-attention block; then ``p_l = mu_l z_l + (1 - mu_l) p_{l-1}``, ``p_1 = z_1``,
  ``mu_l = sigmoid(alpha_l / T)``, ``alpha_l = 0`` at init, ``T = 0.1``. The per-layer ``z_l``
  are independent, so they are computed for all layers at once (``nn.vmap`` over a stacked
  parameter axis); the gate recurrence is linear and collapses to one weighted sum.
* ``kind='ladder'`` (:class:`LadderProjector`): REFERENCE.md §2, the released code's
  ``LadderSideAttentionFPN``: ``f = R_0(F_0)``; for ``i >= 1``:
  ``f = mu_i f + (1 - mu_i) R_i(F_i)``, ``f = TB_i(f)``; ``out = W_out f``. Sequential by nature
  (each transformer block reads the running mixture), so it is an ``nn.scan``.

Layer selection (``layers``): ``'blocks'`` = the output of every block (the paper),
``'authors'`` = the embedded tokens and blocks ``0..L-2`` (what the released code feeds, REFERENCE
§1.3), or an explicit tuple of indices into the ``L+1`` features.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from path_jax.model.vit import Block, _dense

PROJ_AXIS = "proj_embed"   # logical name of the reduced width (replicated by default rules)


def select_layers(spec: str | Sequence[int], num_features: int) -> tuple[int, ...]:
  """Indices into the ``num_features = L+1`` backbone features for a layer spec."""
  depth = num_features - 1
  if spec == "blocks":
    return tuple(range(1, depth + 1))
  if spec == "authors":
    return tuple(range(0, depth))
  if isinstance(spec, str):
    raise ValueError(f"projector.layers must be 'blocks', 'authors' or a list of indices, got {spec!r}")
  idx = tuple(int(i) for i in spec)
  bad = [i for i in idx if not 0 <= i < num_features]
  if bad or len(idx) < 1:
    raise ValueError(f"projector.layers {list(idx)} out of range: the backbone gives {num_features} "
                     f"features (0 = embeddings, i = output of block i-1)")
  return idx


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation over channels; a leading cls token is passed through unscaled."""
  reduction: int = 16
  has_cls: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    hidden = max(1, d // self.reduction)
    patches = x[:, 1:] if self.has_cls else x
    s = jnp.mean(patches.astype(jnp.float32), axis=1).astype(self.dtype)          # [B, d]
    s = nn.relu(_dense(hidden, (PROJ_AXIS, None), self.dtype, "fc1", use_bias=False)(s))
    s = nn.sigmoid(_dense(d, (None, PROJ_AXIS), self.dtype, "fc2", use_bias=False)(s))
    patches = patches * s[:, None, :]
    return jnp.concatenate([x[:, :1], patches], axis=1) if self.has_cls else patches


class _LayerUnit(nn.Module):
  """One layer's ``z_l = A(E(W_l f_l))`` at the reduced width."""
  dim: int
  num_heads: int
  mlp_ratio: int
  se_reduction: int
  has_cls: bool
  dtype: Any
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, f: jax.Array) -> jax.Array:
    x = _dense(self.dim, ("embed", PROJ_AXIS), self.dtype, "reduce")(f)
    if self.se_reduction:
      x = SqueezeExcite(self.se_reduction, self.has_cls, self.dtype, name="se")(x)
    x, _ = Block(self.num_heads, self.dim * self.mlp_ratio, self.dtype, ln_eps=1e-5,
                 qkv_bias=False, axis=PROJ_AXIS, attention_impl=self.attention_impl,
                 name="attn_block")(x)
    return x


def gate_weights(alpha: jax.Array, temperature: float) -> jax.Array:
  """Weights ``w`` with ``p_n = sum_l w_l z_l`` for the recurrence ``p_l = mu_l z_l + (1-mu_l) p_{l-1}``.

  ``alpha`` has ``n - 1`` entries (layers 2..n; ``p_1 = z_1``). ``w_l = mu_l prod_{k>l} (1 - mu_k)``
  with ``mu_1 = 1``.
  """
  mu = jax.nn.sigmoid(alpha.astype(jnp.float32) / temperature)
  mu = jnp.concatenate([jnp.ones((1,), mu.dtype), mu])
  keep = 1.0 - mu
  # prod_{k>l} keep_k, a reverse exclusive product over the (at most a few dozen) layers,
  # unrolled: jnp.cumprod's associative scan and its transpose cost hundreds of pad/multiply
  # operations per projector in the compiled step for these dozen scalars.
  tails, running = [], jnp.ones((), mu.dtype)
  for l in reversed(range(mu.shape[0])):
    tails.append(running)
    running = running * keep[l]
  return mu * jnp.stack(tails[::-1])


class GatedProjector(nn.Module):
  """The paper's projector. Input ``[L+1, B, N, C]``; output ``[B, N, C]``."""
  dim: int
  num_heads: int = 2
  mlp_ratio: int = 4
  se_reduction: int = 16
  temperature: float = 0.1
  layers: Any = "blocks"
  has_cls: bool = False
  dtype: Any = jnp.float32
  attention_impl: str | None = None   # path_jax.model.attention (resolved by the caller)

  @nn.compact
  def __call__(self, features: jax.Array, has_cls: bool | None = None) -> jax.Array:
    """``has_cls`` (default: the field) says whether token 0 is a cls token, which the
    squeeze-and-excitation passes through; the parameters do not depend on it, so one projector
    serves cls-token and patch-only tasks alike (``share='all'``)."""
    has_cls = self.has_cls if has_cls is None else bool(has_cls)
    idx = select_layers(self.layers, features.shape[0])
    if idx == tuple(range(idx[0], idx[-1] + 1)):   # a static slice, not a gather (copy)
      f = features[idx[0]:idx[-1] + 1]
    else:
      f = features[jnp.asarray(idx)]
    units = nn.vmap(_LayerUnit, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=0, out_axes=0, axis_size=len(idx),
                    metadata_params={nn.PARTITION_NAME: "layers"})
    z = units(self.dim, self.num_heads, self.mlp_ratio, self.se_reduction, has_cls,
              self.dtype, self.attention_impl, name="layers")(f)            # [n, B, N, d]
    if len(idx) > 1:   # one gate per layer after the first (p_1 = z_1)
      alpha = self.param("gate_alpha", nn.with_logical_partitioning(
          nn.initializers.zeros_init(), (None,)), (len(idx) - 1,))
      w = gate_weights(alpha, self.temperature).astype(z.dtype)
      p = jnp.einsum("l,lbnd->bnd", w, z)
    else:              # a one-block backbone: nothing to gate (and no zero-size parameter)
      p = z[0]
    return _dense(features.shape[-1], (PROJ_AXIS, "embed"), self.dtype, "out")(p)


class _LadderStep(nn.Module):
  dim: int
  num_heads: int
  mlp_ratio: int
  dtype: Any
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, f: jax.Array, inputs: tuple[jax.Array, jax.Array]):
    r, mu = inputs
    f = mu.astype(f.dtype) * f + (1 - mu).astype(f.dtype) * r
    f, _ = Block(self.num_heads, self.dim * self.mlp_ratio, self.dtype, ln_eps=1e-5,
                 qkv_bias=False, axis=PROJ_AXIS, attention_impl=self.attention_impl,
                 name="block")(f)
    return f, None


class LadderProjector(nn.Module):
  """The released code's ladder side attention (REFERENCE.md §2). ``[L+1,B,N,C] -> [B,N,C]``."""
  dim: int
  num_heads: int = 2
  mlp_ratio: int = 4
  temperature: float = 1.0
  layers: Any = "authors"
  dtype: Any = jnp.float32
  attention_impl: str | None = None

  @nn.compact
  def __call__(self, features: jax.Array, has_cls: bool | None = None) -> jax.Array:
    del has_cls   # every token is treated alike
    idx = select_layers(self.layers, features.shape[0])
    if len(idx) < 2:
      raise ValueError("the ladder projector needs at least two backbone layers")
    f = features[jnp.asarray(idx)]
    reduce = nn.vmap(nn.Dense, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=0, out_axes=0, axis_size=len(idx),
                     metadata_params={nn.PARTITION_NAME: "layers"})
    r = reduce(self.dim, dtype=self.dtype, param_dtype=jnp.float32,
               kernel_init=nn.with_logical_partitioning(nn.initializers.truncated_normal(0.02),
                                                        ("embed", PROJ_AXIS)),
               bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (PROJ_AXIS,)),
               name="reduce")(f)                                                 # [n, B, N, d]
    alpha = self.param("gate_alpha", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                                   (None,)), (len(idx) - 1,))
    mu = jax.nn.sigmoid(alpha / self.temperature)
    steps = nn.scan(_LadderStep, variable_axes={"params": 0}, split_rngs={"params": True},
                    in_axes=0, length=len(idx) - 1,
                    metadata_params={nn.PARTITION_NAME: "layers"})
    out, _ = steps(self.dim, self.num_heads, self.mlp_ratio, self.dtype, self.attention_impl,
                   name="steps")(
        r[0], (r[1:], mu))
    return _dense(features.shape[-1], (PROJ_AXIS, "embed"), self.dtype, "out",
                  kernel_init=nn.initializers.truncated_normal(0.02))(out)


def make_projector(cfg, width: int, has_cls: bool, dtype, name: str,
                   attention_impl: str | None = None) -> nn.Module:
  """Builds a projector from a ``projector`` config subtree for a backbone of width ``width``;
  its attention uses ``attention_impl`` (the backbone's, resolved for the target platform)."""
  def get(key, default):   # a field left at None takes the kind's default
    value = cfg.get(key, None)
    return default if value is None else value

  kind = get("kind", "paper")
  dim = int(get("dim", 0) or width // int(get("reduction", 8)))
  common = dict(dim=dim, num_heads=int(get("num_heads", 2)), mlp_ratio=int(get("mlp_ratio", 4)),
                dtype=dtype, attention_impl=attention_impl, name=name)
  if kind == "paper":
    return GatedProjector(**common, se_reduction=int(get("se_reduction", 16)),
                          temperature=float(get("temperature", 0.1)),
                          layers=_layers(get("layers", "blocks")), has_cls=has_cls)
  if kind == "ladder":
    return LadderProjector(**common, temperature=float(get("temperature", 1.0)),
                           layers=_layers(get("layers", "authors")))
  raise ValueError(f"projector.kind must be 'paper' or 'ladder', got {kind!r}")


def _layers(spec):
  return spec if isinstance(spec, str) else tuple(int(i) for i in spec)
