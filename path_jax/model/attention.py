"""Scaled dot-product attention for the backbone, the projectors and the detection decoder.

``dot_product_attention(q, k, v, scale=..., impl=None)`` with ``q [B, T, H, D]``, ``k, v [B, S, H,
D]`` (the layout of ``jax.nn.dot_product_attention``), no mask, no bias.

``impl``:

* ``'chunked'``: attention one group of ``chunk`` (batch, head) pairs at a time in a ``lax.map``,
  with a custom VJP that keeps only ``q, k, v``, the output and the row log-sum-exp and recomputes
  the probabilities in the backward pass (the memory-efficient / flash-attention scheme, without
  key tiling). The ``[B, H, T, S]`` logits are never materialised at once, so each group's
  ``T x S`` block stays in the CPU caches, and training keeps no ``O(T S)`` residuals. On XLA:CPU
  this is 2-3x faster than the fused form (forward+backward, B/16 at 900 tokens, batch 7: 0.52 s
  against 1.66 s on the 2-core dev machine) and removes the largest activations of long
  sequences. Serialising the groups would waste an accelerator, so it is the default on CPU only.
* ``'xla'`` / ``'cudnn'``: ``jax.nn.dot_product_attention`` with that implementation (``'cudnn'``
  is the fused flash kernel on NVIDIA GPUs; it takes bfloat16 / float16 operands with a head size
  that is a multiple of 8 up to 128, and fails otherwise).
* ``'gpu'``: ``'cudnn'`` where the operands allow it (:func:`cudnn_supports`), else ``'xla'``;
  the choice is made per call at trace time, so a float32 evaluation of a bfloat16-trained model
  still runs. (``jax.nn.dot_product_attention``'s own default is XLA's attention: up to jax 0.12
  it never picks cuDNN by itself.)
* ``'flash'`` (TPU): Pallas's TPU flash-attention kernel
  (``jax.experimental.pallas.ops.tpu.flash_attention``) for sequences of at least
  :data:`FLASH_MIN_TOKENS` keys or queries, XLA's attention for shorter ones. The logits stay in
  the cores' VMEM instead of making a round trip through HBM: at the detection inputs' 7,056
  tokens XLA's attention is memory-bound and the step's largest cost (path_jax.compile's
  estimate). Sequences are padded to whole blocks, the padding masked with segment ids; the
  kernel runs under ``jax.shard_map`` over the batch axes of the mesh in context (and the heads
  over 'model' when they divide), since XLA cannot partition a custom kernel itself.
* ``None``: resolved for a platform by :func:`resolve_impl`: ``'chunked'`` on CPU, ``'flash'`` on
  TPU, ``'gpu'`` on GPUs. Models resolve it when they are built
  for a mesh (``path_jax.model.path.from_config(cfg, platform=...)``), so a step compiled on a CPU
  host for a TPU topology gets the TPU's implementation; an unresolved ``None`` reaching
  :func:`dot_product_attention` falls back to ``jax.default_backend()``.

The softmax runs in float32 whatever the input dtype.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

IMPLS = (None, "chunked", "xla", "cudnn", "gpu", "flash")
CUDNN_DTYPES = ("bfloat16", "float16")
CUDNN_MAX_HEAD_DIM = 128
FLASH_MIN_TOKENS = 512   # 'flash': shorter sequences use XLA's attention (cheap at that size)
DEFAULT_CHUNK = 4   # (batch, head) pairs per lax.map step: 4 x 900 x 900 float32 is 13 MB


def resolve_impl(impl: str | None, platform: str) -> str | None:
  """The implementation to use on ``platform`` ('cpu', 'tpu', 'gpu'/'cuda'/'rocm') for the config
  value ``impl``: an explicit choice is kept; ``None`` becomes ``'chunked'`` on CPU, ``'flash'`` on
  TPU and ``'gpu'`` (cuDNN where the operands allow it, else XLA) on GPUs."""
  if impl not in IMPLS:
    raise ValueError(f"unknown attention implementation {impl!r} "
                     f"(config.model.backbone.attention_impl); use one of {IMPLS}")
  if impl is not None:
    need = {"cudnn": ("gpu", "cuda"), "gpu": ("gpu", "cuda", "rocm"),
            "flash": ("tpu",)}.get(impl)
    if need and platform not in need:
      raise ValueError(f"attention_impl={impl!r} needs a {need[0].upper()}, but the mesh's "
                       f"devices are {platform!r}; set config.model.backbone.attention_impl to "
                       f"None or 'xla'")
    return impl
  if platform == "cpu":
    return "chunked"
  if platform == "tpu":
    return "flash"
  if platform in ("gpu", "cuda", "rocm"):
    return "gpu"
  return None


def cudnn_supports(q: jax.Array, k: jax.Array) -> bool:
  """Whether cuDNN's fused attention takes these operands: bfloat16 / float16, one dtype, a head
  size that is a multiple of 8 and at most :data:`CUDNN_MAX_HEAD_DIM`."""
  d = q.shape[-1]
  return (q.dtype.name in CUDNN_DTYPES and k.dtype == q.dtype and d % 8 == 0
          and d <= CUDNN_MAX_HEAD_DIM and k.shape[-1] == d)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, scale: float,
                          impl: str | None = None, chunk: int = DEFAULT_CHUNK) -> jax.Array:
  if impl not in IMPLS:
    raise ValueError(f"unknown attention implementation {impl!r} "
                     f"(config.model.backbone.attention_impl); use one of {IMPLS}")
  if impl is None:
    impl = resolve_impl(None, jax.default_backend())
  if impl == "chunked":
    return chunked_attention(q, k, v, float(scale), int(chunk))
  if impl == "flash":
    if max(q.shape[1], k.shape[1]) >= FLASH_MIN_TOKENS:
      return flash_attention(q, k, v, float(scale))
    impl = "xla"
  if impl == "gpu":
    impl = "cudnn" if cudnn_supports(q, k) else "xla"
  return jax.nn.dot_product_attention(q, k, v, scale=scale, implementation=impl)


# ----------------------------------------------------------------------------------------------
# 'flash': the Pallas TPU kernel, padded to whole blocks and mapped over the mesh.


def flash_block(n: int) -> int:
  """Block length for a sequence of ``n`` tokens: 512 for long sequences, else 128 (the TPU
  lane width); sequences are padded to a multiple of it."""
  return 512 if n >= 1024 else 128


def _flash_kernel(q, k, v, segment_ids, scale, block_q, block_k):
  """The Pallas kernel on ``[B, H, T, D]`` operands, ``segment_ids`` ``([B, T], [B, S])`` int32
  (a query sees the keys of its own segment), or None (replaced by a reference in CPU tests)."""
  from jax.experimental.pallas.ops.tpu import flash_attention as fa
  sizes = fa.BlockSizes(block_q=block_q, block_k_major=block_k, block_k=block_k, block_b=1,
                        block_q_major_dkv=block_q, block_k_major_dkv=block_k, block_k_dkv=block_k,
                        block_q_dkv=block_q, block_k_major_dq=block_k, block_k_dq=block_k,
                        block_q_dq=block_q)
  seg = None if segment_ids is None else fa.SegmentIds(*segment_ids)
  return fa.flash_attention(q, k, v, segment_ids=seg, sm_scale=scale, block_sizes=sizes)


def _pad_tokens(x: jax.Array, n: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (0, n - x.shape[1]), (0, 0), (0, 0))) if n > x.shape[1] else x


def flash_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
  """``impl='flash'``: ``q [B, T, H, D]``, ``k, v [B, S, H, D]`` -> ``[B, T, H, D]``.

  Tokens are padded to whole blocks; real tokens are segment 1 and padding segment 0, so a real
  query never sees a padded key. (Masking through a 65th feature instead, 1 in the queries and a
  large negative number in padded keys, avoids the kernel's segment-id broadcasts but costs more
  HBM traffic for the concatenations: 139 ms against 135 ms estimated for the PATH step.)"""
  from jax.sharding import PartitionSpec as P
  from path_jax.parallel.mesh import BATCH_AXES
  b, t, h, _ = q.shape
  s = k.shape[1]
  bq, bk = flash_block(t), flash_block(s)
  tp, sp = -(-t // bq) * bq, -(-s // bk) * bk
  heads_first = lambda x, n: jnp.swapaxes(_pad_tokens(x, n), 1, 2)   # noqa: E731
  args = [heads_first(q, tp), heads_first(k, sp), heads_first(v, sp)]
  padded = tp > t or sp > s
  if padded:
    args += [jnp.broadcast_to((jnp.arange(tp) < t).astype(jnp.int32), (b, tp)),
             jnp.broadcast_to((jnp.arange(sp) < s).astype(jnp.int32), (b, sp))]

  def kernel(q, k, v, *segments):
    return _flash_kernel(q, k, v, segments or None, scale, bq, bk)

  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.empty:
    batch = tuple(a for a in BATCH_AXES if a in mesh.shape and mesh.shape[a] > 1)
    shards = math.prod(mesh.shape[a] for a in batch)
    batch = batch if batch and b % shards == 0 else None
    model = mesh.shape.get("model", 1)
    heads = "model" if model > 1 and h % model == 0 else None
    if batch or heads:
      act, seg = P(batch, heads, None, None), P(batch, None)
      kernel = jax.shard_map(kernel, mesh=mesh, in_specs=(act,) * 3 + (seg,) * (len(args) - 3),
                             out_specs=act, check_vma=False)
  return jnp.swapaxes(kernel(*args), 1, 2)[:, :t]


def _to_pairs(x: jax.Array) -> jax.Array:
  """``[B, N, H, D] -> [B*H, N, D]``."""
  b, n, h, d = x.shape
  return jnp.swapaxes(x, 1, 2).reshape(b * h, n, d)


def _from_pairs(x: jax.Array, b: int, h: int) -> jax.Array:
  """``[B*H, N, D] -> [B, N, H, D]``."""
  _, n, d = x.shape
  return jnp.swapaxes(x.reshape(b, h, n, d), 1, 2)


def _forward(q, k, v, scale, chunk):
  b, _, h, _ = q.shape

  def group(args):
    qq, kk, vv = args
    s = jnp.einsum("td,sd->ts", qq, kk, preferred_element_type=jnp.float32) * scale
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    denom = jnp.sum(e, axis=-1, keepdims=True)
    out = jnp.einsum("ts,sd->td", (e / denom).astype(vv.dtype), vv)
    return out, (m + jnp.log(denom))[:, 0]

  out, lse = jax.lax.map(group, (_to_pairs(q), _to_pairs(k), _to_pairs(v)), batch_size=chunk)
  return _from_pairs(out, b, h), lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float,
                      chunk: int = DEFAULT_CHUNK) -> jax.Array:
  """See the module docstring (``impl='chunked'``)."""
  return _forward(q, k, v, scale, chunk)[0]


def _chunked_fwd(q, k, v, scale, chunk):
  out, lse = _forward(q, k, v, scale, chunk)
  # Named so that a remat policy can keep them (path_jax.model.vit.REMAT_POLICIES).
  out = checkpoint_name(out, "attention_out")
  lse = checkpoint_name(lse, "attention_lse")
  return out, (q, k, v, out, lse)


def _chunked_bwd(scale, chunk, residuals, d_out):
  q, k, v, out, lse = residuals
  b, _, h, _ = q.shape
  # delta_t = sum_s P_ts dP_ts = <dO_t, O_t>, the softmax-backward row term.
  delta = _to_pairs(jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1,
                            keepdims=True))[..., 0]

  def group(args):
    qq, kk, vv, do, lse_g, delta_g = args
    s = jnp.einsum("td,sd->ts", qq, kk, preferred_element_type=jnp.float32) * scale
    p = jnp.exp(s - lse_g[:, None])
    dv = jnp.einsum("ts,td->sd", p.astype(do.dtype), do)
    dp = jnp.einsum("td,sd->ts", do, vv, preferred_element_type=jnp.float32)
    ds = (p * (dp - delta_g[:, None]) * scale).astype(qq.dtype)
    dq = jnp.einsum("ts,sd->td", ds, kk)
    dk = jnp.einsum("ts,td->sd", ds, qq)
    return dq, dk, dv

  dq, dk, dv = jax.lax.map(group, (_to_pairs(q), _to_pairs(k), _to_pairs(v), _to_pairs(d_out),
                                   lse, delta), batch_size=chunk)
  return (_from_pairs(dq, b, h).astype(q.dtype), _from_pairs(dk, b, h).astype(k.dtype),
          _from_pairs(dv, b, h).astype(v.dtype))


chunked_attention.defvjp(_chunked_fwd, _chunked_bwd)
