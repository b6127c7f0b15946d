"""Input pipelines: TFDS sources, P x K sampling, the multi-dataset iterator and its state,
host sharding, evaluation coverage, global batches."""
import json
import os

import jax
import numpy as np
import pytest

from path_jax.input import eval as eval_input
from path_jax.input import global_batch, mixture, sampling, sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """The committed dummy data of three families, built once into a TFDS data_dir."""
  from data import build
  out = str(tmp_path_factory.mktemp("tfds"))
  for name, src in (("reid/market1501", "reid/dummy_data/market1501"),
                    ("attributes/pa100k", "attributes/dummy_data/pa100k"),
                    ("parsing/lip", "parsing/dummy_data/lip")):
    build.build(name, os.path.join(REPO, "data", src), out)
  return out


def _attr_records(n, size=(20, 12)):
  """In-memory attribute records whose label column 0 is the record index (traceable)."""
  rng = np.random.default_rng(n)
  return [{"image": rng.integers(0, 256, size + (3,), dtype=np.uint8),
           "labels": np.array([i, i % 2, -1], np.int8)} for i in range(n)]


def test_missing_dataset_error_names_path_and_build_command(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"python data/build.py reid/market1501") as e:
    sources.open_source("reid/market1501", "train", str(tmp_path))
  assert str(tmp_path) in str(e.value)


def test_missing_split_error_lists_splits(tfds_dir):
  with pytest.raises(ValueError, match=r"no split 'val'.*'train'"):
    sources.open_source("reid/market1501", "val", tfds_dir)


def test_read_column_without_decoding(tfds_dir):
  raw = sources.open_source("reid/market1501", "train", tfds_dir, decode_images=False)
  full = sources.open_source("reid/market1501", "train", tfds_dir)
  ids = sources.read_column(raw, "person_id")
  assert ids.tolist() == [int(full[i]["person_id"]) for i in range(len(full))]


def test_identity_batches_give_k_images_of_p_identities():
  # 9 identities with 1..9 images each.
  labels = np.concatenate([np.full(c, 100 + c) for c in range(1, 10)])
  indices = np.arange(len(labels)) * 3          # record indices need not be 0..N-1
  p, k = 3, 4
  ds = sampling.IdentityBatches(labels, indices, p, k, seed=7)
  by_record = dict(zip(indices.tolist(), labels.tolist()))
  epochs_seen = set()
  ids_in_epoch = []
  for b in range(6):                            # two epochs of 9 // 3 = 3 groups
    batch = [ds[b * p * k + j] for j in range(p * k)]
    epochs_seen.add(batch[0][0])
    ids = [by_record[r] for _, r in batch]
    groups = [ids[i * k:(i + 1) * k] for i in range(p)]
    assert all(len(set(g)) == 1 for g in groups)           # K images of one identity
    assert len({g[0] for g in groups}) == p                 # P distinct identities
    for g, i in zip(groups, range(p)):
      recs = [r for _, r in batch[i * k:(i + 1) * k]]
      count = int(np.sum(labels == g[0]))
      if count >= k:
        assert len(set(recs)) == k                          # without replacement
      else:
        assert set(recs) <= set(indices[labels == g[0]].tolist())
    ids_in_epoch.append({g[0] for g in groups})
  assert epochs_seen == {0, 1}
  assert len(set().union(*ids_in_epoch[:3])) == 9           # one epoch visits every identity once
  again = sampling.IdentityBatches(labels, indices, p, k, seed=7)
  assert [again[i] for i in range(30)] == [ds[i] for i in range(30)]
  other = sampling.IdentityBatches(labels, indices, p, k, seed=8)
  assert [other[i] for i in range(30)] != [ds[i] for i in range(30)]


def test_identity_sampler_too_few_identities_is_explained():
  with pytest.raises(ValueError, match="P=5 identities"):
    sampling.IdentityBatches(np.array([1, 1, 2]), np.arange(3), 5, 2, 0)


def _collect(it, name, batches):
  return [next(it)[name] for _ in range(batches)]


def test_two_hosts_see_disjoint_shards_covering_the_data():
  records = _attr_records(10)
  seen = []
  for host in range(2):
    d = mixture.DatasetInput("a", "attributes", records, {"image_size": (16, 8)}, 5)
    it = mixture.make_train_iterator([d], seed=3, shard_index=host, shard_count=2)
    batch = next(it)["a"]                    # one epoch of this host's 5 records
    seen.append(set(batch["labels"][:, 0].tolist()))
    assert it.stats()["a"]["epoch"] == 0
    next(it)
    assert it.stats()["a"] == {"epoch": 1, "skipped": 0, "batches": 2}
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(10))
  # Identity sharding keeps every identity on one host.
  labels = np.array([3, 1, 3, 2, 1, 5, 2, 5, 5])
  a, b = (sampling.identity_shard(labels, h, 2) for h in range(2))
  assert not set(a) & set(b) and set(a) | set(b) == set(range(9))
  assert not set(labels[a]) & set(labels[b])


class _Corrupt(list):
  """A source whose record 2 fails to decode."""

  def __getitem__(self, i):
    if i == 2:
      raise OSError("truncated JPEG")
    return list.__getitem__(self, i)


def test_mixture_state_restores_identical_next_batch_and_counts_skips(tfds_dir):
  reid = sources.open_source("reid/market1501", "train", tfds_dir)
  lip = sources.open_source("parsing/lip", "train", tfds_dir)
  datasets = lambda: [  # noqa: E731
      mixture.DatasetInput("market", "reid", reid, {"image_size": (32, 16),
                                                    "images_per_identity": 2}, 4,
                           sampler="identity"),
      mixture.DatasetInput("lip", "parsing", lip, {"image_size": (24, 24)}, 2),
      mixture.DatasetInput("attr", "attributes", _Corrupt(_attr_records(5)),
                           {"image_size": (16, 8)}, 3)]
  it = mixture.make_train_iterator(datasets(), seed=0, shard_index=0, shard_count=1)
  first = next(it)
  assert first["market"]["image"].shape == (4, 32, 16, 3)
  assert first["market"]["label"].shape == (4,)
  assert first["lip"]["label"].shape == (2, 24, 24)
  assert first["attr"]["labels"].shape == (3, 3)
  labels = first["market"]["label"].tolist()
  assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
  state = json.loads(json.dumps(it.get_state()))         # must survive JSON (grain's handler)
  expected = [next(it) for _ in range(3)]
  fresh = mixture.make_train_iterator(datasets(), seed=0, shard_index=0, shard_count=1)
  fresh.set_state(state)
  for want in expected:
    got = next(fresh)
    for name in want:
      for field in want[name]:
        np.testing.assert_array_equal(got[name][field], want[name][field])
  stats = fresh.stats()
  assert stats["attr"]["skipped"] >= 1 and 2 not in [int(v) for v in got["attr"]["labels"][:, 0]]
  assert stats["lip"]["epoch"] >= 1                       # 2 records, 4 batches of 2


def test_orbax_composite_restores_iterator_with_state():
  import grain
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  import tempfile
  d = [mixture.DatasetInput("a", "attributes", _attr_records(7), {"image_size": (16, 8)}, 2)]
  it = mixture.make_train_iterator(d, seed=1, shard_index=0, shard_count=1)
  next(it)
  with tempfile.TemporaryDirectory() as tmp:
    mgr = ocp.CheckpointManager(tmp)
    mgr.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave({"w": jnp.arange(3.0)}),
                                        data=grain.checkpoint.CheckpointSave(it)))
    mgr.wait_until_finished()
    want = next(it)
    restored = mixture.make_train_iterator(d, seed=1, shard_index=0, shard_count=1)
    out = mgr.restore(1, args=ocp.args.Composite(
        state=ocp.args.StandardRestore({"w": jnp.zeros(3)}),
        data=grain.checkpoint.CheckpointRestore(restored)))
    np.testing.assert_array_equal(out["state"]["w"], np.arange(3.0))
    got = next(restored)
    mgr.close()
  np.testing.assert_array_equal(got["a"]["image"], want["a"]["image"])


def test_worker_processes_give_the_in_process_stream():
  d = [mixture.DatasetInput("a", "attributes", _attr_records(9), {"image_size": (16, 8)}, 3)]
  base = mixture.make_train_iterator(d, seed=5, shard_index=0, shard_count=1)
  want = [next(base)["a"]["image"] for _ in range(4)]
  it = mixture.make_train_iterator(d, seed=5, shard_index=0, shard_count=1, num_workers=2)
  try:
    got = [next(it)["a"]["image"] for _ in range(2)]
    state = it.get_state()
    got += [next(it)["a"]["image"] for _ in range(2)]
    it.set_state(state)
    again = next(it)["a"]["image"]
  finally:
    it.close()
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)
  np.testing.assert_array_equal(again, want[2])


@pytest.mark.parametrize("hosts,batch", [(1, 4), (2, 4), (3, 2)])
def test_eval_covers_every_record_once_with_mask(hosts, batch):
  from path_jax.tasks.attributes import transforms as attr_t
  records = _Corrupt(_attr_records(11))
  transform = attr_t.eval_transform({"image_size": (16, 8)})
  seen, lengths = [], set()
  for host in range(hosts):
    it = eval_input.eval_iterator(records, transform, batch, shard_index=host, shard_count=hosts)
    lengths.add(len(it))
    batches = list(it)
    assert len(batches) == len(it)
    for b in batches:
      assert b["image"].shape == (batch, 16, 8, 3) and b["mask"].shape == (batch,)
      real = b["mask"]
      # Real examples carry their record (label column 0 = record index); padding is zero, -1.
      np.testing.assert_array_equal(b["labels"][real, 0], b["index"][real])
      assert (b["index"][~real] == -1).sum() + (b["index"][~real] == 2).sum() == (~real).sum()
      assert not b["image"][~real].any()
      seen += b["index"][real].tolist()
    assert it.skipped == int(2 % hosts == host)
  assert len(lengths) == 1                                 # every host runs the same steps
  assert sorted(seen) == [i for i in range(11) if i != 2]  # each decodable record exactly once


def test_global_batch_shards_over_data_and_fsdp():
  from jax.sharding import AxisType
  mesh = jax.make_mesh((4, 2, 1), ("data", "fsdp", "model"), axis_types=(AxisType.Auto,) * 3)
  local = {"reid": {"image": np.arange(8 * 2 * 3, dtype=np.uint8).reshape(8, 2, 3),
                    "label": np.arange(8, dtype=np.int32)}}
  out = global_batch.to_global(local, mesh)
  img = out["reid"]["image"]
  assert img.shape == (8, 2, 3) and img.dtype == np.uint8
  assert img.sharding.spec == jax.sharding.PartitionSpec(("data", "fsdp"), None, None)
  assert len({s.index[0].start for s in img.addressable_shards}) == 8   # 8 distinct row blocks
  np.testing.assert_array_equal(np.asarray(img), local["reid"]["image"])
  np.testing.assert_array_equal(np.asarray(out["reid"]["label"]), local["reid"]["label"])
  with pytest.raises(ValueError, match=r"\['reid'\]\['label'\] has 6 rows"):
    global_batch.to_global({"reid": {"label": np.arange(6)}}, mesh)


def test_inputs_from_config_opens_tfds_and_picks_the_identity_sampler(tfds_dir):
  cfg = {"market": {"task": "reid", "tfds_name": "reid/market1501", "data_dir": tfds_dir,
                    "batch_size": 4, "image_size": (32, 16), "images_per_identity": 2},
         "pa100k": {"task": "attributes", "tfds_name": "attributes/pa100k", "data_dir": tfds_dir,
                    "batch_size": 2, "image_size": (16, 8)}}
  inputs = mixture.inputs_from_config(cfg, shard_count=1)
  assert [d.sampler for d in inputs] == ["identity", "shuffle"]
  batch = next(mixture.make_train_iterator(inputs, seed=0, shard_index=0, shard_count=1))
  assert batch["market"]["image"].shape == (4, 32, 16, 3)
  assert batch["pa100k"]["labels"].shape == (2, 4)
  with pytest.raises(ValueError, match="not divisible by the 3 hosts"):
    mixture.inputs_from_config(cfg, shard_count=3)
