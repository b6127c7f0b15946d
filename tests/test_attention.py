"""The chunked (memory-efficient) attention against jax.nn.dot_product_attention."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from path_jax.model import attention, vit


def _qkv(b, t, s, h, d, dtype=jnp.float32, seed=0):
  ks = jax.random.split(jax.random.key(seed), 3)
  return (jax.random.normal(ks[0], (b, t, h, d), dtype), jax.random.normal(ks[1], (b, s, h, d),
                                                                           dtype),
          jax.random.normal(ks[2], (b, s, h, d), dtype))


def _value_and_grads(fn, q, k, v):
  w = jax.random.normal(jax.random.key(7), q.shape[:-1] + (v.shape[-1],), jnp.float32)

  def loss(q, k, v):
    return jnp.sum(fn(q, k, v).astype(jnp.float32) * w)

  return jax.jit(fn)(q, k, v), jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)


@pytest.mark.parametrize("b,t,s,h,d,chunk", [
    (2, 37, 37, 3, 16, 4),    # B*H = 6: the last lax.map group is partial
    (3, 5, 11, 4, 8, 1),      # cross-attention, T != S
    (1, 64, 64, 2, 32, 2),
    (2, 9, 9, 12, 64, 24),    # one group larger than B*H
])
def test_chunked_matches_jax_nn(b, t, s, h, d, chunk):
  q, k, v = _qkv(b, t, s, h, d)
  scale = d ** -0.5
  ref_fn = functools.partial(jax.nn.dot_product_attention, scale=scale, implementation="xla")
  new_fn = functools.partial(attention.chunked_attention, scale=scale, chunk=chunk)
  ref, ref_g = _value_and_grads(ref_fn, q, k, v)
  out, g = _value_and_grads(new_fn, q, k, v)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  for a, r in zip(g, ref_g):
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(r))))


def test_chunked_against_numpy_softmax():
  q, k, v = (np.asarray(x, np.float64) for x in _qkv(2, 6, 7, 3, 4, seed=3))
  logits = np.einsum("bthd,bshd->bhts", q, k) * 0.5
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  expected = np.einsum("bhts,bshd->bthd", p, v)
  out = attention.chunked_attention(*(jnp.asarray(x, jnp.float32) for x in (q, k, v)), 0.5, 4)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_close_to_float32():
  q, k, v = _qkv(2, 20, 20, 2, 16)
  ref = attention.chunked_attention(q, k, v, 0.25, 4)
  out = attention.chunked_attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), 0.25, 4)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=3e-2)
  g = jax.grad(lambda q: jnp.sum(attention.chunked_attention(q, k.astype(jnp.bfloat16),
                                                             v.astype(jnp.bfloat16), 0.25, 4)
                                 .astype(jnp.float32)))(q.astype(jnp.bfloat16))
  assert g.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(g.astype(jnp.float32))))


def test_under_vmap_and_remat():
  """The projectors vmap the attention over layers; the backbone may rematerialise it."""
  q, k, v = _qkv(6, 10, 10, 2, 8)
  qs, ks, vs = (x.reshape(3, 2, 10, 2, 8) for x in (q, k, v))
  fn = functools.partial(attention.chunked_attention, scale=0.3, chunk=3)
  ref_fn = functools.partial(jax.nn.dot_product_attention, scale=0.3)

  def loss(f, q, k, v):
    return jnp.sum(jnp.sin(jax.vmap(f)(q, k, v)))

  for policy in vit.REMAT_POLICIES.values():
    rematted = jax.checkpoint(fn, policy=policy)
    g = jax.jit(jax.grad(functools.partial(loss, rematted), argnums=(0, 1, 2)))(qs, ks, vs)
    ref = jax.grad(functools.partial(loss, ref_fn), argnums=(0, 1, 2))(qs, ks, vs)
    for a, r in zip(g, ref):
      np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)


def test_default_is_chunked_on_cpu_and_bad_name_is_refused():
  assert jax.default_backend() == "cpu"
  q, k, v = _qkv(1, 4, 4, 1, 4)
  jaxpr = str(jax.make_jaxpr(functools.partial(attention.dot_product_attention, scale=0.5))(
      q, k, v))
  assert "custom_vjp_call" in jaxpr
  jaxpr = str(jax.make_jaxpr(functools.partial(attention.dot_product_attention, scale=0.5,
                                               impl="xla"))(q, k, v))
  assert "custom_vjp_call" not in jaxpr
  with pytest.raises(ValueError, match="attention_impl"):
    attention.dot_product_attention(q, k, v, scale=0.5, impl="flashy")


def test_no_quadratic_residuals():
  """Training keeps q, k, v, the output and the log-sum-exp, not the [B, H, T, S] probabilities."""
  b, n, h, d = 2, 96, 3, 8
  q, k, v = _qkv(b, n, n, h, d)
  fn = functools.partial(attention.chunked_attention, scale=0.3, chunk=2)
  _, vjp = jax.vjp(fn, q, k, v)
  sizes = [x.size for x in jax.tree.leaves(vjp)]
  assert max(sizes) <= b * n * h * d and sum(sizes) <= 4 * b * n * h * d + b * h * n
  _, vjp_ref = jax.vjp(functools.partial(jax.nn.dot_product_attention, scale=0.3), q, k, v)
  assert max(x.size for x in jax.tree.leaves(vjp_ref)) >= b * h * n * n


def _reference_kernel(q, k, v, segment_ids, scale, block_q, block_k):
  """Stand-in for the Pallas TPU kernel on CPU, with its contract: ``[B, H, T, D]`` operands
  padded to whole blocks, keys visible only to queries of the same segment id (if given)."""
  assert q.shape[2] % block_q == 0 and k.shape[2] % block_k == 0
  logits = jnp.einsum("bhtd,bhsd->bhts", q, k) * scale
  if segment_ids is not None:
    q_seg, kv_seg = segment_ids
    logits = jnp.where(q_seg[:, None, :, None] == kv_seg[:, None, None, :], logits, -1e30)
  return jnp.einsum("bhts,bhsd->bhtd", jax.nn.softmax(logits, axis=-1), v)


@pytest.mark.parametrize("t,s", [(600, 600), (300, 1100), (1024, 1024)])
def test_flash_wrapper_pads_masks_and_shards(monkeypatch, t, s):
  """'flash' (TPU): tokens padded to whole blocks and masked by segment ids, heads-first layout,
  the kernel
  under shard_map over the batch axes of the mesh in context; equal to XLA's attention in value
  and gradients, also under vmap (the projectors map attention over layers)."""
  from path_jax.parallel import mesh as mesh_lib
  seen = []

  def kernel(q, k, v, segment_ids, scale, block_q, block_k):
    seen.append((q.shape, k.shape, block_q, block_k, segment_ids is not None))
    return _reference_kernel(q, k, v, segment_ids, scale, block_q, block_k)

  monkeypatch.setattr(attention, "_flash_kernel", kernel)
  q, k, v = _qkv(8, t, s, 2, 8)
  want, want_g = _value_and_grads(
      lambda q, k, v: jax.nn.dot_product_attention(q, k, v, scale=0.3), q, k, v)
  mesh = mesh_lib.make_mesh((4, 2, 1))
  with jax.set_mesh(mesh):
    got, got_g = _value_and_grads(
        lambda q, k, v: attention.dot_product_attention(q, k, v, scale=0.3, impl="flash"),
        q, k, v)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for a, b in zip(got_g, want_g):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  # Per-device shards (8 images over 8 batch shards): padded to whole blocks.
  (qs, ks, bq, bk, masked) = seen[0]
  assert qs[0] == 1 and qs[2] % bq == 0 and qs[2] >= t and ks[2] % bk == 0 and ks[2] >= s
  assert bq == (512 if t >= 1024 else 128)
  assert masked == (qs[2] > t or ks[2] > s)   # segment ids only where there is padding
  with jax.set_mesh(mesh):
    mapped = jax.jit(jax.vmap(lambda q: attention.dot_product_attention(
        q, k, v, scale=0.3, impl="flash")))(jnp.stack([q, 2 * q]))
  np.testing.assert_allclose(mapped[1], jax.nn.dot_product_attention(2 * q, k, v, scale=0.3),
                             rtol=1e-5, atol=1e-5)


def test_flash_short_sequences_use_xla(monkeypatch):
  monkeypatch.setattr(attention, "_flash_kernel", lambda *a: pytest.fail("kernel called"))
  q, k, v = _qkv(2, 197, 197, 2, 8)
  np.testing.assert_allclose(attention.dot_product_attention(q, k, v, scale=0.3, impl="flash"),
                             jax.nn.dot_product_attention(q, k, v, scale=0.3), rtol=1e-6)
  with pytest.raises(ValueError, match="needs a TPU"):
    attention.resolve_impl("flash", "cpu")
  assert attention.resolve_impl(None, "tpu") == "flash"


@pytest.mark.parametrize("dtype,head_dim,expect", [
    (jnp.bfloat16, 64, "cudnn"), (jnp.float16, 128, "cudnn"), (jnp.bfloat16, 72, "cudnn"),
    (jnp.float32, 64, "xla"),      # cuDNN's fused attention takes no float32
    (jnp.bfloat16, 160, "xla"),    # head size above cuDNN's 128
    (jnp.bfloat16, 36, "xla"),     # not a multiple of 8
])
def test_gpu_impl_picks_cudnn_where_the_operands_allow_it(monkeypatch, dtype, head_dim, expect):
  """'gpu' (the GPU default) asks jax.nn for cuDNN where it takes the operands, else XLA. cuDNN
  cannot run here, so the call is recorded and answered by XLA's attention."""
  real = jax.nn.dot_product_attention
  seen = []

  def record(q, k, v, scale=None, implementation=None):
    seen.append(implementation)
    return real(q, k, v, scale=scale, implementation="xla")
  monkeypatch.setattr(jax.nn, "dot_product_attention", record)
  q, k, v = (x.astype(dtype) for x in _qkv(2, 17, 17, 2, head_dim))
  out = attention.dot_product_attention(q, k, v, scale=0.3, impl="gpu")
  assert seen == [expect] and out.dtype == dtype
  assert attention.resolve_impl(None, "gpu") == "gpu"
  with pytest.raises(ValueError, match="needs a GPU"):
    attention.resolve_impl("gpu", "cpu")
