"""Device mesh ``('data', 'fsdp', 'model')`` from config, and multi-host initialisation.

Config (``config.mesh``)::

  shape: (data, fsdp, model)   one entry may be -1: filled with what the devices leave
  dcn_shape: (data, fsdp, model) or None   multi-slice TPU: the factor of each axis that
                               crosses slices (data-centre network); ICI shape = shape / dcn_shape

Axes are created as ``AxisType.Auto``: jax 0.10's ``jax.make_mesh`` defaults to Explicit axes,
under which linen's logical sharding constraints fail.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")


def resolve_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Fills one ``-1`` entry so that the product equals ``num_devices``; checks the fit."""
  shape = [int(s) for s in shape]
  if len(shape) != len(AXES):
    raise ValueError(f"config.mesh.shape must have {len(AXES)} entries {AXES}, got {shape}")
  if shape.count(-1) > 1:
    raise ValueError(f"config.mesh.shape {shape}: at most one entry may be -1")
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh.shape {shape}: entries must be positive or -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"config.mesh.shape {shape} does not fit {num_devices} devices: "
                       f"{num_devices} is not a multiple of {known}")
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(f"config.mesh.shape {shape} needs {math.prod(shape)} devices but "
                     f"{num_devices} are available; use -1 for one axis to fill automatically")
  return tuple(shape)


def device_grid(shape: Sequence[int], dcn_shape: Sequence[int] | None,
                devices: Sequence) -> np.ndarray:
  """The devices arranged as the mesh ``shape`` (one ``-1`` filled).

  With a ``dcn_shape`` whose product is > 1 (multi-slice TPU), each axis of size ``shape[i]`` is
  ``dcn_shape[i]`` slices times ``shape[i] / dcn_shape[i]`` devices inside a slice (ICI), laid out
  by ``mesh_utils.create_hybrid_device_mesh`` from each device's ``slice_index``: neighbours on
  an axis share a slice, and only the outer factor crosses the data-centre network.
  """
  devices = list(devices)
  full = resolve_shape(shape, len(devices))
  if dcn_shape is None or math.prod(int(s) for s in dcn_shape) <= 1:
    return np.asarray(devices, dtype=object).reshape(full)
  from jax.experimental import mesh_utils
  dcn = tuple(int(s) for s in dcn_shape)
  if len(dcn) != len(AXES) or any(s < 1 for s in dcn):
    raise ValueError(f"config.mesh.dcn_shape must be {len(AXES)} positive entries {AXES}, "
                     f"got {list(dcn_shape)}")
  if any(f % d for f, d in zip(full, dcn)):
    raise ValueError(f"config.mesh.dcn_shape {dcn} must divide the mesh shape {full} axis by "
                     f"axis")
  slices = {getattr(d, "slice_index", None) for d in devices}
  if None in slices or len(slices) != math.prod(dcn):
    raise ValueError(f"config.mesh.dcn_shape {dcn} asks for {math.prod(dcn)} slices but the "
                     f"devices report slice_index {sorted(map(str, slices))}; set dcn_shape to "
                     f"None (or all ones) on a single slice")
  ici = tuple(f // d for f, d in zip(full, dcn))
  return mesh_utils.create_hybrid_device_mesh(ici, dcn, devices=devices)


def make_mesh(shape: Sequence[int] = (-1, 1, 1), dcn_shape: Sequence[int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """The training mesh over ``devices`` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  axis_types = (AxisType.Auto,) * len(AXES)
  multislice = dcn_shape is not None and math.prod(int(s) for s in dcn_shape) > 1
  if not multislice and (devices == list(jax.devices()) or devices[0].platform == "tpu"):
    # jax.make_mesh orders devices for the physical topology (TPU ICI rings, GPU NVLink); TPU
    # devices of a topology compiled ahead of time (path_jax.compile) get the same order.
    return jax.make_mesh(resolve_shape(shape, len(devices)), AXES, axis_types=axis_types,
                         devices=devices)
  return Mesh(device_grid(shape, dcn_shape, devices), AXES, axis_types=axis_types)


def num_slices(devices: Sequence) -> int:
  """How many TPU slices ``devices`` span (1 when they report no ``slice_index``)."""
  return len({getattr(d, "slice_index", None) for d in devices} - {None}) or 1


def default_dcn_shape(shape: Sequence[int], devices: Sequence) -> tuple[int, ...] | None:
  """``dcn_shape`` for devices spanning several slices when the config leaves it unset: the
  slices split the ``data`` axis (pure data parallelism across the data-centre network, the usual
  choice: only the gradient all-reduce crosses slices). None on one slice."""
  slices = num_slices(devices)
  if slices == 1 or devices[0].platform != "tpu":   # GPU hosts keep jax.make_mesh's layout
    return None
  full = resolve_shape(shape, len(devices))
  if full[0] % slices:
    raise ValueError(f"the devices span {slices} slices but config.mesh.shape {tuple(shape)} "
                     f"(resolved {full}) has a data axis of {full[0]}, not a multiple of "
                     f"{slices}; set config.mesh.dcn_shape to say which axes cross slices")
  return (slices, 1, 1)


def from_config(cfg, devices: Sequence | None = None) -> Mesh:
  """The mesh of ``config.mesh`` over ``devices`` (default: every device of every process). On
  several slices with ``dcn_shape`` unset, the slices split the data axis
  (:func:`default_dcn_shape`)."""
  devices = list(jax.devices() if devices is None else devices)
  dcn = cfg.get("dcn_shape", None)
  if dcn is None:
    dcn = default_dcn_shape(tuple(cfg.shape), devices)
    if dcn is not None:
      logging.info("mesh: %d slices, config.mesh.dcn_shape unset: using %s (slices split the "
                   "data axis)", dcn[0], dcn)
  return make_mesh(tuple(cfg.shape), None if dcn is None else tuple(dcn), devices=devices)


def platform(mesh: Mesh) -> str:
  """The platform of the mesh's devices ('cpu', 'tpu', 'gpu'), which may differ from
  ``jax.default_backend()`` when compiling ahead of time for another topology."""
  return mesh.devices.flat[0].platform


def batch_shards(mesh: Mesh) -> int:
  """How many ways every dataset's sub-batch is split (the product of the batch axes)."""
  return int(np.prod([mesh.shape[a] for a in BATCH_AXES]))


def _slurm_local_devices(env) -> dict:
  """``local_device_ids`` for SLURM with one task per node: every GPU of the node.

  jax's SLURM detection restricts each process to GPU ``SLURM_LOCALID``, which is right for one
  task per GPU but leaves a one-task-per-node job on GPU 0 alone. ``JAX_LOCAL_DEVICE_IDS`` wins.
  """
  if env.get("JAX_LOCAL_DEVICE_IDS"):
    return {}
  tasks = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
  nodes = int(env.get("SLURM_STEP_NUM_NODES", env.get("SLURM_NNODES", "1")))
  if tasks != nodes:
    return {}
  gpus = env.get("SLURM_GPUS_ON_NODE", "")
  if gpus.isdigit():
    count = int(gpus)
  else:
    count = len([d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()])
  return {"local_device_ids": list(range(count))} if count > 0 else {}


def initialize_distributed(mode: str = "auto") -> None:
  """Starts multi-process JAX when the environment asks for it; a no-op for one process.

  ``mode``: ``'auto'`` (default) initialises when one of these is present, ``'off'`` never:
  * ``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` + ``JAX_PROCESS_ID`` (explicit, any
    cluster; ``launch/local_multiprocess.sh`` and ``launch/gpu_multihost.sh`` set them);
  * SLURM with more than one task (``SLURM_NTASKS`` > 1; jax reads the SLURM variables; one task
    per node uses all the node's GPUs, one task per GPU its ``SLURM_LOCALID``-th);
  * a multi-host Cloud TPU slice (``TPU_WORKER_HOSTNAMES`` with several hosts, or
    ``MEGASCALE_COORDINATOR_ADDRESS`` for multi-slice); jax auto-detects the rest.
  On CPU, collectives go through gloo.
  """
  if mode == "off":
    return
  env = os.environ
  kwargs = {}
  if env.get("JAX_COORDINATOR_ADDRESS"):
    for key in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
      if key not in env:
        raise RuntimeError(f"JAX_COORDINATOR_ADDRESS is set but {key} is not; set both "
                           "JAX_NUM_PROCESSES and JAX_PROCESS_ID for every process")
    # The explicit variables are the whole truth: without 'deactivate', jax would still consult
    # a SLURM/MPI environment it finds and restrict this process to one GPU (SLURM_LOCALID).
    kwargs = dict(coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                  num_processes=int(env["JAX_NUM_PROCESSES"]),
                  process_id=int(env["JAX_PROCESS_ID"]),
                  cluster_detection_method="deactivate")
    if env.get("JAX_LOCAL_DEVICE_IDS"):
      kwargs["local_device_ids"] = [int(i) for i in env["JAX_LOCAL_DEVICE_IDS"].split(",")]
  elif int(env.get("SLURM_NTASKS", "1")) > 1:
    kwargs = _slurm_local_devices(env)
  elif len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1 or env.get(
      "MEGASCALE_COORDINATOR_ADDRESS"):
    pass
  elif mode == "on":
    pass   # let jax auto-detect, and fail loudly if it cannot
  else:
    return
  if (jax.config.jax_platforms or "").startswith("cpu") or env.get("JAX_PLATFORMS") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
