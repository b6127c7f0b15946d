"""Training checkpoints (train state + data iterator + metadata), automatic resume, preemption.

One orbax ``CheckpointManager`` in ``workdir/checkpoints``; every step directory is a composite::

  <step>/state/      the TrainState (StandardSave; restored straight into the sharded layout of an
                     abstract target, path_jax.state.abstract_train_state)
  <step>/data/       the training iterator's state, one ``process_<i>-of-<n>.json`` per host
                     (grain.checkpoint.CheckpointSave of path_jax.input.mixture.MixtureIterator):
                     restoring it yields the identical next batch
  <step>/metadata/   JSON: whatever the loop passes (config, examples seen, elapsed seconds, ...)
                     plus ``step``, ``saved_unix_time`` and ``process_count``
  <step>/path_jax_manifest.json   size and SHA-256 of every file, written once the save has
                     finished (format below)

Saves are asynchronous (the device arrays are copied to host, then written in the background);
retention keeps the newest ``keep`` plus every step in ``milestones``.

Robustness: a step directory is *complete* when orbax finalized it (``_CHECKPOINT_METADATA``), all
its items are there (every host's iterator file), and the files have the sizes the manifest lists
when it has one (:func:`incomplete_reason`; cheap, used for listing). Incomplete or unreadable step
directories (a half-written or truncated save, a directory someone created by hand) are moved
aside to ``workdir/checkpoints.corrupt/`` with a warning naming them, so orbax's retention never
counts them and never deletes an older good checkpoint in their favour; nothing is deleted.
Orbax's own temporary directories (``*.orbax-checkpoint-tmp*``) are unfinished saves by
construction; orbax removes them at start-up after we warn.

A file of the right size can still hold the wrong bytes (a garbled block on disk or in transfer),
and a save can be intact yet hold NaN/inf (a run that diverged). So the step being restored, and
only that one, passes two more checks before it is used:

* **content digest** (:func:`content_mismatch`): every file's SHA-256 (read in 4 MiB chunks) must
  equal the manifest's. The digest is computed after orbax finalized the save, on a background
  thread of process 0 (``save`` does not wait for it; the next ``save``, ``wait``, ``close`` and
  ``restore`` join it), and written atomically. Manifest format 2::

    {"format": 2, "hash": "sha256",
     "files": {"state/d/<name>": {"size": 1234, "sha256": "<hex>"}, ...}}

  The format-1 manifest of earlier versions, ``{"<relative path>": <size>, ...}``, is still
  accepted: its files are checked for size only. A step without a manifest (the run died before
  it was written) is not digest-checked.
* **finiteness** (:func:`nonfinite_leaves`): one jitted reduction over all floating leaves of the
  restored state (integer leaves and PRNG keys are skipped), one device-to-host transfer.

A step that fails either is moved aside like a truncated one and ``restore()`` goes on with the
previous step; :attr:`Checkpointer.set_aside` records what was moved and why, and
:attr:`Checkpointer.restored_step` which step was used. ``restore(step=N)`` never falls back: it
raises :class:`CheckpointError` naming the step and leaves it in place.

Multi-host: every process constructs the :class:`Checkpointer` and calls ``save``/``restore``
at the same steps (orbax synchronises them); only process 0 moves directories and writes the
manifest. On restore the files to digest are split across processes, and the verdict on a step is
agreed across processes before anything is moved (the finiteness result is a global reduction,
the same on every process).
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import re
import signal
import time
from typing import Any, Mapping, Sequence

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

CHECKPOINT_SUBDIR = "checkpoints"
CORRUPT_SUBDIR = "checkpoints.corrupt"
MANIFEST = "path_jax_manifest.json"
MANIFEST_FORMAT = 2
HASH = "sha256"            # hashlib name; recorded in the manifest, so a reader uses the writer's
_HASH_CHUNK = 4 << 20      # bytes read at a time: memory stays small for multi-GB files
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
  if (d / MANIFEST).exists():
    try:
      want, _, _ = read_manifest(d)
    except ValueError as e:
      return str(e)
    have = file_sizes(d)
    wrong = [f"{k} ({have.get(k, 'missing')} bytes, expected {v})"
             for k, v in sorted(want.items()) if have.get(k) != v]
    if wrong:
      return f"files differ from the manifest: {wrong[:5]}" + (" ..." if len(wrong) > 5 else "")
  return None


def file_digest(path: epath.Path, algorithm: str = HASH) -> tuple[str, int]:
  """``(hex digest, bytes read)`` of the file at ``path``, streamed in chunks of a few MiB."""
  h = hashlib.new(algorithm)
  n = 0
  with epath.Path(path).open("rb") as f:
    if hasattr(f, "readinto"):     # local files: one reused buffer
      buf = bytearray(_HASH_CHUNK)
      view = memoryview(buf)
      while k := f.readinto(buf):
        h.update(view[:k])         # hashlib releases the GIL on large updates
        n += k
    else:                          # e.g. cloud-storage file objects
      while chunk := f.read(_HASH_CHUNK):
        h.update(chunk)
        n += len(chunk)
  return h.hexdigest(), n


def file_manifest(directory: epath.Path, algorithm: str = HASH) -> dict[str, Any]:
  """The format-2 manifest of ``directory``: every file's size and digest (see the module doc)."""
  root = epath.Path(directory)
  files = {}
  for rel, size in sorted(file_sizes(root).items()):
    digest, n = file_digest(root / rel, algorithm)
    if n != size:
      raise OSError(f"{root / rel} changed while it was hashed ({size} bytes listed, {n} read)")
    files[rel] = {"size": size, algorithm: digest}
  return {"format": MANIFEST_FORMAT, "hash": algorithm, "files": files}


def read_manifest(step_dir: epath.Path) -> tuple[dict[str, int], dict[str, str] | None, str | None]:
  """``(sizes, digests, hash name)`` from ``step_dir``'s manifest.

  Format 1 (``{path: size}``, earlier versions) gives ``digests = hash name = None``. Raises
  ``ValueError`` (with a message naming the file) when the manifest is neither.
  """
  path = epath.Path(step_dir) / MANIFEST
  try:
    m = json.loads(path.read_text())
  except ValueError as e:
    raise ValueError(f"{MANIFEST} is not valid JSON ({e})") from None
  if isinstance(m, dict) and isinstance(m.get("format"), int) and isinstance(m.get("files"), dict):
    algorithm, files = m.get("hash"), m["files"]
    if not all(isinstance(e, dict) and type(e.get("size")) is int for e in files.values()):
      raise ValueError(f"{MANIFEST} (format {m['format']}) has entries without an integer size")
    sizes = {k: e["size"] for k, e in files.items()}
    if not isinstance(algorithm, str) or not all(isinstance(e.get(algorithm), str)
                                                 for e in files.values()):
      raise ValueError(f"{MANIFEST} (format {m['format']}) does not give every file a "
                       f"{algorithm!r} digest")
    return sizes, {k: e[algorithm] for k, e in files.items()}, algorithm
  if isinstance(m, dict) and all(type(v) is int for v in m.values()):
    return dict(m), None, None
  raise ValueError(f"{MANIFEST} is neither a format-{MANIFEST_FORMAT} manifest nor a "
                   "{path: size} one")


def content_mismatch(step_dir: epath.Path, *, process_index: int | None = None,
                     process_count: int | None = None) -> str | None:
  """Why the bytes of ``step_dir``'s files differ from its manifest's digests, or ``None``.

  Reads every file listed (use it for the step being restored, not for listing; sizes are
  :func:`incomplete_reason`'s job). ``None`` too when there is nothing to compare with: no
  manifest, or a format-1 (sizes-only) one. With several processes, process ``i`` of ``n`` hashes
  every ``n``-th file from the ``i``-th (defaults: this JAX process); AND the verdicts.
  """
  d = epath.Path(step_dir)
  i = jax.process_index() if process_index is None else int(process_index)
  n = jax.process_count() if process_count is None else int(process_count)
  if not (d / MANIFEST).exists():
    return None
  try:
    sizes, digests, algorithm = read_manifest(d)
  except ValueError as e:
    return str(e)
  if digests is None:
    return None
  if algorithm not in hashlib.algorithms_available:
    return f"{MANIFEST} uses the hash {algorithm!r}, which this Python's hashlib lacks"
  mine = sorted(digests)[i::n]
  t0, nbytes, wrong = time.perf_counter(), 0, []
  for rel in mine:
    try:
      got, k = file_digest(d / rel, algorithm)
    except OSError as e:
      wrong.append(f"{rel} (unreadable: {type(e).__name__}: {e})")
      continue
    nbytes += k
    if k != sizes[rel]:
      wrong.append(f"{rel} ({k} bytes, expected {sizes[rel]})")
    elif got != digests[rel]:
      wrong.append(f"{rel} ({algorithm} {got[:16]}..., expected {digests[rel][:16]}...)")
  log.info("checked the %s digests of %d files (%.1f MB) of %s in %.2f s", algorithm,
           len(mine), nbytes / 1e6, d, time.perf_counter() - t0)
  if wrong:
    return (f"file contents differ from the manifest's {algorithm} digests: {wrong[:5]}"
            + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""))
  return None


def _checked_leaf(x: Any) -> bool:
  dtype = getattr(x, "dtype", None)
  if dtype is None or not hasattr(x, "shape"):
    return False
  if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):   # typed PRNG keys: not numbers
    return False
  return bool(jnp.issubdtype(dtype, jnp.inexact))          # floats (any width) and complex


def _count_nonfinite(leaves):
  # float32 counts: never 0 when some value is non-finite (inexact only past 2**24 of them).
  return jnp.stack([jnp.sum(~jnp.isfinite(x), dtype=jnp.float32) for x in leaves])


def nonfinite_leaves(tree: Any) -> list[tuple[str, int]]:
  """``[(leaf path, number of NaN/inf values)]`` of the floating leaves of ``tree`` that hold any,
  in tree order (empty when all are finite).

  One jitted reduction over all floating leaves (sharded ``jax.Array`` s included; the result is
  replicated) and one device-to-host transfer. Integer/bool leaves and typed PRNG key arrays are
  skipped.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  picked = [(jax.tree_util.keystr(p), x) for p, x in flat if _checked_leaf(x)]
  if not picked:
    return []
  leaves = [x for _, x in picked]
  sharding = getattr(leaves[0], "sharding", None)
  if isinstance(sharding, jax.sharding.NamedSharding):
    replicated = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    counts = jax.jit(_count_nonfinite, out_shardings=replicated)(leaves)
  else:
    counts = jax.jit(_count_nonfinite)(leaves)
  if isinstance(counts, jax.Array):
    counts = counts.addressable_data(0)   # every process holds the whole (replicated) result
  counts = np.asarray(counts)             # the one device-to-host transfer
  return [(name, int(c)) for (name, _), c in zip(picked, counts) if c]


def nonfinite_reason(tree: Any) -> str | None:
  """A sentence naming the non-finite floating leaves of ``tree``, or ``None`` (see above)."""
  bad = nonfinite_leaves(tree)
  if not bad:
    return None
  first, count = bad[0]
  return (f"the restored state holds NaN or inf in {len(bad)} floating leaves, the first "
          f"{first} ({count} values)")


def _atomic_write_text(path: epath.Path, text: str) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  tmp.rename(path)   # a reader sees the old file or the whole new one, never half of it


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {"/".join(map(str, k)): tuple(v.shape) for k, v in ocp.tree.to_flat_dict(tree).items()}


def _is_read_error(e: BaseException) -> bool:
  """Whether ``e`` reports a damaged file: an ``OSError``/``ValueError`` (json, tensorstore), or
  an exception raised ``from`` one (orbax wraps tensorstore's read errors in a bare
  ``Exception``). A :class:`CheckpointError` (the target does not fit) is not one."""
  while e is not None and not isinstance(e, CheckpointError):
    if isinstance(e, (OSError, ValueError)):
      return True
    e = e.__cause__
  return False


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

  Attributes:
    set_aside: one dict per step directory this object moved aside (at start-up or during
      ``restore``): ``step`` (int, or None for a non-numeric name), ``path``, ``reason`` and
      ``moved_to`` (``None`` on processes other than 0, which do not move anything).
    restored_step: the step the last successful ``restore`` returned (``None`` before). When it
      is older than a step in ``set_aside``, the state came from a fallback.

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
                       "(config.train.checkpoint_every)")
    if int(keep) < 1:
      raise ValueError(f"Checkpointer keep must be >= 1, got {keep} (config.train.keep_checkpoints); "
                       "the newest checkpoint is needed to resume")
    self.workdir = epath.Path(workdir)
    self.directory = self.workdir / CHECKPOINT_SUBDIR
    self.save_every = int(save_every)
    self.keep = int(keep)
    self.milestones = frozenset(int(m) for m in milestones)
    self.set_aside: list[dict[str, Any]] = []
    self.restored_step: int | None = None
    self._pending_manifest: list[int] = []
    # Process 0 digests each finished save on one background thread (never the caller's).
    self._manifest_jobs: list[concurrent.futures.Future] = []
    self._hasher = (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="path_jax_digest")
                    if jax.process_index() == 0 else None)
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

  @staticmethod
  def _record(path: epath.Path, reason: str, dest: epath.Path | None) -> dict[str, Any]:
    return {"step": int(path.name) if path.name.isdigit() else None, "path": os.fspath(path),
            "reason": reason, "moved_to": None if dest is None else os.fspath(dest)}

  def _move_aside(self, path: epath.Path, reason: str) -> epath.Path:
    """Process 0 only: renames ``path`` into ``workdir/checkpoints.corrupt/`` (never deletes)
    and records it in :attr:`set_aside`."""
    dest_root = self.workdir / CORRUPT_SUBDIR
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / path.name
    k = 1
    while dest.exists():
      dest, k = dest_root / f"{path.name}.{k}", k + 1
    path.rename(dest)
    self.set_aside.append(self._record(path, reason, dest))
    log.warning("checkpoint directory %s is not usable: %s. Moved it to %s; resuming from the "
                "previous complete checkpoint.", path, reason, dest)
    return dest

  def _set_aside_step(self, step: int, reason: str) -> None:
    """Every process: the agreed verdict on ``step`` is 'unusable'; process 0 moves it."""
    d = self._step_dir(step)
    if jax.process_index() == 0:
      self._move_aside(d, reason)
    else:
      self.set_aside.append(self._record(d, reason, None))
    _sync(f"path_jax_checkpoint_set_aside_{step}")
    self._manager.reload()

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

  def _write_manifest(self, step: int) -> None:
    """Background thread of process 0: once orbax finalized ``step``, digests its files and
    writes the manifest. Failures are logged (the step then just has no manifest), not raised:
    a failed save itself raises in the caller's ``wait``/``save``."""
    try:
      self._manager.wait_until_finished()   # joins orbax's finalize thread; no collectives
    except Exception as e:  # noqa: BLE001  (logged; the caller's wait() raises it)
      log.warning("no %s for step %d: its save did not finish (%s: %s)", MANIFEST, step,
                  type(e).__name__, e)
      return
    d = self._step_dir(step)
    try:
      if not d.exists() or (d / MANIFEST).exists():
        return
      t0 = time.perf_counter()
      manifest = file_manifest(d)
      _atomic_write_text(d / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
      log.info("wrote %s for step %d: %s of %d files (%.1f MB) in %.2f s", MANIFEST, step, HASH,
               len(manifest["files"]), sum(e["size"] for e in manifest["files"].values()) / 1e6,
               time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001  (a missing digest must not stop training)
      log.warning("no %s for step %d: digesting %s failed (%s: %s); the checkpoint is kept, "
                  "unverified", MANIFEST, step, d, type(e).__name__, e)

  def _write_manifests(self) -> None:
    """Waits for the pending saves and the digests of them (normally long finished)."""
    if not self._pending_manifest:
      return
    self._manager.wait_until_finished()
    for job in self._manifest_jobs:
      job.result()
    self._manifest_jobs = []
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
      if self._hasher is not None:
        self._manifest_jobs.append(self._hasher.submit(self._write_manifest, step))
    return bool(saved)

  def wait(self) -> None:
    """Blocks until every started save is on disk (and its manifest written)."""
    self._manager.wait_until_finished()
    self._write_manifests()

  def close(self) -> None:
    try:
      self.wait()
      self._manager.close()
    finally:
      if self._hasher is not None:
        self._hasher.shutdown(wait=True)

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

  def _verdict(self, step: int) -> tuple[bool, str | None, str | None]:
    """``(usable, incomplete reason, content reason)`` of ``step``, ``usable`` agreed across
    processes (every process calls this once per step it considers: one collective)."""
    d = self._step_dir(step)
    incomplete = incomplete_reason(d)
    content = None if incomplete is not None else content_mismatch(
        d, process_index=jax.process_index(), process_count=jax.process_count())
    return _all_processes_ok(incomplete is None and content is None), incomplete, content

  def restore(self, abstract_state: Any, iterator: grain.DatasetIterator | None = None,
              step: int | None = None, *, check_finite: bool = True) -> tuple[Any, dict[str, Any]]:
    """Restores ``(state, metadata)`` and, when given, sets ``iterator``'s state in place.

    Before a step is used, its files are checked against the manifest's digests and (with
    ``check_finite``) every floating leaf of the restored state must be finite (module doc).
    Afterwards :attr:`restored_step` is the step used and :attr:`set_aside` lists any newer
    step that was moved aside instead.

    Args:
      abstract_state: the target: a TrainState of ``jax.ShapeDtypeStruct`` with shardings
        (path_jax.state.abstract_train_state); arrays are read straight into those shardings.
      iterator: the freshly built training iterator (same datasets, seed and hosts).
      step: a specific step; ``None`` takes the newest complete one, and a checkpoint that
        fails to read, fails its digest or holds NaN/inf is moved aside (with a warning) in
        favour of the one before. A specific step that fails raises :class:`CheckpointError`
        and stays where it is.
      check_finite: reject a restored state holding NaN or inf (``False``: load it anyway,
        e.g. to inspect a diverged run with ``step=``).
    """
    self._write_manifests()     # a save of this object still being digested
    if step is not None:
      step = int(step)
      d = self._step_dir(step)
      usable, incomplete, content = self._verdict(step)
      if incomplete is not None:
        raise CheckpointError(f"checkpoint {d} is not complete: {incomplete}. "
                              f"Complete ones: {self.all_steps()}")
      if not usable:
        raise CheckpointError(
            f"checkpoint {d} (step {step}) is damaged: "
            f"{content or 'its check failed on another process'}. It was left in place; "
            f"restore another step (complete ones: {self.all_steps()}), or step=None to fall "
            "back to the newest usable one automatically (which moves damaged ones aside).")
      self._check_compatible(step, abstract_state)
      if iterator is not None:
        self._check_data(step)
      out = self._restore_step(step, abstract_state, iterator)
      reason = nonfinite_reason(out[0]) if check_finite else None
      if reason is not None:
        raise CheckpointError(f"checkpoint {d} (step {step}) is not usable: {reason}. Pass "
                              "check_finite=False to load it anyway.")
      self.restored_step = step
      return out
    for s in reversed(sorted(self._step_dirs())):
      usable, incomplete, content = self._verdict(s)
      reason = incomplete or content or "its check failed on another process"
      if usable:
        try:
          self._check_compatible(s, abstract_state)
          if iterator is not None:
            self._check_data(s)
          out = self._restore_step(s, abstract_state, iterator)
          ok, reason = True, None
        # CheckpointError (a config mismatch, not damage) and errors that are not about the
        # files (e.g. out of memory) propagate; read errors of damaged files from
        # orbax/tensorstore/json set the step aside.
        except Exception as e:
          if not _is_read_error(e):
            raise
          cause = e
          while cause.__cause__ is not None:
            cause = cause.__cause__
          out, ok, reason = None, False, f"reading it failed: {type(cause).__name__}: {cause}"
        if _all_processes_ok(ok):
          # A global reduction: every process gets the same answer.
          reason = nonfinite_reason(out[0]) if check_finite else None
          if reason is None:
            self.restored_step = s
            return out
          out = None
        reason = reason or "reading it failed on another process"
      self._set_aside_step(s, reason)
    moved = [e["step"] for e in self.set_aside]
    raise FileNotFoundError(
        f"no complete checkpoint under {self.directory}; check latest_step() before restoring "
        "(a fresh run starts from create_train_state)."
        + (f" Steps {moved} were moved aside to {self.workdir / CORRUPT_SUBDIR} (see the "
           "warnings for why)." if moved else ""))

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
