"""Native parsing readers of VIP, PaperDoll and Human3.6M (``parsing/*_native``) on dummy data.

Each config is built once from ``data/parsing/dummy_data/<config>`` (written by
``python -m data.parsing.dummy_data.make_dummy`` in the publisher's layout). Expected records
are derived here from the dummy files themselves (list files, folder listings, the .mat cells
read with h5py), using only the rules the builder documents: VIP keeps annotated frames of
rank 0, 8, 16, ... per video in train (frames ordered by number), PaperDoll makes one record per
label map whose photo exists, Human3.6M keeps 0-based frames 0, 25, 50, ... whose label is
MATLAB cell ``Feat{i+1}`` (stored column-major) and whose image is ``{i+1:06d}.jpg``, mapping
source part ids through the h36m_parsing label list (unlisted ids -> 0).
"""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")
h5py = pytest.importorskip("h5py")

from configs import humanbench as hb  # noqa: E402
from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DUMMY = os.path.join(REPO, "data", "parsing", "dummy_data")
CONFIGS = ("vip_native", "paperdoll_native", "h36m_native")
H36M_TRAIN = ("S1", "S5", "S6", "S7", "S8")
H36M_VAL = ("S9", "S11")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  folders = {name: build_mod.build(f"parsing/{name}", os.path.join(DUMMY, name), data_dir)
             for name in CONFIGS}
  return data_dir, folders


def records(data_dir, name, split="train"):
  src = tfds.data_source(f"parsing/{name}", data_dir=data_dir)[split]
  return {r["filename"].decode(): r for r in (src[i] for i in range(len(src)))}


def build_report(folder):
  with open(os.path.join(folder, "build_report.json")) as f:
    return json.load(f)


def metadata(data_dir, name):
  return tfds.builder(f"parsing/{name}", data_dir=data_dir).info.metadata


def check_record(r, image_path, filename, want_label):
  assert r["filename"].decode() == filename
  want_img = np.asarray(Image.open(image_path).convert("RGB"))
  np.testing.assert_array_equal(r["image"], want_img)  # Stored byte for byte: same decode.
  assert r["label"].dtype == np.uint8 and r["label"].shape == want_label.shape + (1,)
  np.testing.assert_array_equal(r["label"][..., 0], want_label)


def png(path):
  return np.asarray(Image.open(path))


# ---- VIP -----------------------------------------------------------------------------------------
def vip_ids(root, split):
  with open(os.path.join(root, "VIP_Fine", "lists", f"{split}_id.txt")) as f:
    return [ln.strip() for ln in f if ln.strip()]


def test_vip_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "vip_native")
  train_ids = vip_ids(root, "train")
  by_video = {}
  for id_ in train_ids:
    video, frame = id_.split("/")
    by_video.setdefault(video, []).append(int(frame))
  # 1 in 8 annotated frames per video, by rank in frame-number order.
  want_train = sorted(f"{v}/{n:012d}" for v, nums in by_video.items() for n in sorted(nums)[::8])
  assert len(want_train) == 3 and "videos1/000000000201" in want_train

  train = records(data_dir, "vip_native")
  assert sorted(train) == want_train
  val = records(data_dir, "vip_native", "val")  # Evaluation-side split: kept whole.
  assert sorted(val) == sorted(vip_ids(root, "val"))

  rep = build_report(folders["vip_native"])
  assert rep["frames"] == {"train": {"every": common.FRAME_EVERY, "videos": 2,
                                     "frames": len(train_ids), "kept_frames": 3,
                                     "records": len(train_ids), "kept_records": 3}}
  assert rep["skipped"] == {} and rep["splits"] == {"train": 3, "val": 2}

  id_ = "videos1/000000000201"
  check_record(train[id_], os.path.join(root, "VIP_Fine", "Images", f"{id_}.jpg"), id_,
               png(os.path.join(root, "VIP_Fine", "Annotations", "Category_ids", f"{id_}.png")))
  assert 255 in train[id_]["label"]  # Ignore pixels pass through.

  meta = metadata(data_dir, "vip_native")
  assert meta["num_classes"] == 20
  assert meta["flip_pairs"] == [list(p) for p in hb.LIP_FLIP_PAIRS]


def test_vip_native_val_optional_and_every_frame(tmp_path):
  root = tmp_path / "vip"
  shutil.copytree(os.path.join(DUMMY, "vip_native"), root)
  os.remove(root / "VIP_Fine" / "lists" / "val_id.txt")
  folder = build_mod.build("parsing/vip_native", str(root), str(tmp_path / "d"), frame_every=1)
  rep = build_report(folder)
  assert rep["splits"] == {"train": 13}
  assert rep["frames"]["train"]["kept_frames"] == 13


def test_vip_native_missing_images_folder(tmp_path):
  root = tmp_path / "vip"
  shutil.copytree(os.path.join(DUMMY, "vip_native"), root)
  shutil.rmtree(root / "VIP_Fine" / "Images")
  with pytest.raises(common.MissingInputError, match="VIP_Fine/Images"):
    build_mod.build("parsing/vip_native", str(root), str(tmp_path / "d"))


# ---- PaperDoll -----------------------------------------------------------------------------------
def test_paperdoll_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "paperdoll_native")
  labels = sorted(n[:-4] for n in os.listdir(os.path.join(root, "TrainVal_parsing_annotations")))
  photos = {n[:-4] for n in os.listdir(os.path.join(root, "images"))}
  recs = records(data_dir, "paperdoll_native")
  # One record per label map whose photo exists; photos without a map are not records.
  assert sorted(recs) == [i for i in labels if i in photos] == ["1000001", "1000002", "1000010"]
  rep = build_report(folders["paperdoll_native"])
  assert rep["skipped"] == {"missing_image": 1}
  assert rep["messages"][0].endswith("images/1000003.jpg: missing_image")
  assert rep["frames"] == {}  # Not video-derived.

  check_record(recs["1000010"], os.path.join(root, "images", "1000010.jpg"), "1000010",
               png(os.path.join(root, "TrainVal_parsing_annotations", "1000010.png")))
  meta = metadata(data_dir, "paperdoll_native")
  assert meta["num_classes"] == 20 and meta["label_list"] is None


# ---- Human3.6M -----------------------------------------------------------------------------------
def h36m_cells(path):
  """The label maps of a PartLabels file, [H, W] each (MATLAB stores them column-major)."""
  with h5py.File(path, "r") as f:
    return [np.asarray(f[ref][()]).T for ref in f["Feat"][:, 0]]


def h36m_remap(cell):
  """Source part ids -> h36m_parsing output ids; ids not in the label list -> 0."""
  out = np.zeros(cell.shape, np.uint8)
  for i, src in enumerate(hb.H36M_LABEL_LIST):
    out[cell == src] = i
  return out


def h36m_expected(root, subjects):
  """{image path: (label path, 0-based frame)} of the frames 0, 25, ... present, in range."""
  out = {}
  for s in subjects:
    parts = os.path.join(root, s, "MySegmentsMat", "PartLabels")
    for name in sorted(os.listdir(parts)):
      video = name[:-len(".mat")]
      cells = h36m_cells(os.path.join(parts, name))
      for i in range(0, len(cells), 25):
        image = f"{s}/Videos/{video}/{i + 1:06d}.jpg"
        if os.path.exists(os.path.join(root, image)) and cells[i].max() <= 58:
          out[image] = (os.path.join(parts, name), i)
  return out


def test_h36m_native(built):
  data_dir, folders = built
  root = os.path.join(DUMMY, "h36m_native")
  for split, subjects in (("train", H36M_TRAIN), ("val", H36M_VAL)):
    want = h36m_expected(root, subjects)
    recs = records(data_dir, "h36m_native", split)
    assert sorted(recs) == sorted(want), split
    for image, (mat, i) in want.items():
      np.testing.assert_array_equal(recs[image]["label"][..., 0], h36m_remap(h36m_cells(mat)[i]))

  rep = build_report(folders["h36m_native"])
  assert rep["splits"] == {"train": 7, "val": 3}
  # S1 Walking: label 25 is past the last of its 20 frames; S5 Eating was extracted with
  # --every 50 (frame 25 missing); S6's map has part id 59.
  assert rep["dropped"] == {"frames_past_video_end": 1, "frame_not_extracted": 1}
  assert rep["skipped"] == {"label_out_of_range": 1}
  assert "S6/MySegmentsMat/PartLabels/Posing.60457274.mat" in rep["messages"][0]
  assert "Feat{1}" in rep["messages"][0] and "[59]" in rep["messages"][0]
  # 2 Hz is the reader's frame_step (both splits); the 1-in-8 video sampling is not applied.
  assert rep["frames"] == {} and rep["options"]["frame_every"] is None

  # One record field by field: 0-based frame 25 of S1 'Directions 1.54138969' (file 000026).
  image = "S1/Videos/Directions 1.54138969/000026.jpg"
  mat = os.path.join(root, "S1", "MySegmentsMat", "PartLabels", "Directions 1.54138969.mat")
  cell = h36m_cells(mat)[25]
  want = h36m_remap(cell)
  # Sources 1 -> 1, 46 -> 20, 58 -> 24 and 4 (unlisted) -> 0.
  assert set(np.unique(cell).tolist()) <= {0, 1, 4, 46, 58}
  assert all((want[cell == s] == o).all() for s, o in ((1, 1), (46, 20), (58, 24), (4, 0)))
  check_record(records(data_dir, "h36m_native")[image], os.path.join(root, image), image, want)

  # Output classes are the h36m_parsing config's.
  meta = metadata(data_dir, "h36m_native")
  assert meta["num_classes"] == 25
  assert meta["label_list"] == list(hb.H36M_LABEL_LIST)
  assert meta["flip_pairs"] == [list(p) for p in hb.H36M_PARSING_FLIP_PAIRS]


def test_h36m_native_strict_names_file_and_cell(tmp_path):
  with pytest.raises(common.BadInputError,
                     match=r"Posing\.60457274\.mat: label_out_of_range .*Feat\{1\}"):
    build_mod.build("parsing/h36m_native", os.path.join(DUMMY, "h36m_native"),
                    str(tmp_path / "d"), strict=True)
  assert not os.path.exists(tmp_path / "d" / "parsing" / "h36m_native")


def test_h36m_native_frames_not_extracted(tmp_path):
  root = tmp_path / "h36m"
  shutil.copytree(os.path.join(DUMMY, "h36m_native"), root)
  shutil.rmtree(root / "S9" / "Videos" / "Directions.54138969")
  with pytest.raises(common.MissingInputError) as e:
    build_mod.build("parsing/h36m_native", str(root), str(tmp_path / "d"))
  msg = str(e.value)
  assert "S9/Videos/Directions.54138969/<frame:06d>.jpg" in msg
  assert f"python -m data.tools.extract_frames --videos '{root}/S*/Videos/*.mp4'" in msg
  assert not os.path.exists(tmp_path / "d" / "parsing" / "h36m_native")


def test_h36m_native_missing_subject(tmp_path):
  root = tmp_path / "h36m"
  shutil.copytree(os.path.join(DUMMY, "h36m_native"), root)
  shutil.rmtree(root / "S11")
  with pytest.raises(common.MissingInputError, match="S11/MySegmentsMat/PartLabels"):
    build_mod.build("parsing/h36m_native", str(root), str(tmp_path / "d"))


def test_h36m_native_mat_without_feat(tmp_path):
  """A PartLabels file without the cell 'Feat' is skipped, naming the file and the field."""
  root = tmp_path / "h36m"
  shutil.copytree(os.path.join(DUMMY, "h36m_native"), root)
  path = root / "S7" / "MySegmentsMat" / "PartLabels" / "Posing.60457274.mat"
  os.remove(path)
  with h5py.File(path, "w") as f:
    f.create_dataset("Masks", data=np.zeros((1, 1)))
  rep = build_report(build_mod.build("parsing/h36m_native", str(root), str(tmp_path / "d")))
  assert rep["skipped"] == {"corrupt_annotation": 1, "label_out_of_range": 1}
  assert rep["splits"] == {"train": 6, "val": 3}
  msg = next(m for m in rep["messages"] if "corrupt_annotation" in m)
  assert msg.startswith(f"{path}: corrupt_annotation (no cell array 'Feat'")
