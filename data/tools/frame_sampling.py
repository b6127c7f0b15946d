"""Keeps one frame of every ``every`` (default 8) consecutive frames of each video (paper §3).

    python data/tools/frame_sampling.py --frames frames.txt --out kept.txt [--every 8] [--offset 0]

``frames.txt`` has one frame path per line, either alone (the video is the frame's folder) or
as ``<video id><TAB><path>``. Frames of a video are ordered by their path with numbers compared
as numbers (frame_9 before frame_10); frames ``offset, offset + every, ...`` are kept.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Iterable, Mapping, Sequence

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str) -> tuple:
  """Sort key comparing digit runs numerically."""
  return tuple(int(t) if t.isdigit() else t for t in _DIGITS.split(path))


def group_by_video(lines: Iterable[str]) -> dict[str, list[str]]:
  """'<video>\\t<path>' or '<path>' (video = parent folder) lines -> {video: [paths]}."""
  videos: dict[str, list[str]] = {}
  for ln in lines:
    ln = ln.rstrip("\n")
    if not ln.strip():
      continue
    video, path = ln.split("\t", 1) if "\t" in ln else (os.path.dirname(ln), ln)
    videos.setdefault(video, []).append(path)
  return videos


def sample_frames(videos: Mapping[str, Sequence[str]], every: int = 8,
                  offset: int = 0) -> list[str]:
  """The kept frames, videos in sorted order, frames in natural order within each video."""
  if every < 1 or not 0 <= offset < every:
    raise ValueError(f"need every >= 1 and 0 <= offset < every, got every={every}, "
                     f"offset={offset}")
  kept = []
  for video in sorted(videos):
    frames = sorted(videos[video], key=natural_key)
    kept += frames[offset::every]
  return kept


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--frames", required=True, help="list of frame paths ('[video\\t]path')")
  p.add_argument("--out", required=True, help="kept frame paths, one per line")
  p.add_argument("--every", type=int, default=8)
  p.add_argument("--offset", type=int, default=0)
  a = p.parse_args(argv)
  with open(a.frames) as f:
    videos = group_by_video(f)
  kept = sample_frames(videos, a.every, a.offset)
  with open(a.out, "w") as f:
    f.write("".join(k + "\n" for k in kept))
  total = sum(len(v) for v in videos.values())
  print(f"{len(videos)} videos, {total} frames -> kept {len(kept)}: {a.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
