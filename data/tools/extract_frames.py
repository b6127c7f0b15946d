"""Extracts the frames of video-only releases (MPI-INF-3DHP, Human3.6M, ...) as JPEG files.

    python -m data.tools.extract_frames --videos 'ROOT/S*/Seq*/imageSequence/video_*.avi' \\
        [--videos 'MORE_GLOB' ...] [--every N] [--quality Q] [--jobs J] [--force]

For each video file ``D/<name>.<ext>`` matched by a ``--videos`` glob (``**`` recurses; quote the
pattern so the shell leaves it alone) the frames are written to ``D/<name>/%06d.jpg`` numbered
1, 2, 3, ... in decoding order: ffmpeg's own numbering (``ffmpeg -i video -start_number 1
D/<name>/%06d.jpg``), so file ``000001.jpg`` is the video's first frame (0-based frame index 0).
The pose readers of data/pose/mocap.py expect exactly this (frame index f -> ``f+1:06d.jpg``).

``--out_root DIR`` writes them to ``DIR/<name>/`` instead, and ``--first 0`` numbers them 0, 1,
2, ... (``000000.jpg`` = frame 0): AIST++, whose reader (``pose/aist_native``) expects the frames
of ``videos/<name>.mp4`` in ``frames/<name>/%06d.jpg`` from 0:
``python -m data.tools.extract_frames --videos '/raw/aist_plusplus/videos/*.mp4'
--out_root /raw/aist_plusplus/frames --first 0``.

``--every N`` writes only frames 1, 1+N, 1+2N, ... (0-based indices 0, N, 2N, ...), keeping
their numbers (``000001.jpg``, ``00000{1+N}.jpg``, ...), to save disk space; the readers then
build from the frames present (the others are counted as ``frame_not_extracted``), so build
with ``--frame_every 1`` to avoid sampling twice (N = 8: the paper's 1-in-8 frames; N = 5 on
Human3.6M: mmpose's 10 fps protocol). ``--quality`` is ffmpeg's JPEG ``-q:v`` (1 best .. 31
worst; default 2; the MPI-INF-3DHP README uses 1).

Rerunnable: a video whose frame folder is complete is skipped. Frames are written to a
temporary sibling folder ``D/.<name>.partial`` that is renamed to ``D/<name>`` only once ffmpeg
has finished, with a marker file ``D/<name>/.extract_frames.json`` (frame count, ``every``,
quality); an interrupted run leaves at most the ``.partial`` folder, which the next run
deletes and redoes. A folder ``D/<name>`` without the marker (extracted by other means) is left
as is. ``--force`` re-extracts complete folders too (e.g. with another ``--every``).

Dependencies: the ``ffmpeg`` binary if it is on PATH, else the ffmpeg binary bundled with the
``imageio-ffmpeg`` package (``pip install imageio imageio-ffmpeg``; it provides
``imageio_ffmpeg.get_ffmpeg_exe()``). Without either the tool stops with an error saying so.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import shutil
import subprocess
import sys
from typing import Sequence

MARKER = ".extract_frames.json"
FRAME_PATTERN = "%06d.jpg"
DEFAULT_QUALITY = 2
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")


class ExtractionError(RuntimeError):
  """ffmpeg is unavailable or failed on a video."""


def find_ffmpeg() -> str:
  """Path of an ffmpeg binary: ``ffmpeg`` on PATH, else imageio-ffmpeg's bundled one."""
  exe = shutil.which("ffmpeg")
  if exe:
    return exe
  try:
    import imageio_ffmpeg
  except ImportError:
    imageio_ffmpeg = None
  if imageio_ffmpeg is not None:
    try:
      return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
      raise ExtractionError(f"imageio-ffmpeg is installed but has no usable ffmpeg: {e}") from e
  raise ExtractionError(
      "frame extraction needs ffmpeg: install the ffmpeg binary (e.g. `apt-get install ffmpeg`) "
      "so that it is on PATH, or the Python packages `pip install imageio imageio-ffmpeg` (which "
      "bundle one).")


def frame_folder(video: str, out_root: str | None = None) -> str:
  """``D/name.ext`` -> ``D/name`` (where its frames go), or ``out_root/name``."""
  base = os.path.splitext(video)[0]
  return os.path.join(out_root, os.path.basename(base)) if out_root else base


def partial_folder(video: str, out_root: str | None = None) -> str:
  d, name = os.path.split(frame_folder(video, out_root))
  return os.path.join(d, f".{name}.partial")


def frame_name(number: int) -> str:
  """Frame number (1-based unless extracted with ``first=0``) -> file name (``000001.jpg``)."""
  return FRAME_PATTERN % number


def read_marker(folder: str) -> dict | None:
  """The completion marker of a frame folder, or None when there is none (or it is unreadable)."""
  try:
    with open(os.path.join(folder, MARKER)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def expand(patterns: Sequence[str]) -> list[str]:
  """Video files matched by the globs, sorted, without duplicates (frame folders excluded)."""
  out = set()
  for p in patterns:
    for path in glob.glob(os.path.expanduser(p), recursive=True):
      if os.path.isfile(path) and os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS:
        out.add(os.path.abspath(path))
  return sorted(out)


def _ffmpeg_cmd(ffmpeg: str, video: str, out_dir: str, every: int, quality: int,
                fps_mode: str, first: int = 1) -> list[str]:
  cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", video, "-an"]
  if every > 1:
    cmd += ["-vf", f"select=not(mod(n\\,{every}))"]
  # One image per decoded (selected) frame: no duplication or dropping to a constant rate.
  cmd += ["-fps_mode", "passthrough"] if fps_mode == "fps_mode" else ["-vsync", "0"]
  if quality < 2:
    cmd += ["-qmin", str(quality)]
  cmd += ["-q:v", str(quality), "-start_number", str(first),
          os.path.join(out_dir, FRAME_PATTERN)]
  return cmd


def _run_ffmpeg(ffmpeg: str, video: str, out_dir: str, every: int, quality: int,
                first: int = 1) -> None:
  err = ""
  for mode in ("fps_mode", "vsync"):  # -fps_mode since ffmpeg 5.1; -vsync before
    proc = subprocess.run(_ffmpeg_cmd(ffmpeg, video, out_dir, every, quality, mode, first),
                          capture_output=True, text=True)
    if proc.returncode == 0:
      return
    err = proc.stderr.strip()
    if "fps_mode" not in err:
      break
    for name in os.listdir(out_dir):
      os.remove(os.path.join(out_dir, name))
  raise ExtractionError(f"{video}: ffmpeg failed: {err[-2000:]}")


def extract(video: str, every: int = 1, quality: int = DEFAULT_QUALITY, force: bool = False,
            ffmpeg: str | None = None, out_root: str | None = None,
            first: int = 1) -> tuple[str, int]:
  """Extracts one video; returns (status, frames written): status 'done', 'skipped' (complete
  folder) or 'kept' (a folder not written by this tool, left as is). ``out_root``: frames go to
  ``out_root/<name>/``; ``first``: the number of the first frame's file (1, or 0)."""
  if every < 1:
    raise ValueError(f"--every must be >= 1, got {every}")
  if first not in (0, 1):
    raise ValueError(f"--first must be 0 or 1, got {first}")
  if not 1 <= quality <= 31:
    raise ValueError(f"--quality must be in 1..31 (ffmpeg -q:v), got {quality}")
  out = frame_folder(video, out_root)
  if os.path.isdir(out) and not force:
    marker = read_marker(out)
    if marker is None:
      return "kept", 0
    if str(marker.get("every", 1)) != str(every):
      print(f"note: {out} was extracted with --every {marker.get('every')} (asked {every}); "
            "kept as is (use --force to redo)", file=sys.stderr)
    frames = marker.get("frames", 0)
    return "skipped", frames if isinstance(frames, int) else 0
  ffmpeg = ffmpeg or find_ffmpeg()
  tmp = partial_folder(video, out_root)
  if os.path.exists(tmp):  # left by an interrupted run
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  try:
    _run_ffmpeg(ffmpeg, video, tmp, every, quality, first)
    written = sorted(n for n in os.listdir(tmp) if n.endswith(".jpg"))
    if not written:
      raise ExtractionError(f"{video}: ffmpeg wrote no frame (unreadable or empty video?)")
    if every > 1:
      # ffmpeg numbers the selected frames first, first + 1, ...; selected k (from 0) is frame
      # first + k * every. Renamed from the last: each target is >= its source and above every
      # pending source.
      for k in range(len(written) - 1, -1, -1):
        os.rename(os.path.join(tmp, frame_name(first + k)),
                  os.path.join(tmp, frame_name(first + k * every)))
    with open(os.path.join(tmp, MARKER), "w") as f:
      json.dump({"video": os.path.basename(video), "every": every, "quality": quality,
                 "frames": len(written),
                 "numbering": f"{first}-based, ffmpeg decoding order"}, f)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    if os.path.exists(out):  # --force: swap the old folder out only once the new one is whole
      old = tmp + ".old"
      os.rename(out, old)
      os.rename(tmp, out)
      shutil.rmtree(old)
    else:
      os.rename(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return "done", len(written)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split("\n\n", 2)[2])
  p.add_argument("--videos", action="append", required=True,
                 help="glob of video files (repeatable; quote it; ** recurses)")
  p.add_argument("--every", type=int, default=1,
                 help="write only frames 1, 1+N, 1+2N, ... (default 1: all)")
  p.add_argument("--quality", type=int, default=DEFAULT_QUALITY,
                 help="ffmpeg JPEG -q:v, 1 (best) .. 31 (default %(default)s)")
  p.add_argument("--jobs", type=int, default=1, help="videos extracted in parallel")
  p.add_argument("--force", action="store_true", help="re-extract complete folders too")
  p.add_argument("--out_root", default=None,
                 help="write the frames of D/<name>.<ext> to OUT_ROOT/<name>/ (default: D/<name>/)")
  p.add_argument("--first", type=int, default=1, choices=(0, 1),
                 help="number of the first frame's file: 1 (ffmpeg's; MPI-INF-3DHP, Human3.6M) "
                      "or 0 (AIST++)")
  a = p.parse_args(argv)
  if a.every < 1 or not 1 <= a.quality <= 31 or a.jobs < 1:
    p.error("need --every >= 1, 1 <= --quality <= 31, --jobs >= 1")
  videos = expand(a.videos)
  if not videos:
    print(f"no video file matches {a.videos}", file=sys.stderr)
    return 1
  try:
    ffmpeg = find_ffmpeg()
  except ExtractionError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  counts = {"done": 0, "skipped": 0, "kept": 0, "failed": 0}

  def one(video):
    try:
      return video, *extract(video, a.every, a.quality, a.force, ffmpeg, a.out_root,
                             a.first), ""
    except ExtractionError as e:
      return video, "failed", 0, str(e)

  with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
    for video, status, n, err in pool.map(one, videos):
      counts[status] += 1
      if status == "failed":
        print(f"FAILED {video}: {err}", file=sys.stderr)
      elif status == "done":
        print(f"{video}: {n} frames -> {frame_folder(video, a.out_root)}/")
      elif status == "kept":
        print(f"{video}: {frame_folder(video, a.out_root)}/ exists without {MARKER}; left as is")
  print(f"{len(videos)} videos: {counts['done']} extracted, {counts['skipped']} already "
        f"complete, {counts['kept']} left as found, {counts['failed']} failed")
  return 1 if counts["failed"] else 0


if __name__ == "__main__":
  sys.exit(main())
