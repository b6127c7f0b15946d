"""Checkpoints: exact sharded round trip with the data iterator, retention, damaged checkpoints
(truncated, garbled at the same size, holding NaN), content digests, preemption signals, backbone
export/import."""
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import step_setup as S
from path_jax import checkpoint as ckpt_lib
from path_jax import export as export_lib
from path_jax import state as state_lib
from path_jax.input import mixture
from path_jax.model import vit as vit_lib
from path_jax.parallel import mesh as mesh_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _records(n):
  """Attribute records whose label column 0 is the record index (so batches are traceable)."""
  rng = np.random.default_rng(n)
  return [{"image": rng.integers(0, 256, (20, 12, 3), dtype=np.uint8),
           "labels": np.array([i, i % 2, -1], np.int8)} for i in range(n)]


def _iterator():
  d = [mixture.DatasetInput("a", "attributes", _records(11), {"image_size": (16, 8)}, 3)]
  return mixture.make_train_iterator(d, seed=4, shard_index=0, shard_count=1)


@pytest.fixture(scope="module")
def setup():
  """A one-dataset PATH model's train state, fsdp-sharded over 8 devices, every leaf distinct.

  The state has create_train_state's exact structure and shardings (abstract_train_state); its
  values are filled on the host, because the optimiser moments are zeros at initialisation and
  a round trip of zeros proves little (and this skips compiling the initialiser).
  """
  cfg = S.config()
  for name in ("attr_a", "pose_a", "pose_b", "parse_a"):
    del cfg.datasets[name]
  model = S.model(cfg)
  mesh = mesh_lib.make_mesh((1, 8, 1))
  abstract, info = state_lib.abstract_train_state(model, S.make_tx(cfg), S.image_shapes(cfg),
                                                  mesh, fsdp_min_size=1)
  leaves, tree = jax.tree.flatten(abstract)
  values = []
  for i, a in enumerate(leaves):
    host = (np.cos(i + np.arange(a.size)).reshape(a.shape) * 3).astype(a.dtype)
    values.append(jax.make_array_from_callback(a.shape, a.sharding, lambda idx, h=host: h[idx]))
  return cfg, model, jax.tree.unflatten(tree, values), info


def _small(value: float):
  """A tiny sharded pytree for the retention / damage tests (fast to save)."""
  mesh = mesh_lib.make_mesh((8, 1, 1))
  return {"w": jax.device_put(jnp.full((8, 4), value), NamedSharding(mesh, P("data"))),
          "n": jax.device_put(jnp.int32(value), NamedSharding(mesh, P()))}


def _abstract_small(make=_small):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      make(0.0))


def _big(value: float):
  """Like _small with 128 KiB of incompressible floats: orbax stores them in a data file of their
  own (_small's values sit inline in ocdbt's index), where a garbled block lands in array bytes."""
  mesh = mesh_lib.make_mesh((8, 1, 1))
  w = jax.random.normal(jax.random.key(0), (8, 4096)) + value
  return {"w": jax.device_put(w, NamedSharding(mesh, P("data"))),
          "n": jax.device_put(jnp.int32(value), NamedSharding(mesh, P()))}


def test_round_trip_exact_into_new_shardings_and_identical_next_batch(setup, tmp_path):
  cfg, model, state, info = setup
  it = _iterator()
  next(it)
  with ckpt_lib.Checkpointer(tmp_path, save_every=5, keep=2) as ck:
    assert not ck.save(4, state, it, {})
    assert ck.save(5, state, it, {"config": cfg, "examples_seen": {"a": np.int64(6)},
                                  "elapsed_seconds": 1.5})
    want = next(it)           # the iterator's state was taken at save time
    assert not ck.save(5, state, it, {}, force=True)    # one checkpoint per step
  # A restart: another mesh layout for the target.
  mesh_b = mesh_lib.make_mesh((2, 2, 2))
  abstract, _ = state_lib.abstract_train_state(model, S.make_tx(cfg), S.image_shapes(cfg),
                                               mesh_b, fsdp_min_size=64)
  fresh = _iterator()
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=5, keep=2)
  assert ck.latest_step() == 5
  restored, meta = ck.restore(abstract, fresh)
  ck.close()
  assert meta["step"] == 5 and meta["examples_seen"] == {"a": 6}
  assert meta["config"]["datasets"]["reid_a"]["num_classes"] == 6
  assert type(restored) is type(state)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b, t in zip(jax.tree.leaves(restored), jax.tree.leaves(state), jax.tree.leaves(abstract)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert a.sharding == t.sharding
  # fsdp_min_size=64 on mesh_b shards leaves that the saved layout replicated.
  assert any(a.sharding != b.sharding for a, b in zip(jax.tree.leaves(restored),
                                                      jax.tree.leaves(state)))
  assert int(restored.step) == int(state.step)
  got = next(fresh)
  for k in want["a"]:
    np.testing.assert_array_equal(got["a"][k], want["a"][k])


def test_keeps_last_k_and_milestones(tmp_path):
  with ckpt_lib.Checkpointer(tmp_path, save_every=2, keep=2, milestones=(3,)) as ck:
    saved = [s for s in range(1, 10) if ck.save(s, _small(s))]
  assert saved == [2, 3, 4, 6, 8]
  assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()) == [3, 6, 8]
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=2, keep=2, milestones=(3,))
  assert ck.all_steps() == [3, 6, 8]
  out, meta = ck.restore(_abstract_small(), step=3)
  ck.close()
  assert int(out["n"]) == 3 and meta["step"] == 3 and meta["process_count"] == 1


def _truncate_arrays(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir / "state") for f in fs
           if os.path.basename(r) == "d"]
  assert files
  for f in files:
    os.truncate(f, os.path.getsize(f) // 2)


def _two_checkpoints(tmp_path, make=_small):
  with ckpt_lib.Checkpointer(tmp_path, save_every=2, keep=2) as ck:
    ck.save(2, make(2))
    ck.save(4, make(4))
  return tmp_path / "checkpoints"


def test_damaged_newest_is_set_aside_at_start_and_the_previous_kept(tmp_path, caplog):
  root = _two_checkpoints(tmp_path)
  _truncate_arrays(root / "4")                    # caught by the manifest's file sizes
  os.makedirs(root / "6" / "state")               # a half-written step directory
  os.makedirs(root / "8.orbax-checkpoint-tmp-1")  # orbax's unfinished save
  with caplog.at_level(logging.WARNING, logger="path_jax.checkpoint"):
    ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  text = caplog.text
  assert str(root / "4") in text and str(root / "6") in text and "8.orbax-checkpoint-tmp-1" in text
  assert ck.latest_step() == 2
  out, meta = ck.restore(_abstract_small())
  assert meta["step"] == 2 and float(out["w"][0, 0]) == 2.0
  # The set-aside directories are moved, not deleted, and do not count against `keep`.
  assert sorted(os.listdir(tmp_path / "checkpoints.corrupt")) == ["4", "6"]
  ck.save(3, _small(3))
  ck.wait()
  assert ck.all_steps() == [2, 3]
  assert sorted(os.listdir(root)) == ["2", "3"]   # orbax removed its temporary directory
  ck.save(4, _small(40))
  ck.close()
  assert ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2).all_steps() == [3, 4]


def test_unreadable_newest_without_manifest_falls_back_on_restore(tmp_path, caplog):
  root = _two_checkpoints(tmp_path)
  os.remove(root / "4" / ckpt_lib.MANIFEST)       # as if the run died right after the save
  _truncate_arrays(root / "4")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  assert ck.latest_step() == 4                    # structurally complete ...
  with caplog.at_level(logging.WARNING, logger="path_jax.checkpoint"):
    out, meta = ck.restore(_abstract_small())     # ... but unreadable
  assert meta["step"] == 2 and int(out["n"]) == 2
  assert str(root / "4") in caplog.text
  assert ck.all_steps() == [2] and os.listdir(tmp_path / "checkpoints.corrupt") == ["4"]
  ck.save(3, _small(3))
  ck.close()
  assert ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2).all_steps() == [2, 3]


def _data_files(step_dir):
  """The array data files of a step's state (ocdbt ``d/`` directories), largest first."""
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir / "state") for f in fs
           if os.path.basename(r) == "d"]
  assert files
  return sorted(files, key=os.path.getsize, reverse=True)


def _garble(step_dir):
  """Flips 4 KiB in the middle of the largest state data file; the size stays the same.
  Returns the file's path relative to ``step_dir``."""
  f = _data_files(step_dir)[0]
  size = os.path.getsize(f)
  n = 4096
  assert size > 2 * n
  with open(f, "r+b") as fh:
    fh.seek((size - n) // 2)
    block = fh.read(n)
    fh.seek((size - n) // 2)
    fh.write(bytes(b ^ 0x5A for b in block))
  assert os.path.getsize(f) == size
  return os.path.relpath(f, step_dir)


def _tree_files(d):
  return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


def test_manifest_records_size_and_sha256_of_every_file(tmp_path):
  root = _two_checkpoints(tmp_path)
  for step in ("2", "4"):
    d = root / step
    m = json.loads((d / ckpt_lib.MANIFEST).read_text())
    assert m["format"] == 2 and m["hash"] == "sha256"
    assert sorted(m["files"]) == [f for f in _tree_files(d) if f != ckpt_lib.MANIFEST]
    for rel, entry in m["files"].items():
      data = (d / rel).read_bytes()
      assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert ckpt_lib.content_mismatch(d) is None


def test_garbled_newest_at_same_size_fails_its_digest_and_restore_falls_back(tmp_path, caplog):
  root = _two_checkpoints(tmp_path, _big)
  files_4 = _tree_files(root / "4")
  garbled = _garble(root / "4")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  assert ck.latest_step() == 4 and ck.set_aside == []   # listing checks sizes only: cheap
  with caplog.at_level(logging.WARNING, logger="path_jax.checkpoint"):
    out, meta = ck.restore(_abstract_small(_big))
  assert meta["step"] == 2 and int(out["n"]) == 2
  np.testing.assert_array_equal(np.asarray(out["w"]), np.asarray(_big(2)["w"]))
  assert ck.restored_step == 2
  [entry] = ck.set_aside
  assert entry["step"] == 4 and entry["path"] == str(root / "4")
  assert entry["moved_to"] == str(tmp_path / "checkpoints.corrupt" / "4")
  assert "sha256 digests" in entry["reason"] and garbled in entry["reason"]
  assert str(root / "4") in caplog.text and garbled in caplog.text
  # Moved, not deleted: every file of both steps still exists.
  assert _tree_files(tmp_path / "checkpoints.corrupt" / "4") == files_4
  assert sorted(os.listdir(root)) == ["2"] and ck.all_steps() == [2]
  ck.close()


def test_restore_of_a_named_garbled_step_raises_and_leaves_it(tmp_path):
  root = _two_checkpoints(tmp_path, _big)
  garbled = _garble(root / "4")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  damaged = rf"{re.escape(str(root / '4'))} \(step 4\) is damaged.*{re.escape(garbled)}"
  with pytest.raises(ckpt_lib.CheckpointError, match=damaged):
    ck.restore(_abstract_small(_big), step=4)
  assert ck.restored_step is None and ck.set_aside == []
  assert sorted(os.listdir(root)) == ["2", "4"]
  assert not (tmp_path / "checkpoints.corrupt").exists()
  _, meta = ck.restore(_abstract_small(_big), step=2)
  assert meta["step"] == 2 and ck.restored_step == 2
  ck.close()


def test_content_check_splits_the_files_across_processes(tmp_path):
  root = _two_checkpoints(tmp_path, _big)
  garbled = _garble(root / "4")
  verdicts = [ckpt_lib.content_mismatch(root / "4", process_index=i, process_count=3)
              for i in range(3)]
  assert sum(v is not None for v in verdicts) == 1           # each file is read by one process
  assert garbled in next(v for v in verdicts if v is not None)
  assert ckpt_lib.content_mismatch(root / "2", process_index=1, process_count=3) is None


def test_garbled_newest_without_manifest_falls_back_on_its_read_error(tmp_path):
  root = _two_checkpoints(tmp_path, _big)
  os.remove(root / "4" / ckpt_lib.MANIFEST)       # the run died before the digest was written
  _garble(root / "4")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  assert ckpt_lib.content_mismatch(root / "4") is None   # nothing to compare with ...
  # ... but the damage still shows: usually as orbax's read error (a ValueError wrapped in a
  # bare Exception), and where the flipped bytes land in a chunk that still decodes, as
  # non-finite values caught by the finiteness check. Either way the step is moved aside.
  out, meta = ck.restore(_abstract_small(_big))
  assert meta["step"] == 2 and ck.restored_step == 2 and int(out["n"]) == 2
  reason = ck.set_aside[0]["reason"]
  assert ck.set_aside[0]["step"] == 4
  assert "reading it failed" in reason or "NaN or inf" in reason, reason
  assert os.listdir(tmp_path / "checkpoints.corrupt") == ["4"]
  ck.close()


def _small_with_nan(value: float):
  s = _small(float(value))
  assert s["w"].dtype == jnp.float32
  return dict(s, w=s["w"].at[5, 2].set(jnp.nan))


def test_nan_in_newest_falls_back_to_the_previous_step(tmp_path, caplog):
  with ckpt_lib.Checkpointer(tmp_path, save_every=2, keep=3) as ck:
    ck.save(2, _small(2.0))
    ck.save(4, _small_with_nan(4))                # a run that diverged, saved faithfully
  root = tmp_path / "checkpoints"
  assert ckpt_lib.content_mismatch(root / "4") is None     # the files are what was saved
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=3)
  assert ck.latest_step() == 4
  with pytest.raises(ckpt_lib.CheckpointError,
                     match=rf"{re.escape(str(root / '4'))} \(step 4\).*\['w'\]"):
    ck.restore(_abstract_small(), step=4)
  out, _ = ck.restore(_abstract_small(), step=4, check_finite=False)   # inspecting it: allowed
  assert np.isnan(np.asarray(out["w"])[5, 2]) and int(out["n"]) == 4
  with caplog.at_level(logging.WARNING, logger="path_jax.checkpoint"):
    out, meta = ck.restore(_abstract_small())
  assert meta["step"] == 2 and ck.restored_step == 2 and np.isfinite(np.asarray(out["w"])).all()
  [entry] = ck.set_aside
  assert entry["step"] == 4 and "NaN or inf" in entry["reason"]
  assert "['w'] (1 values)" in entry["reason"]
  assert str(root / "4") in caplog.text
  assert os.listdir(tmp_path / "checkpoints.corrupt") == ["4"] and ck.all_steps() == [2]
  ck.close()
  # Every step diverged: restore says so instead of returning a NaN state.
  with ckpt_lib.Checkpointer(tmp_path, save_every=2, keep=3) as ck:
    ck.save(6, _small_with_nan(6))
  os.rename(root / "2", tmp_path / "kept_2")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=3)
  with pytest.raises(FileNotFoundError, match=r"Steps \[6\] were moved aside"):
    ck.restore(_abstract_small())
  assert sorted(os.listdir(tmp_path / "checkpoints.corrupt")) == ["4", "6"]
  ck.close()


def test_nonfinite_leaves_skips_integers_and_prng_keys_and_reads_sharded_arrays():
  mesh = mesh_lib.make_mesh((8, 1, 1))
  row = NamedSharding(mesh, P("data"))
  bad = np.zeros((16, 3), np.float32)
  bad[[1, 9, 14], 0] = [np.nan, np.inf, -np.inf]       # on three different devices' shards
  tree = {"a_ok": jax.device_put(jnp.ones((16, 3)), row),
          "b_bad": jax.device_put(bad, row),
          "c_int": jax.device_put(jnp.full((16,), -1, jnp.int32), row),
          "d_key": jax.random.key(0),
          "e_raw_key": jax.random.PRNGKey(0),
          "f_half": jnp.array([1.0, jnp.inf], jnp.bfloat16),
          "g_step": jnp.int32(3)}
  assert jax.dtypes.issubdtype(tree["d_key"].dtype, jax.dtypes.prng_key)
  assert ckpt_lib.nonfinite_leaves(tree) == [("['b_bad']", 3), ("['f_half']", 1)]
  assert ckpt_lib.nonfinite_leaves(dict(tree, b_bad=tree["a_ok"], f_half=tree["a_ok"])) == []
  assert ckpt_lib.nonfinite_leaves({"k": jax.random.key(1), "n": jnp.int32(0)}) == []


def test_old_sizes_only_manifest_is_accepted_and_its_sizes_still_checked(tmp_path):
  root = _two_checkpoints(tmp_path)
  for step in ("2", "4"):   # what earlier versions wrote: {path: size}
    (root / step / ckpt_lib.MANIFEST).write_text(json.dumps(ckpt_lib.file_sizes(root / step)))
  sizes, digests, algorithm = ckpt_lib.read_manifest(root / "4")
  assert digests is None and algorithm is None and sizes == ckpt_lib.file_sizes(root / "4")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  assert ck.all_steps() == [2, 4]
  out, meta = ck.restore(_abstract_small())
  assert meta["step"] == 4 and ck.restored_step == 4 and ck.set_aside == []
  assert int(out["n"]) == 4 and float(out["w"][0, 0]) == 4.0
  ck.close()
  _truncate_arrays(root / "4")
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  assert ck.all_steps() == [2] and ck.set_aside[0]["step"] == 4
  assert "files differ from the manifest" in ck.set_aside[0]["reason"]
  ck.close()


def test_unrecognised_manifest_sets_the_step_aside(tmp_path):
  root = _two_checkpoints(tmp_path)
  (root / "4" / ckpt_lib.MANIFEST).write_text(json.dumps({"format": 2, "hash": "sha256",
                                                          "files": {"state/_METADATA": {}}}))
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  assert ck.all_steps() == [2] and "without an integer size" in ck.set_aside[0]["reason"]
  ck.close()


@pytest.mark.parametrize("async_save", [True, False])
def test_digest_is_computed_off_the_calling_thread(tmp_path, monkeypatch, async_save):
  release, threads = threading.Event(), []
  real = ckpt_lib.file_digest

  def gated(path, *args, **kwargs):
    threads.append(threading.current_thread())
    if not release.wait(timeout=60):   # on the caller's thread, save() would block here ...
      release.set()                    # ... once, and return with release set
    return real(path, *args, **kwargs)

  monkeypatch.setattr(ckpt_lib, "file_digest", gated)
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2, async_save=async_save)
  assert ck.save(1, _small(1))
  manifest = tmp_path / "checkpoints" / "1" / ckpt_lib.MANIFEST
  assert not manifest.exists() and not release.is_set()   # save() returned; digest not written
  release.set()
  ck.wait()                                               # wait() joins the digest
  assert manifest.exists() and threads
  assert all(t is not threading.main_thread() for t in threads)
  assert json.loads(manifest.read_text())["format"] == 2
  ck.close()


def test_incompatible_target_is_an_error_not_damage(tmp_path):
  root = _two_checkpoints(tmp_path)
  other = dict(_abstract_small(), w=jax.ShapeDtypeStruct((8, 5), jnp.float32))
  ck = ckpt_lib.Checkpointer(tmp_path, save_every=1, keep=2)
  with pytest.raises(ckpt_lib.CheckpointError, match=r"w: checkpoint \(8, 4\) vs target \(8, 5\)"):
    ck.restore(other)
  with pytest.raises(ckpt_lib.CheckpointError, match="no data-iterator state"):
    ck.restore(_abstract_small(), _iterator())
  with pytest.raises(ckpt_lib.CheckpointError, match="not complete"):
    ck.restore(_abstract_small(), step=3)
  ck.close()
  assert sorted(os.listdir(root)) == ["2", "4"]


def test_first_signal_sets_the_flag():
  before = signal.getsignal(signal.SIGTERM)
  with ckpt_lib.PreemptionHandler() as pre:
    assert not pre.should_stop(0)
    os.kill(os.getpid(), signal.SIGTERM)
    assert pre.requested and pre.signal_name == "SIGTERM" and pre.should_stop(1)
  assert signal.getsignal(signal.SIGTERM) is before


def test_second_signal_exits_at_once():
  code = ("import os, signal, time\n"
          "from path_jax.checkpoint import PreemptionHandler\n"
          "with PreemptionHandler() as pre:\n"
          "  os.kill(os.getpid(), signal.SIGTERM)\n"
          "  print('flag', pre.requested, flush=True)\n"
          "  os.kill(os.getpid(), signal.SIGINT)\n"
          "  time.sleep(30)\n"
          "print('not reached')\n")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 128 + signal.SIGINT, (r.returncode, r.stderr[-2000:])
  assert "flag True" in r.stdout and "not reached" not in r.stdout
  assert "SIGTERM received: saving a checkpoint" in r.stderr
  assert "SIGINT received again" in r.stderr and "exiting now" in r.stderr


def test_export_and_load_round_trip(setup, tmp_path):
  cfg, model, state, info = setup
  params = state.params["backbone"]
  arch = export_lib.arch_from_config(cfg.model.backbone)
  paths = export_lib.export_backbone(tmp_path / "out", params, arch, torch_state_dict=True)
  assert sorted(os.listdir(tmp_path / "out")) == ["backbone", "backbone.json",
                                                  "backbone.safetensors"]
  want = jax.tree.map(np.asarray, params)
  # Ours, without a template: host arrays and the arch.
  got, got_arch = export_lib.load_backbone(tmp_path / "out")
  assert got_arch == json.loads(json.dumps(arch))
  jax.tree.map(np.testing.assert_array_equal, got, want)
  # The JSON is all vit.from_config needs to rebuild the backbone the weights belong to.
  vit = vit_lib.from_config(mlc.ConfigDict(got_arch))
  shapes = jax.eval_shape(vit.init, jax.random.key(0, impl="rbg"),
                          jnp.zeros((1, 32, 32, 3), jnp.uint8))["params"]
  assert jax.tree.map(lambda x: x.shape, nn.unbox(shapes)) == jax.tree.map(np.shape, got)
  # ... from the JSON's path, into a scanned template.
  scanned = jax.tree.map(np.asarray, vit_lib.loop_to_scan(want))
  got_s, _ = export_lib.load_backbone(paths["json"], jax.eval_shape(lambda: scanned))
  jax.tree.map(np.testing.assert_array_equal, got_s, scanned)
  # ... onto a template's shardings.
  template = info.shardings.params["backbone"]
  abstract = jax.tree.map(lambda x, sh: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
                          params, template)
  placed, _ = export_lib.load_backbone(tmp_path / "out" / "backbone", abstract)
  for a, t in zip(jax.tree.leaves(placed), jax.tree.leaves(abstract)):
    assert a.sharding == t.sharding
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), placed, want)
  # PyTorch layout: the safetensors file into a template of the same backbone.
  torch_params, torch_arch = export_lib.load_backbone(paths["safetensors"], abstract)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), torch_params, want)
  assert {k: torch_arch[k] for k in ("width", "depth", "patch_size", "cls_token")} == {
      k: arch[k] for k in ("width", "depth", "patch_size", "cls_token")}


def test_export_checks_arch_and_load_errors_name_the_path(setup, tmp_path):
  cfg, model, state, info = setup
  params = state.params["backbone"]
  bad = dict(export_lib.arch_from_config(cfg.model.backbone), depth=3)
  with pytest.raises(ValueError, match="depth"):
    export_lib.export_backbone(tmp_path / "x", params, bad, torch_state_dict=False)
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match=str(missing)):
    export_lib.load_backbone(missing)
  empty = tmp_path / "half_export"
  os.makedirs(empty / "backbone")
  with pytest.raises(ValueError, match=f"{empty}.*without backbone.json"):
    export_lib.load_backbone(empty)
  sd = tmp_path / "w.npz"
  np.savez(sd, a=np.zeros(2))
  with pytest.raises(ValueError, match=f"{sd}.*needs template_params"):
    export_lib.load_backbone(sd)
  other = tmp_path / "w.txt"
  other.write_text("x")
  with pytest.raises(ValueError, match=f"cannot load {other}"):
    export_lib.load_backbone(other)
