"""humanbench_mini: determinism, validity of every written format, learnability, end-to-end build.

The checks parse the written files with the standard readers (json, pickle, PIL, scipy.io,
pycocotools) and recompute every property independently of the generator's own bookkeeping.
"""
import filecmp
import json
import os
import pickle
import re
import time

import numpy as np
import pytest
import scipy.io
from PIL import Image

from data.humanbench_mini import draw, generate, learnability

# Market-1501 file names: PID (4 digits, or -1 for junk) _c CAMERA s SEQUENCE _ FRAME _ BOX.
MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("mini") / "seed0")
  t0 = time.perf_counter()
  manifest = generate.generate(out, seed=0, size="tiny")
  return out, manifest, time.perf_counter() - t0


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


def _rgb(path):
  return np.asarray(Image.open(path).convert("RGB"))


def _ds(out, name):
  return os.path.join(out, generate.dataset_dir("", generate.spec(name)))


# ------------------------------------------------------------------------------------------------
# Determinism and speed


def test_tiny_generation_is_fast(tiny):
  _, manifest, seconds = tiny
  assert set(manifest["datasets"]) == {d.name for d in generate.DATASETS}
  assert seconds < 20.0, f"tiny generation took {seconds:.1f} s"


def test_same_seed_gives_identical_bytes(tiny, tmp_path):
  out, _, _ = tiny
  again = str(tmp_path / "again")
  generate.generate(again, seed=0, size="tiny")
  files = _files(out)
  assert files == _files(again) and len(files) > 300
  _, mismatch, errors = filecmp.cmpfiles(out, again, files, shallow=False)
  assert not mismatch and not errors


def test_dataset_content_independent_of_others_and_seed_changes_it(tiny, tmp_path):
  out, _, _ = tiny
  names = ("mini_market", "mini_shanghaitech", "mini_coco")
  alone = str(tmp_path / "alone")
  generate.generate(alone, seed=0, size="tiny", only=names)
  other = str(tmp_path / "other")
  generate.generate(other, seed=1, size="tiny", only=names)
  for name in names:
    d0, d_alone, d1 = _ds(out, name), _ds(alone, name), _ds(other, name)
    files = _files(d0)
    assert files == _files(d_alone)
    assert not filecmp.cmpfiles(d0, d_alone, files, shallow=False)[1]
    common = sorted(set(files) & set(_files(d1)))
    same = filecmp.cmpfiles(d0, d1, common, shallow=False)[0]
    assert len(same) < 0.1 * len(files), (name, len(same), len(files))


# ------------------------------------------------------------------------------------------------
# Drawing


def test_scene_equals_compositing_sprites_in_order():
  """Drawing straight into a scene == pasting each figure's own sprite in painter's order.

  (Figures stay inside the canvas: PIL rounds negative coordinates differently, so a figure cut
  by the left/top border can differ by a pixel column from its sprite; the sprite is only used
  for figures inside the image.)
  """
  rng = np.random.default_rng(3)
  bg = draw.background(rng, 96, 128)
  scene = draw.Scene(bg)
  rgb, inst = bg.copy(), np.zeros((96, 128), np.int32)
  labels = np.zeros((96, 128), np.uint8)
  for k in range(1, 5):
    sk = draw.skeleton(draw.random_pose(rng, 0.6), float(rng.uniform(40, 60)),
                       (float(rng.uniform(35, 93)), float(rng.uniform(40, 50))))
    app = draw.random_appearance(rng)
    assert scene.add(sk, app) == k
    sp = draw.render(sk, app)
    ys, xs = np.nonzero(sp.mask)
    ys, xs = ys + sp.y0, xs + sp.x0
    keep = (ys >= 0) & (ys < 96) & (xs >= 0) & (xs < 128)
    assert sp.x0 >= 0 and sp.y0 >= 0
    src = np.nonzero(sp.mask)
    rgb[ys[keep], xs[keep]] = sp.rgb[src[0][keep], src[1][keep]]
    labels[ys[keep], xs[keep]] = sp.labels[src[0][keep], src[1][keep]]
    inst[ys[keep], xs[keep]] = k
  np.testing.assert_array_equal(scene.instance, inst)
  np.testing.assert_array_equal(scene.labels, labels)
  np.testing.assert_array_equal(scene.rgb, rgb)
  # Figures change exactly their own pixels; part labels cover them except bags.
  changed = np.any(scene.rgb != bg, -1)
  assert np.mean(changed == (inst > 0)) > 0.995
  np.testing.assert_array_equal(labels > 0, inst > 0)  # every figure pixel has a part (or BAG)
  assert set(np.unique(labels)) <= set(range(20)) | {draw.BAG}


def test_upright_figure_left_is_plus_x_and_classes_follow():
  pose = draw.Pose((0.2, 0.2), (0.3, 0.3), (0.1, 0.1), (0.1, 0.1), 0.0)
  sk = draw.skeleton(pose, 100.0, (50.0, 60.0))
  left = [1, 3, 5, 7, 9, 11, 13, 15]
  assert np.all(sk.joints[left, 0] > sk.joints[[k + 1 for k in left], 0])
  app = draw.Appearance((200, 0, 0), "red", (0, 0, 200), "blue", (220, 180, 140), (20, 10, 0),
                        (50, 50, 50), None, None, False, True, False, False, False)
  sp = draw.render(sk, app)
  xs = np.arange(sp.labels.shape[1])[None, :] + sp.x0
  for l_cls, r_cls in draw.LIP_FLIP_PAIRS:
    assert (sp.labels == l_cls).any() and (sp.labels == r_cls).any()
    mean_l = np.broadcast_to(xs, sp.labels.shape)[sp.labels == l_cls].mean()
    mean_r = np.broadcast_to(xs, sp.labels.shape)[sp.labels == r_cls].mean()
    assert mean_l > mean_r
  # Short sleeves and shorts: bare forearms and shins carry the arm/leg classes.
  assert app.attributes()["shorts"] == 1 and app.attributes()["long_sleeve"] == 0


def test_atr_and_lip_maps():
  layer = np.array([[0, 1, 2, 5, 9, 12, 13, 14, 15, 16, 17, 18, 19, draw.BAG]], np.uint8)
  lip = draw.to_lip(layer)
  atr = draw.to_atr(layer)
  assert lip[0, -1] == 0 and np.array_equal(lip[0, :-1], layer[0, :-1])
  names_lip = [draw.LIP_CLASSES[v] for v in layer[0, :-1]]
  names_atr = [draw.ATR_CLASSES[v] for v in atr[0, :-1]]
  assert [n.lower() for n in names_lip] == [n.lower() for n in names_atr]
  assert draw.ATR_CLASSES[atr[0, -1]] == "Bag"


# ------------------------------------------------------------------------------------------------
# Formats


@pytest.mark.parametrize("name", ["mini_market", "mini_dukemtmc"])
def test_reid_market_layout(tiny, name):
  root = _ds(tiny[0], name)
  written = tiny[1]["datasets"][name]["summary"]["images"]
  for folder, n in written.items():  # no file overwrote another
    assert len(os.listdir(os.path.join(root, folder))) == n
  ids, cams = {}, {}
  for folder in ("bounding_box_train", "query", "bounding_box_test"):
    for f in os.listdir(os.path.join(root, folder)):
      m = MARKET_NAME.match(f)
      assert m, f"{folder}/{f} does not parse"
      pid = int(m.group(1))
      assert 1 <= int(m.group(2)) <= 6 and 1 <= int(m.group(3)) <= 6
      assert _rgb(os.path.join(root, folder, f)).shape == (128, 64, 3)
      if pid > 0:
        ids.setdefault(folder, set()).add(pid)
        cams.setdefault((folder == "bounding_box_train", pid), []).append(
            (int(m.group(2)), folder))
      else:
        assert folder == "bounding_box_test", "junk/distractors belong to the gallery only"
  assert not ids["bounding_box_train"] & (ids["query"] | ids["bounding_box_test"])
  assert ids["query"] == ids["bounding_box_test"]
  for (_, pid), seen in cams.items():
    assert len({c for c, _ in seen}) >= 2, f"identity {pid} seen by one camera"
  # Every query has a same-identity gallery image from another camera.
  for (is_train, pid), seen in cams.items():
    if not is_train:
      for c, folder in seen:
        if folder == "query":
          assert any(c2 != c for c2, f2 in seen if f2 == "bounding_box_test")


def test_pose_coco(tiny):
  from pycocotools import mask as mask_util
  from pycocotools.coco import COCO
  root = _ds(tiny[0], "mini_coco")
  n_hidden = n_visible = n_outside = 0
  for folder in ("train2017", "val2017"):
    coco = COCO(os.path.join(root, "annotations", f"person_keypoints_{folder}.json"))
    assert coco.loadCats(1)[0]["keypoints"] == list(draw.KEYPOINT_NAMES)
    assert len(coco.getImgIds()) > 0
    for img in coco.loadImgs(coco.getImgIds()):
      h, w = _rgb(os.path.join(root, folder, img["file_name"])).shape[:2]
      assert (h, w) == (img["height"], img["width"])
      for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
        x, y, bw, bh = a["bbox"]
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 0 and bh > 0
        mask = coco.annToMask(a).astype(bool)
        assert a["area"] == mask.sum() == mask_util.area(a["segmentation"])
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == a["bbox"]
        kps = np.asarray(a["keypoints"], float).reshape(17, 3)
        v = kps[:, 2]
        assert set(v) <= {0, 1, 2} and a["num_keypoints"] == int((v > 0).sum())
        assert np.all(kps[v == 0, :2] == 0)
        for kx, ky, kv in kps[v > 0]:
          assert 0 <= kx < w and 0 <= ky < h
          if kv == 2:  # visible joints lie on the person's own visible pixels, inside its box
            assert mask[int(ky), int(kx)] and x <= kx <= x + bw and y <= ky <= y + bh
        n_hidden += int((v == 1).sum())
        n_visible += int((v == 2).sum())
        n_outside += int((v == 0).sum())
  # Occlusion between figures exists, most joints are visible, and some leave the frame.
  assert n_hidden > 0 and n_visible > 3 * n_hidden and n_outside > 0


def test_pose_mpii(tiny):
  root = _ds(tiny[0], "mini_mpii")
  for split in ("train", "val"):
    with open(os.path.join(root, "annotations", f"mpii_{split}.json")) as f:
      entries = json.load(f)
    assert entries
    for e in entries:
      h, w = _rgb(os.path.join(root, "images", e["image"])).shape[:2]
      joints, vis = np.asarray(e["joints"]), np.asarray(e["joints_vis"])
      assert joints.shape == (16, 2) and set(vis) <= {0, 1} and vis.any()
      on = joints[vis == 1]
      assert np.all((on >= 1) & (on <= [w, h]))  # 1-based pixels
      assert np.all(joints[vis == 0] == -1)
      assert e["scale"] > 0
      # The reader's adjusted centre (y + 15 * scale) lies between head top and ankles.
      cy = e["center"][1] + 15 * e["scale"]
      if vis[9] and vis[0] and vis[5]:
        assert joints[9, 1] < cy < max(joints[0, 1], joints[5, 1])


@pytest.mark.parametrize("name,layout", [("mini_lip", "lip"), ("mini_atr", "atr")])
def test_parsing_layout_and_masks(tiny, name, layout):
  root = _ds(tiny[0], name)
  ids_pat, img_pat, lab_pat, _, classes, pairs = generate._PARSING_LAYOUTS[layout]
  side_ok = side_n = 0
  for split in ("train", "val"):
    with open(os.path.join(root, ids_pat.format(split=split))) as f:
      ids = f.read().split()
    assert ids and len(set(ids)) == len(ids)
    for sid in ids:
      img = _rgb(os.path.join(root, img_pat.format(split=split, id=sid))).astype(float)
      lab = np.asarray(Image.open(os.path.join(root, lab_pat.format(split=split, id=sid))))
      assert lab.shape == img.shape[:2] and lab.dtype == np.uint8
      assert lab.max() < len(classes)
      person = lab > 0
      assert 0.02 < person.mean() < 0.9
      # The label boundaries are the image's edges: the colour step across a label boundary
      # is far larger than between background neighbours.
      step = np.abs(np.diff(img, axis=1)).sum(-1)
      across = lab[:, 1:] != lab[:, :-1]
      bg_pair = (lab[:, 1:] == 0) & (lab[:, :-1] == 0)
      assert step[across].mean() > 3 * step[bg_pair].mean()
      xs = np.broadcast_to(np.arange(lab.shape[1])[None], lab.shape)
      for l_cls, r_cls in pairs:
        if (lab == l_cls).any() and (lab == r_cls).any():
          side_n += 1
          side_ok += xs[lab == l_cls].mean() > xs[lab == r_cls].mean()
  # Person's left on image right: flip pairs swap consistently (limbs may cross now and then).
  assert side_n > 10 and side_ok > 0.75 * side_n


@pytest.mark.parametrize("name", ["mini_pa100k", "mini_peta"])
def test_attributes_pickle(tiny, name):
  root = _ds(tiny[0], name)
  with open(os.path.join(root, "dataset.pkl"), "rb") as f:
    d = pickle.load(f)
  assert {"image_name", "label", "attr_name", "partition", "label_idx"} <= set(d)
  label = np.asarray(d["label"])
  assert label.shape == (len(d["image_name"]), len(d["attr_name"]))
  assert set(np.unique(label)) <= {0, 1}
  tv, te = d["partition"]["trainval"], d["partition"]["test"]
  if name == "mini_peta":
    assert isinstance(tv, list) and len(tv) == 2
    tv, te = tv[0], te[0]
    assert len(d["label_idx"]["eval"]) == 10
  assert not set(tv) & set(te) and len(tv) + len(te) == len(label)
  for fname in d["image_name"]:
    assert _rgb(os.path.join(root, "data", fname)).shape == (128, 64, 3)
  # One-of-k colour bits.
  names = list(d["attr_name"])
  upper = [names.index(f"upper_{c}") for c in draw.SHIRT_PALETTE]
  lower = [names.index(f"lower_{c}") for c in draw.LOWER_PALETTE]
  assert np.all(label[:, upper].sum(1) == 1) and np.all(label[:, lower].sum(1) == 1)


def _inside(box, w, h):
  x, y, bw, bh = box
  return 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw > 0 and bh > 0


def test_detection_odgt(tiny):
  root = _ds(tiny[0], "mini_crowdhuman")
  tags, occluded, ignored = [], 0, 0
  for split in ("train", "val"):
    with open(os.path.join(root, f"annotation_{split}.odgt")) as f:
      lines = [json.loads(line) for line in f]
    assert lines
    for rec in lines:
      h, w = _rgb(os.path.join(root, "Images", rec["ID"] + ".jpg")).shape[:2]
      for g in rec["gtboxes"]:
        tags.append(g["tag"])
        assert g["tag"] in ("person", "mask") and _inside(g["fbox"], w, h)
        if g["tag"] == "person":
          fx, fy, fw, fh = g["fbox"]
          vx, vy, vw, vh = g["vbox"]
          assert _inside(g["vbox"], w, h) and _inside(g["hbox"], w, h)
          assert fx <= vx and fy <= vy and vx + vw <= fx + fw and vy + vh <= fy + fh
          occluded += g["extra"]["occ"]
          ignored += g["extra"].get("ignore", 0)
  assert tags.count("person") > 15 and occluded > 0 and (ignored > 0 or "mask" in tags)


def test_detection_coco(tiny):
  from pycocotools.coco import COCO
  root = _ds(tiny[0], "mini_caltech")
  n_person = n_ignore = 0
  for split in ("train", "val"):
    coco = COCO(os.path.join(root, "annotations", f"{split}.json"))
    for img in coco.loadImgs(coco.getImgIds()):
      h, w = _rgb(os.path.join(root, "images", img["file_name"])).shape[:2]
      for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
        assert _inside(a["bbox"], w, h)
        plain = a["category_id"] == 1 and not a["iscrowd"] and not a["ignore"]
        n_person += plain
        n_ignore += not plain
  assert n_person > 5 and n_ignore > 0


def test_counting_mat(tiny):
  root = _ds(tiny[0], "mini_shanghaitech")
  means = {}
  for part in ("part_A", "part_B"):
    counts = []
    for folder in ("train_data", "test_data"):
      images = sorted(os.listdir(os.path.join(root, part, folder, "images")))
      assert images and all(re.match(r"^IMG_\d+\.jpg$", f) for f in images)
      for f in images:
        h, w = _rgb(os.path.join(root, part, folder, "images", f)).shape[:2]
        mat = scipy.io.loadmat(os.path.join(root, part, folder, "ground-truth", "GT_" + f[:-4]
                                            + ".mat"))
        info = mat["image_info"]
        assert info.shape == (1, 1) and info.dtype == object
        struct = info[0, 0]
        assert struct.shape == (1, 1) and set(struct.dtype.names) == {"location", "number"}
        loc = struct[0, 0]["location"]
        number = struct[0, 0]["number"]
        assert loc.ndim == 2 and loc.shape[1] == 2 and number.shape == (1, 1)
        assert number[0, 0] == loc.shape[0]
        assert np.all((loc >= 0) & (loc < [w, h]))
        counts.append(loc.shape[0])
    means[part] = np.mean(counts)
  assert means["part_A"] > 2 * means["part_B"] > 15


# ------------------------------------------------------------------------------------------------
# Learnability proxies (data/humanbench_mini/learnability.py): colour histograms of the torso
# and leg bands, no learning.


@pytest.mark.parametrize("name", ["mini_market", "mini_dukemtmc"])
def test_reid_rank1_well_above_chance(tiny, name):
  rank1, chance = learnability.reid_rank1(_ds(tiny[0], name))
  assert rank1 > 2 * chance, (rank1, chance)


def test_colour_attributes_learnable_by_nearest_centroid(tiny):
  ma = learnability.attribute_ma(_ds(tiny[0], "mini_pa100k"))
  colour = [v for k, v in ma.items() if k.startswith(("upper_", "lower_"))]
  assert len(colour) >= 6 and np.mean(colour) > 0.75, ma


# ------------------------------------------------------------------------------------------------
# End to end: generate, build every dataset with data/build.py, read back with tfds.


def test_build_all_tiny_reads_back(tmp_path):
  import tensorflow_datasets as tfds
  from data.humanbench_mini import build_all
  data_dir = str(tmp_path / "tfds")
  index = build_all.build_all(data_dir, size="tiny")
  expected = {b for d in generate.DATASETS for b in d.builds}
  assert set(index["datasets"]) == expected
  with open(os.path.join(data_dir, "humanbench_mini.json")) as f:
    assert json.load(f)["datasets"].keys() == expected
  sources = index["sources"]

  src = tfds.data_source("reid/market1501", data_dir=data_dir)
  root = os.path.join(sources, "reid", "mini_market")
  train_files = os.listdir(os.path.join(root, "bounding_box_train"))
  assert len(src["train"]) == len(train_files)
  ex = src["train"][0]
  assert ex["image"].shape == (128, 64, 3)
  assert sorted({int(src["train"][i]["person_id"]) for i in range(len(src["train"]))}) == list(
      range(len({f[:4] for f in train_files})))

  src = tfds.data_source("pose/coco", data_dir=data_dir)
  with open(os.path.join(sources, "pose", "mini_coco", "annotations",
                         "person_keypoints_val2017.json")) as f:
    anns = [a for a in json.load(f)["annotations"] if a["num_keypoints"] > 0]
  assert len(src["val"]) == len(anns)
  by_id = {a["id"]: a for a in anns}
  for i in range(len(src["val"])):
    ex = src["val"][i]
    np.testing.assert_allclose(ex["keypoints"].reshape(-1),
                               by_id[int(ex["instance_id"])]["keypoints"], atol=1e-3)

  src = tfds.data_source("parsing/atr", data_dir=data_dir)
  ex = src["val"][0]
  assert ex["label"].shape[:2] == ex["image"].shape[:2] and ex["label"].max() < 18

  src = tfds.data_source("counting/shanghaitech_b", data_dir=data_dir)
  for i in range(len(src["test"])):
    ex = src["test"][i]
    assert int(ex["count"]) == ex["points"].shape[0] > 0

  src = tfds.data_source("attributes/peta", data_dir=data_dir)
  assert src["train"][0]["labels"].shape == (10,)

  src = tfds.data_source("detection/caltech", data_dir=data_dir)
  n_boxes = sum(src["train"][i]["boxes"].shape[0] for i in range(len(src["train"])))
  with open(os.path.join(sources, "detection", "mini_caltech", "annotations", "train.json")) as f:
    assert n_boxes == len(json.load(f)["annotations"])
