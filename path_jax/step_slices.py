"""The training step with dataset streams on their own mesh slices (``placement.mode='slices'``).

Design note: ``path_jax/parallel/PLACEMENT.md``. One step is 1 + G jitted programs:

* per task group g, on its sub-mesh (a block of rows of the data axis): the group's gradient
  program, :func:`path_jax.step.compute_grads` over its datasets only (the backbone, its
  projectors and heads; the state's arrays are passed as zero-copy views of the devices of the
  sub-mesh). Its outputs are stacked along a leading row axis: the group's first row holds the
  values, its other rows (and every leaf the group does not touch) zeros;
* one update program on the whole mesh: the rows are summed (the all-reduce that gives each
  parameter the sum over the groups that use it: the backbone over all, a projector over its
  group's, a head over its dataset's) and :func:`path_jax.step.apply_grads` updates the state as
  in 'shared' mode (one optimiser update, the same skip of non-finite steps, the same metrics).

The per-group programs are dispatched one after the other and run concurrently on their disjoint
devices; the per-row outputs become the update's inputs through
``jax.make_array_from_single_device_arrays`` (each device contributes the buffer it holds: no
copy). The loss weights stay an array argument of every program: changing them never recompiles.
The state keeps the 'shared' layout (parameters replicated over the data axis, sharded over fsdp
and model within a row), so checkpoints move between the two modes.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from path_jax import step as step_lib
from path_jax.parallel import placement as placement_lib


def group_keys(model, datasets: Sequence[str], params: Mapping[str, Any]) -> tuple[str, ...]:
  """Top-level parameter (and BatchNorm) keys that ``datasets`` use: the backbone, their
  projectors and their heads."""
  specs = {s.name: s for s in model.datasets}
  keys = {"backbone"} | {f"projector_{specs[n].group}" for n in datasets} | {
      f"head_{n}" for n in datasets}
  return tuple(k for k in params if k in keys)


def group_state(model, datasets: Sequence[str], params, batch_stats, on):
  """The parameters and BatchNorm statistics ``datasets`` use (:func:`group_keys`), each leaf
  mapped by ``on`` (e.g. a :func:`view` on the group's sub-mesh)."""
  keys = group_keys(model, datasets, params)
  return ({k: jax.tree.map(on, params[k]) for k in keys},
          {k: jax.tree.map(on, batch_stats[k]) for k in keys if k in batch_stats})


def view(x: jax.Array, mesh) -> jax.Array:
  """``x`` (replicated over the data axis) as an array on the sub-mesh ``mesh``: the buffers of
  the sub-mesh's devices, no copy."""
  devices = set(mesh.devices.flat)
  shards = [s.data for s in x.addressable_shards if s.device in devices]
  return jax.make_array_from_single_device_arrays(
      x.shape, NamedSharding(mesh, x.sharding.spec), shards)


def _rows_spec(spec) -> P:
  return P("data", *tuple(spec))


def _first_row(x, rows: int):
  x = jnp.asarray(x)
  if rows == 1:
    return x[None]
  return jnp.concatenate([x[None], jnp.zeros((rows - 1,) + x.shape, x.dtype)])


def group_step(params, batch_stats, batch, loss_weights, rng, step, *, model, rules, accum_steps,
               batch_shards, rows, full_params, full_stats, metric_keys):
  """One group's gradient program (module doc): per-row outputs for every parameter, BatchNorm
  statistic and metric of the whole model."""
  rng = jax.random.fold_in(rng, step)
  loss, metrics, stats, grads = step_lib.compute_grads(
      params, batch_stats, batch, loss_weights, rng, model=model, rules=rules,
      accum_steps=accum_steps, batch_shards=batch_shards)
  del loss   # metrics['loss'] holds it
  zeros = lambda s: jnp.zeros((rows,) + tuple(s.shape), s.dtype)   # noqa: E731
  first = functools.partial(_first_row, rows=rows)
  g_out = {k: jax.tree.map(first, grads[k]) if k in grads else jax.tree.map(zeros, v)
           for k, v in full_params.items()}
  s_out = {k: jax.tree.map(first, stats[k]) if k in stats else jax.tree.map(zeros, v)
           for k, v in full_stats.items()}
  m_out = {k: first(jnp.asarray(metrics[k], jnp.float32)) if k in metrics
           else jnp.zeros((rows,), jnp.float32) for k in metric_keys}
  return g_out, s_out, m_out


def sliced_update(state, grads, stats, metrics, loss_weights, *, model, tx, schedule=None):
  """The update program: rows summed, then the 'shared' update."""
  total = lambda x: jnp.sum(x, axis=0)   # noqa: E731
  grads = jax.tree.map(total, grads)
  stats = jax.tree.map(total, stats)
  metrics = {k: total(v) for k, v in metrics.items()}
  return step_lib.apply_grads(state, grads, metrics["loss"], metrics, stats, loss_weights,
                              model=model, tx=tx, schedule=schedule,
                              present=step_lib.dataset_names(model))


class SlicedTrainStep:
  """``step(state, batches, loss_weights, rng) -> (state, metrics)`` for a placement; ``batches``
  maps each dataset to its sub-batch sharded over its group's sub-mesh
  (:func:`path_jax.input.global_batch.to_global` with ``placement.submeshes[group]``).

  The state is donated to the update program. A process runs only the programs of groups with
  devices on it (multi-process: each host compiles its own groups' programs and the update)."""

  def __init__(self, model, tx, *, placement: placement_lib.Placement, state_shardings,
               schedule=None, rules: Sequence = (), accum_steps: int = 1):
    self.model, self.tx, self.placement = model, tx, placement
    self.state_shardings, self.schedule = state_shardings, schedule
    self.rules, self.accum_steps = tuple(rules), int(accum_steps)
    self._group_fns: dict[str, Any] = {}
    self._update = None

  # ---- building (once, from shapes).

  def _on(self, x, sub):
    """``x`` for a program on the sub-mesh ``sub``: arrays (or abstract arrays) on the whole mesh
    become views on ``sub``; uncommitted values (host arrays, a key made by ``jax.random.key``)
    stay as they are, and each program places them itself, as 'shared' mode's step does (a
    multi-process run cannot ``device_put`` onto devices of other processes)."""
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding):
      return x
    if isinstance(x, jax.ShapeDtypeStruct):
      return _abstract_view(x, sub)
    return view(x, sub)

  def _group_inputs(self, group, state, batches, loss_weights, rng):
    sub = self.placement.submeshes[group.name]
    on = lambda x: self._on(x, sub)   # noqa: E731
    params, stats = group_state(self.model, group.datasets, state.params, state.batch_stats, on)
    batch = {n: batches[n] for n in group.datasets}
    return (params, stats, batch, on(loss_weights), on(rng), on(state.step))

  def _static(self, group):
    return dict(model=self.model, rules=self.rules, accum_steps=self.accum_steps,
                batch_shards=self.placement.batch_shards(group), rows=group.rows)

  def _example_batches(self, group):
    """Abstract sub-batches of ``group`` (shapes from the tasks' example batches): every process
    derives the same metric names, also for groups whose data it never sees."""
    import numpy as np
    from path_jax import tasks
    from path_jax.parallel import rules as rules_lib
    specs = {sp.name: sp for sp in self.model.datasets}
    sharding = rules_lib.batch_sharding(self.placement.submeshes[group.name])
    b = self.placement.batch_shards(group) * self.accum_steps
    out = {}
    for n in group.datasets:
      one = tasks.get(specs[n].task).example_batch(specs[n].cfg, 1, np.random.default_rng(0))
      out[n] = {k: jax.ShapeDtypeStruct((b,) + v.shape[1:], v.dtype, sharding=sharding)
                for k, v in one.items()}
    return out

  def _build(self, state, batches, loss_weights, rng):
    del batches   # the metric names come from every group, local or not
    abstract = lambda x: jax.ShapeDtypeStruct(   # noqa: E731
        jnp.shape(x), jnp.result_type(x), sharding=x.sharding if isinstance(
            getattr(x, "sharding", None), NamedSharding) else None)
    state, loss_weights, rng = jax.tree.map(abstract, (state, loss_weights, rng))
    full_params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state.params)
    full_stats = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                              state.batch_stats)
    keys: dict[str, None] = {}
    for g in self.placement.groups:
      args = self._group_inputs(g, state, self._example_batches(g), loss_weights, rng)
      sub = self.placement.submeshes[g.name]
      with jax.set_mesh(sub):
        m = jax.eval_shape(lambda *a, g=g: step_lib.compute_grads(
            *a[:4], jax.random.fold_in(a[4], a[5]), model=self.model, rules=self.rules,
            accum_steps=self.accum_steps, batch_shards=self.placement.batch_shards(g))[1], *args)
      keys.update(dict.fromkeys(m))
    self.metric_keys = tuple(keys)
    psh = self.state_shardings.params
    ssh = self.state_shardings.batch_stats
    for g in self.placement.groups:
      sub = self.placement.submeshes[g.name]
      rows = lambda sh, sub=sub: NamedSharding(sub, _rows_spec(sh.spec))   # noqa: E731
      out = (jax.tree.map(rows, psh), jax.tree.map(rows, ssh),
             {k: NamedSharding(sub, P("data")) for k in self.metric_keys})
      fn = functools.partial(group_step, full_params=full_params, full_stats=full_stats,
                             metric_keys=self.metric_keys, **self._static(g))
      self._group_fns[g.name] = jax.jit(fn, out_shardings=out)
    self._update = jax.jit(
        functools.partial(sliced_update, model=self.model, tx=self.tx, schedule=self.schedule),
        donate_argnums=(0,), out_shardings=(self.state_shardings, None))

  def _stacked_structs(self, state):
    mesh = self.placement.mesh
    d = int(mesh.shape["data"])
    rows = lambda x, sh: jax.ShapeDtypeStruct(   # noqa: E731
        (d,) + tuple(x.shape), x.dtype, sharding=NamedSharding(mesh, _rows_spec(sh.spec)))
    g = jax.tree.map(rows, state.params, self.state_shardings.params)
    s = jax.tree.map(rows, state.batch_stats, self.state_shardings.batch_stats)
    m = {k: jax.ShapeDtypeStruct((d,), jnp.float32, sharding=NamedSharding(mesh, P("data")))
         for k in self.metric_keys}
    return g, s, m

  # ---- running.

  def __call__(self, state, batches, loss_weights, rng):
    if not isinstance(loss_weights, jax.Array):
      loss_weights = jnp.asarray(loss_weights, jnp.float32)
    if self._update is None:
      self._build(state, batches, loss_weights, rng)
    outs = []
    me = jax.process_index()
    for g in self.placement.groups:
      if not any(d.process_index == me for d in self.placement.submeshes[g.name].devices.flat):
        continue   # another process's group: its processes run it
      args = self._group_inputs(g, state, batches, loss_weights, rng)
      with jax.set_mesh(self.placement.submeshes[g.name]):
        outs.append(self._group_fns[g.name](*args))
      del args
    structs = self._stacked_structs(state)
    stacked = jax.tree.map(
        lambda s, *parts: jax.make_array_from_single_device_arrays(
            s.shape, s.sharding, [sh.data for p in parts for sh in p.addressable_shards]),
        structs, *outs)
    del outs
    with jax.set_mesh(self.placement.mesh):
      return self._update(state, *stacked, loss_weights)

  # ---- ahead of time (path_jax.compile).

  def lower(self, state, batches, loss_weights, rng, groups: Sequence[str] | None = None
            ) -> dict[str, Any]:
    """``{group: lowered, ..., 'update': lowered}`` from abstract inputs (``ShapeDtypeStruct``s
    with shardings: ``batches`` on the groups' sub-meshes, the rest on the whole mesh);
    ``groups``: only these groups' programs (and the update), as one pod host compiles."""
    self._build(state, batches, loss_weights, rng)
    out = {}
    for g in self.placement.groups:
      if groups is not None and g.name not in groups:
        continue
      args = self._group_inputs(g, state, batches, loss_weights, rng)
      with jax.set_mesh(self.placement.submeshes[g.name]):
        out[g.name] = self._group_fns[g.name].trace(*args).lower()
    with jax.set_mesh(self.placement.mesh):
      out["update"] = self._update.trace(state, *self._stacked_structs(state),
                                         loss_weights).lower()
    return out


def _abstract_view(x, mesh):
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=NamedSharding(mesh, x.sharding.spec))
