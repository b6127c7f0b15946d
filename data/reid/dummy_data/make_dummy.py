"""Writes the ReID dummy data (real source layouts, 32x32 images). Run from the repo root:
``python -m data.reid.dummy_data.make_dummy``."""
import os
import shutil

from data import dummy

HERE = os.path.dirname(os.path.abspath(__file__))


def market():
  write_market(dummy.fresh(os.path.join(HERE, "market1501")))


def write_market(root, seed=0):
  """Market-1501 folders (bounding_box_train, query, bounding_box_test) under ``root``."""
  # (folder, name): pids 2/7/10 train; -1 junk; 0000 distractor.
  files = {
      "bounding_box_train": ["0002_c1s1_000451_01.jpg", "0002_c2s1_000551_01.jpg",
                             "0007_c1s1_001051_02.jpg", "0010_c3s2_002001_01.jpg",
                             "0010_c4s2_002101_01.jpg", "-1_c1s1_000001_00.jpg",
                             "0000_c2s1_000002_00.jpg"],
      "query": ["0002_c3s1_000601_00.jpg", "0010_c1s2_001901_00.jpg", "-1_c2s1_000003_00.jpg"],
      "bounding_box_test": ["0002_c1s1_000701_03.jpg", "0010_c2s2_002201_01.jpg",
                            "0000_c4s1_000004_00.jpg", "-1_c5s1_000005_00.jpg"],
  }
  for folder, names in files.items():
    for n in names:
      dummy.write_image(os.path.join(root, folder, n), seed, 32, 16)
      seed += 1
  dummy.write_text(os.path.join(root, "readme.txt"), ["dummy Market-1501"])


def msmt():
  write_msmt(dummy.fresh(os.path.join(HERE, "msmt17")))


def write_msmt(root, seed=100):
  """MSMT17_V1: train/, test/ and the four list files under ``root``."""
  lists = {
      "list_train.txt": ("train", [("0000/0000_000_01_0303morning_0015_0.jpg", 0),
                                   ("0000/0000_001_05_0303morning_0016_0.jpg", 0),
                                   ("0003/0003_000_02_0303noon_0100_1.jpg", 3)]),
      "list_val.txt": ("train", [("0001/0001_000_15_0303noon_0200_0.jpg", 1)]),
      "list_query.txt": ("test", [("0000/0000_000_07_0303morning_0001_0.jpg", 0)]),
      "list_gallery.txt": ("test", [("0000/0000_003_08_0303afternoon_0002_0.jpg", 0),
                                    ("0005/0005_000_03_0304morning_0003_1.jpg", 5)]),
  }
  for lname, (folder, entries) in lists.items():
    for rel, _ in entries:
      dummy.write_image(os.path.join(root, folder, rel), seed, 32, 16)
      seed += 1
    dummy.write_text(os.path.join(root, lname), [f"{rel} {pid}" for rel, pid in entries])


def sensereid():
  root = dummy.fresh(os.path.join(HERE, "sensereid"))
  for i, n in enumerate(["0001_0.jpg", "0004_0.jpg"]):
    dummy.write_image(os.path.join(root, "test_probe", n), 200 + i, 32, 16)
  for i, n in enumerate(["0001_1.jpg", "0004_1.jpg", "0009_1.jpg"]):
    dummy.write_image(os.path.join(root, "test_gallery", n), 210 + i, 32, 16)


def id_lists():
  root = dummy.fresh(os.path.join(HERE, "luperson_nl"))
  # Two lists; ids are offset per list: (a, 5), (a, 9), (b, 3), (b, 5) -> 0, 1, 2, 3.
  for sub, entries in {"a": [("img/x0.jpg", 5), ("img/x1.jpg", 9), ("img/x2.jpg", 5)],
                       "b": [("y/0.jpg", 5), ("y/1.jpg", 3)]}.items():
    for i, (rel, _) in enumerate(entries):
      dummy.write_image(os.path.join(root, sub, rel), 300 + 10 * ord(sub) + i, 32, 16)
    dummy.write_text(os.path.join(root, sub, "fileList.txt"), [rel for rel, _ in entries])
    dummy.write_text(os.path.join(root, sub, "metaList.txt"),
                     ["pid"] + [str(pid) for _, pid in entries])


def last():
  write_last(dummy.fresh(os.path.join(HERE, "last")))


def write_last(root, seed=400):
  """LaST (github.com/shuxjweb/last): pid folders under train/ and */gallery/, flat */query/.
  Names '<pid>_<clothes>_<movie>_<frame>.jpg' stand in for the real ones (only the first '_'
  field is read)."""
  files = {
      "train": ["000120/000120_0_tt0001_000101.jpg", "000120/000120_1_tt0001_000340.jpg",
                "000015/000015_0_tt0002_000007.jpg", "004999/004999_0_tt0003_000900.jpg"],
      "val/query": ["005010_0_tt0004_000011.jpg"],
      "val/gallery": ["005010/005010_0_tt0004_000120.jpg", "005011/005011_0_tt0004_000200.jpg"],
      "test/query": ["005100_0_tt0005_000010.jpg", "005230_0_tt0006_000020.jpg"],
      "test/gallery": ["005100/005100_1_tt0005_000400.jpg", "005230/005230_0_tt0006_000500.jpg",
                       "005300/005300_0_tt0007_000600.jpg"],
  }
  for folder, names in files.items():
    for n in names:
      dummy.write_image(os.path.join(root, folder, n), seed, 32, 16)
      seed += 1


def prcc():
  write_prcc(dummy.fresh(os.path.join(HERE, "prcc")))


def write_prcc(root, seed=500):
  """PRCC: rgb/train/<pid>/<A|B|C>_*.jpg, rgb/test/<A|B|C>/<pid>/*.jpg, rgb/val (not read)."""
  files = {
      "rgb/train": ["001/A_cropped_rgb001.jpg", "001/C_cropped_rgb010.jpg",
                    "003/B_cropped_rgb002.jpg", "003/A_cropped_rgb005.jpg",
                    "010/C_cropped_rgb100.jpg"],
      "rgb/val": ["001/A_cropped_rgb020.jpg"],
      "rgb/test/A": ["205/cropped_rgb001.jpg", "206/cropped_rgb001.jpg"],
      "rgb/test/B": ["205/cropped_rgb050.jpg"],
      "rgb/test/C": ["205/cropped_rgb100.jpg", "206/cropped_rgb100.jpg", "206/cropped_rgb101.jpg"],
  }
  for folder, names in files.items():
    for n in names:
      dummy.write_image(os.path.join(root, folder, n), seed, 32, 16)
      seed += 1


def dg_market():
  write_dg_market(dummy.fresh(os.path.join(HERE, "dg_market")))


def write_dg_market(root, seed=600):
  """DG-Market: one folder of generated images named as DG-Net's generator writes them,
  '<structure label>_<appearance label>_gan<Market-1501 name of the appearance image>.jpg'."""
  names = ["000_000_gan0002_c1s1_000451_01.jpg", "417_000_gan0002_c2s1_000551_01.jpg",
           "003_001_gan0007_c1s1_001051_02.jpg", "750_002_gan1500_c6s3_086542_02.jpg",
           "012_002_gan1500_c5s3_086000_01.jpg"]
  for i, n in enumerate(names):
    dummy.write_image(os.path.join(root, n), seed + i, 32, 16)


def mars():
  write_mars(dummy.fresh(os.path.join(HERE, "mars")))


def write_mars(root, seed=700):
  """MARS as distributed (MARS-v160809; layout as the publisher's page
  zheng-lab.cecs.anu.edu.au/Project/project_mars.html describes it and public loaders read it,
  e.g. torchreid's video/mars.py): ``bbox_train/<pid>/<pid>C<cam>T<tracklet>F<frame>.jpg`` and
  ``bbox_test/`` likewise, with the distractor folder ``0000`` and the junk folder ``00-1``. Train
  pids 3 (two tracklets, cameras 1 and 4), 11 and 20. info/ (from the MARS-evaluation repository)
  is not read by the builder and not written here."""
  files = {
      "bbox_train": ["0003/0003C1T0001F001.jpg", "0003/0003C1T0001F002.jpg",
                     "0003/0003C4T0002F001.jpg", "0011/0011C2T0001F001.jpg",
                     "0011/0011C2T0001F002.jpg", "0011/0011C2T0001F003.jpg",
                     "0020/0020C6T0001F001.jpg"],
      "bbox_test": ["0002/0002C1T0001F001.jpg", "0002/0002C3T0002F001.jpg",
                    "0000/0000C5T0001F001.jpg", "00-1/00-1C2T0001F001.jpg"],
  }
  for folder, names in files.items():
    for n in names:
      dummy.write_image(os.path.join(root, folder, n), seed, 32, 16)
      seed += 1


def write_market_style(root, files, seed):
  """{folder: [name, ...]} of Market-style PID_cCAM names under ``root``."""
  for folder, names in files.items():
    for n in names:
      dummy.write_image(os.path.join(root, folder, n), seed, 32, 16)
      seed += 1


def reid_4sets_native():
  """The authors' reid_4sets sources side by side, in their publishers' folder names: Market-1501
  (pids 2, 7, 10 in train), DukeMTMC-reID (5, 12), CUHK03-NP labelled (1, 3, 4; detected/ holds
  other ids and must not be read), MSMT17_V1 (list_train 0, 3; list_val's id 1 is not read)."""
  root = dummy.fresh(os.path.join(HERE, "reid_4sets_native"))
  write_market(os.path.join(root, "Market-1501-v15.09.15"), seed=1000)
  write_market_style(os.path.join(root, "DukeMTMC-reID"), {
      "bounding_box_train": ["0005_c2_f0046182.jpg", "0005_c5_f0051341.jpg",
                             "0012_c1_f0057703.jpg"],
      "query": ["0005_c1_f0046300.jpg"],
      "bounding_box_test": ["0005_c3_f0046400.jpg", "0000_c4_f0046500.jpg"]}, seed=1100)
  write_market_style(os.path.join(root, "cuhk03-np"), {
      "labeled/bounding_box_train": ["0001_c1_1.png", "0001_c2_6.png", "0003_c1_2.png",
                                     "0004_c2_7.png"],
      "labeled/query": ["0701_c1_1.png"], "labeled/bounding_box_test": ["0701_c2_6.png"],
      "detected/bounding_box_train": ["0009_c1_1.png", "0009_c2_6.png"],
      "detected/query": ["0701_c1_1.png"], "detected/bounding_box_test": ["0701_c2_6.png"]},
      seed=1200)
  write_msmt(os.path.join(root, "MSMT17_V1"), seed=1300)


def last_prcc_dgmarket_native():
  """The authors' reid_LaST_PRCC_DGMarket sources side by side: DG-Market (Market pids 2, 7,
  1500), PRCC (1, 3, 10 in rgb/train), LaST (15, 120, 4999 in train/)."""
  root = dummy.fresh(os.path.join(HERE, "last_prcc_dgmarket_native"))
  write_dg_market(os.path.join(root, "DG-Market"), seed=1400)
  write_prcc(os.path.join(root, "prcc"), seed=1500)
  write_last(os.path.join(root, "LaST"), seed=1600)


def sensereid_train_native():
  """The authors' SenseReID finetuning sources side by side (REFERENCE §6.3): the
  reid_4sets_native dummy's four publisher folders, copied, then MARS (copied from the mars
  dummy) in its folder 'MARS'. Run after reid_4sets_native() and mars()."""
  root = os.path.join(HERE, "sensereid_train_native")
  shutil.rmtree(root, ignore_errors=True)
  shutil.copytree(os.path.join(HERE, "reid_4sets_native"), root)
  shutil.copytree(os.path.join(HERE, "mars"), os.path.join(root, "MARS"))


if __name__ == "__main__":
  market()
  msmt()
  sensereid()
  id_lists()
  last()
  prcc()
  dg_market()
  reid_4sets_native()
  last_prcc_dgmarket_native()
  mars()
  sensereid_train_native()
