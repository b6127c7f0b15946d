"""Static cost model of a compiled XLA program: per-device FLOPs, HBM bytes, collectives, step time.

Input: the text of an optimised, SPMD-partitioned (per-device) HLO module, ``compiled.as_text()``
of ``jax.jit(f).trace(...).lower().compile()``. :func:`analyze_hlo` counts FLOPs, HBM bytes and
collective bytes per device; :func:`estimate_time` turns them into seconds for a :class:`ChipSpec`.

Why: XLA's own ``compiled.cost_analysis()`` visits a while loop's body once, so a ViT whose blocks
are scanned (``nn.scan``, ``lax.scan``) is under-counted by about its depth. Here every computation
is weighted by how often it runs: a while body by its trip count times its caller's weight,
recursively (nested loops multiply).

Counting follows XLA's HloCostAnalysis (1 multiply-add = 2 FLOPs):

* ``dot``: 2 x (output elements) x (product of the lhs contracting dimensions).
* ``convolution`` (TPU writes almost every matmul, batched ones included, as one): 2 x batch /
  batch_group_count x output features x input features / feature_group_count x the product, over
  spatial dimensions, of the number of *valid* (kernel tap, output position) pairs: taps that land
  on a real input element, not on padding nor on an lhs-dilation hole (stride, pad, lhs_dilate,
  rhs_dilate honoured, counted exactly per dimension).
* element-wise ops: 1 FLOP per output element; transcendental ones (exp, log, tanh, erf, rsqrt, ...)
  go to ``transcendentals`` instead, as XLA does; ``reduce``: (input - output elements) x the
  reducer's FLOPs; ``all-reduce``: output elements x the reducer's FLOPs (XLA's convention);
  ``reduce-window``: (in-bounds window elements summed over outputs - output elements) x the
  reducer's FLOPs, except that a dimension whose every output sees all of it (XLA:TPU's softmax
  row maximum, a window of 2n-1 over n) counts as one reduction, broadcast.
  Copies, broadcasts, transposes, slices, gathers and scatters count 0 FLOPs; custom calls, see
  the time model below. FLOPs
  inside a fusion (and its nested fusions) count toward the fusion instruction.
* HBM bytes, per top-level instruction of every executed, non-fused computation (entry, while
  bodies and conditions, called computations, conditional branches): operand sizes + output size
  (elements x dtype size; layout tiling and padding ignored). Buffers the layout places in another
  memory space (``S(1)``: TPU VMEM, prefetched by ``copy-start``) are not HBM traffic (that is
  25-30 % of XLA's bytes for a TPU ViT step; ``hbm_only=False`` counts them, as XLA does), and a
  ``copy-start`` counts its HBM side(s) only. Not counted: parameter, constant, tuple,
  get-tuple-element, bitcast, the control-flow ops themselves (while, call, conditional,
  async-start: their callees are counted) and the ``-done`` half of async pairs. As XLA does for
  fusions, an operand read only through ``dynamic-slice``/``slice`` counts the slices, the buffer
  operand of an in-place ``dynamic-update-slice`` counts nothing and its output counts the update
  only (so a scan body reading one layer of stacked weights is charged one layer, not the stack).
* collectives (all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute, their
  ``-start`` forms; ``-done`` ignored): bytes (all-reduce: the buffer; all-gather, reduce-scatter:
  the full, unsharded buffer; others: the operands) and the group size from ``replica_groups``
  (``{{0,1},{2,3}}``, the iota form ``[2,4]<=[8]``, the mesh form ``mesh['x'=4,...] {'x'}``, or
  ``{}`` for all devices).
* while trip counts: ``backend_config`` ``known_trip_count`` when present (XLA:CPU, XLA:GPU);
  otherwise read off the condition computation (XLA:TPU): the root, possibly inside a fusion, must
  be an integer scalar ``compare`` of a loop-carried tuple element (the induction variable) with a
  constant, and the body must advance that element by a constant (``add(counter, constant)``,
  through copies and fusions). The initial value is taken from the while's operand tuple when it
  is a constant, else assumed 0 (JAX's ``lax.scan`` and ``fori_loop`` count 0, 1, ..., N-1). Any
  other loop (a ``lax.while_loop`` whose condition reads data, e.g. a Hungarian matcher) is
  counted once and reported in ``unknown_trip_loops``. A condition runs trip count + 1 times.
* conditionals: the costliest branch (most FLOPs, then most bytes) is counted, the others dropped.

Categories: every top-level instruction is put in a category by its ``metadata={op_name=...}``
(one without takes its fused root's, else its first operand's producer's, else the op name of the
while/call that runs it), with a user function or ordered ``(category, substring)`` rules, first
match wins (:data:`DEFAULT_RULES`), else ``'other'``. JAX writes ``jax.named_scope`` and Flax
module names into op names, so code outside modules (optimizer update, matcher) needs a
``jax.named_scope("optimizer")`` / ``("matcher")`` for the default rules to find it.

Time model (:func:`estimate_time`): per top-level non-collective op, roofline ``max(flops /
peak_flops, bytes / hbm_bw)``, summed (ops do not overlap each other); collectives on a ring,
all-reduce ``2 (n-1)/n x bytes``, all-gather and reduce-scatter ``(n-1)/n x full bytes``, others
``bytes``, over ``ici_bw``; a group spanning several slices runs the same ring over ``dcn_bw`` for
its cross-slice part, on ``1/n_per_slice`` of the bytes (hierarchical). The estimate is the roofline
sum plus the collective time not hidden (``overlap``, default none hidden). Custom calls: a
Pallas kernel's own cost estimate, the TPU flash-attention backward kernels from their shapes;
others (GPU cuBLAS/cuDNN GEMMs) count 0 FLOPs. Not modelled: host transfers, launch overheads,
on-chip cache reuse across ops, the MXU's shape efficiency.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Callable, NamedTuple, Sequence

import numpy as np

DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    ("matcher", "matcher"),
    ("optimizer", "optimizer"),
    ("losses", "/loss_"),
    ("projector", "projector_"),
    ("heads", "/head_"),
    ("heads", "head_"),
    ("backbone", "backbone"),
    ("backbone", "ViT"),
)

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute",
               "ragged-all-to-all", "collective-broadcast")

# 1 FLOP per output element (XLA's HandleElementwiseOp).
_ELEMENTWISE = frozenset((
    "abs", "add", "and", "atan2", "ceil", "clamp", "compare", "complex", "convert", "divide",
    "floor", "imag", "is-finite", "maximum", "minimum", "multiply", "negate", "not", "or",
    "popcnt", "real", "reduce-precision", "remainder", "round-nearest-afz", "round-nearest-even",
    "select", "shift-left", "shift-right-arithmetic", "shift-right-logical", "sign", "subtract",
    "xor", "clz", "stochastic-convert"))
# Counted as transcendentals, not FLOPs.
_TRANSCENDENTAL = frozenset((
    "exponential", "exponential-minus-one", "log", "log-plus-one", "logistic", "power", "rsqrt",
    "sqrt", "cbrt", "tanh", "tan", "sine", "cosine", "erf"))
# No HBM traffic of their own.
_NO_BYTES = frozenset((
    "parameter", "constant", "tuple", "get-tuple-element", "bitcast", "while", "call",
    "conditional", "async-start", "async-update", "async-done", "after-all", "add-dependency",
    "opt-barrier", "partition-id", "replica-id", "domain"))


@dataclasses.dataclass
class ChipSpec:
  """One chip. ``peak_flops``: dense bf16 FLOP/s; ``hbm_bytes``: HBM capacity (bytes, for the
  caller's memory checks); ``hbm_bw``: HBM bandwidth (bytes/s); ``ici_bw``: per-chip interconnect
  bandwidth available to a collective's ring (bytes/s); ``dcn_bw``: this chip's share of the
  data-centre network bandwidth between slices (bytes/s)."""
  name: str
  peak_flops: float
  hbm_bytes: float
  hbm_bw: float
  ici_bw: float
  dcn_bw: float


class LoopInfo(NamedTuple):
  """A while instruction: its name, trip count (None: data-dependent, counted once) and op name."""
  name: str
  trip_count: int | None
  op_name: str


@dataclasses.dataclass
class OpCost:
  """One top-level instruction. ``flops``, ``bytes``, ``collective_bytes`` are per execution;
  ``count`` is how many times it runs (product of the enclosing loops' trip counts)."""
  name: str
  opcode: str
  op_name: str
  category: str
  count: float
  flops: float = 0.0
  transcendentals: float = 0.0
  bytes: float = 0.0
  matmul_flops: float = 0.0
  collective: str | None = None      # kind, e.g. 'all-reduce' (no '-start')
  collective_bytes: float = 0.0
  group_size: int = 1
  group: tuple[int, ...] | None = None   # device ids of the first replica group, when known


@dataclasses.dataclass
class HloCost:
  """Per-device totals of one execution of the module (loop bodies multiplied by trip counts).

  ``flops``: FLOPs (matmuls + element-wise); ``matmul_flops``: dot and convolution FLOPs only;
  ``transcendentals``: element count of transcendental ops; ``bytes``: HBM bytes read + written;
  ``collective_bytes``: kind -> bytes (see the module docstring for what a kind's bytes are);
  ``while_loops``: every while instruction reached (in any conditional branch);
  ``unknown_trip_loops``: how many of them had no static trip count; ``per_category``:
  category -> dict of ``flops``, ``matmul_flops``, ``bytes``, ``collective_bytes``,
  ``instructions`` (static count); ``ops``: the top-level instructions; ``num_devices``:
  partitions x replicas of the module."""
  flops: float
  matmul_flops: float
  transcendentals: float
  bytes: float
  collective_bytes: dict[str, float]
  while_loops: list[LoopInfo]
  unknown_trip_loops: int
  per_category: dict[str, dict[str, float]]
  ops: list[OpCost]
  num_devices: int


# ------------------------------------------------------------------------------------------------
# Parsing.


@dataclasses.dataclass
class _Instr:
  name: str
  type_str: str
  opcode: str
  operands: list[str]
  operand_text: str
  attrs: str
  op_name: str


@dataclasses.dataclass
class _Computation:
  name: str
  params: dict[str, str]        # signature: parameter name -> type
  instrs: list[_Instr]
  by_name: dict[str, _Instr]
  root: _Instr | None

  @functools.cached_property
  def users(self) -> dict[str, list[tuple[_Instr, int]]]:
    out: dict[str, list[tuple[_Instr, int]]] = {}
    for ins in self.instrs:
      for i, o in enumerate(ins.operands):
        out.setdefault(o, []).append((ins, i))
    return out

  @functools.cached_property
  def param_by_index(self) -> dict[int, _Instr]:
    return {int(ins.operand_text): ins for ins in self.instrs if ins.opcode == "parameter"}


_OPERAND_RE = re.compile(r"%([\w.\-]+)")
_SHAPE_RE = re.compile(r"([a-z][a-z0-9]*)\[([0-9,<=\s]*)\](\{[^}]*\})?")
_OP_NAME_RE = re.compile(r'op_name="((?:[^"\\]|\\.)*)"')
_HEADER_RE = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(")


def _match_close(s: str, i: int) -> int:
  """Index of the bracket closing the one at ``s[i]`` (quoted strings skipped)."""
  pairs = {"(": ")", "{": "}", "[": "]"}
  stack = []
  quoted = False
  j = i
  while j < len(s):
    c = s[j]
    if quoted:
      if c == "\\":
        j += 1
      elif c == '"':
        quoted = False
    elif c == '"':
      quoted = True
    elif c in pairs:
      stack.append(pairs[c])
    elif stack and c == stack[-1]:
      stack.pop()
      if not stack:
        return j
    j += 1
  raise ValueError(f"unbalanced brackets in HLO line: {s[:200]!r}")


def _split_top(s: str) -> list[str]:
  """Splits at commas outside brackets."""
  out, depth, start = [], 0, 0
  for j, c in enumerate(s):
    if c in "([{":
      depth += 1
    elif c in ")]}":
      depth -= 1
    elif c == "," and depth == 0:
      out.append(s[start:j])
      start = j + 1
  out.append(s[start:])
  return [x.strip() for x in out if x.strip()]


def _parse_instr(line: str) -> _Instr | None:
  s = line.strip()
  if s.startswith("ROOT "):
    s = s[5:]
  m = re.match(r"%?([\w.\-]+)\s*=\s*", s)
  if not m:
    return None
  name, rest = m.group(1), s[m.end():]
  if rest.startswith("("):
    end = _match_close(rest, 0) + 1
  else:
    end = rest.find(" ")
  type_str, rest = rest[:end], rest[end:].lstrip()
  m = re.match(r"([\w\-]+)\(", rest)
  if not m:
    return None
  opcode = m.group(1)
  close = _match_close(rest, m.end() - 1)
  operand_text = rest[m.end():close]
  attrs = rest[close + 1:]
  op_name = _OP_NAME_RE.search(attrs)
  return _Instr(name, type_str, opcode, _OPERAND_RE.findall(operand_text), operand_text, attrs,
                op_name.group(1) if op_name else "")


@dataclasses.dataclass
class _Module:
  computations: dict[str, _Computation]
  entry: str
  num_devices: int


def _parse_module(text: str) -> _Module:
  comps: dict[str, _Computation] = {}
  entry = None
  lines = text.splitlines()
  header = lines[0] if lines else ""
  partitions = int(m.group(1)) if (m := re.search(r"num_partitions=(\d+)", header)) else 1
  replicas = int(m.group(1)) if (m := re.search(r"replica_count=(\d+)", header)) else 1
  i = 0
  while i < len(lines):
    line = lines[i]
    m = _HEADER_RE.match(line)
    if m and line.rstrip().endswith("{") and "->" in line and not line.startswith("HloModule"):
      name = m.group(2)
      open_paren = m.end() - 1
      params = {}
      for p in _split_top(line[open_paren + 1:_match_close(line, open_paren)]):
        if ":" in p:
          pname, ptype = p.split(":", 1)
          params[pname.strip().lstrip("%")] = re.sub(r"/\*.*?\*/", "", ptype).strip()
      instrs, root = [], None
      i += 1
      while i < len(lines) and lines[i].strip() != "}":
        ins = _parse_instr(lines[i])
        if ins is not None:
          instrs.append(ins)
          if lines[i].lstrip().startswith("ROOT "):
            root = ins
        i += 1
      comps[name] = _Computation(name, params, instrs, {x.name: x for x in instrs},
                                 root or (instrs[-1] if instrs else None))
      if m.group(1):
        entry = name
    i += 1
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text (pass compiled.as_text())")
  return _Module(comps, entry, partitions * replicas)


# ------------------------------------------------------------------------------------------------
# Shapes.


def _dtype_bytes(dtype: str) -> float:
  if dtype == "pred":
    return 1.0
  if dtype == "token":
    return 0.0
  m = re.match(r"[a-z]+?(\d+)", dtype)
  return int(m.group(1)) / 8 if m else 4.0


def _shapes(type_str: str) -> list[tuple[str, tuple[int, ...]]]:
  """(dtype, dims) of every array in a (possibly tuple) type."""
  out = []
  for dtype, dims, _ in _SHAPE_RE.findall(type_str):
    out.append((dtype, tuple(int(d.replace("<=", "")) for d in dims.split(",") if d.strip())))
  return out


def _dims(type_str: str) -> tuple[int, ...]:
  shapes = _shapes(type_str)
  return shapes[0][1] if shapes else ()


def _elements(type_str: str) -> int:
  return sum(math.prod(d) for _, d in _shapes(type_str))


def _nbytes(type_str: str, hbm_only: bool = False) -> float:
  """Bytes of the arrays of a type; with ``hbm_only``, of those in the default memory space."""
  total = 0.0
  for dtype, dims, layout in _SHAPE_RE.findall(type_str):
    if hbm_only and (m := re.search(r"S\((\d+)\)", layout)) and m.group(1) != "0":
      continue
    total += math.prod(int(d.replace("<=", "")) for d in dims.split(",") if d.strip()) * (
        _dtype_bytes(dtype))
  return total


def _in_hbm(type_str: str) -> bool:
  """Whether the (first) array of a type lives in the default memory space (HBM): its layout has
  no ``S(n)`` memory-space annotation with n != 0 (TPU: 1 VMEM, others SMEM, host...)."""
  m = _SHAPE_RE.search(type_str)
  space = re.search(r"S\((\d+)\)", m.group(3) or "") if m else None
  return space is None or space.group(1) == "0"


# ------------------------------------------------------------------------------------------------
# Convolutions.


def _window(attrs: str) -> dict[str, list]:
  m = re.search(r"window=\{([^}]*)\}", attrs)
  out: dict[str, list] = {}
  if not m:
    return out
  for item in m.group(1).split():
    key, _, val = item.partition("=")
    if key == "pad":
      out[key] = [tuple(int(x) for x in re.match(r"(-?\d+)_(-?\d+)", p).groups())
                  for p in val.split("x")]
    else:
      out[key] = [int(x) for x in val.split("x")]
  return out


@functools.lru_cache(maxsize=4096)
def _valid_taps(in_size: int, kernel: int, out_size: int, stride: int, pad_lo: int,
                lhs_dilate: int, rhs_dilate: int) -> int:
  """Number of (output position, kernel tap) pairs of one spatial dimension whose input index
  ``o * stride - pad_lo + k * rhs_dilate`` lands on a real (not padded, not dilation-hole) element
  of the lhs-dilated input, i.e. is a multiple of ``lhs_dilate`` in ``[0, (in_size-1) *
  lhs_dilate]``."""
  hi_u = (in_size - 1) * lhs_dilate
  # Iterate the shorter of the two indices; the other runs over an arithmetic range.
  if kernel <= out_size:
    n_outer, a_outer, n_inner, a_inner = kernel, rhs_dilate, out_size, stride
  else:
    n_outer, a_outer, n_inner, a_inner = out_size, stride, kernel, rhs_dilate
  period = lhs_dilate // math.gcd(a_inner, lhs_dilate)
  total = 0
  for j in range(n_outer):
    c = j * a_outer - pad_lo              # u = i * a_inner + c
    lo = -(c // a_inner) if c < 0 else 0      # ceil(-c / a_inner), at least 0
    hi = min(n_inner - 1, (hi_u - c) // a_inner) if hi_u >= c else -1
    if hi < lo:
      continue
    if lhs_dilate == 1:
      total += hi - lo + 1
      continue
    first = next((i for i in range(lo, min(hi, lo + period - 1) + 1)
                  if (i * a_inner + c) % lhs_dilate == 0), None)
    if first is not None:
      total += (hi - first) // period + 1
  return total


def _conv_flops(ins: _Instr, lhs_type: str, rhs_type: str) -> float:
  labels = re.search(r"dim_labels=(\w+)_(\w+)->(\w+)", ins.attrs)
  lhs, rhs, out = _dims(lhs_type), _dims(rhs_type), _dims(ins.type_str)
  if not labels or not (lhs and rhs and out):
    return 0.0
  lhs_l, rhs_l, out_l = labels.groups()
  fgc = int(m.group(1)) if (m := re.search(r"feature_group_count=(\d+)", ins.attrs)) else 1
  bgc = int(m.group(1)) if (m := re.search(r"batch_group_count=(\d+)", ins.attrs)) else 1
  batch = lhs[lhs_l.index("b")]
  in_features = lhs[lhs_l.index("f")]
  out_features = out[out_l.index("f")]
  win = _window(ins.attrs)
  taps = 1
  for d in range(sum(c.isdigit() for c in lhs_l)):
    k = str(d)
    taps *= _valid_taps(lhs[lhs_l.index(k)], rhs[rhs_l.index(k)], out[out_l.index(k)],
                        win.get("stride", [1] * (d + 1))[d],
                        win["pad"][d][0] if "pad" in win else 0,
                        win.get("lhs_dilate", [1] * (d + 1))[d],
                        win.get("rhs_dilate", [1] * (d + 1))[d])
  return 2.0 * (batch // bgc) * out_features * (in_features // fgc) * taps


# ------------------------------------------------------------------------------------------------
# Replica groups.


def _replica_groups(attrs: str, num_devices: int) -> tuple[int, tuple[int, ...] | None]:
  """(group size, device ids of the first group or None) of a collective."""
  m = re.search(r"replica_groups=", attrs)
  if not m:
    return num_devices, tuple(range(num_devices))
  s = attrs[m.end():]
  if s.startswith("{"):
    body = s[1:_match_close(s, 0)].strip()
    if not body:
      return num_devices, tuple(range(num_devices))
    first = re.match(r"\{([^}]*)\}", body)
    ids = tuple(int(x) for x in first.group(1).split(",") if x.strip())
    return len(ids), ids
  if m := re.match(r"\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", s):
    shape = [int(x) for x in m.group(1).split(",")]
    ids = np.arange(math.prod(int(x) for x in m.group(2).split(",")))
    ids = ids.reshape([int(x) for x in m.group(2).split(",")])
    if m.group(3):
      ids = ids.transpose([int(x) for x in m.group(3).split(",")])
    ids = ids.reshape(-1, shape[-1])
    return shape[-1], tuple(int(x) for x in ids[0])
  if m := re.match(r"mesh\[([^\]]*)\]\s*\{([^}]*)\}", s):
    axes = [(a, int(n)) for a, n in re.findall(r"'([^']+)'=(\d+)", m.group(1))]
    listed = re.findall(r"'([^']+)'(:\(\d+\)\d+)?", m.group(2))
    sizes = dict(axes)
    if any(sub for _, sub in listed) or any(a not in sizes for a, _ in listed):
      size = 1
      for a, sub in listed:
        size *= int(sub.rsplit(")", 1)[1]) if sub else sizes.get(a, 1)
      return size, None
    names = {a for a, _ in listed}
    ids = np.arange(math.prod(n for _, n in axes)).reshape([n for _, n in axes] or [1])
    index = tuple(slice(None) if a in names else 0 for a, _ in axes)
    group = ids[index].reshape(-1) if axes else ids.reshape(-1)
    return int(group.size), tuple(int(x) for x in group)
  return num_devices, None


# ------------------------------------------------------------------------------------------------
# Analysis.


def _categorizer(rules: Sequence[tuple[str, str]]) -> Callable[[str], str]:
  def categorize(op_name: str) -> str:
    for category, substring in rules:
      if substring in op_name:
        return category
    return "other"
  return categorize


class _Analyzer:

  def __init__(self, module: _Module, categorize: Callable[[str], str], hbm_only: bool):
    self.m = module
    self.hbm_only = hbm_only
    self.comps = module.computations
    self.categorize = categorize
    self.loops: dict[str, LoopInfo] = {}
    self._flops_cache: dict[str, tuple[float, float, float]] = {}

  # -- operand types ---------------------------------------------------------------------------

  def _type(self, comp: _Computation, name: str) -> str:
    ins = comp.by_name.get(name)
    if ins is not None:
      return ins.type_str
    return comp.params.get(name, "")

  def _callee(self, ins: _Instr, key: str) -> _Computation | None:
    m = re.search(key + r"=%?([\w.\-]+)", ins.attrs)
    return self.comps.get(m.group(1)) if m else None

  def _branches(self, ins: _Instr) -> list[_Computation]:
    """A conditional's branch computations (``branch_computations={...}`` or true/false)."""
    if m := re.search(r"branch_computations=\{([^}]*)\}", ins.attrs):
      names = re.findall(r"%?([\w.\-]+)", m.group(1))
      return [self.comps[n] for n in names if n in self.comps]
    return [c for key in ("true_computation", "false_computation")
            if (c := self._callee(ins, key)) is not None]

  # -- FLOPs -----------------------------------------------------------------------------------

  def comp_flops(self, comp: _Computation) -> tuple[float, float, float]:
    """(flops, matmul flops, transcendentals) of one run of ``comp``, fusions included."""
    if comp.name not in self._flops_cache:
      self._flops_cache[comp.name] = (0.0, 0.0, 0.0)   # guards recursion
      tot = [0.0, 0.0, 0.0]
      for ins in comp.instrs:
        for j, v in enumerate(self.instr_flops(comp, ins)):
          tot[j] += v
      self._flops_cache[comp.name] = tuple(tot)
    return self._flops_cache[comp.name]

  def instr_flops(self, comp: _Computation, ins: _Instr) -> tuple[float, float, float]:
    op = ins.opcode
    if op == "dot":
      lhs = _dims(self._type(comp, ins.operands[0]))
      m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", ins.attrs)
      k = math.prod(lhs[int(d)] for d in m.group(1).split(",") if d) if m else 1
      f = 2.0 * _elements(ins.type_str) * k
      return f, f, 0.0
    if op == "convolution":
      f = _conv_flops(ins, self._type(comp, ins.operands[0]), self._type(comp, ins.operands[1]))
      return f, f, 0.0
    if op == "fusion":
      callee = self._callee(ins, "calls")
      return self.comp_flops(callee) if callee else (0.0, 0.0, 0.0)
    if op == "custom-call":
      return self._custom_call_flops(comp, ins)
    if op in _ELEMENTWISE:
      return float(_elements(ins.type_str)), 0.0, 0.0
    if op in _TRANSCENDENTAL:
      return 0.0, 0.0, float(_elements(ins.type_str))
    if op in ("reduce", "reduce-window", "all-reduce", "all-reduce-start"):
      reducer = self._callee(ins, "to_apply")
      per = max(1.0, self.comp_flops(reducer)[0]) if reducer else 1.0
      if op.startswith("all-reduce"):   # XLA: one reduction per element ("assume 2 replicas")
        return _elements(ins.type_str) * per, 0.0, 0.0
      n_in = len(ins.operands) // 2 or 1
      out_elems = _elements(ins.type_str) / n_in
      if op == "reduce":
        count = _elements(self._type(comp, ins.operands[0])) - out_elems
      else:   # in-bounds window elements (padding excluded), less one per output
        win, in_dims = _window(ins.attrs), _dims(self._type(comp, ins.operands[0]))
        out_dims, taps, outs = _dims(ins.type_str), 1, 1
        for d, size in enumerate(win.get("size", [])):
          n_in, n_out = in_dims[d], out_dims[d]
          valid = _valid_taps(n_in, size, n_out, win.get("stride", [1] * (d + 1))[d],
                              win["pad"][d][0] if "pad" in win else 0,
                              win.get("lhs_dilate", [1] * (d + 1))[d],
                              win.get("rhs_dilate", [1] * (d + 1))[d])
          if n_out > 1 and valid == n_in * n_out:   # each output sees the whole dimension:
            taps *= n_in                            # one reduction, broadcast
          else:
            taps, outs = taps * valid, outs * n_out
        count = taps - outs
      return max(0.0, count) * per, 0.0, 0.0
    return 0.0, 0.0, 0.0

  def _custom_call_flops(self, comp: _Computation, ins: _Instr) -> tuple[float, float, float]:
    """A Pallas kernel's own ``cost_estimate`` (its backend config) when it has one; the TPU
    flash-attention backward kernels have none and are counted from their operands
    (``q [..., T, D]``, ``k [..., S, D]``): 4 matmuls of ``T x S x D`` for dK/dV (the
    probabilities recomputed, dV, dP, dK), 3 for dQ. Other custom calls count 0."""
    m = re.search(r'"cost_estimate":\{"flops":"(\d+)"(?:,"transcendentals":"(\d+)")?', ins.attrs)
    if m:
      f = float(m.group(1))
      return f, f, float(m.group(2) or 0)
    matmuls = (4 if "flash_mha_bwd_dkv" in ins.name else
               3 if "flash_mha_bwd_dq" in ins.name else 0)
    if matmuls and len(ins.operands) >= 2:
      q = _dims(self._type(comp, ins.operands[0]))   # [..., T, D] (leading: batch, heads, vmap)
      s = _dims(self._type(comp, ins.operands[1]))[-2]
      f = 2.0 * matmuls * math.prod(q[:-1]) * s * q[-1]
      return f, f, 0.0
    return 0.0, 0.0, 0.0

  # -- bytes -----------------------------------------------------------------------------------

  def _bytes(self, type_str: str) -> float:
    return _nbytes(type_str, self.hbm_only)

  def _hbm(self, type_str: str) -> float:
    """1.0 when a buffer of this type is HBM traffic, else 0.0."""
    return 1.0 if not self.hbm_only or _in_hbm(type_str) else 0.0

  def _read_bytes(self, comp: _Computation, name: str, full: float) -> float:
    """Bytes of value ``name`` (``full`` bytes) read by its users in ``comp``: only the slices of
    a buffer that is only sliced, nothing for the buffer of an in-place dynamic-update-slice."""
    total = 0.0
    for user, idx in comp.users.get(name, []):
      if user.opcode == "bitcast":
        total += self._read_bytes(comp, user.name, full)
      elif user.opcode in ("dynamic-slice", "slice") and idx == 0:
        total += _nbytes(user.type_str)
      elif user.opcode == "dynamic-update-slice" and idx == 0:
        pass
      elif user.opcode == "fusion" and (callee := self._callee(user, "calls")):
        param = callee.param_by_index.get(idx)
        total += self._read_bytes(callee, param.name, full) if param else full
      else:
        return full
      if total >= full:
        return full
    return total

  def _written_bytes(self, comp: _Computation, ins: _Instr) -> float:
    """Bytes written by ``ins``: the update of an in-place dynamic-update-slice, else its size."""
    if ins.opcode == "dynamic-update-slice":
      return _nbytes(self._type(comp, ins.operands[1])) * self._hbm(ins.type_str)
    if ins.opcode == "bitcast" and ins.operands and ins.operands[0] in comp.by_name:
      return self._written_bytes(comp, comp.by_name[ins.operands[0]])
    if ins.opcode == "tuple":
      return sum(self._written_bytes(comp, comp.by_name[o]) if o in comp.by_name
                 else self._bytes(self._type(comp, o)) for o in ins.operands)
    if ins.opcode == "fusion" and (callee := self._callee(ins, "calls")) and callee.root:
      return self._written_bytes(callee, callee.root)
    return self._bytes(ins.type_str)

  def instr_bytes(self, comp: _Computation, ins: _Instr) -> float:
    op, operand_types = ins.opcode, [self._type(comp, o) for o in ins.operands]
    if op == "dynamic-slice":     # reads the slice, writes it
      return _nbytes(ins.type_str) * (self._hbm(operand_types[0]) + self._hbm(ins.type_str))
    if op == "dynamic-update-slice":     # in place: reads the update, writes it
      return _nbytes(operand_types[1]) * (self._hbm(operand_types[1]) + self._hbm(ins.type_str))
    if op == "copy-start":     # output (destination, source, context)
      return _nbytes(operand_types[0]) * (self._hbm(operand_types[0]) + self._hbm(ins.type_str[1:]))
    if op == "fusion" and (callee := self._callee(ins, "calls")):
      read = 0.0
      for k, t in enumerate(operand_types):
        full = self._bytes(t)
        param = callee.param_by_index.get(k)
        read += self._read_bytes(callee, param.name, full) if param and full else full
      return read + (self._written_bytes(callee, callee.root) if callee.root else 0.0)
    return sum(self._bytes(t) for t in operand_types) + self._bytes(ins.type_str)

  # -- while trip counts -----------------------------------------------------------------------

  def _trace(self, comp: _Computation, name: str, outer: tuple) -> tuple[str, int] | None:
    """Follows a scalar back through copies, bitcasts, converts and fusion boundaries to a
    constant ``('const', value)`` or a loop-carried tuple element ``('counter', index)``."""
    ins = comp.by_name.get(name)
    if ins is None:
      return None
    op = ins.opcode
    if op == "constant":
      try:
        return "const", int(float(ins.operand_text))
      except ValueError:
        return None
    if op in ("copy", "bitcast", "convert", "reshape") and ins.operands:
      return self._trace(comp, ins.operands[0], outer)
    if op == "fusion" and (callee := self._callee(ins, "calls")) and callee.root:
      return self._trace(callee, callee.root.name, outer + ((comp, ins),))
    if op == "parameter":
      if outer:
        caller, fusion = outer[-1]
        k = int(ins.operand_text)
        return self._trace(caller, fusion.operands[k], outer[:-1]) if k < len(
            fusion.operands) else None
      return ("counter", -1) if not ins.type_str.startswith("(") else None
    if op == "get-tuple-element":
      src = comp.by_name.get(ins.operands[0])
      if src is not None and src.opcode == "parameter" and not outer:
        return "counter", int(re.search(r"index=(\d+)", ins.attrs).group(1))
    return None

  def _compare(self, comp: _Computation, ins: _Instr, outer: tuple = ()):
    """(direction, counter index, bound) of a condition's root compare, or None."""
    if ins.opcode == "fusion" and (callee := self._callee(ins, "calls")) and callee.root:
      return self._compare(callee, callee.root, outer + ((comp, ins),))
    if ins.opcode in ("copy", "bitcast") and ins.operands and ins.operands[0] in comp.by_name:
      return self._compare(comp, comp.by_name[ins.operands[0]], outer)
    if ins.opcode != "compare" or len(ins.operands) != 2:
      return None
    types = [_shapes(self._type(comp, o)) for o in ins.operands]
    if not all(t and t[0][1] == () and t[0][0][0] in "su" for t in types):
      return None     # not an integer scalar compare (e.g. a float reduction against a threshold)
    direction = re.search(r"direction=(\w+)", ins.attrs).group(1)
    a, b = (self._trace(comp, o, outer) for o in ins.operands)
    if a and b and a[0] == "const" and b[0] == "counter":
      a, b = b, a
      direction = {"LT": "GT", "GT": "LT", "LE": "GE", "GE": "LE"}.get(direction, direction)
    if a and b and a[0] == "counter" and b[0] == "const":
      return direction, a[1], b[1]
    return None

  def _step(self, body: _Computation, index: int) -> int | None:
    root = body.root
    if root is None or root.opcode != "tuple" or index < 0 or index >= len(root.operands):
      return None
    ins, outer = body.by_name.get(root.operands[index]), ()
    comp = body
    while ins is not None:
      if ins.opcode in ("copy", "bitcast", "convert"):
        ins = comp.by_name.get(ins.operands[0])
      elif ins.opcode == "fusion" and (callee := self._callee(ins, "calls")) and callee.root:
        outer, comp, ins = outer + ((comp, ins),), callee, callee.root
      elif ins.opcode in ("add", "subtract") and len(ins.operands) == 2:
        a, b = (self._trace(comp, o, outer) for o in ins.operands)
        if ins.opcode == "add" and a and a[0] == "const":
          a, b = b, a
        if a == ("counter", index) and b and b[0] == "const":
          return b[1] if ins.opcode == "add" else -b[1]
        return None
      else:
        return None
    return None

  def _init(self, comp: _Computation, ins: _Instr, index: int) -> int | None:
    src = comp.by_name.get(ins.operands[0]) if ins.operands else None
    if src is None or src.opcode != "tuple" or index >= len(src.operands):
      return None
    t = self._trace(comp, src.operands[index], ())
    return t[1] if t and t[0] == "const" else None

  def trip_count(self, comp: _Computation, ins: _Instr) -> int | None:
    m = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', ins.attrs)
    if m:
      return int(m.group(1))
    cond, body = self._callee(ins, "condition"), self._callee(ins, "body")
    if cond is None or body is None or cond.root is None:
      return None
    cmp = self._compare(cond, cond.root)
    if cmp is None:
      return None
    direction, index, bound = cmp
    init = self._init(comp, ins, index) if index >= 0 else None
    init = 0 if init is None else init
    step = self._step(body, index)
    if not step:   # the counter is not advanced by a constant: data-dependent
      return None
    if step > 0 and direction == "LT":
      return max(0, -(-(bound - init) // step))
    if step > 0 and direction == "LE":
      return max(0, (bound - init) // step + 1)
    if step < 0 and direction == "GT":
      return max(0, -(-(init - bound) // -step))
    if step < 0 and direction == "GE":
      return max(0, (init - bound) // -step + 1)
    if direction == "NE" and (bound - init) % step == 0 and (bound - init) // step >= 0:
      return (bound - init) // step
    return None

  # -- walking the control flow ----------------------------------------------------------------

  def _inherited_op_name(self, comp: _Computation, ins: _Instr, depth: int = 4) -> str:
    """Op name for an instruction without metadata (TPU prefetch ``copy-start``s, layout copies):
    a fusion's root's, else that of the first operand's producer that has one, looking through
    get-tuple-element, bitcast, copy and async ``-done`` ops (parameters carry their argument
    path, e.g. ``state.params['backbone'][...]``)."""
    if ins.opcode == "fusion" and (callee := self._callee(ins, "calls")) and callee.root:
      if callee.root.op_name:
        return callee.root.op_name
    for o in ins.operands:
      src = comp.by_name.get(o)
      if src is None:
        continue
      if src.op_name:
        return src.op_name
      if depth > 0 and (src.opcode in ("get-tuple-element", "bitcast", "copy")
                        or src.opcode.endswith("-done")):
        if name := self._inherited_op_name(comp, src, depth - 1):
          return name
    return ""

  def walk(self, comp: _Computation, count: float, parent_op: str, out: list[OpCost]) -> None:
    for ins in comp.instrs:
      op = ins.opcode
      op_name = ins.op_name or parent_op
      if op == "while":
        trip = self.trip_count(comp, ins)
        self.loops.setdefault(ins.name, LoopInfo(ins.name, trip, ins.op_name))
        n = 1 if trip is None else trip
        if body := self._callee(ins, "body"):
          self.walk(body, count * n, op_name, out)
        if cond := self._callee(ins, "condition"):
          self.walk(cond, count * (n + 1 if trip is not None else 1), op_name, out)
        continue
      if op == "call" or op == "async-start":
        callee = self._callee(ins, "to_apply" if op == "call" else "calls")
        if callee:
          self.walk(callee, count, op_name, out)
        continue
      if op == "conditional":   # the costliest branch: most FLOPs, then most bytes
        best, best_key = [], None
        for branch_comp in self._branches(ins):
          branch: list[OpCost] = []
          self.walk(branch_comp, count, op_name, branch)
          key = (sum(o.flops * o.count for o in branch), sum(o.bytes * o.count for o in branch))
          if best_key is None or key > best_key:
            best, best_key = branch, key
        out.extend(best)
        continue
      if op in _NO_BYTES or op.endswith("-done"):
        continue
      if op == "custom-call" and 'custom_call_target="AllocateBuffer"' in ins.attrs:
        continue
      if not ins.op_name:
        op_name = self._inherited_op_name(comp, ins) or parent_op
      flops, matmul, trans = self.instr_flops(comp, ins)
      cost = OpCost(ins.name, op, op_name, self.categorize(op_name), count, flops, trans,
                    self.instr_bytes(comp, ins), matmul)
      kind = op[:-len("-start")] if op.endswith("-start") else op
      if kind in COLLECTIVES:
        operand_bytes = sum(_nbytes(self._type(comp, o)) for o in ins.operands)
        n, group = _replica_groups(ins.attrs, self.m.num_devices)
        if kind == "collective-permute":
          n, group = 2, None
        cost.collective, cost.group_size, cost.group = kind, n, group
        cost.collective_bytes = operand_bytes * (n if kind == "all-gather" else 1)
        # HBM: the operands read, the result written (its size from the operands, as async
        # -start ops return tuples).
        read = sum(self._bytes(self._type(comp, o)) for o in ins.operands)
        cost.bytes = read * (1 + {"all-gather": n, "reduce-scatter": 1 / max(n, 1)}.get(kind, 1))
      out.append(cost)


def analyze_hlo(hlo_text: str, rules: Sequence[tuple[str, str]] = DEFAULT_RULES,
                categorize: Callable[[str], str] | None = None, hbm_only: bool = True) -> HloCost:
  """Per-device cost of one run of a compiled HLO module (``compiled.as_text()``), with while
  bodies weighted by their trip counts. Categories come from ``categorize(op_name) -> str`` when
  given, else from ``rules``: ``(category, substring)`` pairs, first substring found in the op
  name wins, no match is ``'other'``. ``hbm_only``: buffers whose layout puts them in another
  memory space (``S(n)``, n != 0: TPU VMEM, SMEM, host) are not HBM traffic; False counts every
  buffer, as XLA's cost analysis does. Units: FLOPs, bytes (see :class:`HloCost`)."""
  module = _parse_module(hlo_text)
  an = _Analyzer(module, categorize or _categorizer(rules), hbm_only)
  ops: list[OpCost] = []
  an.walk(module.computations[module.entry], 1.0, "", ops)
  per_category: dict[str, dict[str, float]] = {}
  collective_bytes: dict[str, float] = {}
  for o in ops:
    c = per_category.setdefault(o.category, dict(flops=0.0, matmul_flops=0.0, bytes=0.0,
                                                 collective_bytes=0.0, instructions=0))
    c["flops"] += o.flops * o.count
    c["matmul_flops"] += o.matmul_flops * o.count
    c["bytes"] += o.bytes * o.count
    c["collective_bytes"] += o.collective_bytes * o.count
    c["instructions"] += 1
    if o.collective:
      collective_bytes[o.collective] = (collective_bytes.get(o.collective, 0.0)
                                        + o.collective_bytes * o.count)
  loops = list(an.loops.values())
  return HloCost(
      flops=sum(c["flops"] for c in per_category.values()),
      matmul_flops=sum(c["matmul_flops"] for c in per_category.values()),
      transcendentals=sum(o.transcendentals * o.count for o in ops),
      bytes=sum(c["bytes"] for c in per_category.values()),
      collective_bytes=collective_bytes,
      while_loops=loops,
      unknown_trip_loops=sum(loop.trip_count is None for loop in loops),
      per_category=per_category,
      ops=ops,
      num_devices=module.num_devices)


# ------------------------------------------------------------------------------------------------
# Time.


def _ring_factor(kind: str, n: int) -> float:
  if n <= 1:
    return 0.0
  if kind == "all-reduce":
    return 2.0 * (n - 1) / n
  if kind in ("all-gather", "reduce-scatter"):
    return (n - 1) / n
  return 1.0


def collective_seconds(op: OpCost, chip: ChipSpec, num_slices: int = 1,
                       num_devices: int | None = None) -> float:
  """Seconds of one run of collective ``op`` (ring model; see the module docstring). With
  ``num_slices > 1`` device ``d`` is taken to sit in slice ``d // (num_devices // num_slices)``."""
  if not op.collective:
    return 0.0
  n, spanned = op.group_size, 1
  if num_slices > 1 and op.group is not None and num_devices:
    per_slice = max(1, num_devices // num_slices)
    spanned = len({d // per_slice for d in op.group})
  in_slice = max(1, n // spanned)
  t = _ring_factor(op.collective, in_slice) * op.collective_bytes / chip.ici_bw
  if spanned > 1:
    t += _ring_factor(op.collective, spanned) * op.collective_bytes / in_slice / chip.dcn_bw
  return t


def estimate_time(cost: HloCost, chip: ChipSpec, num_slices: int = 1,
                  overlap: float = 0.0) -> dict:
  """Seconds for one run on ``chip``: ``compute_s`` (all FLOPs at peak), ``memory_s`` (all bytes at
  HBM bandwidth), ``roofline_s`` (sum over top-level non-collective ops of ``max(flops / peak,
  bytes / hbm_bw)``), ``collective_s`` (ring model; ``collective_by_kind_s`` splits it), and
  ``estimate_s = roofline_s + (1 - overlap) * collective_s``, ``overlap`` being the fraction of the
  collective time hidden under compute. ``per_category``: the same keys for each category.
  ``num_slices``: slices the module's devices span (cross-slice traffic goes over ``dcn_bw``)."""
  def zero():
    return dict(compute_s=0.0, memory_s=0.0, roofline_s=0.0, collective_s=0.0)
  total, per_category, by_kind = zero(), {}, {}
  for o in cost.ops:
    cat = per_category.setdefault(o.category, zero())
    t_c, t_m = o.flops * o.count / chip.peak_flops, o.bytes * o.count / chip.hbm_bw
    t_col = collective_seconds(o, chip, num_slices, cost.num_devices) * o.count
    t_roof = 0.0 if o.collective else max(t_c, t_m)
    for d in (total, cat):
      d["compute_s"] += t_c
      d["memory_s"] += t_m
      d["roofline_s"] += t_roof
      d["collective_s"] += t_col
    if o.collective:
      by_kind[o.collective] = by_kind.get(o.collective, 0.0) + t_col
  for d in [total, *per_category.values()]:
    d["estimate_s"] = d["roofline_s"] + (1.0 - overlap) * d["collective_s"]
  return dict(total, collective_by_kind_s=by_kind, per_category=per_category)
