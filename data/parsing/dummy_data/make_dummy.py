"""Writes the parsing dummy data (LIP and H3.6M layouts; DeepFashion2, ModaNet, VIP, PaperDoll
and Human3.6M as their publishers distribute them). Run from the repo root:
``python -m data.parsing.dummy_data.make_dummy``."""
import json
import os

import h5py
import numpy as np

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def label_map(seed, values, h=32, w=24):
  """Blocks of the given class values (plus a strip of 255 ignore)."""
  rng = np.random.default_rng(seed)
  lab = rng.choice(np.asarray(values), size=(h // 8, w // 8))
  lab = np.kron(lab, np.ones((8, 8), int))
  lab[-2:, :] = 255
  return lab


def lip():
  root = dummy.fresh(os.path.join(HERE, "lip"))
  for split, ids in {"train": ["100_1", "100_2", "101_7"], "val": ["200_3"]}.items():
    dummy.write_text(os.path.join(root, "data", f"{split}_id.txt"), ids)
    for i, id_ in enumerate(ids):
      dummy.write_image(os.path.join(root, "data", f"{split}_images", f"{id_}.jpg"),
                        500 + i, 32, 24)
      lab = label_map(500 + i, [0, 2, 5, 14, 15, 19])
      if id_ == "101_7":
        lab[0, 0] = 23  # LIP has 20 classes: out of range -> skipped (error under strict).
      dummy.write_label(os.path.join(root, "TrainVal_parsing_annotations",
                                     f"{split}_segmentations", f"{id_}.png"), lab)


def h36m():
  root = dummy.fresh(os.path.join(HERE, "h36m_parsing"))
  lists = {"train": ["protocol_1/rgb/s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000001.jpg",
                     "protocol_1/rgb/s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000051.jpg"],
           "eval": ["protocol_1/rgb/s_09_act_02_subact_01_ca_01/s_09_act_02_subact_01_ca_01_000001.jpg"]}
  for split, paths in lists.items():
    dummy.write_text(os.path.join(root, f"flist_2hz_{split}.txt"), paths)
    for i, p in enumerate(paths):
      dummy.write_image(os.path.join(root, p), 600 + i, 32, 24)
      # Source ids: 0, 1 (right hip -> 1), 4 (not listed -> 0), 46 (head -> 20), 58 (-> 24).
      lab = label_map(600 + i, [0, 1, 4, 46, 58])
      # Same file name: the authors' reader swaps only the first 'rgb' for 'seg'.
      dummy.write_label(os.path.join(root, p.replace("rgb", "seg", 1)), lab)


def rect(x0, y0, x1, y1):
  """A flat polygon [x, y, ...]: the axis-aligned rectangle with corners (x0, y0), (x1, y1)."""
  return [x0, y0, x1, y0, x1, y1, x0, y1]


def deepfashion2_native():
  """train/image/NNNNNN.jpg + train/annos/NNNNNN.json, as DeepFashion2's train.zip."""
  root = dummy.fresh(os.path.join(HERE, "deepfashion2_native"))
  annos = {
      # item1 (short sleeve top, 12x12) overlaps item2 (trousers, two legs of 9x20): the
      # smaller item1 is on top although item2 comes later.
      "000001": {"source": "user", "pair_id": 1,
                 "item1": {"category_name": "short sleeve top", "category_id": 1, "style": 1,
                           "bounding_box": [6, 4, 18, 16], "segmentation": [rect(6, 4, 18, 16)]},
                 "item2": {"category_name": "trousers", "category_id": 8, "style": 1,
                           "bounding_box": [2, 10, 22, 30],
                           "segmentation": [rect(2, 10, 11, 30), rect(13, 10, 22, 30)]}},
      # item10 sorts after item2 numerically; a 2-point polygon covers nothing.
      "000002": {"source": "shop", "pair_id": 1,
                 "item2": {"category_id": 13, "segmentation": [rect(0, 0, 24, 20)]},
                 "item10": {"category_id": 9, "segmentation": [rect(8, 8, 16, 12), [1, 1, 3, 3]]}},
      # category_id 14 does not exist: skipped (an error under strict).
      "000003": {"source": "user", "pair_id": 2,
                 "item1": {"category_id": 14, "segmentation": [rect(0, 0, 4, 4)]}},
      # No items: dropped.
      "000004": {"source": "user", "pair_id": 2},
  }
  for i, (stem, anno) in enumerate(annos.items()):
    dummy.write_image(os.path.join(root, "train", "image", f"{stem}.jpg"), 700 + i, 32, 24)
    dummy.write_json(os.path.join(root, "train", "annos", f"{stem}.json"), anno)


def modanet_native():
  """annotations/modanet2018_instances_{train,val}.json (as the eBay/modanet repository) and
  images/<file_name> (the PaperDoll photos extracted from photos.lmdb)."""
  root = dummy.fresh(os.path.join(HERE, "modanet_native"))
  cats = ["bag", "belt", "boots", "footwear", "outer", "dress", "sunglasses", "pants", "top",
          "shorts", "skirt", "headwear", "scarf & tie"]
  categories = [{"supercategory": "fashion", "id": i + 1, "name": n} for i, n in enumerate(cats)]
  images = [{"id": i, "width": 24, "height": 32, "file_name": f"{i:07d}.jpg", "license": 1}
            for i in (100, 200, 300, 400)]

  def ann(id_, image_id, cat, segm):
    return {"id": id_, "image_id": image_id, "category_id": cat, "segmentation": segm,
            "area": 0, "bbox": [0, 0, 1, 1], "iscrowd": 0}

  anns = [
      # Image 100: belt (48 px) first, top (192 px), pants (240 px): painted pants, top, belt.
      ann(1, 100, 2, [rect(4, 14, 20, 17)]),
      ann(2, 100, 9, [rect(4, 4, 20, 16)]),
      ann(3, 100, 8, [rect(4, 15, 11, 30), rect(13, 15, 20, 30)]),
      # Image 200: a bag, a triangle.
      ann(4, 200, 1, [[2, 2, 12, 2, 2, 12]]),
      # Image 300 has no annotation: dropped. Image 400: category 14 is out of range.
      ann(5, 400, 14, [rect(0, 0, 4, 4)]),
  ]
  dummy.write_json(os.path.join(root, "annotations", "modanet2018_instances_train.json"),
                   {"info": {"version": "1.0", "description": "dummy"}, "year": 2018,
                    "type": "instances", "licenses": [{"id": 1, "name": "", "url": ""}],
                    "categories": categories, "images": images, "annotations": anns})
  # The published val json lists images only (no annotations); it is not read.
  dummy.write_json(os.path.join(root, "annotations", "modanet2018_instances_val.json"),
                   {"info": {}, "year": 2018, "type": "instances", "licenses": [],
                    "categories": categories,
                    "images": [{"id": 500, "width": 24, "height": 32, "file_name": "0000500.jpg",
                                "license": 1}], "annotations": []})
  for i, im in enumerate(images):
    dummy.write_image(os.path.join(root, "images", im["file_name"]), 800 + i, 32, 24)


def vip_native():
  """VIP_Fine/ as its archive extracts (sysu-hcp.net/lip/overview.php, "2.3 Video Multi-Person
  Human Parsing"): Images/<video>/<frame>.jpg, Annotations/Category_ids/<video>/<frame>.png
  and lists/<split>_id.txt with ids '<video>/<frame>' (the names HCPLab-SYSU/ATEN's vip.py and
  the PATH data notes use). One frame in 25 is annotated, so annotated frames are numbered 1,
  26, 51, ... (12 digits). The release also has Annotations/Human_ids, Instance_ids (not read)."""
  root = os.path.join(dummy.fresh(os.path.join(HERE, "vip_native")), "VIP_Fine")
  # videos1: 10 annotated frames (1-in-8 sampling keeps ranks 0 and 8); videos2: 3; val: 2.
  videos = {"train": {"videos1": 10, "videos2": 3}, "val": {"videos3": 2}}
  seed = 900
  for split, vids in videos.items():
    ids = []
    for video, n in vids.items():
      for k in range(n):
        id_ = f"{video}/{1 + 25 * k:012d}"
        ids.append(id_)
        dummy.write_image(os.path.join(root, "Images", f"{id_}.jpg"), seed, 32, 24)
        dummy.write_label(os.path.join(root, "Annotations", "Category_ids", f"{id_}.png"),
                          label_map(seed, [0, 2, 5, 13, 14, 15, 19]))
        seed += 1
    dummy.write_text(os.path.join(root, "lists", f"{split}_id.txt"), ids)


def paperdoll_native():
  """The HumanBench authors' PaperDoll folder: images/<id>.jpg (PaperDoll photos, from
  github.com/kyamagu/paperdoll photos.lmdb, key = photo id) and
  TrainVal_parsing_annotations/<id>.png (20-class maps). The publisher ships no pixel labels."""
  root = dummy.fresh(os.path.join(HERE, "paperdoll_native"))
  for i, id_ in enumerate(["1000001", "1000002", "1000010", "1000004"]):
    # 1000004: a photo without a label map (not a record).
    dummy.write_image(os.path.join(root, "images", f"{id_}.jpg"), 950 + i, 32, 24)
  for i, id_ in enumerate(["1000001", "1000002", "1000010", "1000003"]):
    # 1000003: a label map without its photo (skipped: missing_image).
    dummy.write_label(os.path.join(root, "TrainVal_parsing_annotations", f"{id_}.png"),
                      label_map(950 + i, [0, 1, 2, 5, 9, 14, 15, 18, 19]))


def write_matlab73_cells(path, name, maps, dtype=np.uint8):
  """A MATLAB v7.3 MAT-file (HDF5 with MATLAB's 512-byte header block) holding the cell
  ``name`` {1 x len(maps)} of 2-D arrays: as MATLAB writes one, an (n, 1) array of object
  references to datasets in '#refs#', each stored column-major (h5py sees [W, H])."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with h5py.File(path, "w", userblock_size=512) as f:
    refs_group = f.create_group("#refs#")
    refs = np.empty((len(maps), 1), dtype=h5py.ref_dtype)
    for i, m in enumerate(maps):
      ds = refs_group.create_dataset(f"c{i}", data=np.asarray(m, dtype).T)
      ds.attrs["MATLAB_class"] = np.bytes_("double" if dtype == np.float64 else "uint8")
      refs[i, 0] = ds.ref
    cell = f.create_dataset(name, data=refs)
    cell.attrs["MATLAB_class"] = np.bytes_("cell")
  header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 "
  header += b"HDF5 schema 1.00 ."
  with open(path, "r+b") as f:
    f.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


def h36m_native():
  """Human3.6M as released (vision.imar.ro/human3.6m), per subject S<k>:
  MySegmentsMat/PartLabels/<Action>.<camera>.mat (cell 'Feat', one part-id map per video frame;
  the folder and field HCMoCo's mp_parsedata.py reads) and the frames of Videos/<Action>.
  <camera>.mp4 as data/tools/extract_frames.py writes them: Videos/<Action>.<camera>/%06d.jpg,
  1-based (the .mp4 files themselves are not read and not written here)."""
  root = dummy.fresh(os.path.join(HERE, "h36m_native"))
  # subject -> [(video, label frames, extracted frame numbers, label dtype, (H, W))]
  small = (16, 8)
  videos = {
      "S1": [("Directions 1.54138969", 26, range(1, 27), np.uint8, (32, 24)),  # frames 0, 25
             ("Walking.55011271", 27, range(1, 21), np.float64, small)],   # 25: past the video
      # Extracted with --every 50: frame 25 (file 26) is missing below the last one.
      "S5": [("Eating.58860488", 51, (1, 51), np.uint8, small)],
      "S6": [("Posing.60457274", 1, (1,), np.uint8, small)],             # value 59: skipped
      "S7": [("Posing.60457274", 1, (1,), np.uint8, small)],
      "S8": [("Posing.60457274", 1, (1,), np.uint8, small)],
      "S9": [("Directions.54138969", 26, range(1, 27), np.uint8, (32, 24))],
      "S11": [("Directions.54138969", 1, (1,), np.uint8, small)],
  }
  seed = 1000
  for subject, vids in videos.items():
    for video, n_labels, numbers, dtype, (h, w) in vids:
      maps = []
      for i in range(n_labels):
        # Source ids: 0, 1 (right hip -> 1), 4 (not listed -> 0), 46 (head -> 20), 58 (-> 24).
        lab = label_map(seed + i, [0, 1, 4, 46, 58], h, w)
        lab[-2:, :] = 0  # Part maps have no ignore value.
        if subject == "S6":
          lab[0, 0] = 59  # 59 source ids (0..58): out of range.
        maps.append(lab)
      write_matlab73_cells(os.path.join(root, subject, "MySegmentsMat", "PartLabels",
                                        f"{video}.mat"), "Feat", maps, dtype)
      for number in numbers:
        dummy.write_image(os.path.join(root, subject, "Videos", video, f"{number:06d}.jpg"),
                          seed + number - 1, h, w)
      if subject == "S5":
        with open(os.path.join(root, subject, "Videos", video, ".extract_frames.json"), "w") as f:
          json.dump({"video": f"{video}.mp4", "every": 50, "quality": 2, "frames": 2,
                     "numbering": "1-based, ffmpeg decoding order"}, f)
      seed += 100


if __name__ == "__main__":
  lip()
  h36m()
  deepfashion2_native()
  modanet_native()
  vip_native()
  paperdoll_native()
  h36m_native()
