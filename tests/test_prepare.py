"""Pretraining de-duplication, frame sampling and ``python -m data.prepare`` on the dummy data.

Expected values come from the source files with data/tools (dHash of the image files, natural
frame order), independently of the builders' filters.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402
from data import prepare  # noqa: E402
from data.parsing.builder import Parsing  # noqa: E402
from data.tools import dedup  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data")
MARKET = os.path.join(DATA, "reid", "dummy_data", "market1501")


def report(data_dir, full):
  with open(os.path.join(data_dir, full, "1.0.0", "build_report.json")) as f:
    return json.load(f)


def train_names(data_dir, full):
  src = tfds.data_source(full, data_dir=data_dir)["train"]
  return sorted(src[i]["filename"].decode() for i in range(len(src)))


def eval_hash_file(path, manual_dir, full="reid/market1501"):
  cls, config = build_mod.parse_name(full)
  b = cls(config=config, data_dir=os.path.join(os.path.dirname(path), "scratch"))
  hashes = common.split_hashes(b, manual_dir)
  dedup.write_hash_file(path, hashes)
  return hashes


# ---- hash file ---------------------------------------------------------------------------------
def test_hash_file_roundtrip_and_index(tmp_path):
  hashes = {"a/x.jpg": 0xFFFF0000FFFF0000, "b/y.png": 0x0123456789ABCDEF}
  path = str(tmp_path / "h.txt")
  dedup.write_hash_file(path, hashes, comment="test")
  with open(path) as f:
    text = f.read()
  assert text.startswith(dedup.HASH_FILE_HEADER) and "0123456789abcdef\tb/y.png\n" in text
  assert dedup.read_hash_file(path) == hashes
  idx = dedup.HashIndex(hashes, threshold=2)
  assert idx.match(0xFFFF0000FFFF0003) == ("a/x.jpg", 2)
  assert idx.match(0xFFFF0000FFFF0007) is None
  assert dedup.HashIndex(hashes, 0).match(0x0123456789ABCDEF) == ("b/y.png", 0)
  with open(path, "a") as f:
    f.write("zz\tbad\n")
  with pytest.raises(ValueError, match=r"h.txt:\d+: expected"):
    dedup.read_hash_file(path)


def test_dedup_cli_writes_hashes_of_folders(tmp_path):
  out = tmp_path / "h.txt"
  rc = subprocess.run([sys.executable, os.path.join(DATA, "tools", "dedup.py"),
                       f"--write_hashes={out}", "--eval", os.path.join(MARKET, "query")],
                      check=False, capture_output=True, text=True, cwd=REPO)
  assert rc.returncode == 0, rc.stderr
  got = dedup.read_hash_file(str(out))
  files = sorted(os.listdir(os.path.join(MARKET, "query")))
  assert got == {os.path.join(MARKET, "query", f): dedup.dhash(os.path.join(MARKET, "query", f))
                 for f in files}


# ---- exclusion -----------------------------------------------------------------------------
def test_exclusion_drops_and_counts_duplicates_of_eval_images(tmp_path):
  src = str(tmp_path / "market")
  shutil.copytree(MARKET, src)
  # A training image that is a byte copy of a query image (another name, same pixels).
  dup = "bounding_box_train/0007_c6s1_009999_00.jpg"
  shutil.copy(os.path.join(src, "query", "0002_c3s1_000601_00.jpg"), os.path.join(src, dup))
  hfile = str(tmp_path / "eval_hashes.txt")
  hashes = eval_hash_file(hfile, src)
  assert set(hashes) == {f"reid/market1501/{s}/{f}" for s, d in (("query", "query"),
                                                                  ("gallery", "bounding_box_test"))
                         for f in [f"{d}/{n}" for n in os.listdir(os.path.join(src, d))]
                         if not f.split("/")[1].startswith("-1")}

  plain, filtered = str(tmp_path / "plain"), str(tmp_path / "filtered")
  build_mod.build("reid/market1501", src, plain)
  build_mod.build("reid/market1501", src, filtered, exclude_hashes=hfile)
  before = train_names(plain, "reid/market1501")
  evals = set(hashes.values())
  expected_gone = [n for n in before if dedup.dhash(os.path.join(src, n)) in evals]
  assert dup in expected_gone
  assert train_names(filtered, "reid/market1501") == sorted(set(before) - set(expected_gone))
  rep = report(filtered, "reid/market1501")
  assert rep["excluded"] == {"train": len(expected_gone)}
  assert {e["record"] for e in rep["excluded_examples"]} == set(expected_gone)
  assert rep["options"]["exclude_hashes_sha256"] == dedup.file_digest(hfile)
  assert rep["options"]["exclude_threshold"] == 0
  # Evaluation splits are never filtered; the metadata carries the same report.
  assert rep["splits"]["query"] == report(plain, "reid/market1501")["splits"]["query"]
  with open(os.path.join(filtered, "reid/market1501/1.0.0/metadata.json")) as f:
    assert json.load(f)["build_report"]["excluded"] == {"train": len(expected_gone)}
  assert report(plain, "reid/market1501")["excluded"] == {}

  # Other options than the existing build's: refused without --overwrite, nothing changes.
  stamp = os.path.getmtime(os.path.join(plain, "reid/market1501/1.0.0/build_report.json"))
  with pytest.raises(build_mod.OptionsMismatchError, match="--overwrite"):
    build_mod.build("reid/market1501", src, plain, exclude_hashes=hfile)
  assert os.path.getmtime(
      os.path.join(plain, "reid/market1501/1.0.0/build_report.json")) == stamp
  # Same options again: kept as is. frame_every does not apply to an image set.
  build_mod.build("reid/market1501", src, filtered, exclude_hashes=hfile, frame_every=3)
  build_mod.build("reid/market1501", src, plain, exclude_hashes=hfile, overwrite=True)
  assert report(plain, "reid/market1501")["excluded"] == {"train": len(expected_gone)}


def test_hashes_of_built_dataset_equal_raw_hashes(tmp_path):
  hashes = eval_hash_file(str(tmp_path / "h.txt"), MARKET)
  build_mod.build("reid/market1501", MARKET, str(tmp_path / "d"))
  assert dedup.hashes_of_tfds(str(tmp_path / "d"), "reid/market1501") == hashes


# ---- frame sampling ------------------------------------------------------------------------
def _vip(root, videos):
  """A VIP-layout folder: ``videos`` = {video: n frames named frame_1 .. frame_n}."""
  rng = np.random.default_rng(0)
  ids = []
  for video, n in videos.items():
    for i in range(1, n + 1):
      fid = f"{video}/frame_{i}"
      ids.append(fid)
      for sub, arr in (("Images", rng.integers(0, 255, (6, 5, 3), np.uint8)),
                       ("Annotations/Category_ids", rng.integers(0, 20, (6, 5), np.uint8))):
        path = os.path.join(root, sub, fid + (".jpg" if sub == "Images" else ".png"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(arr).save(path)
  with open(os.path.join(root, "train_id.txt"), "w") as f:
    f.write("".join(i + "\n" for i in ids[::-1]))  # list order must not matter


def test_frame_sampling_keeps_one_in_n_per_video(tmp_path):
  src = str(tmp_path / "vip")
  _vip(src, {"videos1": 10, "videos2": 3})
  assert common.is_video("parsing", next(c for c in Parsing.BUILDER_CONFIGS if c.name == "vip"))
  d = str(tmp_path / "d")
  build_mod.build("parsing/vip", src, d, frame_every=4)
  # Natural order: frame_1, frame_2, ..., frame_10 -> ranks 0, 4, 8 = frames 1, 5, 9.
  assert train_names(d, "parsing/vip") == ["videos1/frame_1", "videos1/frame_5",
                                           "videos1/frame_9", "videos2/frame_1"]
  rep = report(d, "parsing/vip")
  assert rep["frames"]["train"] == {"every": 4, "videos": 2, "frames": 13, "kept_frames": 4,
                                    "records": 13, "kept_records": 4}
  assert rep["options"]["frame_every"] == 4 and rep["options"]["video"]
  with pytest.raises(build_mod.OptionsMismatchError, match="frame_every: built with 4"):
    build_mod.build("parsing/vip", src, d)  # default 8
  build_mod.build("parsing/vip", src, d, frame_every=1, overwrite=True)
  assert len(train_names(d, "parsing/vip")) == 13
  assert report(d, "parsing/vip")["frames"]["train"]["kept_frames"] == 13
  # The default is the paper's 1 in 8.
  d8 = str(tmp_path / "d8")
  build_mod.build("parsing/vip", src, d8)
  assert train_names(d8, "parsing/vip") == ["videos1/frame_1", "videos1/frame_9",
                                            "videos2/frame_1"]


def test_video_hook_fields_and_several_records_per_frame(tmp_path):
  b = Parsing(config="vip", data_dir=str(tmp_path), frame_every=2)
  recs = [(f"{v}/{f}/{p}", {"image": b"", "label": b"", "filename": "ignored",
                            common.VIDEO_KEY: v, common.FRAME_KEY: f})
          for v in ("a", "b") for f in (10, 2, 1, 30) for p in range(2)]  # 2 persons a frame
  out = list(b._tracked("train", iter(recs)))
  # Frames by number: 1, 2, 10, 30 -> ranks 0 and 2 kept = 1 and 10, both persons each.
  assert [k for k, _ in out] == [f"{v}/{f}/{p}" for v in ("a", "b") for f in (10, 1)
                                 for p in range(2)]
  assert all(common.VIDEO_KEY not in ex and common.FRAME_KEY not in ex for _, ex in out)
  assert b.report.frames["train"]["kept_records"] == 8
  # Evaluation splits are never sampled (fields still removed).
  out = list(b._tracked("val", iter(recs)))
  assert len(out) == 16 and all(common.VIDEO_KEY not in ex for _, ex in out)


# ---- python -m data.prepare ----------------------------------------------------------------
PRESENT = {"market1501": "reid/market1501", "lip": "parsing/lip", "pa100k": "attributes/pa100k_native",
           "posetrack": "pose/posetrack_native", "luperson_nl": "reid/luperson_nl",
           "reid_last_prcc_dgmarket": "reid/last_prcc_dgmarket_native"}
# The merged row's sources: found, not built alone.
SOURCES = ("dg_market", "prcc", "last")


def _raw_root(tmp_path):
  raw = tmp_path / "raw"
  raw.mkdir()
  for name, full in PRESENT.items():
    family, config = full.split("/")
    dummy = os.path.join(DATA, family, "dummy_data", config)
    d = prepare.BY_NAME[name]
    if d.sources:   # the dummy raw root of a merged row holds its sources' folders
      for entry in os.listdir(dummy):
        os.symlink(os.path.join(dummy, entry), raw / entry)
      continue
    folder = raw / d.folders[-1 if name == "pa100k" else 0]
    if d.subdir:    # e.g. PoseTrack/posetrack_data
      folder.mkdir()
      folder = folder / d.subdir
    os.symlink(dummy, folder)
  (raw / "SenseReID").mkdir()  # found, but empty: incomplete, nothing written
  return str(raw)


def test_prepare_checklist_missing_and_rerun(tmp_path, capsys):
  raw, data_dir = _raw_root(tmp_path), str(tmp_path / "tfds")
  dry = prepare.prepare(raw, data_dir, dry_run=True)
  assert not os.path.exists(data_dir)
  assert {r["dataset"]: r["status"] for r in dry["datasets"]}["market1501"] == "would build"

  rc = prepare.main([f"--raw_root={raw}", f"--data_dir={data_dir}", "--frame_every=2"])
  text = capsys.readouterr().out
  assert rc == 0, text
  with open(os.path.join(data_dir, prepare.CHECKLIST)) as f:
    c = json.load(f)
  rows = {r["dataset"]: r for r in c["datasets"]}
  assert {n for n, r in rows.items() if r["status"] == "built"} == set(PRESENT)
  assert rows["sensereid"]["status"] == "incomplete" and not rows["sensereid"]["written"]
  missing = [n for n, r in rows.items() if r["status"] == "missing"]
  # market_attr's folder is Market-1501's (its .mat lies beside the images): found too.
  assert rows["market_attr"]["status"] == "found"
  assert len(missing) == len(prepare.DATASETS) - len(PRESENT) - 1 - len(SOURCES) - 1
  for name in SOURCES:
    assert rows[name]["status"] == "found"
    assert rows[name]["read_by"] == ["reid_last_prcc_dgmarket"]
  # A merged row with a source missing names what is missing; nothing is built for it.
  assert rows["reid_4sets"]["missing_sources"] == ["dukemtmc", "cuhk03", "msmt17"]
  assert "[missing] reid_4sets" in text and "missing: dukemtmc, cuhk03, msmt17" in text
  assert rows["msmt17"]["download"].startswith("https://")
  assert rows["msmt17"]["expected_folder"] == os.path.join(raw, "MSMT17_V1")
  assert "[missing] msmt17" in text and "MSMT17_V1" in text and "paper:  5,446,419" in text
  # Nothing written for missing or incomplete sets, no temporary folders left.
  assert sorted(os.listdir(data_dir)) == sorted(
      ["reid", "parsing", "attributes", "pose", prepare.HASH_FILE, prepare.HASH_CACHE,
       prepare.CHECKLIST])
  assert sorted(os.listdir(os.path.join(data_dir, "reid"))) == [
      "last_prcc_dgmarket_native", "luperson_nl", "market1501"]
  # The hash file holds the evaluation splits of the evaluation sets found.
  hashes = dedup.read_hash_file(os.path.join(data_dir, prepare.HASH_FILE))
  assert {n.rsplit("/", 2)[0].split("/", 2)[1] for n in hashes} == {"market1501", "lip",
                                                                   "pa100k_native"}
  assert c["exclude"]["eval_sets"] == ["market1501", "lip", "pa100k"]
  for name, full in PRESENT.items():
    rep = report(data_dir, full)
    assert rows[name]["excluded"] == rep["excluded"].get("train", 0)
    assert rep["options"]["exclude_hashes_sha256"] == c["exclude"]["sha256"]
    assert rows[name]["records"] == rep["splits"]
  fr = report(data_dir, "pose/posetrack_native")["frames"]["train"]
  assert fr["every"] == 2 and fr["kept_frames"] < fr["frames"]
  assert rows["posetrack"]["frames"] == {"kept": fr["kept_frames"], "of": fr["frames"], "every": 2}
  # The merged row was built from raw_root itself, with the exclusion.
  assert rows["reid_last_prcc_dgmarket"]["manual_dir"] == raw
  reid = c["totals"]["reid"]
  # Market-1501's train split reaches the mix only through reid_4sets (not built here): it is
  # not counted on its own; the merged row counts its sources.
  assert reid["images"] == sum(rows[n]["train_images"] for n in (
      "luperson_nl", "reid_last_prcc_dgmarket"))
  assert reid["datasets"] == 1 + len(SOURCES)
  assert reid["known_datasets"] == 1 + 4 + len(SOURCES)   # LUPerson-NL, reid_4sets, the 3
  assert reid["paper_row_images"] == 5_000_000 + 67_070 + 217_453
  assert reid["paper_images"] == 5_446_419

  # A rerun skips what is built with the same options and rewrites nothing.
  stamp = os.path.getmtime(os.path.join(data_dir, "reid/market1501/1.0.0/build_report.json"))
  again = prepare.prepare(raw, data_dir, frame_every=2)
  rows2 = {r["dataset"]: r for r in again["datasets"]}
  assert {n for n, r in rows2.items() if r["status"] == "already built"} == set(PRESENT)
  assert rows2["market1501"]["excluded"] == rows["market1501"]["excluded"]
  assert os.path.getmtime(
      os.path.join(data_dir, "reid/market1501/1.0.0/build_report.json")) == stamp
  # Other options: reported, kept until --overwrite.
  other = prepare.prepare(raw, data_dir, only=["posetrack", "market1501"])
  rows3 = {r["dataset"]: r for r in other["datasets"]}
  assert rows3["posetrack"]["status"] == "built with other options"
  assert rows3["market1501"]["status"] == "already built"
  redo = prepare.prepare(raw, data_dir, only=["posetrack"], overwrite=True)
  assert redo["datasets"][0]["status"] == "built"
  assert report(data_dir, "pose/posetrack_native")["options"]["frame_every"] == 8
  with pytest.raises(ValueError, match="unknown datasets"):
    prepare.prepare(raw, data_dir, only=["market"])
