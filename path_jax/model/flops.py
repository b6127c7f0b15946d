"""Analytic FLOP counts (1 multiply-add = 2 FLOPs), for images/s -> MFU.

Counted: every matrix multiply (patch embedding, qkv, attention scores and values, output
projection, MLP) and the positional-embedding resize; element-wise work (norms, GELU, softmax) is
left out, as is usual for MFU. Forward+backward is taken as 3x forward.
"""
from __future__ import annotations


def vit_forward_flops(width: int, depth: int, mlp_dim: int, patch: int, height: int, width_px: int,
                      cls_token: bool = False, pos_grid: tuple[int, int] = (14, 14)) -> float:
  """Forward FLOPs of one image through the backbone."""
  gh, gw = -(-height // patch), -(-width_px // patch)
  n_patch = gh * gw
  n = n_patch + int(cls_token)
  c = width
  embed = 2 * n_patch * (patch * patch * 3) * c
  # Resize of the positional grid: [gh,14] @ [14,14,C] then @ [14,gw] (shared by the batch, tiny).
  block = 2 * (n * c * 3 * c       # qkv
               + n * n * c         # q k^T
               + n * n * c         # attn v
               + n * c * c         # proj
               + 2 * n * c * mlp_dim)  # fc1 + fc2
  return float(embed + depth * block)


def projector_forward_flops(width: int, dim: int, num_layers: int, num_tokens: int,
                            mlp_ratio: int = 4) -> float:
  """Forward FLOPs of the paper projector (per image) at reduced width ``dim``."""
  n, d = num_tokens, dim
  per_layer = 2 * (n * width * d                  # reduce
                   + n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * mlp_ratio * d)
  return float(num_layers * per_layer + 2 * n * d * width)


# ----------------------------------------------------------------------------------------------
# Counting a traced function: for modules without a closed form (the task heads).


def _prod(xs) -> int:
  out = 1
  for x in xs:
    out *= int(x)
  return out


def _sub_jaxprs(value):
  """Jaxprs held by an equation parameter (closed or open, alone or in a tuple)."""
  if hasattr(value, "eqns"):
    yield value
  elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
    yield value.jaxpr
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def jaxpr_flops(jaxpr) -> float:
  """FLOPs of the matrix multiplies and convolutions of a (closed) jaxpr, 2 per multiply-add.

  ``dot_general``: 2 x output size x contracted size; ``conv_general_dilated``: 2 x output size x
  kernel taps x input features per group (a dilated input's zeros included: what the
  convolution computes). Nested jaxprs (``jit``, ``custom_vjp``, ``remat``) are counted once,
  ``scan`` bodies ``length`` times, ``cond`` by its most expensive branch, ``while`` bodies once
  (the trip count is unknown). Element-wise work is left out, as in the closed forms above.
  """
  jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * _prod(eqn.outvars[0].aval.shape) * _prod(lhs[i] for i in lhs_contract)
    elif name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      rhs_spec = eqn.params["dimension_numbers"].rhs_spec   # (out, in, *spatial)
      taps = _prod(rhs[i] for i in rhs_spec[2:]) * int(rhs[rhs_spec[1]])
      total += 2.0 * _prod(eqn.outvars[0].aval.shape) * taps
    elif name == "cond":
      total += max((jaxpr_flops(b) for b in eqn.params["branches"]), default=0.0)
    elif name == "scan":
      total += int(eqn.params["length"]) * jaxpr_flops(eqn.params["jaxpr"])
    else:
      for value in eqn.params.values():
        for sub in _sub_jaxprs(value):
          total += jaxpr_flops(sub)
  return float(total)


def function_flops(fn, *args, **kwargs) -> float:
  """:func:`jaxpr_flops` of ``fn`` traced on ``args`` (arrays or ``jax.ShapeDtypeStruct``)."""
  import jax
  return jaxpr_flops(jax.make_jaxpr(fn, **kwargs)(*args))
