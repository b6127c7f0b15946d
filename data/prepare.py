"""Prepares every HumanBench dataset found under one raw folder, with the paper's de-duplication.

    python -m data.prepare --raw_root=/raw --data_dir=/data/tfds [--only=a,b] \
        [--exclude_threshold=0] [--frame_every=8] [--dry_run] [--overwrite] [--rehash]

1. Finds each dataset of :data:`DATASETS` under ``raw_root`` by its publisher's folder name. The
   authors' merged rows (``reid_4sets``, ``reid_last_prcc_dgmarket``, ``attr_rap2_pa100k``,
   ``attr_5set``, ``det_5set``) read their sources side by side from ``raw_root`` itself and are
   found when every source is; a source that is only part of a merged row (role 'source', e.g.
   LaST, WiderPerson, UAV-Human) is reported found or missing and not built alone.
2. Hashes (dHash) the evaluation splits (every split but ``train``) of every evaluation dataset
   found, from the raw files, into ``data_dir/eval_hashes.txt`` (data/tools/dedup.py format;
   per-dataset caches in ``data_dir/eval_hashes/``, recomputed with ``--rehash``). All found
   evaluation sets are hashed, also under ``--only``, so a partial run never weakens the
   exclusion.
3. Builds the evaluation datasets, then the pretraining ones (``data/build.py``'s ``build``).
   Every dataset whose ``train`` split is pretraining data is built with
   ``exclude_hashes=eval_hashes.txt`` (the evaluation sets' own train splits included);
   evaluation-only sets keep their train split whole (their finetuning protocol). Video-derived
   configs keep 1 train frame in ``frame_every``.
4. Prints a checklist (found / missing with the download site and the folder expected / built
   with N records, M duplicates excluded, K of L frames kept / already built / built with other
   options / failed with the error, nothing written) and image totals per task against Table 1
   of the paper, and writes it as ``data_dir/prepare_checklist.json``.

Safe to rerun: a dataset built with the same options (hash file digest included) is skipped; one
built with other options is reported and rebuilt only with ``--overwrite``; a failed build
leaves nothing behind (data/build.py builds in ``data_dir/.incomplete/``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from typing import Sequence

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from data import build as build_mod  # noqa: E402
from data import common  # noqa: E402
from data.tools import dedup  # noqa: E402

EVAL, PRETRAIN, BOTH, SOURCE = "eval", "pretrain", "eval+pretrain", "source"


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One row of the preparation table.

  ``folders``: the publisher's folder name(s) under ``raw_root`` (first = the one to create);
  ``subdir``: the builder's manual_dir inside that folder ('' = the folder itself); ``role``:
  'eval' (a Table 3 evaluation set, finetuning train split), 'pretrain' (train split in the
  pretraining mix), 'eval+pretrain' or 'source' (read only as part of a merged row: found or
  missing is reported, nothing is built for it alone); ``paper_images``: the number of training
  samples of this row in the authors' mix (REFERENCE.md §4.7; Table 1 of the paper gives
  per-task totals only: :data:`TABLE1`); ``sources``: for a merged row, the names of the rows
  whose folders it reads side by side (its manual_dir is ``raw_root`` itself; it is found when
  every source is).
  """
  name: str
  tfds_name: str
  folders: tuple
  url: str
  role: str
  paper_images: int | None = None
  subdir: str = ""
  sources: tuple = ()

  @property
  def task(self) -> str:
    return self.tfds_name.split("/")[0]


def _d(name, tfds_name, folders, url, role, paper_images=None, subdir=""):
  folders = (folders,) if isinstance(folders, str) else tuple(folders)
  return Dataset(name, tfds_name, folders, url, role, paper_images, subdir)


def _merged(name, tfds_name, sources, paper_images):
  return Dataset(name, tfds_name, (), "the sources' sites (their rows)", PRETRAIN, paper_images,
                 sources=tuple(sources))


# The datasets this command knows: evaluation sets (paper Table 3), pretraining sets, the sources
# of the authors' merged rows and the merged rows themselves (read from raw_root itself).
# paper_images: the authors' sample counts per pretraining row (REFERENCE.md §4.7).
DATASETS = (
    # ---- person ReID
    _d("market1501", "reid/market1501", ("Market-1501-v15.09.15", "Market-1501"),
       "https://zheng-lab.cecs.anu.edu.au/Project/project_reid.html", BOTH),
    _d("dukemtmc", "reid/dukemtmc", ("DukeMTMC-reID",),
       "https://github.com/layumi/DukeMTMC-reID_evaluation (withdrawn by its publisher)",
       SOURCE),
    _d("cuhk03", "reid/cuhk03_np_labeled", ("cuhk03-np",),
       "https://github.com/zhunzhong07/person-re-ranking/tree/master/CUHK03-NP", BOTH),
    _d("msmt17", "reid/msmt17", ("MSMT17_V1", "MSMT17_V2", "MSMT17"),
       "https://www.pkuvmc.com/dataset.html", BOTH),
    _d("sensereid", "reid/sensereid", ("SenseReID",),
       "SenseReID (Zhao et al., CVPR 2017, Spindle Net): the authors' release", EVAL),
    _d("luperson_nl", "reid/luperson_nl", ("LUPerson-NL",),
       "https://github.com/DengpanFu/LUPerson-NL (filter ids with data/tools/identity_filter.py)",
       PRETRAIN, paper_images=5_000_000),
    _d("last", "reid/last", ("last", "LaST"), "https://github.com/shuxjweb/last", SOURCE),
    _d("prcc", "reid/prcc", ("prcc", "PRCC"),
       "http://www.isee-ai.cn/~yangqize/clothing.html (PRCC, Yang et al., TPAMI 2021)", SOURCE),
    _d("dg_market", "reid/dg_market", ("DG-Market", "DGMarket"),
       "https://github.com/NVlabs/DG-Net#dg-market", SOURCE),
    _d("mars", "reid/mars", ("MARS", "mars", "MARS-v160809"),
       "http://zheng-lab.cecs.anu.edu.au/Project/project_mars.html (MARS-v160809: bbox_train)",
       SOURCE),
    # SenseReID's finetuning train set (no split of its own): kept whole, not de-duplicated.
    Dataset("sensereid_train", "reid/sensereid_train_native", (),
            "the sources' sites (their rows)", EVAL,
            sources=("market1501", "dukemtmc", "cuhk03", "msmt17", "mars")),
    _merged("reid_4sets", "reid/reid_4sets_native", ("market1501", "dukemtmc", "cuhk03", "msmt17"),
            67_070),
    _merged("reid_last_prcc_dgmarket", "reid/last_prcc_dgmarket_native",
            ("dg_market", "prcc", "last"), 217_453),
    # ---- pose
    _d("coco", "pose/coco", ("coco", "COCO"), "https://cocodataset.org/#download", BOTH,
       paper_images=149_813),
    _d("aic", "pose/aic_native", ("ai_challenger", "aic"),
       "https://github.com/AIChallenger/AI_Challenger_2017", BOTH, paper_images=378_352),
    _d("h36m_pose", "pose/h36m_native", ("h36m", "Human3.6M"),
       "http://vision.imar.ro/human3.6m (Poses D2_Positions and Videos per subject; frames: "
       "python -m data.tools.extract_frames)", BOTH, paper_images=312_187),
    _d("mpii", "pose/mpii", ("mpii", "MPII"), "http://human-pose.mpi-inf.mpg.de", EVAL),
    _d("posetrack", "pose/posetrack_native", ("PoseTrack", "posetrack18", "posetrack"),
       "https://posetrack.net (registration)", PRETRAIN, paper_images=97_174,
       subdir="posetrack_data"),
    _d("jrdb", "pose/jrdb_native", ("JRDB2022", "JRDB", "jrdb2022"),
       "https://jrdb.erc.monash.edu/#downloads (JRDB 2022 Full Train Dataset)", PRETRAIN,
       paper_images=310_035, subdir="train_dataset_with_activity"),
    _d("mhp", "pose/mhp_native", ("LV-MHP-v2", "mhp"), "https://lv-mhp.github.io", PRETRAIN,
       paper_images=41_128),
    _d("penn_action", "pose/penn_action_native", ("Penn_Action", "penn_action"),
       "http://dreamdragon.github.io/PennAction/", PRETRAIN, paper_images=163_839),
    _d("3dpw", "pose/3dpw_native", ("3DPW", "3dpw"), "https://virtualhumans.mpi-inf.mpg.de/3DPW/",
       PRETRAIN, paper_images=74_620),
    _d("halpe", "pose/halpe_native", ("halpe", "Halpe"),
       "https://github.com/Fang-Haoshu/Halpe-FullBody", PRETRAIN, paper_images=41_712),
    _d("mpi_inf_3dhp", "pose/mpi_inf_3dhp_native", ("mpi_inf_3dhp", "MPI-INF-3DHP"),
       "https://vcai.mpi-inf.mpg.de/3dhp-dataset/ (get_dataset.sh; frames: "
       "python -m data.tools.extract_frames)", PRETRAIN, paper_images=1_031_701),
    _d("aist", "pose/aist_native", ("aist_plusplus", "AIST++", "aist"),
       "https://google.github.io/aistplusplus_dataset/", PRETRAIN, paper_images=1_015_257),
    # ---- human parsing
    _d("h36m_parsing", "parsing/h36m_native", ("h36m", "Human3.6M"),
       "http://vision.imar.ro/human3.6m (Segments PartLabels and Videos per subject; frames: "
       "python -m data.tools.extract_frames --every 25)", BOTH, paper_images=62_668),
    _d("lip", "parsing/lip", ("LIP",), "https://sysu-hcp.net/lip/", BOTH, paper_images=30_462),
    _d("cihp", "parsing/cihp", ("CIHP",), "https://sysu-hcp.net/lip/overview.php", BOTH,
       paper_images=28_280),
    _d("atr", "parsing/atr", ("ATR",), "https://github.com/lemondan/HumanParsing-Dataset", EVAL),
    _d("vip", "parsing/vip_native", ("VIP",), "https://sysu-hcp.net/lip/overview.php (VIP_Fine)",
       PRETRAIN, paper_images=18_469),
    _d("paperdoll", "parsing/paperdoll_native", ("paperdoll", "PaperDoll"),
       "photos: https://github.com/kyamagu/paperdoll (photos.lmdb); the 20-class parsing maps "
       "are the HumanBench authors' (no public site)", PRETRAIN, paper_images=1_035_825),
    _d("deepfashion2", "parsing/deepfashion2_native", ("DeepFashion2", "deepfashion2"),
       "https://github.com/switchablenorms/DeepFashion2", PRETRAIN, paper_images=191_961),
    _d("modanet", "parsing/modanet_native", ("ModaNet", "modanet"),
       "https://github.com/eBay/modanet (images: PaperDoll photos.lmdb, "
       "https://github.com/kyamagu/paperdoll/tree/master/data/chictopia)", PRETRAIN,
       paper_images=52_245),
    # ---- pedestrian attributes
    _d("pa100k", "attributes/pa100k_native", ("PA-100K", "PA100k", "pa100k"),
       "https://github.com/xh-liu/HydraPlus-Net", BOTH),
    _d("rapv2", "attributes/rapv2_native", ("RAP2", "RAPv2", "rapv2"),
       "http://www.rapdataset.com", BOTH),
    _d("peta", "attributes/peta_native", ("PETA", "peta"),
       "http://mmlab.ie.cuhk.edu.hk/projects/PETA.html (PETA.mat with the partitions: "
       "https://github.com/dangweili/pedestrian-attribute-recognition-pytorch)", EVAL),
    _d("hardhc", "attributes/hardhc_native", ("WIDERAttribute", "WIDER_Attribute", "HARDHC"),
       "http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html", SOURCE),
    _d("uav_human", "attributes/uav_human_native", ("uavhuman", "UAV-Human"),
       "https://github.com/sutdcv/UAV-Human (attribute subset)", SOURCE),
    _d("parse27k", "attributes/parse27k_native", ("Parse27k", "Parse-27k"),
       "https://www.vision.rwth-aachen.de/parse27k", SOURCE),
    _d("duke_attr", "attributes/duke_attr_native", ("DukeMTMC-reID",),
       "https://github.com/vana77/DukeMTMC-attribute (duke_attribute.mat, in the DukeMTMC-reID "
       "folder)", SOURCE),
    _d("market_attr", "attributes/market_attr_native", ("Market-1501-v15.09.15", "Market-1501"),
       "https://github.com/vana77/Market-1501_Attribute (market_attribute.mat, in the "
       "Market-1501 folder)", SOURCE),
    _merged("attr_rap2_pa100k", "attributes/rap2_pa100k_native", ("rapv2", "pa100k"), 157_943),
    _merged("attr_5set", "attributes/attr_5set_native",
            ("hardhc", "uav_human", "parse27k", "duke_attr", "market_attr"), 119_120),
    # ---- pedestrian detection
    _d("crowdhuman", "detection/crowdhuman", ("CrowdHuman", "crowdhuman"),
       "https://www.crowdhuman.org", BOTH, paper_images=15_000),
    _d("caltech", "detection/caltech", ("Caltech", "caltech"),
       "https://data.caltech.edu/records/f6rph-90m20", EVAL),
    _d("citypersons", "detection/citypersons_native", ("CityPersons", "citypersons"),
       "https://github.com/cvgroup-njust/CityPersons (annotations; images: Cityscapes "
       "leftImg8bit_trainvaltest, https://www.cityscapes-dataset.com, extracted alongside)",
       SOURCE),
    _d("widerperson", "detection/widerperson_native", ("WiderPerson", "widerperson"),
       "http://www.cbsr.ia.ac.cn/users/sfzhang/WiderPerson/", SOURCE),
    _d("ecp", "detection/ecp_native", ("ECP", "EuroCityPersons"),
       "https://eurocity-dataset.tudelft.nl (day: labels and images of train and val)", SOURCE),
    _d("wider_pedestrian", "detection/wider_pedestrian_native",
       ("WIDER_Pedestrian", "wider_pedestrian", "WIDER_Pedestrian_2019"),
       "https://wider-challenge.org/2019.html (data: "
       "https://competitions.codalab.org/competitions/20132)", SOURCE),
    _merged("det_5set", "detection/det_5set",
            ("widerperson", "coco", "ecp", "citypersons", "wider_pedestrian"), 245_654),
    # ---- crowd counting (unseen task: evaluation only)
    _d("shanghaitech_a", "counting/shanghaitech_a", ("ShanghaiTech", "shanghaitech"),
       "https://github.com/desenzhou/ShanghaiTechDataset", EVAL),
    _d("shanghaitech_b", "counting/shanghaitech_b", ("ShanghaiTech", "shanghaitech"),
       "https://github.com/desenzhou/ShanghaiTechDataset", EVAL),
)
BY_NAME = {d.name: d for d in DATASETS}

# Table 1 of the paper: task -> (number of datasets, number of pretraining images).
TABLE1 = {"reid": ("Person ReID", 7, 5_446_419), "pose": ("Pose estimation", 11, 3_739_291),
          "parsing": ("Human parsing", 7, 1_419_910),
          "attributes": ("Pedestrian Attribute", 6, 242_880),
          "detection": ("Pedestrian Detection", 6, 170_687)}
TABLE1_TOTAL = (37, 11_019_187)

HASH_FILE = "eval_hashes.txt"
HASH_CACHE = "eval_hashes"
CHECKLIST = "prepare_checklist.json"


def find_folder(raw_root: str, d: Dataset) -> str | None:
  """The dataset's manual_dir under ``raw_root`` (folder names matched exactly, then ignoring
  case, as the merged builders match their sources), or None."""
  hit = common.find_folder(raw_root, d.folders)
  if hit is None:
    return None
  return os.path.join(raw_root, hit, d.subdir) if d.subdir else os.path.join(raw_root, hit)


def eval_hashes(d: Dataset, manual_dir: str, data_dir: str, rehash: bool) -> dict[str, int]:
  """dHashes of ``d``'s evaluation splits, from a per-dataset cache when it was computed from
  the same folder (``rehash`` recomputes)."""
  cache = os.path.join(data_dir, HASH_CACHE, d.tfds_name.replace("/", "_") + ".txt")
  tag = f"manual_dir={os.path.abspath(manual_dir)}"
  if not rehash and os.path.isfile(cache):
    with open(cache, encoding="utf-8") as f:
      if any(ln.strip() == f"# {tag}" for ln in f):
        return dedup.read_hash_file(cache)
  cls, config = build_mod.parse_name(d.tfds_name)
  with tempfile.TemporaryDirectory() as tmp:  # readers may write side files into data_dir
    builder = cls(config=config, data_dir=tmp)
    hashes = common.split_hashes(builder, manual_dir)
  os.makedirs(os.path.dirname(cache), exist_ok=True)
  dedup.write_hash_file(cache, hashes, comment=tag)
  return hashes


def _status_of(error: Exception) -> str:
  """'incomplete' when the folder lacks files of the layout, else 'failed'."""
  return "incomplete" if isinstance(error, common.MissingInputError) else "failed"


def _summary(report: dict | None) -> dict:
  report = report or {}
  splits = report.get("splits", {})
  out = {"records": splits, "train_images": report.get("images", {}).get(
      "train", splits.get("train")), "excluded": report.get("excluded", {}).get("train", 0)}
  fr = report.get("frames", {}).get("train")
  if fr:
    out["frames"] = {"kept": fr["kept_frames"], "of": fr["frames"], "every": fr["every"]}
  return out


def prepare(raw_root: str, data_dir: str, *, only: Sequence[str] | None = None,
            exclude_threshold: int = 0, frame_every: int = common.FRAME_EVERY,
            dry_run: bool = False, overwrite: bool = False, rehash: bool = False,
            datasets: Sequence[Dataset] = DATASETS) -> dict:
  """Runs the preparation (module docstring); returns the checklist (also written to
  ``data_dir/prepare_checklist.json`` unless ``dry_run``)."""
  if only:
    unknown = sorted(set(only) - {d.name for d in datasets})
    if unknown:
      raise ValueError(f"--only: unknown datasets {unknown}; known: "
                       f"{sorted(d.name for d in datasets)}")
  found = {d.name: find_folder(raw_root, d) for d in datasets if not d.sources}
  by_name = {d.name: d for d in datasets}
  for d in datasets:   # a merged row reads raw_root itself, once every source is there
    if d.sources:
      found[d.name] = raw_root if all(found.get(s) for s in d.sources) else None
  selected = [d for d in datasets if not only or d.name in only]
  rows = {d.name: {"dataset": d.name, "tfds_name": d.tfds_name, "task": d.task, "role": d.role,
                   "manual_dir": found[d.name]} for d in selected}
  for d in selected:
    if d.sources:
      rows[d.name]["sources"] = list(d.sources)
      if found[d.name] is None:
        missing = [s for s in d.sources if not found.get(s)]
        rows[d.name].update(status="missing", missing_sources=missing, expected_folder=", ".join(
            os.path.join(raw_root, by_name[s].folders[0]) for s in missing),
                            folders=[f for s in missing for f in by_name[s].folders],
                            download=f"see the rows of {', '.join(missing)}")
    elif found[d.name] is None:
      rows[d.name].update(status="missing", expected_folder=os.path.join(raw_root, d.folders[0]),
                          folders=list(d.folders), download=d.url)
    elif d.role == SOURCE:
      readers = [m.name for m in datasets if d.name in m.sources]
      rows[d.name].update(status="found", read_by=readers)

  hash_file = os.path.join(data_dir, HASH_FILE)
  hash_info = {"file": hash_file, "threshold": exclude_threshold, "eval_sets": [],
               "failed": {}}  # failed: name -> (status, error)
  if not dry_run:
    os.makedirs(data_dir, exist_ok=True)
    hashes: dict[str, int] = {}
    for d in datasets:  # Every found evaluation set, whatever --only says.
      if d.role in (PRETRAIN, SOURCE) or found[d.name] is None:
        continue
      try:
        h = eval_hashes(d, found[d.name], data_dir, rehash)
      except (common.MissingInputError, common.BadInputError, ValueError, OSError) as e:
        hash_info["failed"][d.name] = (_status_of(e), str(e))
        continue
      hashes.update(h)
      hash_info["eval_sets"].append(d.name)
    dedup.write_hash_file(hash_file, hashes, comment="evaluation splits of: " +
                          ", ".join(hash_info["eval_sets"]))
    hash_info["num_hashes"] = len(hashes)
    hash_info["sha256"] = dedup.file_digest(hash_file)

  order = [d for d in selected if d.role in (EVAL, BOTH)] + [d for d in selected
                                                               if d.role == PRETRAIN]
  for d in order:
    row = rows[d.name]
    if found[d.name] is None:
      continue
    excl = hash_file if d.role != EVAL else None
    if d.role != PRETRAIN and d.name in hash_info["failed"]:
      status, error = hash_info["failed"][d.name]
      row.update(status=status, error=error, written=False)
      continue
    cls, config = build_mod.parse_name(d.tfds_name)
    final = os.path.join(data_dir, cls.name, config, str(cls.VERSION))
    exists = os.path.isdir(final)
    if dry_run:
      row["status"] = "already built (not checked: dry run)" if exists else "would build"
      continue
    options = build_mod.build_options(d.tfds_name, exclude_hashes=excl,
                                      exclude_threshold=exclude_threshold,
                                      frame_every=frame_every)
    if exists:
      diffs = build_mod.options_differences(build_mod.built_report(final), options)
      if not diffs:
        row.update(status="already built", skipped=True,
                   **_summary(build_mod.built_report(final)))
        continue
      if not overwrite:
        row.update(status="built with other options", differences=diffs,
                   fix="rerun with --overwrite to rebuild it")
        continue
    try:
      build_mod.build(d.tfds_name, found[d.name], data_dir, overwrite=exists,
                      exclude_hashes=excl, exclude_threshold=exclude_threshold,
                      frame_every=frame_every)
    except (common.MissingInputError, common.BadInputError, ValueError, OSError) as e:
      row.update(status=_status_of(e), error=str(e), written=False)
      continue
    row.update(status="built", **_summary(build_mod.built_report(final)))

  checklist = {"raw_root": os.path.abspath(raw_root), "data_dir": os.path.abspath(data_dir),
               "exclude": hash_info, "frame_every": frame_every, "dry_run": dry_run,
               "datasets": [rows[d.name] for d in selected], "totals": _totals(rows, datasets)}
  if not dry_run:
    with open(os.path.join(data_dir, CHECKLIST), "w") as f:
      json.dump(checklist, f, indent=1)
  return checklist


def _totals(rows: dict, datasets: Sequence[Dataset]) -> dict:
  """Per task: pretraining train images prepared (datasets built now or before) vs Table 1."""
  out = {}
  # A set whose train split reaches the mix only through a merged row of its own task (Market-1501
  # in reid_4sets, RAPv2 in attr_rap2_pa100k) is counted once, in that row; COCO's pose row
  # counts under pose although det_5set also reads its persons.
  merged_in = {(s, d.task) for d in datasets for s in d.sources}
  mix = {d.name for d in datasets
         if d.role in (PRETRAIN, BOTH) and (d.name, d.task) not in merged_in}
  for task, (title, n_paper, images_paper) in TABLE1.items():
    ready = [r for r in rows.values() if r["task"] == task and r["dataset"] in mix
             and r.get("status") in ("built", "already built")]
    rows_known = [d for d in datasets if d.task == task and d.name in mix]
    out[task] = {"title": title, "datasets": sum(len(r.get("sources", ())) or 1 for r in ready),
                 "images": sum(r.get("train_images") or 0 for r in ready),
                 "paper_datasets": n_paper, "paper_images": images_paper,
                 "known_datasets": sum(len(d.sources) or 1 for d in rows_known),
                 "paper_row_images": sum(d.paper_images or 0 for d in rows_known)}
  return out


def format_checklist(c: dict) -> str:
  lines = [f"HumanBench preparation: raw_root {c['raw_root']} -> data_dir {c['data_dir']}"]
  ex = c["exclude"]
  if not c["dry_run"]:
    lines.append(f"evaluation hashes: {ex.get('num_hashes', 0)} images of "
                 f"{', '.join(ex['eval_sets']) or 'no evaluation set'} -> {ex['file']} "
                 f"(threshold {ex['threshold']} bits)")
  for r in c["datasets"]:
    head = f"[{r['status']}] {r['dataset']} ({r['tfds_name']}, {r['role']})"
    if r["status"] == "missing" and r.get("missing_sources"):
      lines.append(f"{head}: reads {', '.join(r['sources'])} from the raw root; missing: "
                   f"{', '.join(r['missing_sources'])}")
    elif r["status"] == "missing":
      lines.append(f"{head}: put it in {r['expected_folder']} (any of {r['folders']}); "
                   f"download: {r['download']}")
    elif r["status"] == "found":
      lines.append(f"{head}: {r['manual_dir']} (built as part of {', '.join(r['read_by'])})")
    elif r["status"] in ("built", "already built"):
      rec = ", ".join(f"{k}={v}" for k, v in r["records"].items())
      extra = f"; {r['excluded']} train records excluded as duplicates of evaluation images" \
          if r["role"] != EVAL else ""
      if "frames" in r:
        fr = r["frames"]
        extra += f"; sampled {fr['kept']} of {fr['of']} train frames (1 in {fr['every']})"
      lines.append(f"{head}: {rec}{extra}")
    elif r["status"] in ("failed", "incomplete"):
      lines.append(f"{head}: nothing written; " + r["error"].replace("\n", "\n    "))
    elif r["status"] == "built with other options":
      lines.append(f"{head}: kept as is ({'; '.join(r['differences'])}); {r['fix']}")
    else:
      lines.append(f"{head}: {r['manual_dir']}")
  lines.append("pretraining images per task (train splits prepared here vs paper Table 1):")
  for t in c["totals"].values():
    lines.append(f"  {t['title']:<22} {t['images']:>10,} images from {t['datasets']} of "
                 f"{t['known_datasets']} known sets | paper: {t['paper_images']:>10,} from "
                 f"{t['paper_datasets']} datasets")
  lines.append(f"  {'In total':<22} {sum(t['images'] for t in c['totals'].values()):>10,} "
               f"images | paper: {TABLE1_TOTAL[1]:>10,} from {TABLE1_TOTAL[0]} datasets")
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--raw_root", required=True, help="folder holding the publishers' folders")
  p.add_argument("--data_dir", required=True, help="where TFDS datasets are written")
  p.add_argument("--only", default="", help="comma-separated dataset names (default: all)")
  p.add_argument("--exclude_threshold", type=int, default=0,
                 help="max dHash Hamming distance (bits) counted as a duplicate; 0 = the paper")
  p.add_argument("--frame_every", type=int, default=common.FRAME_EVERY,
                 help="video-derived sets: keep 1 train frame in N per video (1: all)")
  p.add_argument("--dry_run", action="store_true", help="find and report; write nothing")
  p.add_argument("--overwrite", action="store_true",
                 help="rebuild datasets built with other options")
  p.add_argument("--rehash", action="store_true",
                 help="recompute the evaluation hashes instead of reading their cache")
  a = p.parse_args(argv)
  only = [s.strip() for s in a.only.split(",") if s.strip()]
  try:
    c = prepare(a.raw_root, a.data_dir, only=only, exclude_threshold=a.exclude_threshold,
                frame_every=a.frame_every, dry_run=a.dry_run, overwrite=a.overwrite,
                rehash=a.rehash)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(format_checklist(c))
  if not a.dry_run:
    print(f"checklist: {os.path.join(a.data_dir, CHECKLIST)}")
  return 1 if any(r["status"] == "failed" for r in c["datasets"]) else 0


if __name__ == "__main__":
  sys.exit(main())
