"""The task interface: the project's main extension point.

A task (ReID, pose, parsing, attributes, detection, counting, ...) lives in its own package
``path_jax/tasks/<task>/`` that owns its head module, loss, target encoding and prediction
decoding, and registers one :class:`Task` instance with :func:`register`. The PATH model and the
training step look tasks up by name; nothing else needs to change to add a task.

Shapes and conventions shared by every task:

* Images reach the model as ``[B, H, W, 3]`` uint8 (or float 0..255) RGB; normalisation happens
  inside the backbone.
* A head receives :class:`HeadInputs`: projected tokens ``[B, Hp*Wp, C]`` (row-major patch grid),
  the optional cls feature ``[B, C]`` (only for tasks with ``uses_cls_token``), the static patch
  grid ``(Hp, Wp)`` and the static input size ``(H, W)`` (before padding to the patch size).
* ``head(inputs, train=...)`` returns a dict of arrays (the task's raw outputs).
* ``loss(outputs, batch, cfg)`` returns ``(scalar_loss, metrics)``: ``batch`` is that dataset's
  sub-batch dict (the fields the task's pipeline produced), ``cfg`` that dataset's config
  subtree, ``metrics`` a flat dict of scalars. Losses are means over the *global* batch: under
  ``jax.jit`` with sharded inputs a plain ``jnp.mean`` over the batch axis already is one.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax


@dataclasses.dataclass(frozen=True)
class HeadInputs:
  """What a dataset head sees. ``grid`` and ``image_hw`` are static Python ints."""
  tokens: jax.Array                 # [B, Hp*Wp, C] projected patch tokens
  grid: tuple[int, int]             # (Hp, Wp)
  image_hw: tuple[int, int]         # (H, W) of the input before padding
  cls: jax.Array | None = None      # [B, C] projected cls feature, or None

  def feature_map(self) -> jax.Array:
    """Tokens as an NHWC map ``[B, Hp, Wp, C]``."""
    b, _, c = self.tokens.shape
    return self.tokens.reshape(b, self.grid[0], self.grid[1], c)


jax.tree_util.register_dataclass(
    HeadInputs, data_fields=["tokens", "cls"], meta_fields=["grid", "image_hw"])


class Task(abc.ABC):
  """Base class of a task. Subclasses set ``name`` and implement the methods."""

  name: str = ""
  #: Whether the backbone runs with its cls token for this task (ReID).
  uses_cls_token: bool = False
  #: Whether the task takes part in pretraining (counting is downstream only).
  pretraining: bool = True

  @abc.abstractmethod
  def make_head(self, cfg: Mapping[str, Any]) -> nn.Module:
    """Builds the dataset head from that dataset's config subtree."""

  @abc.abstractmethod
  def loss(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
           cfg: Mapping[str, Any]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Scalar loss (mean over the global batch) and a flat dict of scalar metrics."""

  def example_batch(self, cfg: Mapping[str, Any], batch_size: int, rng) -> dict[str, Any]:
    """A well-formed random training sub-batch (numpy) of this task for ``cfg``: the fields the
    loss reads, with their static shapes. Used by benchmarks and shape checks (no data needed)."""
    raise TypeError(f"task {self.name!r} has no example_batch; add one to run the step "
                    "benchmark on it")

  @abc.abstractmethod
  def decode(self, outputs: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
             cfg: Mapping[str, Any]) -> dict[str, jax.Array]:
    """Turns raw head outputs into predictions (inference)."""


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
  """Registers a task instance under ``task.name``; returns it (usable as a decorator result)."""
  if not task.name:
    raise ValueError(f"{type(task).__name__} has no name; set the class attribute `name`.")
  if task.name in _REGISTRY and type(_REGISTRY[task.name]) is not type(task):
    raise ValueError(f"task name {task.name!r} is registered twice "
                     f"({type(_REGISTRY[task.name]).__name__} and {type(task).__name__}).")
  _REGISTRY[task.name] = task
  return task


def get(name: str) -> Task:
  """The registered task called ``name``; imports the task packages on first use."""
  from path_jax import tasks as _tasks  # noqa: F401  (imports every task package)
  _tasks.import_all()
  if name not in _REGISTRY:
    import difflib
    near = difflib.get_close_matches(name, list(_REGISTRY), n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(_REGISTRY)}.{hint}")
  return _REGISTRY[name]


def names() -> list[str]:
  from path_jax import tasks as _tasks
  _tasks.import_all()
  return sorted(_REGISTRY)
