"""The train state, built abstractly and initialised in place with its shardings.

``create_train_state`` never materialises an unsharded copy: the state's shapes come from
``jax.eval_shape``, the shardings from the logical-axis rules (path_jax.parallel.rules), and the
initialiser runs under ``jax.jit(..., out_shardings=...)`` so every device creates only its shard.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from path_jax.parallel import mesh as mesh_lib
from path_jax.parallel import rules as rules_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array                 # training iterations done (skipped ones included)
  params: Any
  batch_stats: Any                # BatchNorm statistics of the heads ({} when none)
  opt_state: Any
  skipped: jax.Array              # updates skipped for non-finite loss/gradients, in total
  consecutive_skipped: jax.Array  # ... in a row, up to this step


@dataclasses.dataclass
class StateInfo:
  """What was built alongside the state: its shardings, the optimiser and the rules report."""
  shardings: TrainState
  tx: optax.GradientTransformation
  report: rules_lib.ShardingReport
  mesh: Mesh
  rules: tuple


def example_images(model, image_shapes: Mapping[str, tuple[int, int]], batch: int
                   ) -> dict[str, jax.ShapeDtypeStruct]:
  """``{dataset: uint8 [batch, H, W, 3]}`` structs for initialising ``model``."""
  return {name: jax.ShapeDtypeStruct((batch, int(h), int(w), 3), jnp.uint8)
          for name, (h, w) in image_shapes.items()}


def _plan(model, make_tx, image_shapes, mesh, rules, fsdp_min_size):
  """Abstract shapes + shardings of the state, and the variable initialiser."""
  rules = tuple(rules)
  images = example_images(model, image_shapes, mesh_lib.batch_shards(mesh))

  def init_variables(rng):
    dummy = {n: jnp.zeros(s.shape, s.dtype) for n, s in images.items()}
    with nn.logical_axis_rules(rules):
      return model.init({"params": rng, "dropout": rng}, dummy, train=False)

  # The key is made outside the mesh context: with compile-only devices (a TPU topology compiled
  # from a CPU host) an array created under ``set_mesh`` would be placed on devices that cannot
  # hold data. Only its shape and dtype matter here.
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
  with jax.set_mesh(mesh):
    abstract = jax.eval_shape(init_variables, key)
  param_sh, report = rules_lib.param_shardings(abstract["params"], mesh, rules,
                                               fsdp_min_size=fsdp_min_size)
  abstract_params = nn.unbox(abstract["params"])
  tx = make_tx(abstract_params)
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_sh = rules_lib.opt_state_shardings(tx, abstract_opt, param_sh, mesh)
  replicated = NamedSharding(mesh, P())
  bs = nn.unbox(abstract.get("batch_stats", {}))
  shardings = TrainState(step=replicated, params=param_sh,
                         batch_stats=jax.tree.map(lambda _: replicated, bs), opt_state=opt_sh,
                         skipped=replicated, consecutive_skipped=replicated)
  scalar = jax.ShapeDtypeStruct((), jnp.int32)
  shapes = TrainState(step=scalar, params=abstract_params, batch_stats=bs, opt_state=abstract_opt,
                      skipped=scalar, consecutive_skipped=scalar)
  structs = jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                         shapes, shardings)
  info = StateInfo(shardings=shardings, tx=tx, report=report, mesh=mesh, rules=rules)
  return structs, info, init_variables


def abstract_train_state(model: nn.Module, make_tx, image_shapes, mesh: Mesh,
                         rules=rules_lib.DEFAULT_RULES, *, fsdp_min_size: int = 2 ** 18
                         ) -> tuple[TrainState, StateInfo]:
  """Shapes and shardings of the train state (``ShapeDtypeStruct``s with shardings), without
  allocating it: the target of a checkpoint restore and of ahead-of-time compilation."""
  structs, info, _ = _plan(model, make_tx, image_shapes, mesh, rules, fsdp_min_size)
  return structs, info


def create_train_state(model: nn.Module, make_tx, image_shapes: Mapping[str, tuple[int, int]],
                       mesh: Mesh, rules=rules_lib.DEFAULT_RULES, seed: int = 0, *,
                       fsdp_min_size: int = 2 ** 18) -> tuple[TrainState, StateInfo]:
  """Builds the sharded train state, initialised in place.

  Args:
    model: the PATH model (path_jax.model.path.PATHModel).
    make_tx: ``params -> optax.GradientTransformation`` (e.g. ``partial(make_optimizer, cfg)``);
      it receives abstract (unboxed) params, so masks and multipliers come from paths and shapes.
    image_shapes: ``{dataset: (H, W)}`` input size of every dataset.
    mesh, rules: the device mesh and the logical-axis rules table.
  """
  _, info, init_variables = _plan(model, make_tx, image_shapes, mesh, rules, fsdp_min_size)
  tx = info.tx

  def init(rng):
    variables = init_variables(rng)
    params = nn.unbox(variables["params"])
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=nn.unbox(variables.get("batch_stats", {})),
                      opt_state=tx.init(params), skipped=jnp.zeros((), jnp.int32),
                      consecutive_skipped=jnp.zeros((), jnp.int32))

  with jax.set_mesh(mesh):
    state = jax.jit(init, out_shardings=info.shardings)(jax.random.key(seed))
  return state, info
