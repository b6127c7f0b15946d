"""path_jax.cost_model: FLOPs/bytes/collectives of compiled HLO with while bodies x trip counts."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from path_jax import cost_model as cm
from path_jax.model import vit

CHIP = cm.ChipSpec(name="test", peak_flops=100e12, hbm_bytes=16e9, hbm_bw=1e12, ici_bw=100e9,
                   dcn_bw=10e9)


def _compile(f, *args):
  return jax.jit(f).trace(*args).lower().compile()


def _xla_flops(compiled) -> float:
  ca = compiled.cost_analysis()
  return float((ca[0] if isinstance(ca, (list, tuple)) else ca)["flops"])


# ------------------------------------------------------------------------------------------------
# Parser and counting rules on literal HLO (a trailing backslash joins a wrapped HLO line).

_LOOPS = """\
HloModule loops, entry_computation_layout={(f32[8,16]{1,0}, f32[16,16]{1,0})->f32[8,16]{1,0}}

%body (p: (s32[], f32[8,16], f32[16,16], f32[2], f32[2], /*index=5*/f32[2])) -> (s32[],\
 f32[8,16], f32[16,16], f32[2], f32[2], /*index=5*/f32[2]) {
  %p = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[8,16]{1,0} get-tuple-element(%p), index=1
  %w = f32[16,16]{1,0} get-tuple-element(%p), index=2
  %a = f32[2]{0} get-tuple-element(%p), index=3
  %b = f32[2]{0} get-tuple-element(%p), index=4
  %c = f32[2]{0} get-tuple-element(%p), index=5
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  %y = f32[8,16]{1,0} dot(%x, %w), lhs_contracting_dims={1}, rhs_contracting_dims={0},\
 metadata={op_name="jit(f)/backbone/dot_general" stack_frame_id=3}
  ROOT %t = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) tuple(%next, %y, %w, %a, %b, /*index=5*/%c)
}

%cond (p.1: (s32[], f32[8,16], f32[16,16], f32[2], f32[2], /*index=5*/f32[2])) -> pred[] {
  %p.1 = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%p.1), index=0
  %n.1 = s32[] constant(7)
  ROOT %lt.1 = pred[] compare(%i.1, %n.1), direction=LT
}

%fused_lt (a.2: s32[], b.2: s32[]) -> pred[] {
  %a.2 = s32[] parameter(0)
  %b.2 = s32[] parameter(1)
  ROOT %lt.2 = pred[] compare(%a.2, %b.2), direction=LT
}

%cond.fused (p.2: (s32[], f32[8,16], f32[16,16], f32[2], f32[2], /*index=5*/f32[2])) -> pred[] {
  %p.2 = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) parameter(0)
  %n.2 = s32[]{:T(128)} constant(10)
  %i.2 = s32[]{:T(128)} get-tuple-element(%p.2), index=0
  ROOT %f.2 = pred[]{:T(512)} fusion(%i.2, %n.2), kind=kLoop, calls=%fused_lt
}

ENTRY %main (x.0: f32[8,16], w.0: f32[16,16]) -> f32[8,16] {
  %x.0 = f32[8,16]{1,0} parameter(0)
  %w.0 = f32[16,16]{1,0} parameter(1)
  %z = f32[2]{0} constant({0, 0})
  %zero = s32[] constant(0)
  %three = s32[] constant(3)
  %init = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) tuple(%zero, %x.0, %w.0, %z, %z, /*index=5*/%z)
  %init.3 = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) tuple(%three, %x.0, %w.0, %z, %z, /*index=5*/%z)
  %known = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) while(%init), condition=%cond, body=%body,\
 metadata={op_name="jit(f)/while"},\
 backend_config={"known_induction_variable":{"tuple_index":"0"},"known_trip_count":{"n":"5"}}
  %cmp = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) while(%init), condition=%cond, body=%body
  %fused = (s32[], f32[8,16]{1,0}, f32[16,16]{1,0}, f32[2]{0}, f32[2]{0},\
 /*index=5*/f32[2]{0}) while(%init.3), condition=%cond.fused, body=%body
  ROOT %out = f32[8,16]{1,0} get-tuple-element(%fused), index=1
}
"""


def test_while_trip_counts_from_backend_config_and_condition():
  cost = cm.analyze_hlo(_LOOPS)
  trips = {loop.name: loop.trip_count for loop in cost.while_loops}
  # known_trip_count; compare(i, 7) from 0; compare(i, 10) inside a fusion, from 3.
  assert trips == {"known": 5, "cmp": 7, "fused": 7}
  assert cost.unknown_trip_loops == 0
  one = 2 * 8 * 16 * 16
  assert cost.matmul_flops == (5 + 7 + 7) * one
  dots = [o for o in cost.ops if o.opcode == "dot"]
  assert sorted(o.count for o in dots) == [5, 7, 7]
  assert dots[0].bytes == 4 * (8 * 16 + 16 * 16 + 8 * 16)   # operands + output
  assert {o.category for o in dots} == {"backbone"}
  # The counter add runs once per iteration; each condition once more than its body.
  adds = [o for o in cost.ops if o.opcode == "add"]
  assert sorted(o.count for o in adds) == [5, 7, 7]
  assert cost.flops == cost.matmul_flops + 19 + (6 + 8 + 8)   # adds + compares (1 per element)


_COUNTERS = """\
HloModule counters

%step2 (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]{0}) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[8]{0} get-tuple-element(%p), index=1
  %two = s32[] constant(2)
  %next = s32[] add(%two, %i)
  %y = f32[8]{0} multiply(%x, %x)
  ROOT %t = (s32[], f32[8]{0}) tuple(%next, %y)
}

%data_step (p.1: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p.1 = (s32[], f32[8]{0}) parameter(0)
  %i.1 = s32[] get-tuple-element(%p.1), index=0
  %x.1 = f32[8]{0} get-tuple-element(%p.1), index=1
  %zero.1 = f32[] constant(0)
  %first = f32[] reduce(%x.1, %zero.1), dimensions={0}, to_apply=%sum
  %pos = pred[] compare(%first, %zero.1), direction=GT
  %inc = s32[] convert(%pos)
  %next.1 = s32[] add(%i.1, %inc)
  %y.1 = f32[8]{0} multiply(%x.1, %x.1)
  ROOT %t.1 = (s32[], f32[8]{0}) tuple(%next.1, %y.1)
}

%sum (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

%below_9 (p.2: (s32[], f32[8])) -> pred[] {
  %p.2 = (s32[], f32[8]{0}) parameter(0)
  %i.2 = s32[] get-tuple-element(%p.2), index=0
  %nine = s32[] constant(9)
  ROOT %gt = pred[] compare(%nine, %i.2), direction=GT
}

ENTRY %main (x.0: f32[8]) -> f32[8] {
  %x.0 = f32[8]{0} parameter(0)
  %one = s32[] constant(1)
  %init = (s32[], f32[8]{0}) tuple(%one, %x.0)
  %by_two = (s32[], f32[8]{0}) while(%init), condition=%below_9, body=%step2
  %by_data = (s32[], f32[8]{0}) while(%init), condition=%below_9, body=%data_step
  ROOT %out = f32[8]{0} get-tuple-element(%by_two), index=1
}
"""


def test_trip_count_needs_a_constant_step():
  cost = cm.analyze_hlo(_COUNTERS)
  # 9 > i, i = 1, 3, 5, 7: 4 trips; a counter advanced by data is not a trip count.
  assert {loop.name: loop.trip_count for loop in cost.while_loops} == {"by_two": 4,
                                                                       "by_data": None}
  assert cost.unknown_trip_loops == 1
  assert {o.name: o.count for o in cost.ops if o.opcode == "multiply"} == {"y": 4, "y.1": 1}


_CONV = """\
HloModule conv

%max (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %m = f32[] maximum(%a, %b)
}

ENTRY %main (q: bf16[4,196,4,64], k: bf16[4,196,4,64], img: f32[1,8,8,4], ker: f32[3,3,4,8],\
 dw: f32[3,3,1,4], flat: f32[2,4], w8: f32[4,8]) -> f32[1,4,4,8] {
  %q = bf16[4,196,4,64]{1,3,2,0:T(8,128)(2,1)} parameter(0)
  %k = bf16[4,196,4,64]{1,3,2,0:T(8,128)(2,1)} parameter(1)
  %img = f32[1,8,8,4]{3,2,1,0} parameter(2)
  %ker = f32[3,3,4,8]{3,2,1,0} parameter(3)
  %dw = f32[3,3,1,4]{3,2,1,0} parameter(4)
  %flat = f32[2,4]{1,0} parameter(5)
  %w8 = f32[4,8]{1,0} parameter(6)
  %scores = f32[4,4,196,196]{2,3,1,0:T(8,128)} convolution(%q, %k),\
 window={size=4x4 stride=3x3 lhs_dilate=4x4}, dim_labels=0b1f_0o1i->01bf,\
 metadata={op_name="jit(f)/ViT/attn/dot_general"}
  %strided = f32[1,4,4,8]{3,2,1,0} convolution(%img, %ker),\
 window={size=3x3 stride=2x2 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
  %depthwise = f32[1,8,8,4]{3,2,1,0} convolution(%img, %dw), window={size=3x3 pad=1_1x1_1},\
 dim_labels=b01f_01io->b01f, feature_group_count=4
  %dense = f32[2,8]{1,0} convolution(%flat, %w8), dim_labels=bf_io->bf
  %low = f32[] constant(-inf)
  %pool = f32[2,4]{1,0} reduce-window(%flat, %low), window={size=1x3 pad=0_0x1_1}, to_apply=%max
  %rowmax = f32[2,4]{1,0} reduce-window(%flat, %low), window={size=1x7 pad=0_0x3_3}, to_apply=%max
  ROOT %r = f32[1,4,4,8]{3,2,1,0} add(%strided, %strided)
}
"""


def test_convolution_and_window_flops_count_valid_taps():
  ops = {o.name: o for o in cm.analyze_hlo(_CONV).ops}
  # Batched matmul written as a convolution: lhs_dilate=4 with stride 3 hits one input element
  # per output position in each 4-long "spatial" dimension (batch, heads): 16 matmuls.
  assert ops["scores"].flops == 2 * 196 * 196 * 64 * 16
  assert ops["scores"].matmul_flops == ops["scores"].flops
  assert ops["scores"].bytes == 2 * 2 * (4 * 196 * 4 * 64) + 4 * (4 * 4 * 196 * 196)
  # 3x3 stride 2, pad 1 on 8 pixels -> 4 outputs, 2 + 3 + 3 + 3 = 11 valid taps per dimension.
  assert ops["strided"].flops == 2 * 1 * 8 * 4 * 11 * 11
  # Depthwise (feature_group_count = input features): 3x3 pad 1 on 8 -> 2 + 3*6 + 2 = 22 taps.
  assert ops["depthwise"].flops == 2 * 1 * 4 * 1 * 22 * 22
  # No spatial dimensions: a plain matmul.
  assert ops["dense"].flops == 2 * 2 * 8 * 4
  # Windows: in-bounds elements less one per output (2 x (2 + 3 + 3 + 2) - 8); a window that
  # always covers the whole row is one row reduction (2 x 4 - 2).
  assert (ops["pool"].flops, ops["rowmax"].flops) == (12, 6)


def test_valid_taps_matches_brute_force():
  rng = np.random.default_rng(0)
  for _ in range(300):
    i, k, o, s, lo, bd, wd = (int(x) for x in rng.integers([1, 1, 1, 1, -3, 1, 1],
                                                           [10, 8, 12, 4, 6, 4, 4]))
    want = sum(1 for kk in range(k) for oo in range(o)
               if (u := oo * s - lo + kk * wd) % bd == 0 and 0 <= u // bd < i)
    assert cm._valid_taps(i, k, o, s, lo, bd, wd) == want, (i, k, o, s, lo, bd, wd)


_COLLECTIVES = """\
HloModule coll, num_partitions=8, entry_computation_layout={(f32[1024]{0})->f32[1024]{0}}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

ENTRY %main (x: f32[1024]) -> f32[1024] {
  %x = f32[1024]{0} parameter(0)
  %ar = f32[1024]{0} all-reduce(%x), channel_id=1, replica_groups={{0,1,2,3},{4,5,6,7}},\
 to_apply=%add, metadata={op_name="jit(step)/optimizer/psum"}
  %ag = f32[4096]{0} all-gather(%x), channel_id=2, replica_groups=[2,4]<=[8], dimensions={0}
  %rs = f32[512]{0} reduce-scatter(%x), channel_id=3, replica_groups=[4,2]<=[2,4]T(1,0),\
 dimensions={0}, to_apply=%add
  %ars = f32[1024]{0} all-reduce-start(%x), channel_id=4,\
 replica_groups=mesh['data'=8,'model'=1] {'data'}, to_apply=%add
  %ard = f32[1024]{0} all-reduce-done(%ars)
  %cp = f32[1024]{0} collective-permute(%x), channel_id=5, source_target_pairs={{0,1},{1,0}}
  %all = f32[1024]{0} all-reduce(%x), channel_id=6, replica_groups={}, to_apply=%add
  ROOT %r = f32[1024]{0} add(%ar, %ard)
}
"""


def test_collectives_and_replica_group_forms():
  cost = cm.analyze_hlo(_COLLECTIVES)
  ops = {o.name: o for o in cost.ops}
  assert "ard" not in ops and cost.num_devices == 8
  kb = 4096.0
  assert (ops["ar"].collective, ops["ar"].group_size, ops["ar"].group) == ("all-reduce", 4,
                                                                           (0, 1, 2, 3))
  assert ops["ar"].category == "optimizer"
  assert (ops["ag"].group_size, ops["ag"].group, ops["ag"].collective_bytes) == (4, (0, 1, 2, 3),
                                                                                4 * kb)
  assert (ops["rs"].group_size, ops["rs"].group, ops["rs"].collective_bytes) == (2, (0, 4), kb)
  assert (ops["ars"].collective, ops["ars"].group_size) == ("all-reduce", 8)
  assert ops["ars"].group == tuple(range(8))
  assert ops["all"].group_size == 8
  assert cost.collective_bytes == {"all-reduce": 3 * kb, "all-gather": 4 * kb,
                                   "reduce-scatter": kb, "collective-permute": kb}
  t = cm.estimate_time(cost, CHIP)
  want = {"all-reduce": (2 * 3 / 4 + 2 * 7 / 8 * 2) * kb, "all-gather": 3 / 4 * 4 * kb,
          "reduce-scatter": 1 / 2 * kb, "collective-permute": kb}
  for kind, b in want.items():
    assert t["collective_by_kind_s"][kind] == pytest.approx(b / CHIP.ici_bw)
  assert t["collective_s"] == pytest.approx(sum(want.values()) / CHIP.ici_bw)
  assert t["per_category"]["optimizer"]["collective_s"] == pytest.approx(1.5 * kb / CHIP.ici_bw)
  # Two slices of 4 devices: the 8-device all-reduces run 4-way on ICI, 2-way over DCN on 1/4.
  t2 = cm.estimate_time(cost, CHIP, num_slices=2)
  ici = 2 * 3 / 4 * kb / CHIP.ici_bw
  dcn = 2 * 1 / 2 * kb / 4 / CHIP.dcn_bw
  assert t2["collective_by_kind_s"]["all-reduce"] == pytest.approx(3 * ici + 2 * dcn)


_BYTES = """\
HloModule bytes

%slice_layer (p0: f32[12,64,64], p1: s32[]) -> f32[64,64] {
  %p0 = f32[12,64,64]{2,1,0} parameter(0)
  %p1 = s32[] parameter(1)
  %z = s32[] constant(0)
  %s = f32[1,64,64]{2,1,0} dynamic-slice(%p0, %p1, %z, %z), dynamic_slice_sizes={1,64,64}
  ROOT %b = f32[64,64]{1,0} bitcast(%s)
}

%store_layer (q0: f32[12,8,64], q1: f32[8,64], q2: s32[]) -> f32[12,8,64] {
  %q0 = f32[12,8,64]{2,1,0} parameter(0)
  %q1 = f32[8,64]{1,0} parameter(1)
  %q2 = s32[] parameter(2)
  %z.1 = s32[] constant(0)
  %u = f32[1,8,64]{2,1,0} bitcast(%q1)
  ROOT %d = f32[12,8,64]{2,1,0} dynamic-update-slice(%q0, %u, %q2, %z.1, %z.1)
}

%small (r0: f32[8,64]) -> f32[8,64] {
  %r0 = f32[8,64]{1,0} parameter(0)
  ROOT %neg = f32[8,64]{1,0} negate(%r0)
}

%big (r1: f32[8,64]) -> f32[8,64] {
  %r1 = f32[8,64]{1,0} parameter(0)
  %gram = f32[8,8]{1,0} dot(%r1, %r1), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  ROOT %sq = f32[8,64]{1,0} dot(%gram, %r1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main (w: f32[12,64,64], acts: f32[12,8,64], x: f32[8,64], i: s32[]) -> f32[8,64] {
  %w = f32[12,64,64]{2,1,0} parameter(0)
  %acts = f32[12,8,64]{2,1,0} parameter(1)
  %x = f32[8,64]{1,0} parameter(2)
  %i = s32[] parameter(3)
  %wi = f32[64,64]{1,0} fusion(%w, %i), kind=kLoop, calls=%slice_layer
  %st = f32[12,8,64]{2,1,0} fusion(%acts, %x, %i), kind=kLoop, calls=%store_layer
  %cs = (f32[8,64]{1,0:S(1)}, f32[8,64]{1,0}, u32[]{:S(2)}) copy-start(%x)
  %cd = f32[8,64]{1,0:S(1)} copy-done(%cs)
  %y = f32[8,64]{1,0} dot(%cd, %wi), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %pick = f32[8,64]{1,0} conditional(%i, %y, %y), branch_computations={%small, %big}
  ROOT %out = f32[8,64]{1,0} add(%pick, %x)
}
"""


def test_bytes_slices_in_place_updates_memory_spaces_and_conditionals():
  act, layer = 8 * 64 * 4, 64 * 64 * 4
  for hbm_only in (True, False):
    ops = {o.name: o for o in cm.analyze_hlo(_BYTES, hbm_only=hbm_only).ops}
    assert ops["wi"].bytes == layer + 4 + layer          # reads one layer of 12, writes it
    assert ops["st"].bytes == act + 4 + act              # in place: the update in and out
    assert "cd" not in ops                               # async -done
    # copy-start reads HBM and writes VMEM (S(1)); the dot reads the VMEM copy.
    assert ops["cs"].bytes == (act if hbm_only else 2 * act)
    assert ops["y"].bytes == (0 if hbm_only else act) + layer + act
  # The conditional counts its costlier branch (the dot) only.
  assert "neg" not in ops and ops["gram"].flops == ops["sq"].flops == 2 * 8 * 8 * 64


def test_categories_rules_and_function():
  assert cm._categorizer(cm.DEFAULT_RULES)("jit(step)/PATH/backbone/blocks/mlp") == "backbone"
  assert cm._categorizer(cm.DEFAULT_RULES)("jit(step)/PATH/head_coco/matcher/x") == "matcher"
  assert cm._categorizer(cm.DEFAULT_RULES)("jit(step)/PATH/projector_0/dense") == "projector"
  assert cm._categorizer(cm.DEFAULT_RULES)("jit(step)/PATH/head_reid/dense") == "heads"
  assert cm._categorizer(cm.DEFAULT_RULES)("jit(step)/transpose(jvp(ViT))/x") == "backbone"
  assert cm._categorizer(cm.DEFAULT_RULES)("jit(step)/loss/mean") == "other"
  cost = cm.analyze_hlo(_LOOPS, rules=[("mm", "dot_general")])
  assert cost.per_category["mm"]["matmul_flops"] == cost.matmul_flops
  cost = cm.analyze_hlo(_LOOPS, categorize=lambda name: "all")
  assert set(cost.per_category) == {"all"}
  assert cost.per_category["all"]["flops"] == cost.flops


# ------------------------------------------------------------------------------------------------
# Compiled programs (CPU).


def test_scan_of_matmuls_counts_every_iteration():
  n, m, k, d = 7, 8, 32, 32
  def f(x, ws):
    return lax.scan(lambda c, w: (c @ w, None), x, ws)[0]
  compiled = _compile(f, jnp.ones((m, k)), jnp.ones((n, k, d)))
  cost = cm.analyze_hlo(compiled.as_text())
  assert [loop.trip_count for loop in cost.while_loops] == [n]
  assert cost.matmul_flops == n * 2 * m * k * d
  assert cost.flops == pytest.approx(n * 2 * m * k * d, rel=0.01)   # + the counter's adds
  assert _xla_flops(compiled) < 0.2 * cost.flops                     # XLA: the body once
  # Nested scans multiply: 3 x 4 matmuls.
  def g(x, ws):
    inner = lambda c, w: (lax.scan(lambda c2, w2: (c2 @ w2, None), c, w)[0], None)
    return lax.scan(inner, x, ws)[0]
  cost = cm.analyze_hlo(_compile(g, jnp.ones((m, k)), jnp.ones((3, 4, k, d))).as_text())
  assert sorted(loop.trip_count for loop in cost.while_loops) == [3, 4]
  assert cost.matmul_flops == 12 * 2 * m * k * d
  t = cm.estimate_time(cost, CHIP)
  assert t["compute_s"] == pytest.approx(cost.flops / CHIP.peak_flops)
  assert t["memory_s"] == pytest.approx(cost.bytes / CHIP.hbm_bw)
  assert max(t["compute_s"], t["memory_s"]) <= t["roofline_s"] <= t["compute_s"] + t["memory_s"]
  assert t["estimate_s"] == pytest.approx(t["roofline_s"]) and t["collective_s"] == 0


def test_data_dependent_while_is_unknown_and_counted_once():
  w = jnp.full((32, 32), 0.5)
  def f(x):   # runs until the sum passes a threshold: no static trip count
    return lax.while_loop(lambda s: s[1].sum() < 1e6, lambda s: (s[0] + 1, s[1] @ w), (0, x))
  def g(x, n):   # integer counter against a traced bound
    return lax.fori_loop(0, n, lambda i, y: y @ w, x)
  for compiled in (_compile(f, jnp.ones((8, 32))), _compile(g, jnp.ones((8, 32)), 5)):
    cost = cm.analyze_hlo(compiled.as_text())
    assert cost.unknown_trip_loops == 1
    assert [loop.trip_count for loop in cost.while_loops] == [None]
    assert cost.matmul_flops == 2 * 8 * 32 * 32


def _vit_grad(scan: bool, dtype=jnp.float32, attention_impl="xla"):
  model = vit.ViT(width=64, depth=4, num_heads=2, mlp_dim=128, patch_size=16, scan=scan,
                  dtype=dtype, attention_impl=attention_impl)

  def loss(p, x):
    tokens, _ = model.apply({"params": p}, x)
    return jnp.mean(jnp.square(tokens.astype(jnp.float32)))

  def params():
    return nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))["params"])
  return jax.grad(loss), jax.eval_shape(params)


def test_scanned_vit_matches_unscanned_on_cpu():
  res = {}
  for scan in (True, False):
    grad, params = _vit_grad(scan)
    compiled = _compile(grad, params, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.uint8))
    res[scan] = cm.analyze_hlo(compiled.as_text()), _xla_flops(compiled)
  (scanned, xla_scanned), (looped, xla_looped) = res[True], res[False]
  assert [loop.trip_count for loop in scanned.while_loops] == [4, 4]   # forward, backward
  assert scanned.matmul_flops == pytest.approx(looped.matmul_flops, rel=1e-6)
  assert scanned.flops == pytest.approx(looped.flops, rel=0.05)       # measured: 0.1 %
  assert looped.flops == pytest.approx(xla_looped, rel=0.01)          # measured: equal
  assert xla_scanned < 0.6 * scanned.flops                            # measured: 0.40x
  assert scanned.per_category["backbone"]["flops"] > 0.8 * scanned.flops
  t = cm.estimate_time(scanned, CHIP)
  assert set(t["per_category"]) == set(scanned.per_category)
  assert sum(c["estimate_s"] for c in t["per_category"].values()) == pytest.approx(t["estimate_s"])


# ------------------------------------------------------------------------------------------------
# Compiled for a TPU topology (compile-only devices; needs libtpu, no TPU).


def test_scanned_vit_matches_unscanned_on_tpu_topology():
  pytest.importorskip("libtpu")
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")   # compile-only: no chip to guard
  from jax.experimental import topologies
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  topo = topologies.get_topology_desc(topology_name="v5p:2x2x1", platform="tpu")
  mesh = Mesh(np.array(topo.devices), ("data",))
  res = {}
  for scan in (True, False):
    grad, params = _vit_grad(scan, jnp.bfloat16)
    params = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype,
                                                         sharding=NamedSharding(mesh, P())), params)
    x = jax.ShapeDtypeStruct((8, 32, 32, 3), jnp.uint8, sharding=NamedSharding(mesh, P("data")))
    with jax.set_mesh(mesh):
      compiled = _compile(grad, params, x)
    text = compiled.as_text()
    res[scan] = cm.analyze_hlo(text), _xla_flops(compiled), text
  (scanned, xla_scanned, text), (looped, xla_looped, _) = res[True], res[False]
  assert "convolution(" in text                              # TPU writes matmuls as convolutions
  assert [loop.trip_count for loop in scanned.while_loops] == [4, 4]
  assert scanned.unknown_trip_loops == 0
  assert scanned.matmul_flops == pytest.approx(looped.matmul_flops, rel=1e-6)   # measured: equal
  assert scanned.flops == pytest.approx(looped.flops, rel=0.05)                 # measured: 1.8 %
  assert looped.flops == pytest.approx(xla_looped, rel=0.01)                    # measured: 0.001 %
  assert xla_scanned < 0.6 * scanned.flops                                      # measured: 0.41x
  # Data parallel over 4 chips: the gradients are all-reduced 4-way.
  assert scanned.collective_bytes.get("all-reduce", 0) > 0
  assert {o.group_size for o in scanned.ops if o.collective} == {4}
  assert scanned.collective_bytes == pytest.approx(looped.collective_bytes)
