"""Data preparation tools on small fixtures with known answers (no TensorFlow)."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data.tools import dedup, frame_sampling, identity_filter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def np_dhash(gray9x8: np.ndarray) -> int:
  """Reference dHash of an image that is already 9 wide and 8 high (no resize)."""
  bits = (gray9x8[:, :8].astype(int) > gray9x8[:, 1:].astype(int)).astype(np.uint8).reshape(-1)
  return int.from_bytes(np.packbits(bits).tobytes(), "big")


def save_gray(path, a):
  Image.fromarray(a.astype(np.uint8), mode="L").save(path)


def test_dhash_matches_numpy_and_is_64_bit():
  rng = np.random.default_rng(0)
  for _ in range(5):
    a = rng.integers(0, 256, size=(8, 9))
    h = dedup.dhash(Image.fromarray(a.astype(np.uint8), mode="L"))
    assert h == np_dhash(a) and 0 <= h < 2**64
  # An RGB image hashes as its grayscale conversion.
  rgb = rng.integers(0, 256, size=(8, 9, 3)).astype(np.uint8)
  gray = np.asarray(Image.fromarray(rgb).convert("L"))
  assert dedup.dhash(Image.fromarray(rgb)) == np_dhash(gray)
  assert dedup.hamming(0b1011, 0b0001) == 2


@pytest.mark.parametrize("threshold", [0, 2, 7, 20])
def test_find_matches_equals_brute_force(threshold):
  rng = np.random.default_rng(threshold)
  ev = rng.integers(0, 2**63, size=40, dtype=np.int64).astype(np.uint64) * np.uint64(2)
  evals = {f"e{i:02d}": int(h) for i, h in enumerate(ev)}
  pre = {}
  for i in range(60):
    base = int(ev[i % 40])
    flips = rng.choice(64, size=rng.integers(0, 25), replace=False)
    for b in flips:
      base ^= 1 << int(b)
    pre[f"p{i:02d}"] = base
  got = {m["pretrain"]: (m["eval"], m["distance"]) for m in
         dedup.find_matches(evals, pre, threshold)}
  # Brute force over all pairs with NumPy popcount.
  e_names = sorted(evals)
  e_arr = np.array([evals[n] for n in e_names], np.uint64)
  want = {}
  for p, h in pre.items():
    d = np.bitwise_count(e_arr ^ np.uint64(h))
    j = int(np.argmin(d))  # first minimum = smallest eval name among ties
    if d[j] <= threshold:
      want[p] = (e_names[j], int(d[j]))
  assert got == want


def test_deduplicate_end_to_end_with_reports(tmp_path):
  rng = np.random.default_rng(1)
  ev_dir, pre_dir = tmp_path / "eval", tmp_path / "pre"
  ev_dir.mkdir()
  pre_dir.mkdir()
  a = rng.integers(0, 256, size=(8, 9))
  save_gray(ev_dir / "a.png", a)
  save_gray(pre_dir / "copy_of_a.png", a)                  # distance 0
  near = a.copy()
  near[3, 4] = 255 if a[3, 4] < 128 else 0                 # flips a few bits in row 3
  save_gray(pre_dir / "near_a.png", near)
  far = rng.integers(0, 256, size=(8, 9))
  save_gray(pre_dir / "other.png", far)
  (pre_dir / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  d_near = bin(np_dhash(a) ^ np_dhash(near)).count("1")
  d_far = bin(np_dhash(a) ^ np_dhash(far)).count("1")
  assert 0 < d_near < d_far

  paths = dedup.expand([str(pre_dir)])
  r0 = dedup.deduplicate(dedup.expand([str(ev_dir)]), paths, threshold=0)
  assert [os.path.basename(m["pretrain"]) for m in r0.removed] == ["copy_of_a.png"]
  assert sorted(map(os.path.basename, r0.kept)) == ["near_a.png", "other.png"]
  assert [os.path.basename(u) for u in r0.unreadable] == ["broken.jpg"]

  r1 = dedup.deduplicate(dedup.expand([str(ev_dir)]), paths, threshold=d_near)
  assert {os.path.basename(m["pretrain"]): m["distance"] for m in r1.removed} == {
      "copy_of_a.png": 0, "near_a.png": d_near}
  dedup.write_report(r1, str(tmp_path / "r.csv"), d_near)
  rows = list(csv.DictReader(open(tmp_path / "r.csv")))
  assert [int(r["distance"]) for r in rows] == [0, d_near]
  assert all(r["eval"].endswith("a.png") for r in rows)

  # Command line: folders in, JSON report and kept list out.
  out = subprocess.run(
      [sys.executable, os.path.join(REPO, "data/tools/dedup.py"), "--eval", str(ev_dir),
       "--pretrain", str(pre_dir), "--report", str(tmp_path / "r.json"),
       "--kept", str(tmp_path / "kept.txt")], capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 0, out.stderr
  rep = json.load(open(tmp_path / "r.json"))
  assert rep["num_removed"] == 1 and rep["removed"][0]["distance"] == 0
  kept = open(tmp_path / "kept.txt").read().split()
  assert sorted(map(os.path.basename, kept)) == ["near_a.png", "other.png"]


def test_frame_sampling_one_in_eight(tmp_path):
  rng = np.random.default_rng(2)
  v1 = [f"vidA/frame_{i}.jpg" for i in range(1, 21)]        # 20 frames: keep 1, 9, 17
  v2 = [f"vidB/{i:05d}.png" for i in range(8)]               # 8 frames: keep 0
  lines = list(rng.permutation(v1 + v2))
  kept = frame_sampling.sample_frames(frame_sampling.group_by_video(lines))
  assert kept == ["vidA/frame_1.jpg", "vidA/frame_9.jpg", "vidA/frame_17.jpg", "vidB/00000.png"]
  # Explicit video ids (tab-separated) and an offset.
  tab = [f"clip7\t{p}" for p in v1]
  assert frame_sampling.sample_frames(frame_sampling.group_by_video(tab), every=8, offset=3) == [
      "vidA/frame_4.jpg", "vidA/frame_12.jpg", "vidA/frame_20.jpg"]
  with pytest.raises(ValueError, match="offset"):
    frame_sampling.sample_frames({"v": v1}, every=8, offset=8)
  (tmp_path / "f.txt").write_text("\n".join(lines) + "\n")
  out = subprocess.run([sys.executable, os.path.join(REPO, "data/tools/frame_sampling.py"),
                        "--frames", str(tmp_path / "f.txt"), "--out", str(tmp_path / "k.txt")],
                       capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 0, out.stderr
  assert (tmp_path / "k.txt").read_text().split() == kept


def test_identity_filter_bounds_inclusive(tmp_path):
  counts = {11: 15, 12: 14, 13: 200, 14: 201, 15: 1}
  rng = np.random.default_rng(3)
  pids = rng.permutation(np.repeat(list(counts), list(counts.values())))
  mask = identity_filter.identity_mask(pids)
  assert set(pids[mask]) == {11, 13} and mask.sum() == 215
  assert set(pids[identity_filter.identity_mask(pids, 1, 14)]) == {12, 15}

  src = tmp_path / "lup"
  src.mkdir()
  files = [f"imgs/{i:05d}.jpg" for i in range(len(pids))]
  (src / "fileList.txt").write_text("\n".join(files) + "\n")
  (src / "metaList.txt").write_text("pid\n" + "\n".join(map(str, pids)) + "\n")
  out = subprocess.run([sys.executable, os.path.join(REPO, "data/tools/identity_filter.py"),
                        "--list_dir", str(src), "--out_dir", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=REPO)
  assert out.returncode == 0, out.stderr
  new_files = (tmp_path / "out/fileList.txt").read_text().split()
  header, *new_meta = (tmp_path / "out/metaList.txt").read_text().split("\n")[:-1]
  assert header == "pid" and len(new_files) == len(new_meta) == 215
  want = [f for f, k in zip(files, mask) if k]
  assert new_files == [os.path.join("..", "lup", f) for f in want]
  assert [int(m) for m in new_meta] == [int(p) for p in pids[mask]]
  rep = json.load(open(tmp_path / "out/filter_report.json"))
  assert rep == {"min_images": 15, "max_images": 200, "identities_in": 5,
                 "identities_kept": 2, "images_in": int(len(pids)), "images_kept": 215}
