"""Training checkpoints (train state + data iterator + metadata), automatic resume, preemption.

One orbax ``CheckpointManager`` in ``workdir/checkpoints``; every step directory is a composite::

  <step>/state/      the TrainState (StandardSave; restored straight into the sharded layout of an
                     abstract target, path_jax.state.abstract_train_state)
  <step>/data/       the training iterator's state, one ``process_<i>-of-<n>.json`` per host
                     (grain.checkpoint.CheckpointSave of path_jax.input.mixture.MixtureIterator):
                     restoring it yields the identical next batch
  <step>/metadata/   JSON: whatever the loop passes (config, examples seen, elapsed seconds, ...)
                     plus ``step``, ``saved_unix_time`` and ``process_count``
  <step>/path_jax_manifest.json   size of every file, written once the save has finished

Saves are asynchronous (the device arrays are copied to host, then written in the background);
retention keeps the newest ``keep`` plus every step in ``milestones``.

Robustness: a step directory is *complete* when orbax finalized it (``_CHECKPOINT_METADATA``), all
its items are there (every host's iterator file), and the files match the manifest when it has
one. Incomplete or unreadable step directories (a half-written or truncated save, a directory
someone created by hand) are moved aside to ``workdir/checkpoints.corrupt/`` with a warning
naming them, so orbax's retention never counts them and never deletes an older good checkpoint
in their favour; nothing is deleted. Orbax's own temporary directories (``*.orbax-checkpoint-tmp*``)
are unfinished saves by construction; orbax removes them at start-up after we warn.

Multi-host: every process constructs the :class:`Checkpointer` and calls ``save``/``restore``
at the same steps (orbax synchronises them); only process 0 moves directories and writes the
manifest, and the verdict on a failed restore is agreed across processes before moving anything.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
from typing import Any, Mapping, Sequence

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

CHECKPOINT_SUBDIR = "checkpoints"
CORRUPT_SUBDIR = "checkpoints.corrupt"
MANIFEST = "path_jax_manifest.json"
_TMP_MARK = ".orbax-checkpoint-tmp"
_PROCESS_FILE = re.compile(r"^process_(\d+)-of-(\d+)\.json$")

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """A checkpoint cannot be used as asked (incompatible with the target, or incomplete)."""


# ----------------------------------------------------------------------------------------------
# Pure helpers.


def jsonable(obj: Any) -> Any:
  """Converts ``obj`` (ConfigDicts, numpy/jax scalars and arrays, tuples) into plain JSON types."""
  if hasattr(obj, "to_dict") and callable(obj.to_dict):      # ml_collections.ConfigDict
    obj = obj.to_dict()
  if isinstance(obj, Mapping):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, (str, bool, int, float)) or obj is None:
    return obj
  if isinstance(obj, (np.generic, np.ndarray, jax.Array)):
    return jsonable(np.asarray(obj).tolist())
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  raise TypeError(f"checkpoint metadata value {obj!r} of type {type(obj).__name__} is not JSON "
                  "serialisable; pass numbers, strings, lists or dicts")


def file_sizes(directory: epath.Path) -> dict[str, int]:
  """``{relative path: bytes}`` of every file under ``directory`` (the manifest excluded)."""
  root = epath.Path(directory)
  out, todo = {}, [root]
  while todo:   # an explicit walk: epath has no recursive glob on cloud storage
    for p in todo.pop().iterdir():
      if p.is_dir():
        todo.append(p)
      elif p.name not in (MANIFEST, MANIFEST + ".tmp"):
        out[os.path.relpath(os.fspath(p), os.fspath(root))] = p.stat().length
  return out


def incomplete_reason(step_dir: epath.Path) -> str | None:
  """Why ``step_dir`` is not a complete checkpoint, or ``None`` when it is.

  Checks: orbax finalized it (``_CHECKPOINT_METADATA``); the state item has its ``_METADATA``;
  the metadata item parses; the data item, when present, has one iterator file for every one of
  the ``n`` processes that wrote it; and every file listed in the manifest (when written) exists
  with its recorded size.
  """
  d = epath.Path(step_dir)
  if not d.is_dir():
    return "not a directory"
  if not (d / "_CHECKPOINT_METADATA").exists():
    return "orbax never finalized it (no _CHECKPOINT_METADATA)"
  if not (d / "state" / "_METADATA").exists():
    return "the train state is missing (no state/_METADATA)"
  meta = d / "metadata" / "metadata"
  if not meta.exists():
    return "the metadata item is missing (no metadata/metadata)"
  try:
    json.loads(meta.read_text())
  except ValueError as e:
    return f"metadata/metadata is not valid JSON ({e})"
  if (d / "data").exists():
    counts, seen = set(), set()
    for p in (d / "data").iterdir():
      m = _PROCESS_FILE.match(p.name)
      if m:
        seen.add(int(m.group(1)))
        counts.add(int(m.group(2)))
    if len(counts) != 1 or seen != set(range(next(iter(counts)))):
      return (f"the data item does not hold one iterator file per process (found processes "
              f"{sorted(seen)} of {sorted(counts)})")
  manifest = d / MANIFEST
  if manifest.exists():
    try:
      want = json.loads(manifest.read_text())
    except ValueError as e:
      return f"{MANIFEST} is not valid JSON ({e})"
    have = file_sizes(d)
    wrong = [f"{k} ({have.get(k, 'missing')} bytes, expected {v})"
             for k, v in sorted(want.items()) if have.get(k) != v]
    if wrong:
      return f"files differ from the manifest: {wrong[:5]}" + (" ..." if len(wrong) > 5 else "")
  return None


def _atomic_write_text(path: epath.Path, text: str) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  tmp.rename(path)   # a reader sees the old file or the whole new one, never half of it


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {"/".join(map(str, k)): tuple(v.shape) for k, v in ocp.tree.to_flat_dict(tree).items()}


def _all_processes_ok(ok: bool) -> bool:
  """The logical AND of ``ok`` over all processes (so every host takes the same branch)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


# ----------------------------------------------------------------------------------------------
# The checkpointer.


class Checkpointer:
  """Saves and restores ``(train state, data iterator, metadata)`` under ``workdir/checkpoints``.

  Args:
    workdir: the run's directory (local path or anything etils.epath opens).
    save_every: save when ``step % save_every == 0`` (and at every milestone, and when forced).
    keep: how many of the newest checkpoints to keep.
    milestones: steps whose checkpoints are kept for ever (saved even off the ``save_every`` grid).
    async_save: write in the background; ``save`` returns once the arrays are on the host.

  Typical loop::

    ckpt = Checkpointer(workdir, save_every=1000, keep=3)
    if ckpt.latest_step() is not None:
      state, meta = ckpt.restore(abstract_state, iterator)
    with PreemptionHandler() as preempt:
      for step in ...:
        ...
        stop = preempt.should_stop(step)
        ckpt.save(step, state, iterator, {...}, force=stop)
        if stop: break
    ckpt.close()
  """

  def __init__(self, workdir: str | os.PathLike, *, save_every: int, keep: int,
               milestones: Sequence[int] = (), async_save: bool = True):
    if int(save_every) < 1:
      raise ValueError(f"Checkpointer save_every must be >= 1, got {save_every} "
                       "(config: checkpoint.save_every)")
    if int(keep) < 1:
      raise ValueError(f"Checkpointer keep must be >= 1, got {keep} (config: checkpoint.keep); "
                       "the newest checkpoint is needed to resume")
    self.workdir = epath.Path(workdir)
    self.directory = self.workdir / CHECKPOINT_SUBDIR
    self.save_every = int(save_every)
    self.keep = int(keep)
    self.milestones = frozenset(int(m) for m in milestones)
    self._pending_manifest: list[int] = []
    if jax.process_index() == 0:
      self.directory.mkdir(parents=True, exist_ok=True)
      self._set_aside_incomplete()
    _sync("path_jax_checkpointer_init")
    policies = [ocp.checkpoint_managers.LatestN(self.keep)]
    if self.milestones:
      policies.append(ocp.checkpoint_managers.CustomSteps(sorted(self.milestones)))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=bool(async_save),
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
        cleanup_tmp_directories=True,
        create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "metadata": ocp.JsonCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  # -- inspection ------------------------------------------------------------------------------

  def _step_dir(self, step: int) -> epath.Path:
    return self.directory / str(step)

  def _step_dirs(self) -> dict[int, epath.Path]:
    out = {}
    if self.directory.exists():
      for p in self.directory.iterdir():
        if p.is_dir() and p.name.isdigit():
          out[int(p.name)] = p
    return out

  def all_steps(self) -> list[int]:
    """Steps of the complete checkpoints, oldest first."""
    return sorted(s for s, p in self._step_dirs().items() if incomplete_reason(p) is None)

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step (``None`` when there is none)."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  # -- setting broken checkpoints aside --------------------------------------------------------

  def _move_aside(self, path: epath.Path, reason: str) -> None:
    """Process 0 only: renames ``path`` into ``workdir/checkpoints.corrupt/`` (never deletes)."""
    dest_root = self.workdir / CORRUPT_SUBDIR
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / path.name
    k = 1
    while dest.exists():
      dest, k = dest_root / f"{path.name}.{k}", k + 1
    path.rename(dest)
    log.warning("checkpoint directory %s is not usable: %s. Moved it to %s; resuming from the "
                "previous complete checkpoint.", path, reason, dest)

  def _set_aside_incomplete(self) -> None:
    for p in self.directory.iterdir():
      if _TMP_MARK in p.name:
        log.warning("checkpoint directory %s is an unfinished save (orbax temporary directory); "
                    "ignored, and removed by orbax.", p)
    for step, p in sorted(self._step_dirs().items()):
      reason = incomplete_reason(p)
      if reason is not None:
        self._move_aside(p, reason)

  # -- saving ----------------------------------------------------------------------------------

  def should_save(self, step: int) -> bool:
    return step % self.save_every == 0 or step in self.milestones

  def _write_manifests(self) -> None:
    """Once the pending saves are finalized, records their file sizes (process 0)."""
    if not self._pending_manifest:
      return
    self._manager.wait_until_finished()
    if jax.process_index() == 0:
      for step in self._pending_manifest:
        d = self._step_dir(step)
        if d.exists() and not (d / MANIFEST).exists():
          _atomic_write_text(d / MANIFEST, json.dumps(file_sizes(d), indent=1, sort_keys=True))
    self._pending_manifest = []

  def save(self, step: int, state: Any, iterator: grain.DatasetIterator | None = None,
           metadata: Mapping[str, Any] | None = None, *, force: bool = False) -> bool:
    """Saves when ``step`` is on the ``save_every`` grid, a milestone, or ``force``.

    Returns whether a save started. A step that already has a checkpoint is not saved twice.
    ``iterator``'s state is read now (synchronously), so the loop may advance it at once;
    ``state`` must not be donated before the device-to-host copy finished, which ``save``
    waits for. ``metadata`` must be JSON-able (see :func:`jsonable`).
    """
    step = int(step)
    if not (force or self.should_save(step)):
      return False
    self._write_manifests()
    if step in self._manager.all_steps():
      return False
    meta = dict(jsonable(metadata or {}))
    meta.update(step=step, saved_unix_time=time.time(), process_count=jax.process_count())
    items = dict(state=ocp.args.StandardSave(state), metadata=ocp.args.JsonSave(meta))
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(iterator)
    saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    if saved:
      self._pending_manifest.append(step)
    return bool(saved)

  def wait(self) -> None:
    """Blocks until every started save is on disk (and its manifest written)."""
    self._manager.wait_until_finished()
    self._write_manifests()

  def close(self) -> None:
    self.wait()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  # -- restoring -------------------------------------------------------------------------------

  def _check_compatible(self, step: int, abstract_state: Any) -> None:
    """Raises :class:`CheckpointError` naming the leaves whose shapes or names differ."""
    saved = _flat_shapes(self._manager.item_metadata(step)["state"])
    want = _flat_shapes(abstract_state)
    if saved == want:
      return
    only_saved = sorted(set(saved) - set(want))
    only_want = sorted(set(want) - set(saved))
    shape = [f"{k}: checkpoint {saved[k]} vs target {want[k]}"
             for k in sorted(set(saved) & set(want)) if saved[k] != want[k]]
    raise CheckpointError(
        f"checkpoint {self._step_dir(step)} does not fit the train state built from this config "
        f"(only in the checkpoint: {only_saved[:8]}; only in the target: {only_want[:8]}; "
        f"shapes: {shape[:8]}). Use the config the run was started with, or a fresh --workdir.")

  def _check_data(self, step: int) -> None:
    data = self._step_dir(step) / "data"
    mine = data / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if not data.exists():
      raise CheckpointError(f"checkpoint {self._step_dir(step)} holds no data-iterator state; "
                            "restore it with iterator=None (the input then starts afresh).")
    if not mine.exists():
      found = sorted(p.name for p in data.iterdir())
      raise CheckpointError(
          f"checkpoint {data} holds iterator states {found}, none for process "
          f"{jax.process_index()} of {jax.process_count()}: the run was saved with another "
          "number of hosts. Resume with the same number of hosts, or restore with iterator=None.")

  def restore(self, abstract_state: Any, iterator: grain.DatasetIterator | None = None,
              step: int | None = None) -> tuple[Any, dict[str, Any]]:
    """Restores ``(state, metadata)`` and, when given, sets ``iterator``'s state in place.

    Args:
      abstract_state: the target: a TrainState of ``jax.ShapeDtypeStruct`` with shardings
        (path_jax.state.abstract_train_state); arrays are read straight into those shardings.
      iterator: the freshly built training iterator (same datasets, seed and hosts).
      step: a specific step; ``None`` takes the newest complete one, and a checkpoint that
        fails to read is moved aside (with a warning) in favour of the one before.
    """
    if step is not None:
      reason = incomplete_reason(self._step_dir(step))
      if reason is not None:
        raise CheckpointError(f"checkpoint {self._step_dir(step)} is not complete: {reason}. "
                              f"Complete ones: {self.all_steps()}")
      self._check_compatible(step, abstract_state)
      if iterator is not None:
        self._check_data(step)
      return self._restore_step(step, abstract_state, iterator)
    for s in reversed(sorted(self._step_dirs())):
      d = self._step_dir(s)
      reason = incomplete_reason(d)
      if reason is None:
        try:
          self._check_compatible(s, abstract_state)
          if iterator is not None:
            self._check_data(s)
          out = self._restore_step(s, abstract_state, iterator)
          ok = True
        # CheckpointError (a config mismatch, not damage) propagates; these are read errors of
        # damaged files from orbax/tensorstore/json.
        except (OSError, ValueError) as e:
          out, ok, reason = None, False, f"reading it failed: {type(e).__name__}: {e}"
        if _all_processes_ok(ok):
          return out
        reason = reason or "reading it failed on another process"
      if jax.process_index() == 0:
        self._move_aside(d, reason)
      _sync(f"path_jax_checkpoint_set_aside_{s}")
      self._manager.reload()
    raise FileNotFoundError(
        f"no complete checkpoint under {self.directory}; check latest_step() before restoring "
        "(a fresh run starts from create_train_state).")

  def _restore_step(self, step: int, abstract_state: Any, iterator):
    items = dict(state=ocp.args.StandardRestore(abstract_state), metadata=ocp.args.JsonRestore())
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    out = self._manager.restore(step, args=ocp.args.Composite(**items))
    return out["state"], dict(out["metadata"])


# ----------------------------------------------------------------------------------------------
# Preemption.


def _jax_preemption_sync_available() -> bool:
  try:
    from jax._src import distributed
  except ImportError:
    return False
  return getattr(distributed.global_state, "preemption_sync_manager", None) is not None


class PreemptionHandler:
  """Context manager turning SIGTERM/SIGINT into a clean save-and-exit.

  The first signal sets :attr:`requested` (the loop then saves a checkpoint and leaves); a
  second one exits at once with ``os._exit(128 + signum)`` and a message on stderr.

  Multi-host: a signal reaches one host, but all hosts must save at the same step. When JAX's
  preemption service runs (``jax.distributed.initialize`` with ``jax_enable_preemption_service``,
  the default), :meth:`should_stop` also asks
  ``jax.experimental.multihost_utils.reached_preemption_sync_point(step)``, which all hosts answer
  alike, and SIGTERM is left to JAX's own notifier (installing ours would hide it). Without the
  service, ``should_stop`` agrees the local flags across hosts every ``sync_every`` steps (one
  small all-gather). In one process it just reads the flag.
  """

  def __init__(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT), *,
               sync_every: int = 10):
    self.signals = tuple(signals)
    self.sync_every = max(1, int(sync_every))
    self.requested = False
    self.signal_name: str | None = None
    self._previous: dict[int, Any] = {}
    self._use_jax_sync = jax.process_count() > 1 and _jax_preemption_sync_available()

  def _handle(self, signum, frame) -> None:
    name = signal.Signals(signum).name
    if self.requested:
      os.write(2, f"\n{name} received again while saving after {self.signal_name}: exiting now "
                  f"without a checkpoint (exit code {128 + signum}).\n".encode())
      os._exit(128 + signum)
    self.requested, self.signal_name = True, name
    os.write(2, f"\n{name} received: saving a checkpoint at the next step, then exiting. "
                f"Send it again to exit at once.\n".encode())

  def __enter__(self) -> "PreemptionHandler":
    import threading
    if threading.current_thread() is not threading.main_thread():
      raise RuntimeError("PreemptionHandler must be entered in the main thread (Python delivers "
                         "signals there); enter it around the training loop in main.")
    for s in self.signals:
      if s == signal.SIGTERM and self._use_jax_sync:
        continue
      self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, old in self._previous.items():
      signal.signal(s, old)
    self._previous = {}

  def should_stop(self, step: int) -> bool:
    """Whether the loop should save and stop after ``step`` (the same answer on every host).

    Call it at every step on every host (the multi-host checks are collective).
    """
    if jax.process_count() == 1:
      return self.requested
    if self._use_jax_sync:
      from jax.experimental import multihost_utils
      if multihost_utils.reached_preemption_sync_point(int(step)):   # same answer on all hosts
        self.requested = True
        return True
    if step % self.sync_every == 0:
      return not _all_processes_ok(not self.requested)
    return False
