"""Person re-identification builder: Market-1501-style folders, MSMT17 lists, SenseReID, id lists,
and LaST, PRCC, DG-Market and MARS in their publishers' own folder layouts.

Records (every split): ``image`` (encoded RGB), ``person_id`` int64, ``camera_id`` int32,
``role`` text ('train' | 'query' | 'gallery'), ``filename`` text (path relative to manual_dir).
Train ids are re-packed to 0..N-1 (sorted by source id; for multi-list sources by (list, id),
i.e. ids offset per list); query/gallery keep the source ids so that the evaluator can match
them. ``camera_id`` is the camera number as written in the source (Market ``c3`` -> 3), -1 where
the source has none (LaST, which has none, numbers its evaluation images one camera each; PRCC's
letters A/B/C are 0/1/2). Standard protocol: junk (id -1) is dropped everywhere, distractors
(id 0) are kept in the gallery only.

MARS (``mars``) is a video set read as images: every frame of ``bbox_train`` is one train record
(no frame sampling; MARS's evaluation is tracklet-to-tracklet, which image records cannot
express, so the config is train only).

Merged configs (``reid_4sets_native``, ``last_prcc_dgmarket_native``,
``sensereid_train_native``) read the train splits of
several of the readers above side by side, each source from its publisher's folder under
``manual_dir`` (the preparation root; folder names tried in order, exactly, then ignoring case),
as ``detection/det_5set`` does. Train split only. Each source's ids are re-packed to 0..n-1 as in
its own config and offset by the ids of the sources before it, so the ids are contiguous
0..N-1 in source order; ``camera_id`` stays the source's; ``filename`` is the path relative to
``manual_dir``, i.e. prefixed by the source's folder. ``metadata.json``: ``num_train_ids`` (what
training reads as ``num_classes``), ``num_classes`` (the same number) and ``sources`` (per source,
in order: ``name``, ``folder``, ``id_start``, ``id_stop`` (exclusive), ``num_ids``, ``num_images``).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from data import common

# PID_cCAM... (Market-1501 0002_c1s1_000451_03.jpg, DukeMTMC 0001_c2_f0046182.jpg,
# CUHK03-NP 0001_c1_1.png).
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
# DG-Net's generator (github.com/NVlabs/DG-Net, visual_tools/test_folder.py) names an image
# '<structure label>_<appearance label>_gan<Market-1501 name of the appearance image>.jpg'; the
# identity is the appearance image's (DG-Net: the appearance code carries the identity), i.e.
# the Market-1501 PID after 'gan'.
_DG_GAN_NAME = re.compile(r"^\d+_\d+_gan(\d+)_c\d+")
_LEADING_ID = re.compile(r"^(\d+)_")
# MARS frame names '<pid>C<cam>T<tracklet>F<frame>.jpg', e.g. 0065C1T0002F016.jpg: 4-digit PID
# ('0000' distractors, '00-1' junk, in bbox_test), camera 1-6, tracklet number (per PID),
# frame number in the tracklet (as the publisher's info/train_name.txt lists them and public
# loaders parse them, e.g. torchreid's video/mars.py: PID = name[:4], camera = name[5]).
_MARS_NAME = re.compile(r"^(\d+|00-1)C(\d+)T(\d+)F(\d+)")
# PRCC cameras: the publisher's letters, numbered as the public loaders do (A 0, B 1, C 2).
_PRCC_CAMERAS = {"A": 0, "B": 1, "C": 2}
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass
class ReidConfig(tfds.core.BuilderConfig):
  """``layout``: 'market' | 'msmt' | 'sensereid' | 'lists' | 'last' | 'prcc' | 'dgmarket' |
  'mars' | 'merged'; ``subdir``: folder under manual_dir that holds the Market-style folders
  (CUHK03-NP 'detected' / 'labeled'); ``sources`` (layout 'merged'): the :class:`ReidSource` read side by
  side, in id order."""
  layout: str = "market"
  subdir: str = ""
  msmt_train_includes_val: bool = True
  sources: tuple = ()


@dataclasses.dataclass(frozen=True)
class ReidSource:
  """One source of a merged config: its train split read with the single-source reader of
  ``layout`` from the first of ``folders`` found under manual_dir (``subdir`` as
  :class:`ReidConfig`'s); ``download`` names where to get it."""
  name: str
  folders: tuple
  layout: str
  subdir: str = ""
  download: str = ""


# The authors' reid_4sets row (B-yaml task 20: market1501, dukemtmc-reid, cuhk03_1, MSMT17_V1
# lists, in this order): 751 + 702 + 767 + 1041 = 3261 ids.
REID_4SETS_SOURCES = (
    ReidSource("market1501", ("Market-1501-v15.09.15", "Market-1501", "market1501"), "market",
               download="https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html "
                        "(Market-1501-v15.09.15.zip)"),
    ReidSource("dukemtmc", ("DukeMTMC-reID", "dukemtmc-reid", "DukeMTMC"), "market",
               download="https://github.com/layumi/DukeMTMC-reID_evaluation (DukeMTMC-reID.zip; "
                        "withdrawn by its publisher)"),
    ReidSource("cuhk03_np_labeled", ("cuhk03-np", "cuhk03_np", "CUHK03-NP"), "market",
               subdir="labeled",
               download="https://github.com/zhunzhong07/person-re-ranking/tree/master/CUHK03-NP "
                        "(cuhk03-np.zip: labeled/ and detected/)"),
    ReidSource("msmt17", ("MSMT17_V1", "MSMT17_V2", "MSMT17"), "msmt",
               download="https://www.pkuvmc.com/dataset.html (MSMT17, by request)"),
)
# The authors' reid_LaST_PRCC_DGMarket row (B-yaml task 21: DG-Market, PRCC train, LaST lists,
# in this order; out_features 5901 "# 751+5150": DG-Market's 751 Market-1501 ids, then PRCC's 150
# and LaST's 5000 train ids).
LAST_PRCC_DGMARKET_SOURCES = (
    ReidSource("dg_market", ("DG-Market", "DGMarket", "dg_market"), "dgmarket",
               download="https://github.com/NVlabs/DG-Net#dg-market (DG-Market.zip)"),
    ReidSource("prcc", ("prcc", "PRCC"), "prcc",
               download="http://www.isee-ai.cn/~yangqize/clothing.html (PRCC, Yang et al., "
                        "TPAMI 2021; the folder holding rgb/)"),
    ReidSource("last", ("last", "LaST"), "last", download="https://github.com/shuxjweb/last"),
)
# MARS (Zheng et al., ECCV 2016) as distributed: bbox_train/ and bbox_test/ (MARS-v160809);
# info/ (tracklet tables, query index) comes separately from the MARS-evaluation repository and
# is not read (train only).
MARS_SOURCE = ReidSource(
    "mars", ("MARS", "mars", "MARS-v160809"), "mars",
    download="http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html (MARS-v160809: "
             "bbox_train, bbox_test; info/ from github.com/liangzheng06/MARS-evaluation)")
# The authors' SenseReID finetuning set (REFERENCE §6.3): the four sets of reid_4sets (read as
# reid_4sets_native reads them) then MARS: 751 + 702 + 767 + 1041 + 625 = 3886 ids.
SENSEREID_TRAIN_SOURCES = REID_4SETS_SOURCES + (MARS_SOURCE,)
# MSMT17_V2 (faces masked) names its image folders mask_train_v2 / mask_test_v2 next to the same
# list files (as third-party loaders read it; not confirmed from the publisher's own readme).
_MSMT_TRAIN_DIRS = ("train", "mask_train_v2")


@dataclasses.dataclass(frozen=True)
class _Item:
  role: str
  relpath: str      # relative to manual_dir
  pid: int          # source id (lists: (list index, id) packed later)
  camera: int
  group: int = 0    # list index for the 'lists' layout


class Reid(common.HumanBenchBuilder):
  """Person ReID datasets (configs share the record schema)."""
  BUILDER_CONFIGS = [
      ReidConfig(name="market1501", layout="market", description="Market-1501."),
      ReidConfig(name="dukemtmc", layout="market", description="DukeMTMC-reID."),
      ReidConfig(name="cuhk03_np_detected", layout="market", subdir="detected",
                 description="CUHK03 new protocol (767/700), detected boxes."),
      ReidConfig(name="cuhk03_np_labeled", layout="market", subdir="labeled",
                 description="CUHK03 new protocol (767/700), labelled boxes."),
      ReidConfig(name="msmt17", layout="msmt",
                 description="MSMT17 (train = list_train + list_val)."),
      ReidConfig(name="sensereid", layout="sensereid",
                 description="SenseReID (evaluation only: query and gallery)."),
      ReidConfig(name="luperson_nl", layout="lists",
                 description="LUPerson-NL in the authors' fileList/metaList format (filter "
                             "identities first with data/tools/identity_filter.py)."),
      ReidConfig(name="lists", layout="lists",
                 description="Any ReID training set in the authors' fileList/metaList format."),
      ReidConfig(name="last", layout="last",
                 description="LaST (github.com/shuxjweb/last) as distributed: train/, val/, "
                             "test/ folders; query/gallery = test, val_query/val_gallery = val."),
      ReidConfig(name="prcc", layout="prcc",
                 description="PRCC as distributed (rgb/ folder); cross-clothes protocol: query "
                             "= test/C, gallery = test/A; query_same_clothes = test/B."),
      ReidConfig(name="dg_market", layout="dgmarket",
                 description="DG-Market (github.com/NVlabs/DG-Net#dg-market) as distributed: "
                             "one folder of generated images, train only."),
      ReidConfig(name="mars", layout="mars",
                 description="MARS (video ReID) as distributed: every frame of bbox_train as "
                             "one train image (625 ids); train only."),
      # MSMT17 without list_val.txt: the authors' 67,070 images (REFERENCE §4.7) are Market
      # 12,936 + Duke 16,522 + CUHK03-NP labelled 7,368 + MSMT17 list_train 30,248 (= 67,074);
      # with list_val (2,373 more images of the same 1041 ids) it would be 69,447.
      ReidConfig(name="reid_4sets_native", layout="merged", sources=REID_4SETS_SOURCES,
                 msmt_train_includes_val=False,
                 description="The authors' reid_4sets: Market-1501, DukeMTMC-reID, CUHK03-NP "
                             "(labelled) and MSMT17 train splits side by side, ids offset per "
                             "source (3261 ids)."),
      ReidConfig(name="last_prcc_dgmarket_native", layout="merged",
                 sources=LAST_PRCC_DGMARKET_SOURCES,
                 description="The authors' reid_LaST_PRCC_DGMarket: DG-Market, PRCC train and "
                             "LaST train side by side, ids offset per source (5901 ids)."),
      # MSMT17 as in reid_4sets_native (list_train only).
      ReidConfig(name="sensereid_train_native", layout="merged",
                 sources=SENSEREID_TRAIN_SOURCES, msmt_train_includes_val=False,
                 description="The authors' SenseReID finetuning set: the reid_4sets_native "
                             "sources, then MARS's bbox_train frames, ids offset per source "
                             "(3886 ids)."),
  ]

  def _features(self):
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "person_id": tfds.features.Scalar(np.int64, doc="train: 0..N-1; query/gallery: source id"),
        "camera_id": tfds.features.Scalar(np.int32, doc="source camera number, -1 if unknown"),
        "role": tfds.features.Text(),
        "filename": tfds.features.Text(),
    })

  @classmethod
  def layout(cls, config):
    if config.layout == "merged":
      out = {}
      for src in config.sources:
        for rel, what in _train_layout(src, config.msmt_train_includes_val).items():
          out[f"{src.folders[0]}/{rel}"] = f"{src.name}: {what}"
      return out
    s = config.subdir + "/" if config.subdir else ""
    if config.layout == "market":
      return {
          f"{s}bounding_box_train/PID_cCAM*.jpg": "train images (PID -1 junk, 0 distractor)",
          f"{s}bounding_box_test/PID_cCAM*.jpg": "gallery images",
          f"{s}query/PID_cCAM*.jpg": "query images",
      }
    if config.layout == "msmt":
      return {
          "train/": "train images", "test/": "query and gallery images",
          "list_train.txt": "'<path under train/> <pid>' per line",
          "list_val.txt": "same format, merged into train",
          "list_query.txt": "'<path under test/> <pid>' per line",
          "list_gallery.txt": "same format",
      }
    if config.layout == "sensereid":
      return {
          "test_probe/PID_CAM.jpg": "query images (or probe.txt)",
          "test_gallery/PID_CAM.jpg": "gallery images (or gallery.txt)",
          "probe.txt, gallery.txt": "alternative: '<relpath> <pid> <camid>' per line",
      }
    if config.layout == "last":
      return {
          "train/<pid>/<pid>_*.jpg": "train images (PID = first '_' field of the name)",
          "test/query/<pid>_*.jpg": "query images (flat folder)",
          "test/gallery/<pid>/<pid>_*.jpg": "gallery images",
          "val/query/<pid>_*.jpg": "optional: val_query split",
          "val/gallery/<pid>/<pid>_*.jpg": "optional: val_gallery split",
      }
    if config.layout == "prcc":
      return {
          "rgb/train/<pid>/<A|B|C>_*.jpg": "train images (camera = the name's letter)",
          "rgb/test/C/<pid>/*.jpg": "query (cross-clothes protocol)",
          "rgb/test/A/<pid>/*.jpg": "gallery",
          "rgb/test/B/<pid>/*.jpg": "query_same_clothes (same-clothes protocol)",
          "rgb/val/": "not read (held-out images of the train identities)",
      }
    if config.layout == "dgmarket":
      return {
          "<s>_<id>_gan<Market-1501 name>.jpg": "generated images, any depth (PID = the Market "
                                                "PID after 'gan')",
          "<pid>_*.jpg": "also accepted (PID = first '_' field)",
      }
    if config.layout == "mars":
      return {
          "bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg": "train frames, one record each",
          "bbox_test/, info/": "not read (tracklet-level evaluation)",
      }
    return {
        "fileList.txt": "one image path per line, relative to the folder holding the list",
        "metaList.txt": "a header line, then one integer pid per line (same order)",
        "<name>/fileList.txt + <name>/metaList.txt": "alternative: several lists, one per "
                                                     "subfolder, ids offset per list",
    }

  def _required(self, root):
    c = self.builder_config
    if c.layout == "merged":
      out = []
      for src in c.sources:
        folder = common.find_folder(root, src.folders)
        src_root = os.path.join(root, folder) if folder else None
        out += [f"{folder or src.folders[0]}/{p}" for p in self._source_required(src, src_root)]
      return out
    s = c.subdir + "/" if c.subdir else ""
    if c.layout == "market":
      return [f"{s}bounding_box_train", f"{s}bounding_box_test", f"{s}query"]
    if c.layout == "msmt":
      return ["train", "test", "list_train.txt", "list_val.txt", "list_query.txt",
              "list_gallery.txt"]
    if c.layout == "sensereid":
      if os.path.exists(os.path.join(root, "probe.txt")):
        return ["probe.txt", "gallery.txt"]
      return ["test_probe", "test_gallery"]
    if c.layout == "last":
      return ["train", "test/query", "test/gallery"]
    if c.layout == "prcc":
      return ["rgb/train", "rgb/test/A", "rgb/test/B", "rgb/test/C"]
    if c.layout == "dgmarket":
      return [] if _image_files(root, None) else ["<s>_<id>_gan<Market-1501 name>.jpg (no image found)"]
    if c.layout == "mars":
      return ["bbox_train"]
    if _list_dirs(root):
      return []
    return ["fileList.txt", "metaList.txt"]

  def _source_required(self, src: ReidSource, src_root: str | None) -> list[str]:
    """Paths (relative to the source's folder) its train split needs; ``src_root`` None when
    the folder itself is missing."""
    if src.layout == "market":
      return [f"{src.subdir}/bounding_box_train" if src.subdir else "bounding_box_train"]
    if src.layout == "msmt":
      lists = ["list_train.txt"] + (["list_val.txt"] if self.builder_config.msmt_train_includes_val
                                    else [])
      return lists + [_msmt_train_dir(src_root)]
    if src.layout == "prcc":
      return ["rgb/train"]
    if src.layout == "last":
      return ["train"]
    if src.layout == "dgmarket":
      return ([] if src_root and _image_files(src_root, None)
              else ["<s>_<id>_gan<Market-1501 name>.jpg (no image found)"])
    if src.layout == "mars":
      return ["bbox_train"]
    raise ValueError(f"reid source {src.name}: layout {src.layout!r} has no train reader")

  def check_layout(self, root: str) -> None:
    """Merged configs: one line per source that is missing (folder names tried, download site)
    or incomplete (the paths it lacks), then the whole expected layout."""
    c = self.builder_config
    if c.layout != "merged":
      return super().check_layout(root)
    problems = []
    for src in c.sources:
      folder = common.find_folder(root, src.folders)
      tried = ", ".join(f"'{f}'" for f in src.folders)
      if folder is None:
        need = ", ".join(f"{src.folders[0]}/{p}" for p in self._source_required(src, None))
        problems.append(f"source {src.name}: no folder {tried} (tried in this order, exactly "
                        f"then ignoring case); expected {need}; download: {src.download}")
        continue
      src_root = os.path.join(root, folder)
      missing = [f"{folder}/{p}" for p in self._source_required(src, src_root)
                 if not os.path.exists(os.path.join(src_root, p))]
      if missing:
        problems.append(f"source {src.name}: folder {folder}/ lacks {', '.join(missing)} "
                        f"(folder names tried: {tried}); download: {src.download}")
    if problems:
      raise common.MissingInputError(common.missing_message(
          self.name, c, root, problems, type(self).layout(c)))

  def _static_metadata(self):
    if self.builder_config.layout == "merged":
      return {"layout": "merged",
              "source_order": [src.name for src in self.builder_config.sources],
              "person_id": "train ids re-packed per source (sorted source ids) and offset by the "
                           "ids of the sources before it: contiguous 0..N-1 in source order "
                           "(ranges in 'sources')",
              "camera_id": "each source's own: the camera number (Market-style, MSMT17, MARS "
                           "'C<cam>'), the PRCC letter A/B/C as 0/1/2, -1 for LaST and "
                           "DG-Market"}
    camera = {"last": "LaST has no cameras: query/gallery image i gets camera i (gallery after "
                      "the query), so no true match is removed as same-camera; train -1",
              "prcc": "the PRCC camera letter: A 0, B 1, C 2",
              "dgmarket": "-1 (a generated image mixes two source images)",
              "mars": "the camera number after 'C' in the frame name (1-6)"}
    out = {"layout": self.builder_config.layout,
           "person_id": "train ids re-packed to 0..N-1; query/gallery keep source ids",
           "camera_id": camera.get(self.builder_config.layout,
                                   "source camera number; -1 if the source has none")}
    if self.builder_config.layout == "mars":
      out["frames"] = ("every frame of every bbox_train tracklet is one record (no frame "
                       "sampling); the tracklet is the filename's 'T<tracklet>' field")
    return out

  # ---- parsing the sources --------------------------------------------------------------
  def _items(self, root: str) -> dict[str, list[_Item]]:
    c = self.builder_config
    if c.layout == "market":
      s = c.subdir + "/" if c.subdir else ""
      return {"train": self._market_dir(root, f"{s}bounding_box_train", "train"),
              "query": self._market_dir(root, f"{s}query", "query"),
              "gallery": self._market_dir(root, f"{s}bounding_box_test", "gallery")}
    if c.layout == "msmt":
      train = self._msmt_list(root, "list_train.txt", "train", "train")
      if c.msmt_train_includes_val:
        train += self._msmt_list(root, "list_val.txt", "train", "train")
      return {"train": train,
              "query": self._msmt_list(root, "list_query.txt", "test", "query"),
              "gallery": self._msmt_list(root, "list_gallery.txt", "test", "gallery")}
    if c.layout == "sensereid":
      if os.path.exists(os.path.join(root, "probe.txt")):
        return {"query": self._eval_list(root, "probe.txt", "query"),
                "gallery": self._eval_list(root, "gallery.txt", "gallery")}
      return {"query": self._sense_dir(root, "test_probe", "query"),
              "gallery": self._sense_dir(root, "test_gallery", "gallery")}
    if c.layout == "last":
      splits = {"train": self._last_dir(root, "train", "train"),
                **self._last_eval(root, "test", "")}
      if os.path.isdir(os.path.join(root, "val", "query")):
        splits.update(self._last_eval(root, "val", "val_"))
      return splits
    if c.layout == "prcc":
      return {"train": self._prcc_train(root),
              "query": self._prcc_test(root, "C", "query"),
              "gallery": self._prcc_test(root, "A", "gallery"),
              "query_same_clothes": self._prcc_test(root, "B", "query")}
    if c.layout == "dgmarket":
      return {"train": self._dg_market(root)}
    if c.layout == "mars":
      return {"train": self._mars_dir(root, "bbox_train", "train")}
    dirs = _list_dirs(root) or [""]
    train = []
    for g, d in enumerate(dirs):
      train += self._id_list(root, d, g)
    return {"train": train}

  def _keep(self, role: str, pid: int, layout: str | None = None) -> bool:
    """Market-1501 protocol: junk (-1) everywhere out, distractors (0) only in the gallery.

    Id 0 means distractor only in Market-style names (``layout``, default the config's);
    MSMT17 and the lists use 0 as a person.
    """
    if pid == -1:
      self.report.drop(f"junk_{role}")
      return False
    if pid == 0 and role != "gallery" and (layout or self.builder_config.layout) == "market":
      self.report.drop(f"distractor_{role}")
      return False
    return True

  def _market_dir(self, root, rel, role):
    items = []
    for name in sorted(os.listdir(os.path.join(root, rel))):
      if not name.lower().endswith(_IMAGE_EXT):
        continue
      m = _MARKET_NAME.match(name)
      if m is None:
        self.report.bad("unparsable_name", os.path.join(root, rel, name),
                        "expected PID_cCAM...")
        continue
      pid, cam = int(m.group(1)), int(m.group(2))
      if self._keep(role, pid, "market"):
        items.append(_Item(role, f"{rel}/{name}", pid, cam))
    return items

  def _msmt_list(self, root, list_name, image_dir, role):
    items = []
    for i, line in enumerate(common.read_lines(os.path.join(root, list_name))):
      parts = line.split()
      try:
        rel, pid = parts[0], int(parts[1])
        # 0000_000_01_0303morning_0015_0.jpg: the third field is the camera.
        cam = int(os.path.basename(rel).split("_")[2])
      except (IndexError, ValueError):
        self.report.bad("unparsable_line", os.path.join(root, list_name), f"line {i + 1}: {line}")
        continue
      if self._keep(role, pid):
        items.append(_Item(role, f"{image_dir}/{rel}", pid, cam))
    return items

  def _sense_dir(self, root, rel, role):
    items = []
    for name in sorted(os.listdir(os.path.join(root, rel))):
      if not name.lower().endswith(_IMAGE_EXT):
        continue
      try:
        pid_s, cam_s = os.path.splitext(name)[0].split("_")[:2]
        pid, cam = int(pid_s), int(cam_s)
      except ValueError:
        self.report.bad("unparsable_name", os.path.join(root, rel, name), "expected PID_CAM.jpg")
        continue
      if self._keep(role, pid):
        items.append(_Item(role, f"{rel}/{name}", pid, cam))
    return items

  def _eval_list(self, root, list_name, role):
    items = []
    for i, line in enumerate(common.read_lines(os.path.join(root, list_name))):
      parts = line.split()
      try:
        rel, pid, cam = parts[0], int(parts[1]), int(parts[2])
      except (IndexError, ValueError):
        self.report.bad("unparsable_line", os.path.join(root, list_name), f"line {i + 1}: {line}")
        continue
      if self._keep(role, pid):
        items.append(_Item(role, rel, pid, cam))
    return items

  def _leading_id(self, path, expected):
    """PID = the first '_' field of the file name; None (reported) if it is not a number."""
    m = _LEADING_ID.match(os.path.basename(path))
    if m is None:
      self.report.bad("unparsable_name", path, f"expected {expected}")
      return None
    return int(m.group(1))

  def _last_dir(self, root, rel, role, depth=2):
    """LaST images ``rel/<pid>/<pid>_*.jpg`` (depth 2) or ``rel/<pid>_*.jpg`` (depth 1), as the
    publisher's loader (shuxjweb/last, data/datasets/last.py) globs them; camera -1."""
    items = []
    for path in _image_files(os.path.join(root, rel), depth):
      pid = self._leading_id(path, "<pid>_*.jpg")
      if pid is not None and self._keep(role, pid):
        items.append(_Item(role, os.path.relpath(path, root), pid, -1))
    return items

  def _last_eval(self, root, part, prefix):
    """``part/query`` (flat) and ``part/gallery`` (one folder per PID). LaST has no camera
    labels; its protocol gives every evaluation image a camera of its own (query i -> i, gallery
    j -> n_query + j, in sorted path order) so that no true match is removed as same-camera."""
    query = self._last_dir(root, f"{part}/query", "query", depth=1)   # sorted by path
    gallery = self._last_dir(root, f"{part}/gallery", "gallery")
    query = [dataclasses.replace(it, camera=i) for i, it in enumerate(query)]
    gallery = [dataclasses.replace(it, camera=len(query) + j) for j, it in enumerate(gallery)]
    return {f"{prefix}query": query, f"{prefix}gallery": gallery}

  def _prcc_train(self, root):
    """``rgb/train/<pid>/<letter>_*.jpg``: PID = folder name, camera = the name's letter."""
    items = []
    for path in _image_files(os.path.join(root, "rgb", "train"), 2):
      pid_s, name = os.path.basename(os.path.dirname(path)), os.path.basename(path)
      cam = _PRCC_CAMERAS.get(name.split("_")[0])
      if not pid_s.isdigit() or cam is None:
        self.report.bad("unparsable_name", path, "expected rgb/train/<pid>/<A|B|C>_*.jpg")
        continue
      items.append(_Item("train", os.path.relpath(path, root), int(pid_s), cam))
    return items

  def _prcc_test(self, root, letter, role):
    """``rgb/test/<letter>/<pid>/*.jpg``: PID = folder name, camera = the folder's letter."""
    items = []
    for path in _image_files(os.path.join(root, "rgb", "test", letter), 2):
      pid_s = os.path.basename(os.path.dirname(path))
      if not pid_s.isdigit():
        self.report.bad("unparsable_name", path, f"expected rgb/test/{letter}/<pid>/*.jpg")
        continue
      items.append(_Item(role, os.path.relpath(path, root), int(pid_s), _PRCC_CAMERAS[letter]))
    return items

  def _dg_market(self, root):
    """Every image under ``root`` (any depth). PID = the Market-1501 PID after 'gan' in DG-Net's
    generator naming, else the name's first '_' field; camera -1."""
    items = []
    for path in _image_files(root, None):
      m = _DG_GAN_NAME.match(os.path.basename(path))
      pid = (int(m.group(1)) if m else
             self._leading_id(path, "<s>_<id>_gan<Market-1501 name>.jpg or <pid>_*.jpg"))
      if pid is not None and self._keep("train", pid):
        items.append(_Item("train", os.path.relpath(path, root), pid, -1))
    return items

  def _mars_dir(self, root, rel, role):
    """MARS frames ``rel/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg``: PID and camera from the
    name (its PID must be the folder's); Market-1501 protocol for PIDs -1 ('00-1') and 0."""
    items = []
    for path in _image_files(os.path.join(root, rel), 2):
      name, folder = os.path.basename(path), os.path.basename(os.path.dirname(path))
      m = _MARS_NAME.match(name)
      if m is None or m.group(1) != folder:
        self.report.bad("unparsable_name", path,
                        f"expected {rel}/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg")
        continue
      pid = -1 if m.group(1) == "00-1" else int(m.group(1))
      if self._keep(role, pid, "market"):
        items.append(_Item(role, os.path.relpath(path, root), pid, int(m.group(2))))
    return items

  def _id_list(self, root, sub, group):
    folder = os.path.join(root, sub)
    files = common.read_lines(os.path.join(folder, "fileList.txt"))
    meta = common.read_lines(os.path.join(folder, "metaList.txt"))[1:]  # First line: header.
    if len(files) != len(meta):
      raise common.BadInputError(
          f"{folder}: fileList.txt has {len(files)} images but metaList.txt has {len(meta)} ids "
          "after its header line; the two lists must be aligned line by line.")
    items = []
    for path, pid_s in zip(files, meta):
      rel = os.path.relpath(os.path.join(folder, path), root)
      items.append(_Item("train", rel, int(pid_s.split()[0]), -1, group))
    return items

  # ---- generation -----------------------------------------------------------------------------
  def _splits(self, root):
    if self.builder_config.layout == "merged":
      return {"train": self._merged(root)}
    return {split: self._examples(root, items) for split, items in self._items(root).items()}

  def _source_train_items(self, src: ReidSource, src_root: str) -> list[_Item]:
    """The train split of one merged source, read by its single-source reader (paths relative
    to ``src_root``)."""
    if src.layout == "market":
      s = src.subdir + "/" if src.subdir else ""
      return self._market_dir(src_root, f"{s}bounding_box_train", "train")
    if src.layout == "msmt":
      image_dir = _msmt_train_dir(src_root)
      items = self._msmt_list(src_root, "list_train.txt", image_dir, "train")
      if self.builder_config.msmt_train_includes_val:
        items += self._msmt_list(src_root, "list_val.txt", image_dir, "train")
      return items
    if src.layout == "prcc":
      return self._prcc_train(src_root)
    if src.layout == "last":
      return self._last_dir(src_root, "train", "train")
    if src.layout == "dgmarket":
      return self._dg_market(src_root)
    if src.layout == "mars":
      return self._mars_dir(src_root, "bbox_train", "train")
    raise ValueError(f"reid source {src.name}: layout {src.layout!r} has no train reader")

  def _merged(self, root: str) -> Iterator[tuple[str, dict]]:
    """The sources' train records in turn; ids packed per source and offset (module doc)."""
    chosen, summary, offset = [], [], 0
    for src in self.builder_config.sources:
      folder = common.find_folder(root, src.folders)
      src_root = os.path.join(root, folder)
      items = sorted(self._source_train_items(src, src_root), key=lambda it: it.relpath)
      # Validate first so that ids whose every image is unreadable leave no hole in the range.
      items = [it for it in items
               if common.load_image(os.path.join(src_root, it.relpath), self.report) is not None]
      if not items:
        self.report.bad("empty_source", src_root, f"source {src.name}: no train image left")
      ids = sorted({it.pid for it in items})
      packed = {pid: offset + i for i, pid in enumerate(ids)}
      summary.append({"name": src.name, "folder": folder, "id_start": offset,
                      "id_stop": offset + len(ids), "num_ids": len(ids),
                      "num_images": len(items)})
      chosen.append((folder, src_root, items, packed))
      offset += len(ids)
    self.info.metadata["num_train_ids"] = offset
    self.info.metadata["num_classes"] = offset
    self.info.metadata["sources"] = summary
    for folder, src_root, items, packed in chosen:
      for it in items:
        img = common.load_image(os.path.join(src_root, it.relpath), self.report)
        if img is None:
          continue
        rel = f"{folder}/{it.relpath}"
        yield rel, {"image": img.data, "person_id": packed[it.pid], "camera_id": it.camera,
                    "role": "train", "filename": rel}

  def _examples(self, root: str, items: list[_Item]) -> Iterator[tuple[str, dict]]:
    items = sorted(items, key=lambda it: it.relpath)
    if items and items[0].role == "train":
      # Validate first so that ids whose every image is unreadable do not leave holes in 0..N-1.
      items = [it for it in items
               if common.load_image(os.path.join(root, it.relpath), self.report) is not None]
      packed = {k: i for i, k in enumerate(sorted({(it.group, it.pid) for it in items}))}
      self.info.metadata["num_train_ids"] = len(packed)
    for it in items:
      img = common.load_image(os.path.join(root, it.relpath), self.report)
      if img is None:
        continue
      pid = packed[(it.group, it.pid)] if it.role == "train" else it.pid
      yield it.relpath, {"image": img.data, "person_id": pid, "camera_id": it.camera,
                         "role": it.role, "filename": it.relpath}


def _image_files(folder: str, depth: int | None = 1) -> list[str]:
  """Sorted image paths exactly ``depth`` levels below ``folder`` (1: its own files), or at any
  depth when ``depth`` is None."""
  out = []
  if not os.path.isdir(folder):
    return out
  for dirpath, dirnames, filenames in os.walk(folder):
    level = os.path.relpath(dirpath, folder).count(os.sep) + (dirpath != folder)
    if depth is not None and level + 1 >= depth:
      dirnames[:] = []
    if depth is None or level + 1 == depth:
      out += [os.path.join(dirpath, n) for n in filenames if n.lower().endswith(_IMAGE_EXT)]
  return sorted(out)


def _train_layout(src: ReidSource, msmt_includes_val: bool) -> dict[str, str]:
  """{path relative to the source's folder: what it holds} of one merged source's train split."""
  if src.layout == "market":
    s = src.subdir + "/" if src.subdir else ""
    return {f"{s}bounding_box_train/PID_cCAM*.jpg": "train images (PID -1 junk, 0 distractor)"}
  if src.layout == "msmt":
    out = {"list_train.txt": "'<path under train/> <pid>' per line",
           "train/": "train images (MSMT17_V2: mask_train_v2/)"}
    if msmt_includes_val:
      out["list_val.txt"] = "same format, merged into train"
    return out
  if src.layout == "prcc":
    return {"rgb/train/<pid>/<A|B|C>_*.jpg": "train images (camera = the name's letter)"}
  if src.layout == "last":
    return {"train/<pid>/<pid>_*.jpg": "train images (PID = first '_' field of the name)"}
  if src.layout == "dgmarket":
    return {"<s>_<id>_gan<Market-1501 name>.jpg": "generated images, any depth (PID = the Market "
                                                  "PID after 'gan')"}
  if src.layout == "mars":
    return {"bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg": "train frames, one record "
                                                                   "each"}
  raise ValueError(f"reid source {src.name}: layout {src.layout!r} has no train reader")


def _msmt_train_dir(src_root: str | None) -> str:
  """MSMT17's train image folder: 'train' (V1) or 'mask_train_v2' (V2), the first present."""
  for d in _MSMT_TRAIN_DIRS:
    if src_root and os.path.isdir(os.path.join(src_root, d)):
      return d
  return _MSMT_TRAIN_DIRS[0]


def _list_dirs(root: str) -> list[str]:
  """Subfolders of ``root`` that hold a fileList.txt/metaList.txt pair, sorted."""
  if not os.path.isdir(root) or os.path.exists(os.path.join(root, "fileList.txt")):
    return []
  return sorted(d for d in os.listdir(root)
                if os.path.exists(os.path.join(root, d, "fileList.txt"))
                and os.path.exists(os.path.join(root, d, "metaList.txt")))
