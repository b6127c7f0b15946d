"""Plain ViT backbone with one shared, resized positional embedding (PATH "SharePosEmbed").

Architecture (paper §4, REFERENCE.md §1): patch embedding (16x16 conv), pre-norm blocks with a fused
qkv projection (with bias), LayerNorm eps 1e-6, exact (erf) GELU, stochastic depth increasing
linearly over depth, a final LayerNorm. Raw 0..255 RGB is normalised inside the backbone with the
ImageNet mean/std, so every pipeline feeds uint8 images, and the normalised image is zero-padded
on the right/bottom to a multiple of the patch size.

One learnable positional embedding lives on a fixed grid (14x14 for 224 px) and is resized to each
input's patch grid on every forward pass with PyTorch's bicubic convention (A = -0.75,
align_corners=False), written as two small matrix products so gradients reach the grid parameter
and the resize is a pair of matmuls on TPU. An optional cls token with its own position serves ReID.

``pos_embed`` (the module field; ``config.model.backbone.pos_embed``) selects the paper's Table 4
ablation (rows c vs d): ``'shared'`` (default, the paper's "SharePosEmbed") is the one embedding
above; ``'dataset'`` gives every dataset its own embedding ``pos_embed_<dataset>`` and ``'size'``
every input patch grid its own ``pos_embed_<gh>x<gw>``, each living at the grid of the input it was
initialised with (the authors' unshared backbone sized each task's embedding to its input) and
resized only for another grid. :func:`to_shared_pos` folds such a tree into the shared layout for
export; :func:`from_shared_pos` spreads a shared-layout embedding (MAE's) over the keyed ones.

Parameter layout (stable; the PyTorch converter and the optimiser rely on it)::

  patch_embed/{kernel [p,p,3,C], bias [C]}   pos_embed [gh,gw,C]
  (pos_embed_<key> [gh_k,gw_k,C] instead of pos_embed with pos_embed='dataset' / 'size')
  cls_token [C], cls_pos_embed [C]           (only with ``cls_token=True``)
  block_0 .. block_{L-1}                     (looped) or ``blocks`` (scanned, leading axis L)
    norm1/{scale,bias}  attn/qkv/{kernel [C,3C], bias [3C]}  attn/proj/{kernel [C,C], bias [C]}
    norm2/{scale,bias}  mlp/fc1/{kernel [C,M], bias [M]}     mlp/fc2/{kernel [M,C], bias [C]}
  norm/{scale,bias}

qkv columns are ordered (q|k|v, heads contiguous), i.e. PyTorch's fused ``qkv.weight`` transposed.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from path_jax.model import attention as attention_lib

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

# name -> (width, depth, heads, mlp_dim, patch)
VARIANTS: dict[str, tuple[int, int, int, int, int]] = {
    "mu/16": (64, 2, 2, 128, 16),       # tiny test size
    "mu/8": (64, 2, 2, 128, 8),         # tiny test size with a finer grid (demo on small images)
    "Ti/16": (192, 12, 3, 768, 16),
    "S/16": (384, 12, 6, 1536, 16),
    "B/16": (768, 12, 12, 3072, 16),
    "L/16": (1024, 24, 16, 4096, 16),
    "H/14": (1280, 32, 16, 5120, 14),
}


def variant(name: str) -> dict[str, int]:
  """Keyword arguments of :class:`ViT` for a variant name such as ``"B/16"``."""
  if name not in VARIANTS:
    import difflib
    near = difflib.get_close_matches(name, list(VARIANTS), n=1)
    raise KeyError(f"unknown ViT variant {name!r}; known: {list(VARIANTS)}"
                   + (f". Did you mean {near[0]!r}?" if near else ""))
  width, depth, heads, mlp, patch = VARIANTS[name]
  return dict(width=width, depth=depth, num_heads=heads, mlp_dim=mlp, patch_size=patch)


# ----------------------------------------------------------------------------------------------
# Positional embedding: 2-D sin-cos init and PyTorch-exact bicubic resize.


def sincos_2d(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> np.ndarray:
  """MAE's ``get_2d_sincos_pos_embed`` as ``[grid_h, grid_w, dim]`` float32.

  The first half of the channels encodes the row (h), the second half the column (w); each half
  is ``[sin(pos * omega), cos(pos * omega)]`` with ``omega = 1 / temperature**(2i / (dim/2))``.
  """
  if dim % 4:
    raise ValueError(f"sin-cos positional embedding needs a width divisible by 4, got {dim}")

  def one_axis(pos: np.ndarray, d: int) -> np.ndarray:
    omega = 1.0 / temperature ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
    out = pos.reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)

  gh, gw = np.meshgrid(np.arange(grid_h, dtype=np.float64), np.arange(grid_w, dtype=np.float64),
                       indexing="ij")
  emb = np.concatenate([one_axis(gh, dim // 2), one_axis(gw, dim // 2)], axis=1)
  return emb.reshape(grid_h, grid_w, dim).astype(np.float32)


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  """Keys' cubic convolution weights for offsets -1, 0, 1, 2 (PyTorch's ``get_cubic_upsample_coefficients``)."""
  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=256)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out_size, in_size]`` matrix of PyTorch's 1-D bicubic resize (A=-0.75, align_corners=False).

  Source coordinate ``(i + 0.5) * in/out - 0.5`` (not clamped, as PyTorch does for cubic), taps at
  floor-1..floor+2 clamped to the border. Separable, so a 2-D resize is ``M_h @ X @ M_w^T``.
  """
  if in_size == out_size:
    return np.eye(out_size, dtype=np.float32)
  scale = in_size / out_size
  src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
  floor = np.floor(src)
  w = _cubic_weights(src - floor)
  mat = np.zeros((out_size, in_size), np.float64)
  for k in range(4):
    idx = np.clip(floor.astype(np.int64) - 1 + k, 0, in_size - 1)
    np.add.at(mat, (np.arange(out_size), idx), w[:, k])
  return mat.astype(np.float32)


POS_EMBED_MODES = ("shared", "dataset", "size")
POS_PREFIX = "pos_embed_"


def size_key(grid: tuple[int, int]) -> str:
  """The ``pos_embed='size'`` key of a patch grid."""
  return f"{int(grid[0])}x{int(grid[1])}"


def keyed_pos_names(params) -> list[str]:
  """Names of a backbone tree's per-dataset / per-size embeddings (``pos_embed_<key>``)."""
  return sorted(k for k in params if k.startswith(POS_PREFIX))


def to_shared_pos(params, pos_grid: tuple[int, int], source: str):
  """A backbone tree with keyed embeddings in the standard layout: ``pos_embed`` is
  ``pos_embed_<source>`` resized (bicubic) to ``pos_grid``; the other keyed embeddings are
  dropped. A tree already in the shared layout is returned as it is."""
  names = keyed_pos_names(params)
  if not names:
    return params
  name = POS_PREFIX + source
  if name not in params:
    raise KeyError(f"no positional embedding {name!r} to export; the backbone has "
                   f"{[n[len(POS_PREFIX):] for n in names]} (config.model.backbone.export_pos_from)")
  out = {k: v for k, v in params.items() if k not in names}
  src = np.asarray(jax.device_get(params[name]), np.float32)
  out["pos_embed"] = np.asarray(resize_pos_embed(jnp.asarray(src), tuple(pos_grid)))
  return out


def from_shared_pos(params, template):
  """The inverse direction, for loading: ``params`` in the shared layout, ``template`` a tree
  with keyed embeddings; every ``pos_embed_<key>`` of the template becomes ``params``'
  ``pos_embed`` resized to the key's grid. A shared-layout template takes ``params`` as they
  are."""
  names = keyed_pos_names(template)
  if not names:
    return params
  pos = jnp.asarray(np.asarray(jax.device_get(params["pos_embed"]), np.float32))
  out = {k: v for k, v in params.items() if k != "pos_embed"}
  for n in names:
    out[n] = np.asarray(resize_pos_embed(pos, tuple(template[n].shape[:2])))
  return out


def resize_pos_embed(pos: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """Resizes ``[gh, gw, C]`` to ``[grid[0], grid[1], C]``; identity when the grid is unchanged."""
  gh, gw, _ = pos.shape
  if (gh, gw) == tuple(grid):
    return pos
  mh = jnp.asarray(bicubic_matrix(gh, grid[0]))
  mw = jnp.asarray(bicubic_matrix(gw, grid[1]))
  return jnp.einsum("Hh,hwc,Ww->HWc", mh, pos, mw, precision=jax.lax.Precision.HIGHEST)


# ----------------------------------------------------------------------------------------------
# Modules.


def _dense(features: int, axes: tuple[str | None, str | None], dtype, name: str,
           use_bias: bool = True, kernel_init=nn.initializers.xavier_uniform()) -> nn.Dense:
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, name=name,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axes[1],)))


def _layer_norm(eps: float, dtype, name: str, axis_name: str = "embed") -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=eps, dtype=dtype, param_dtype=jnp.float32, name=name,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis_name,)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axis_name,)))


class DropPath(nn.Module):
  """Stochastic depth: drops the whole residual branch per sample with probability ``rate``.

  ``rate`` may be a traced scalar (scanned blocks get their own rate from the scan input).
  """

  @nn.compact
  def __call__(self, x: jax.Array, rate, deterministic: bool) -> jax.Array:
    if deterministic or (isinstance(rate, (int, float)) and rate == 0.0):
      return x
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return x * (mask.astype(x.dtype) / keep.astype(x.dtype))


class Attention(nn.Module):
  """Multi-head self-attention with a fused qkv projection and an output projection (with bias)."""
  num_heads: int
  dtype: Any = jnp.float32
  qkv_bias: bool = True
  axis: str = "embed"                 # logical name of the model width
  attention_impl: str | None = None   # path_jax.model.attention: None / 'chunked' / 'xla' / 'cudnn'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, n, c = x.shape
    hd = c // self.num_heads
    qkv = _dense(3 * c, (self.axis, "qkv"), self.dtype, "qkv", use_bias=self.qkv_bias)(x)
    qkv = qkv.reshape(b, n, 3, self.num_heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out = attention_lib.dot_product_attention(q, k, v, scale=hd ** -0.5,
                                              impl=self.attention_impl)
    return _dense(c, ("qkv", self.axis), self.dtype, "proj")(out.reshape(b, n, c))


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU, ``x/2 (1 + erf(x/sqrt(2)))``, written as PyTorch's ``nn.GELU()`` computes it.

  ``jax.nn.gelu(approximate=False)`` uses ``erfc``, which XLA:CPU expands into two branches with an
  exponential; the ``erf`` form differs by < 1e-6 in absolute value and is cheaper.
  """
  return x * (0.5 * (1.0 + jax.lax.erf(x * np.asarray(np.sqrt(0.5), x.dtype))))


class Mlp(nn.Module):
  hidden: int
  dtype: Any = jnp.float32
  axis: str = "embed"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    x = _dense(self.hidden, (self.axis, "mlp"), self.dtype, "fc1")(x)
    x = gelu(x)
    return _dense(c, ("mlp", self.axis), self.dtype, "fc2")(x)


class Block(nn.Module):
  """Pre-norm transformer block, called as ``(x, rate) -> (x, x)`` so it can be scanned.

  The stochastic-depth rate is the static ``drop_rate`` attribute for looped blocks, or a traced
  per-layer ``rate`` argument when the blocks are scanned.
  """
  num_heads: int
  mlp_dim: int
  dtype: Any = jnp.float32
  deterministic: bool = True
  attention_impl: str | None = None
  drop_rate: float = 0.0
  ln_eps: float = 1e-6
  qkv_bias: bool = True
  axis: str = "embed"

  @nn.compact
  def __call__(self, x: jax.Array, rate=None) -> tuple[jax.Array, jax.Array]:
    drop_rate = self.drop_rate if rate is None else rate
    drop = DropPath(name="drop_path")
    y = _layer_norm(self.ln_eps, self.dtype, "norm1", self.axis)(x)
    y = Attention(self.num_heads, self.dtype, qkv_bias=self.qkv_bias, axis=self.axis,
                  attention_impl=self.attention_impl, name="attn")(y)
    x = x + drop(y, drop_rate, self.deterministic)
    y = _layer_norm(self.ln_eps, self.dtype, "norm2", self.axis)(x)
    y = Mlp(self.mlp_dim, self.dtype, axis=self.axis, name="mlp")(y)
    x = x + drop(y, drop_rate, self.deterministic)
    x = nn.with_logical_constraint(x, ("batch", "tokens", self.axis))
    return x, x


class ViT(nn.Module):
  """Plain ViT backbone.

  Call: ``vit(images, train=False, use_cls=False) -> (tokens, out)`` with ``images`` ``[B,H,W,3]``
  uint8 or float in 0..255; ``drop_path_rate`` overrides the module's rate for this call.
  ``tokens`` ``[B, (1+) Hp*Wp, C]`` are the final, normed tokens (cls
  first when ``use_cls``). ``out`` holds ``'features'`` ``[L+1, B, (1+) Hp*Wp, C]``: the embedded
  tokens (patches + position) followed by every block's output (un-normed), for the projector;
  ``'grid'`` ``(Hp, Wp)`` and ``'image_hw'`` ``(H, W)`` as static ints.

  ``remat`` recomputes each block in the backward pass. Use it with ``scan=True``: the scanned
  loop forces one block's recomputation at a time, whereas XLA:CPU schedules the looped blocks'
  recomputations together and keeps every block's attention logits (measured for B/16 at
  800x1333, batch 1, forward+backward temporaries: 37.2 GB looped+remat, 36.6 GB without remat,
  3.8 GB scanned+remat). ``remat_policy`` (:data:`REMAT_POLICIES`) says what is kept: ``'full'``
  nothing; ``'save_projections'`` the weight matmuls' outputs; ``'save_matmuls'`` those and the
  attention output, so only norms and GELU are recomputed.

  ``attention_impl``: see :mod:`path_jax.model.attention` (default: chunked on CPU, which keeps no
  ``[B, heads, N, N]`` tensors for the backward pass).
  """
  width: int = 768
  depth: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  patch_size: int = 16
  pos_grid: tuple[int, int] = (14, 14)
  cls_token: bool = False
  drop_path_rate: float = 0.0
  dtype: Any = jnp.float32
  remat: bool = False
  remat_policy: str = "full"
  scan: bool = False
  attention_impl: str | None = None
  pos_embed: str = "shared"   # POS_EMBED_MODES; see the module docstring

  def _pos_param(self, grid: tuple[int, int], pos_key: str | None) -> jax.Array:
    """The positional embedding for an input of patch grid ``grid`` (resized to it)."""
    if self.pos_embed == "shared":
      name, native = "pos_embed", tuple(self.pos_grid)
    elif self.pos_embed in ("dataset", "size"):
      key = size_key(grid) if self.pos_embed == "size" else pos_key
      if not key:
        raise ValueError("pos_embed='dataset' needs the dataset's name (pos_key=...) on every "
                         "call; PATHModel passes it")
      name, native = POS_PREFIX + key, tuple(grid)
      if not self.is_initializing() and not self.has_variable("params", name):
        have = [k for k in self.variables.get("params", {}) if k.startswith(POS_PREFIX)]
        if self.pos_embed == "size" and have:
          # An input size never seen at initialisation (an evaluation size): the embedding of the
          # nearest trained grid, resized.
          def dist(k):
            gh, gw = (int(v) for v in k[len(POS_PREFIX):].split("x"))
            return (abs(gh - grid[0]) + abs(gw - grid[1]), k)
          pos = nn.unbox(self.get_variable("params", min(have, key=dist)))
          return resize_pos_embed(pos, grid)
        else:
          raise KeyError(f"the backbone has no positional embedding {name!r} "
                         f"(pos_embed={self.pos_embed!r}); it has {sorted(have)}. Keyed embeddings "
                         "are made when the model is initialised with every dataset")
    else:
      raise ValueError(f"config.model.backbone.pos_embed must be one of {POS_EMBED_MODES}, got "
                       f"{self.pos_embed!r}")
    pos = self.param(name, nn.with_logical_partitioning(
        lambda *_: jnp.asarray(sincos_2d(*native, self.width)), (None, None, "embed")))
    return resize_pos_embed(pos, grid)

  def _embed(self, images: jax.Array) -> tuple[jax.Array, tuple[int, int]]:
    x = images.astype(jnp.float32)
    x = (x - jnp.asarray(IMAGENET_MEAN, jnp.float32)) / jnp.asarray(IMAGENET_STD, jnp.float32)
    h, w = x.shape[1:3]
    p = self.patch_size
    ph, pw = -h % p, -w % p
    if ph or pw:   # zero-pad the *normalised* image right/bottom, as the reference does
      x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    x = nn.Conv(
        self.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
        param_dtype=jnp.float32, name="patch_embed",
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                 (None, None, None, "embed")),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("embed",)))(
            x.astype(self.dtype))
    b, gh, gw, c = x.shape
    return x, (gh, gw)

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False, use_cls: bool = False,
               drop_path_rate: float | None = None, pos_key: str | None = None
               ) -> tuple[jax.Array, dict[str, Any]]:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"ViT expects images [B, H, W, 3] (RGB, 0..255), got shape {images.shape}")
    x, grid = self._embed(images)
    b = x.shape[0]
    x = x + self._pos_param(grid, pos_key).astype(x.dtype)[None]
    x = x.reshape(b, grid[0] * grid[1], self.width)
    if self.cls_token:
      trunc = nn.initializers.truncated_normal(0.02)
      cls = self.param("cls_token", nn.with_logical_partitioning(trunc, ("embed",)), (self.width,))
      cls_pos = self.param("cls_pos_embed", nn.with_logical_partitioning(trunc, ("embed",)),
                           (self.width,))
      if use_cls:
        cls_row = jnp.broadcast_to((cls + cls_pos).astype(x.dtype), (b, 1, self.width))
        x = jnp.concatenate([cls_row, x], axis=1)
    elif use_cls:
      raise ValueError("use_cls=True but this ViT was built with cls_token=False; "
                       "set the backbone config's cls_token=True.")
    x = nn.with_logical_constraint(x, ("batch", "tokens", "embed"))

    # Per-call override: the reference trains each task group with its own stochastic depth.
    top_rate = self.drop_path_rate if drop_path_rate is None else drop_path_rate
    rates = np.linspace(0.0, top_rate, self.depth).astype(np.float32)
    block_cls = Block
    if self.remat:
      block_cls = nn.remat(Block, prevent_cse=not self.scan,
                           policy=remat_policy(self.remat_policy))
    kwargs = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dtype=self.dtype,
                  deterministic=not train, attention_impl=self.attention_impl)
    if self.scan:
      stack = nn.scan(block_cls, variable_axes={"params": 0}, split_rngs={"params": True,
                                                                          "dropout": True},
                      in_axes=0, length=self.depth,
                      metadata_params={nn.PARTITION_NAME: "layers"})
      x_out, ys = stack(**kwargs, name="blocks")(x, jnp.asarray(rates))
      features = jnp.concatenate([x[None], ys], axis=0)
      x = x_out
    else:
      outs = [x]
      for i in range(self.depth):
        x, _ = block_cls(**kwargs, drop_rate=float(rates[i]), name=f"block_{i}")(x)
        outs.append(x)
      features = jnp.stack(outs, axis=0)
    tokens = _layer_norm(1e-6, self.dtype, "norm")(x)
    return tokens, {"features": features, "grid": grid,
                    "image_hw": tuple(images.shape[1:3])}


# ----------------------------------------------------------------------------------------------
# Rematerialisation policies.

REMAT_POLICIES = {
    # Save nothing: the whole block is recomputed (about 1/3 more FLOPs, least memory).
    "full": None,
    # Save the outputs of the weight matmuls (qkv, proj, fc1, fc2) and recompute only the attention
    # core (logits, softmax, weighted sum: the batched dots), the norms and the GELU. The
    # [B, heads, N, N] logits and probabilities, the biggest activations at long sequences, are
    # not kept; the recomputed FLOPs are 4 N^2 C per block instead of 24 N C^2 + 4 N^2 C.
    "save_projections": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    # Save those and the attention core's results: the chunked attention's named output and
    # log-sum-exp, and the residuals of every custom-VJP call (the TPU flash kernel's output
    # and softmax statistics; without this its forward kernel runs again in the backward
    # pass). Only norms and GELU are recomputed.
    "save_matmuls": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.save_from_both_policies(
            jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
            jax.checkpoint_policies.save_only_these_names("attention_out", "attention_lse")),
        lambda prim, *_, **__: prim.name.startswith("custom_vjp_call")),
}


def remat_policy(name: str):
  if name not in REMAT_POLICIES:
    raise ValueError(f"unknown remat_policy {name!r} (config.model.backbone.remat_policy); "
                     f"use one of {sorted(REMAT_POLICIES)}")
  return REMAT_POLICIES[name]


# ----------------------------------------------------------------------------------------------
# Scanned <-> looped parameter layouts.


def scan_to_loop(params: dict, depth: int) -> dict:
  """Converts backbone params with ``blocks`` (leading axis ``depth``) to ``block_0..``."""
  params = dict(params)
  if "blocks" not in params:
    raise KeyError(f"no 'blocks' entry in backbone params (keys: {sorted(params)}); not scanned?")
  stacked = params.pop("blocks")
  for i in range(depth):
    params[f"block_{i}"] = jax.tree.map(lambda a, i=i: a[i], stacked)
  return params


def loop_to_scan(params: dict) -> dict:
  """Converts backbone params with ``block_0..block_{L-1}`` to one stacked ``blocks`` entry."""
  params = dict(params)
  names = sorted((k for k in params if k.startswith("block_")), key=lambda k: int(k.split("_")[1]))
  if not names:
    raise KeyError(f"no 'block_i' entries in backbone params (keys: {sorted(params)}); scanned?")
  blocks = [params.pop(k) for k in names]
  params["blocks"] = jax.tree.map(lambda *xs: jnp.stack(xs), *blocks)
  return params


def from_config(cfg, platform: str | None = None) -> ViT:
  """Builds a :class:`ViT` from a config subtree (``variant`` plus optional overrides).

  ``platform`` ('cpu', 'tpu', 'gpu'; default ``jax.default_backend()``) is where the model will
  run: an unset ``attention_impl`` is resolved for it (:func:`attention.resolve_impl`), so a
  program compiled on one platform for another gets the target's attention.
  """
  kw = variant(cfg.variant)
  for key in ("width", "depth", "num_heads", "mlp_dim", "patch_size"):
    if cfg.get(key) is not None:
      kw[key] = cfg[key]
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[cfg.get("dtype", "float32")]
  mode = str(cfg.get("pos_embed", "shared") or "shared")
  if mode not in POS_EMBED_MODES:
    raise ValueError(f"config.model.backbone.pos_embed={mode!r}; use one of {POS_EMBED_MODES}")
  return ViT(**kw, pos_grid=tuple(cfg.get("pos_grid", (14, 14))), pos_embed=mode,
             cls_token=bool(cfg.get("cls_token", False)),
             drop_path_rate=float(cfg.get("drop_path_rate", 0.0)), dtype=dtype,
             remat=bool(cfg.get("remat", False)),
             remat_policy=str(cfg.get("remat_policy", "full")),
             scan=bool(cfg.get("scan", False)),
             attention_impl=attention_lib.resolve_impl(cfg.get("attention_impl", None),
                                                       platform or jax.default_backend()))
