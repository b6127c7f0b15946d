"""Writes the dummy MPI-INF-3DHP and Human3.6M releases in their publishers' layouts, frames
already extracted (as data/tools/extract_frames.py writes them: ``<video>/%06d.jpg``, 1-based).
Run from the repo root: ``python -m data.pose.dummy_data.make_dummy_mocap`` (needs scipy and,
for Human3.6M's .cdf files, cdflib).

MPI-INF-3DHP (``mpi_inf_3dhp_native/``; layout per the dataset's README.txt and util/*.m, see
data/pose/mocap.py): ``S<1..8>/Seq<1,2>/annot.mat`` with ``annot2``/``annot3``/``univ_annot3``
(14 x 1 cells of [rows, 28 * 2 / 28 * 3]), ``cameras`` [1, 14] and ``frames`` [rows, 1]; frames
``S*/Seq*/imageSequence/video_<cam>/<n:06d>.jpg`` for the 8 'vnect' cameras (the .avi videos
themselves are left out). One annotated row and one frame per camera, except S1/Seq1 (10 rows):
video_0 all 10 frames (row 5 has every joint outside the image), video_1 frames 1-9 (the video
one frame short), video_2 extracted with ``--every 4`` (frames 1, 5, 9; marker file),
video_4..8 with ``--every 16`` (frame 1 only). S2/Seq1 lists its cells in reverse camera order
(``cameras`` = 13..0). Joint 7 (head_top) of S1/Seq1 camera 0 row 0 lies left of the image.

Human3.6M (``h36m_native/``; layout per mmpose's preprocess_h36m.py / h36m-fetch, see
data/pose/mocap.py): ``S<k>/MyPoseFeatures/D2_Positions/<Action>.<camera>.cdf`` (zVariable
``Pose`` [1, frames, 64]) and frames ``S<k>/Videos/<Action>.<camera>/<n:06d>.jpg``:
S1 'Directions 1' camera 54138969 (10 frames), 60457274 (3 rows, 2 frames), 'Walking' 55011271
(2); S5-S8 'Posing' 58860488 (1); S9 'Sitting 1' 54138969 (7); S11 'Directions' 54138969 (1 row,
no frames: the corrupt video) and 'Eating' 55011271 (1). Joint 13 (left wrist, source 19) of S1
'Directions 1'.54138969 frame 0 lies below the image.
"""
import json
import os

import numpy as np
import scipy.io

from data import dummy
from data.pose import mocap
from data.tools import extract_frames

HERE = os.path.dirname(os.path.abspath(__file__))
H, W = 24, 32  # frame size (rows, columns)


def joints(rng, n_rows, n_joints):
  """[rows, joints, 2] pixel coordinates inside a W x H frame."""
  xy = np.stack([rng.uniform(1, W - 2, (n_rows, n_joints)),
                 rng.uniform(1, H - 2, (n_rows, n_joints))], -1)
  return xy.round(1)


def write_frames(folder, numbers, seed, every=None):
  for n in numbers:
    dummy.write_image(os.path.join(folder, extract_frames.frame_name(n)), seed + n, H, W)
  if every is not None:   # as extract_frames.py leaves it
    with open(os.path.join(folder, extract_frames.MARKER), "w") as f:
      json.dump({"video": os.path.basename(folder) + ".avi", "every": every, "quality": 2,
                 "frames": len(numbers), "numbering": "1-based, ffmpeg decoding order"}, f)


def cells(arrays):
  out = np.empty((len(arrays), 1), dtype=object)
  for i, a in enumerate(arrays):
    out[i, 0] = a
  return out


def mpi_inf_3dhp():
  root = dummy.fresh(os.path.join(HERE, "mpi_inf_3dhp_native"))
  n_src = len(mocap.MPI_INF_3DHP_ALL_JOINTS)
  for s, q in mocap.MPI_INF_3DHP_SEQUENCES["train"]:
    rng = np.random.default_rng(100 * s + q)
    rows = 10 if (s, q) == (1, 1) else 1
    per_cam = {cam: joints(rng, rows, n_src) for cam in range(14)}
    if (s, q) == (1, 1):
      per_cam[0][0, 7, 0] = -3.0            # head_top left of the image
      per_cam[0][5, :, 1] = H + 5.0         # every joint below the image
    order = list(range(13, -1, -1)) if (s, q) == (2, 1) else list(range(14))
    seq = os.path.join(root, f"S{s}", f"Seq{q}")
    os.makedirs(seq, exist_ok=True)
    # annot3 / univ_annot3 (3-D, unused by the reader) are zeros here: the files stay small.
    scipy.io.savemat(os.path.join(seq, "annot.mat"), {
        "annot2": cells([per_cam[c].reshape(rows, 2 * n_src) for c in order]),
        "annot3": cells([np.zeros((rows, 3 * n_src)) for _ in order]),
        "univ_annot3": cells([np.zeros((rows, 3 * n_src)) for _ in order]),
        "cameras": np.asarray([order], np.float64),
        "frames": np.arange(rows, dtype=np.float64)[:, None],
    }, do_compression=True)
    for cam in mocap.MPI_INF_3DHP_CAMERAS:
      folder = os.path.join(seq, "imageSequence", f"video_{cam}")
      seed = 1000 * s + 100 * q + 10 * cam
      if (s, q) != (1, 1):
        write_frames(folder, [1], seed)
      elif cam == 0:
        write_frames(folder, range(1, 11), seed)
      elif cam == 1:
        write_frames(folder, range(1, 10), seed)
      elif cam == 2:
        write_frames(folder, [1, 5, 9], seed, every=4)
      else:
        write_frames(folder, [1], seed, every=16)


def write_cdf(path, pose):
  """A CDF file with the zVariable ``Pose`` [1, frames, 64] (float64), as D2_Positions hold."""
  from cdflib.cdfwrite import CDF
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if os.path.exists(path):
    os.remove(path)
  data = pose.reshape(1, pose.shape[0], -1)
  c = CDF(path, cdf_spec={"Compressed": False})
  c.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_DOUBLE, "Num_Elements": 1,
               "Rec_Vary": True, "Var_Type": "zVariable", "Dim_Sizes": list(data.shape[1:])},
              var_data=data)
  c.close()


H36M_VIDEOS = (  # (subject, action, camera, annotated rows, extracted frame numbers)
    (1, "Directions 1", "54138969", 10, range(1, 11)),
    (1, "Directions 1", "60457274", 3, range(1, 3)),
    (1, "Walking", "55011271", 2, range(1, 3)),
    (5, "Posing", "58860488", 1, [1]),
    (6, "Posing", "58860488", 1, [1]),
    (7, "Posing", "58860488", 1, [1]),
    (8, "Posing", "58860488", 1, [1]),
    (9, "Sitting 1", "54138969", 7, range(1, 8)),
    (11, "Directions", "54138969", 1, None),     # the corrupt video: never extracted
    (11, "Eating", "55011271", 1, [1]),
)


def h36m():
  root = dummy.fresh(os.path.join(HERE, "h36m_native"))
  for i, (k, action, camera, rows, frames) in enumerate(H36M_VIDEOS):
    rng = np.random.default_rng(500 + i)
    pose = joints(rng, rows, mocap.H36M_NUM_SOURCE_JOINTS)
    if (k, action, camera) == (1, "Directions 1", "54138969"):
      pose[0, 19, 1] = H + 2.0              # left wrist below the image
    write_cdf(os.path.join(root, f"S{k}", "MyPoseFeatures", "D2_Positions",
                           f"{action}.{camera}.cdf"), pose)
    if frames is not None:
      write_frames(os.path.join(root, f"S{k}", "Videos", f"{action}.{camera}"), frames,
                   2000 + 100 * i)


if __name__ == "__main__":
  mpi_inf_3dhp()
  h36m()
  print("wrote", os.path.join(HERE, "mpi_inf_3dhp_native"), "and",
        os.path.join(HERE, "h36m_native"))
