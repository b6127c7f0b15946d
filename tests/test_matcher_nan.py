"""The Hungarian matcher on non-finite costs (issue 15): it returns, the matching is valid, and it
is the optimum a reference (scipy on a float64 matrix with the non-finite entries replaced by
tiered penalties) finds; on finite costs its loop stays within the static trip cap.

pytest-timeout is not installed, so every call that could hang runs in a daemon thread joined
with a timeout: a regression fails the test instead of hanging the run.
"""
from __future__ import annotations

import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from path_jax.tasks.detection import default_config
from path_jax.tasks.detection import losses
from path_jax.tasks.detection.matcher import _hungarian, hungarian, max_trips, sanitize_costs

TIMEOUT_S = 180.0   # compile + run on 2 loaded cores takes a few seconds; a hang never returns

_batched = jax.jit(jax.vmap(hungarian))


def _returns(fn, *args):
  """``fn(*args)`` with its outputs as NumPy, or a test failure if it has not returned in time."""
  box = {}

  def target():
    try:
      box["out"] = jax.tree.map(np.asarray, jax.block_until_ready(fn(*args)))
    except BaseException as e:   # re-raised in the test's thread
      box["err"] = e

  t = threading.Thread(target=target, daemon=True)
  t.start()
  t.join(TIMEOUT_S)
  if t.is_alive():
    pytest.fail(f"call did not return within {TIMEOUT_S:.0f} s (in-graph loop hang)")
  if "err" in box:
    raise box["err"]
  return box["out"]


def _check_valid(valid, r2c, c2r):
  """Each valid row has its own column, invalid rows none, and c2r is the inverse map."""
  for v, rc, cr in zip(valid, r2c, c2r):
    rows = np.nonzero(v)[0]
    assert (rc[~v] == -1).all()
    cols = rc[rows]
    assert (cols >= 0).all() and (cols < len(cr)).all(), rc
    assert len(np.unique(cols)) == len(rows), rc
    np.testing.assert_array_equal(np.nonzero(cr >= 0)[0], np.sort(cols))
    np.testing.assert_array_equal(cr[cols], rows)


def _reference(c):
  """Tiered float64 costs: -inf entries preferred over all, NaN/+inf avoided over all finite."""
  c = np.asarray(c, np.float64)
  return np.where(np.isnan(c) | (c == np.inf), 1e6, np.where(c == -np.inf, -1e12, c))


def _check_optimal(costs, valid, r2c, tol):
  for c, v, rc in zip(costs, valid, r2c):
    rows = np.nonzero(v)[0]
    ref = _reference(c)[rows]
    qi, gi = linear_sum_assignment(ref.T)   # the [Q, G] orientation of the detection code
    optimum = ref[gi, qi].sum()
    got = ref[np.arange(len(rows)), rc[rows]].sum()
    assert abs(got - optimum) <= tol, (got, optimum, c)


def _problems(seed, count=48, n=6, m=10, integer=True):
  rng = np.random.default_rng(seed)
  if integer:
    costs = rng.integers(0, 5, (count, n, m)).astype(np.float32)
  else:
    costs = (rng.normal(size=(count, n, m)) * 3).astype(np.float32)
  valid = rng.random((count, n)) < 0.8
  valid[0] = True
  return rng, costs, valid


def _with(kind, rng, costs):
  c = costs.copy()
  spots = rng.random(c.shape)
  if kind == "nan":
    c[spots < 0.15] = np.nan
  elif kind == "posinf":
    c[spots < 0.15] = np.inf
  elif kind == "neginf":
    c[spots < 0.05] = -np.inf
  elif kind == "all_nan":
    c[:] = np.nan
  elif kind == "all_posinf":
    c[:] = np.inf
  elif kind == "all_neginf":
    c[:] = -np.inf
  elif kind == "nan_rows":      # the ground truths of an image seen by NaN weights
    c[rng.random(c.shape[:2]) < 0.3] = np.nan
  elif kind == "mixed":
    c[spots < 0.1] = np.nan
    c[(spots >= 0.1) & (spots < 0.2)] = np.inf
    c[(spots >= 0.2) & (spots < 0.24)] = -np.inf
    c[::5] = np.nan              # and a few all-NaN problems in the same batch
  else:
    raise ValueError(kind)
  return c


@pytest.mark.parametrize("kind", ["nan", "posinf", "neginf", "all_nan", "all_posinf",
                                  "all_neginf", "nan_rows", "mixed"])
def test_nonfinite_costs_return_a_valid_optimal_matching(kind):
  rng, costs, valid = _problems(seed=len(kind))
  costs = _with(kind, rng, costs)
  assert not np.isfinite(costs[0]).all()
  r2c, c2r = _returns(_batched, jnp.asarray(costs), jnp.asarray(valid))
  _check_valid(valid, r2c, c2r)
  # Integer costs: the tiers are exact in float32, so the optimum is exact.
  _check_optimal(costs, valid, r2c, tol=0.0)


def test_nonfinite_float_costs_still_match_the_finite_part_optimally():
  rng, costs, valid = _problems(seed=7, integer=False)
  costs = _with("nan_rows", rng, costs)
  costs[rng.random(costs.shape) < 0.05] = np.inf
  r2c, c2r = _returns(_batched, jnp.asarray(costs), jnp.asarray(valid))
  _check_valid(valid, r2c, c2r)
  _check_optimal(costs, valid, r2c, tol=1e-3)
  # Rows with no finite cost take some column; the other rows are matched as scipy matches them
  # alone, with +inf for forbidden pairs (where a matching avoiding them exists).
  checked = 0
  for c, v, rc in zip(costs, valid, r2c):
    rows = np.nonzero(v & np.isfinite(c).any(-1))[0]
    sub = np.where(np.isfinite(c[rows]), c[rows], np.inf).astype(np.float64)
    try:
      gi, qi = linear_sum_assignment(sub)
    except ValueError:        # infeasible
      continue
    checked += 1
    got = sub[np.arange(len(rows)), rc[rows]]
    assert np.isfinite(got).all()
    assert abs(got.sum() - sub[gi, qi].sum()) <= 1e-4
  assert checked >= 30


def test_huge_finite_costs_do_not_overflow():
  rng, costs, valid = _problems(seed=3)
  costs = costs * np.float32(1e30) - np.float32(2e30)
  costs[1, 0, 0] = np.float32(3e38)         # beyond the clip: still a valid matching
  costs[2, 1, 1] = np.float32(-3e38)
  r2c, c2r = _returns(_batched, jnp.asarray(costs), jnp.asarray(valid))
  _check_valid(valid, r2c, c2r)
  keep = np.ones(len(costs), bool)
  keep[[1, 2]] = False
  _check_optimal(costs[keep], valid[keep], r2c[keep], tol=1e24)


def test_detection_loss_returns_on_nan_model_outputs():
  """The issue's case: a step from NaN weights; matching on NaN costs must not hang."""
  cfg = default_config()
  cfg.update(num_queries=16, max_boxes=4, max_ignore=2)
  lb, b, q, g = 2, 3, 16, 4
  rng = np.random.default_rng(0)
  boxes = np.concatenate([rng.uniform(0.3, 0.7, (b, g, 2)), rng.uniform(0.1, 0.3, (b, g, 2))],
                         -1).astype(np.float32)
  batch = {"boxes": jnp.asarray(boxes), "box_mask": jnp.asarray(rng.random((b, g)) < 0.8),
           "ignore_boxes": jnp.zeros((b, 2, 4)), "ignore_mask": jnp.zeros((b, 2), bool)}
  fn = jax.jit(lambda o, bt: losses.detection_loss(o, bt, cfg))
  for fill in (np.nan, np.inf, -np.inf):
    out = {"logits": jnp.full((lb, b, q), fill), "boxes": jnp.full((lb, b, q, 4), fill)}
    loss, metrics = _returns(fn, out, batch)
    assert loss.shape == () and "num_boxes" in metrics


def test_sanitize_keeps_finite_costs():
  rng, costs, valid = _problems(seed=11, integer=False)
  out = np.asarray(jax.vmap(sanitize_costs)(jnp.asarray(costs), jnp.asarray(valid)))
  np.testing.assert_array_equal(out[valid], costs[valid])
  assert (out[~valid] == 0).all()
  nan = costs.copy()
  nan[0, 0, 0] = np.nan
  nan[0, 0, 1] = -np.inf
  out = np.asarray(sanitize_costs(jnp.asarray(nan[0]), jnp.ones(nan.shape[1], bool)))
  assert np.isfinite(out).all()
  finite = np.isfinite(nan[0])
  np.testing.assert_array_equal(out[finite], nan[0][finite])
  assert out[0, 0] > nan[0][finite].max() and out[0, 1] < nan[0][finite].min()


@pytest.mark.parametrize("n,m,integer", [(8, 8, True), (8, 8, False), (12, 20, True),
                                         (6, 30, False)])
def test_finite_costs_stay_within_the_trip_cap(n, m, integer):
  """max_trips(n) bounds the trips on finite input, so the cap never changes a result."""
  rng = np.random.default_rng(n + m + integer)
  count = 64
  if integer:
    costs = rng.integers(0, 3, (count, n, m)).astype(np.float32)     # many ties
  else:
    costs = (rng.normal(size=(count, n, m)) * 3).astype(np.float32)
  # Adversarial ones: cost i * j makes every new row displace the earlier ones.
  costs[:8] = (np.arange(n)[:, None] * np.arange(m)[None, :]).astype(np.float32)
  costs[8:16] = -costs[:8]
  valid = np.ones((count, n), bool)
  valid[32:] = rng.random((count - 32, n)) < 0.7
  fn = jax.jit(jax.vmap(functools.partial(_hungarian, trip_cap=10 * max_trips(n))))
  r2c, c2r, trips = _returns(fn, jnp.asarray(costs), jnp.asarray(valid))
  assert trips.max() <= max_trips(n), (trips.max(), max_trips(n))
  assert trips.max() > 0
  _check_valid(valid, r2c, c2r)
  _check_optimal(costs, valid, r2c, tol=0.0 if integer else 1e-4)
  # The default cap gives the same matchings.
  r2c_default, _ = _returns(_batched, jnp.asarray(costs), jnp.asarray(valid))
  np.testing.assert_array_equal(r2c_default, r2c)


def test_a_problem_cut_short_by_the_cap_still_gets_a_valid_matching():
  rng, costs, valid = _problems(seed=5)
  valid[1] = False                      # nothing to do: finishes before the cap
  for cap in (0, 1, 5):
    fn = jax.jit(jax.vmap(functools.partial(_hungarian, trip_cap=cap)))
    r2c, c2r, trips = _returns(fn, jnp.asarray(costs), jnp.asarray(valid))
    assert trips.max() <= cap
    _check_valid(valid, r2c, c2r)
    assert (r2c[1] == -1).all() and (c2r[1] == -1).all()
