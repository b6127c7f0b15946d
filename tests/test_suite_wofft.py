"""The suite's w/o-FT protocol (``--protocol=none``: a pretraining run's heads evaluated directly)
and COCO keypoint AP's person boxes (detector boxes when prepared, else labelled GT boxes)."""
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from path_jax import paper_results, suite  # noqa: E402


# ------------------------------------------------------------------------------------------------
# The mapping: suite dataset -> pretraining head.


def test_paper_wofft_row_is_table3():
  """Table 3, ViT-B "PATH (w/o FT)": parsing, ReID, detection, pose; '-' elsewhere."""
  row = paper_results.PATH_B["none"]
  assert {k: v for k, v in row.items() if v is not None} == {
      "h36m_parsing": 63.9, "lip": 56.3, "cihp": 63.9, "market1501": 88.6, "msmt17": 66.3,
      "cuhk03": 77.2, "crowdhuman": 89.1, "coco": 75.0, "h36m_pose": 6.9, "aic": 31.1}
  assert paper_results.PROTOCOL_ROWS["none"] == "PATH (w/o FT)"
  assert suite.PROTOCOL_TITLES[suite.WOFT] == "w/o FT"


def test_every_wofft_column_has_a_pretraining_head_with_an_eval_split():
  from configs import humanbench
  heads = humanbench.PRETRAINED_HEADS
  rows = {r.name: r for r in humanbench.PRETRAIN_ROWS}
  downstream = {d.name: d for d in humanbench.DOWNSTREAM}
  # Every column with a paper w/o-FT number has a head; every head is an in-dataset set.
  numbered = {k for k, v in paper_results.PATH_B["none"].items() if v is not None}
  assert numbered <= set(heads)
  assert set(heads) - numbered == {"pa100k", "rapv2"}        # heads, but Table 3 gives '-'
  assert not {"atr", "sensereid", "caltech", "mpii", "peta"} & set(heads)   # out-of-dataset
  datasets = humanbench.pretrain_datasets(data_dir="/data")
  for name, head in heads.items():
    assert rows[head.row].task == downstream[name].task, name
    assert datasets[head.row].eval_split, head.row          # pretraining metrics evaluate it
  # The merged ReID row: one head for three columns; Market-1501 stands for it in pretraining,
  # read from the root data dir (as the row's own data is).
  assert {n for n, h in heads.items() if h.row == "reid_4sets"} == {"market1501", "msmt17",
                                                                     "cuhk03"}
  r = datasets.reid_4sets
  assert (r.eval_split, r.eval_tfds_name, r.eval_data_dir, r.data_dir) == (
      "query+gallery", "reid/market1501", "/data", "")
  # The merged attribute row: RAPv2's 54 columns then PA-100K's 26, all of the 80 outputs.
  assert heads["rapv2"].columns == (0, 54) and heads["pa100k"].columns == (54, 80)
  assert datasets.attr_rap2_pa100k.num_attributes == 80
  assert datasets.attr_rap2_pa100k.eval_split == "test"
  for name in ("rapv2", "pa100k"):
    start, stop = heads[name].columns
    assert stop - start == downstream[name].fields["num_attributes"]


def test_mini_suite_adds_the_in_dataset_sets_under_wofft_only():
  from configs import demo, mini_suite
  plain = [e.name for e in suite.suite_entries("mini", "full")]
  wofft = [e.name for e in suite.suite_entries("mini", suite.WOFT)]
  assert set(wofft) - set(plain) == set(mini_suite.IN_DATASET_NAMES)
  assert set(demo.get_config("pretrain").datasets) == set(mini_suite.IN_DATASET_NAMES)
  assert set(mini_suite.PRETRAINED_HEADS) == set(mini_suite.IN_DATASET_NAMES)
  order = paper_results.TOP_HALF + paper_results.BOTTOM_HALF
  stands = [e.stands_for for e in suite.suite_entries("mini", suite.WOFT)]
  assert stands == sorted(stands, key=order.index) and len(set(stands)) == len(stands)
  cfg = mini_suite.in_dataset_config("mini_coco")
  assert list(cfg.datasets) == ["mini_coco"] and cfg.datasets.mini_coco.eval_metric == "coco_ap"


def _fake_pretraining_run(path, datasets):
  """A pretraining workdir with only its config.json (no checkpoint: nothing may restore)."""
  from configs import common
  c = common.base_config()
  c.datasets = datasets
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write(c.to_json_best_effort(indent=2))
  return str(path)


def test_humanbench_wofft_rows_without_data(tmp_path):
  """No prepared data: every set with a head is skipped with its evaluation data's build command
  only (nothing trains), the rest are 'not pretrained (no head)'; the table has the paper's
  w/o-FT row and COCO says GT boxes."""
  from configs import humanbench
  run = _fake_pretraining_run(tmp_path / "pre", humanbench.pretrain_datasets())
  empty = str(tmp_path / "no_data")
  out = suite.run_suite(backbone=run, protocol="none", workdir=str(tmp_path / "w"),
                        suite="humanbench", data_dir=empty)
  recs = out["datasets"]
  assert list(recs) == list(paper_results.TOP_HALF + paper_results.BOTTOM_HALF)
  for name, r in recs.items():
    assert r["paper"] == paper_results.PATH_B["none"][name]
    if name in humanbench.PRETRAINED_HEADS:
      assert r["status"] == "skipped", (name, r)
      assert r["head"] == humanbench.PRETRAINED_HEADS[name].row
      # Only the evaluation split is needed (finetuning would need the training split too).
      assert all(" split 'train' " not in part for part in r["reason"].split(";")), r["reason"]
    else:
      assert r["status"] == "not_pretrained", (name, r)
      assert r["reason"].startswith(suite.NOT_PRETRAINED)
  assert recs["pa100k"]["head_columns"] == [54, 80]
  assert recs["coco"]["boxes"] == "GT boxes"
  md = (tmp_path / "w" / "results.md").read_text()
  assert "protocol none (w/o FT)" in md
  assert "| paper PATH-B (w/o FT) |" in md
  assert "| ours (w/o FT) |" in md and suite.NOT_PRETRAINED in md
  assert "## Not pretrained (no head)" in md and "- **peta**: not pretrained (no head)" in md
  assert "COCO<br>AP, GT boxes" in md


def test_wofft_refuses_what_is_not_a_pretraining_run(tmp_path):
  (tmp_path / "export").mkdir()
  with pytest.raises(FileNotFoundError, match="config.json is missing"):
    suite.run_suite(backbone=str(tmp_path / "export"), protocol="none",
                    workdir=str(tmp_path / "w"), suite="mini")
  with pytest.raises(ValueError, match="pretraining run's heads"):
    suite.run_suite(backbone=suite.RANDOM_INIT, protocol="none", workdir=str(tmp_path / "w"),
                    suite="mini")
  from configs import mini_suite
  ft = mini_suite.get_config("dataset=mini_peta")
  run = _fake_pretraining_run(tmp_path / "ft", ft.datasets)
  cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
  cfg["mode"] = "finetune"
  (tmp_path / "ft" / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(ValueError, match="'finetune' run"):
    suite.run_suite(backbone=run, protocol="none", workdir=str(tmp_path / "w"), suite="mini")


def test_head_problem_names_mismatched_label_spaces():
  import ml_collections
  row = ml_collections.ConfigDict(dict(task="attributes", num_attributes=80))
  target = ml_collections.ConfigDict(dict(task="attributes", num_attributes=26))
  assert suite.head_problem(row, target, (54, 80)) == ""
  assert "columns (0, 54)" in suite.head_problem(row, target, (0, 54))
  assert "num_attributes=80" in suite.head_problem(row, target, None)
  parsing = ml_collections.ConfigDict(dict(task="parsing", num_classes=20))
  assert "num_classes" in suite.head_problem(
      parsing, ml_collections.ConfigDict(dict(task="parsing", num_classes=18)), None)
  reid = ml_collections.ConfigDict(dict(task="reid", num_classes=3261))
  assert suite.head_problem(reid, ml_collections.ConfigDict(dict(task="reid",
                                                                   num_classes=751)), None) == ""


# ------------------------------------------------------------------------------------------------
# COCO keypoint AP: detector boxes when the detections are prepared.


@pytest.fixture(scope="module")
def coco_with_and_without_dets(tmp_path_factory):
  """pose/coco (humanbench_mini's sources) built twice: without and with a person detections
  file (-> split 'val_dets')."""
  from data import build as build_mod
  from data import dummy
  from data.humanbench_mini import generate
  src = str(tmp_path_factory.mktemp("src"))
  generate.generate(src, seed=0, size="tiny", only=("mini_coco",))
  root = os.path.join(src, "pose", "mini_coco")
  plain = str(tmp_path_factory.mktemp("plain"))
  build_mod.build("pose/coco", root, plain, strict=True)
  with open(os.path.join(root, "annotations", "person_keypoints_val2017.json")) as f:
    coco = json.load(f)
  dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9}
          for a in coco["annotations"]]
  dummy.write_json(os.path.join(root, "person_detection_results",
                                "COCO_val2017_detections_AP_H_56_person.json"), dets)
  with_dets = str(tmp_path_factory.mktemp("dets"))
  build_mod.build("pose/coco", root, with_dets, strict=True)
  return plain, with_dets


def test_coco_ap_uses_detector_boxes_when_prepared(coco_with_and_without_dets):
  from configs.finetune import coco
  plain, with_dets = coco_with_and_without_dets
  for data_dir, split, label in ((plain, "val", "GT boxes"), (with_dets, "val_dets",
                                                              "det boxes")):
    cfg = coco.get_config("protocol=full")
    cfg.data_dir = data_dir
    suite.choose_pose_boxes(cfg, "coco")
    assert cfg.datasets.coco.eval_split == split
    assert suite.pose_boxes(cfg, "coco") == label
    # The evaluator then scores that split against the 'val' ground truth.
    assert not suite.missing_data(cfg, train=False)
  # An explicit override wins (applied after the choice): ground-truth boxes on request.
  cfg = coco.get_config("protocol=full")
  cfg.data_dir = with_dets
  suite.choose_pose_boxes(cfg, "coco")
  suite.apply_overrides(cfg, "coco", ["coco:dataset.eval_split=val"])
  assert suite.pose_boxes(cfg, "coco") == "GT boxes"
  # Other pose metrics are not about boxes.
  from configs.finetune import h36m_pose
  cfg = h36m_pose.get_config()
  cfg.data_dir = with_dets
  suite.choose_pose_boxes(cfg, "h36m_pose")
  assert cfg.datasets.h36m_pose.eval_split == "val" and suite.pose_boxes(cfg, "h36m_pose") is None


def test_the_table_says_which_boxes():
  rec = {"stands_for": "coco", "status": "ok", "value": 70.0, "paper": 76.3, "boxes": "det boxes",
         "metric": {"key": "AP", "label": "AP", "lower_is_better": False, "scale": 100.0}}
  md = suite.render_markdown({"suite": "humanbench", "protocol": "full", "backbone": "b",
                              "datasets": {"coco": rec}})
  assert "COCO<br>AP, det boxes" in md and '"det boxes" on the person detections' in md


# ------------------------------------------------------------------------------------------------
# A real (short) pretraining run: the suite's w/o-FT numbers are its heads' evaluations.


def _tiny_pretrain_config(data_dir, steps):
  from configs import mini_suite
  cfg = mini_suite.pretrain_config(steps)
  cfg.data_dir = data_dir
  del cfg.datasets.mini_lip
  cfg.model.backbone.update(width=32, depth=2, num_heads=2, mlp_dim=64)
  cfg.datasets.mini_market.batch_size = 16
  cfg.datasets.mini_coco.batch_size = 8
  cfg.datasets.mini_coco.deconv_features = (16, 16)
  cfg.datasets.mini_pa100k.batch_size = 8
  cfg.train.log_every = steps
  # Task metrics at the last step on every example: what w/o FT must reproduce.
  cfg.train.metrics_every = steps
  cfg.train.metrics_max_examples = 0
  cfg.evaluate.pictures = 0
  return cfg


@pytest.mark.slow
def test_wofft_metrics_are_the_pretraining_heads(tmp_path):
  """Pretrain 2 steps (tiny model, 3 heads), then ``--protocol=none``: ReID and attribute
  metrics equal what the run's own task metrics (train.metrics_every, every example) computed
  for the same checkpoint; COCO is scored with keypoint AP on GT boxes (no detections in the
  mini data); sets without a head are 'not pretrained'. ~70 s on 2 cores."""
  from data.humanbench_mini import build_all
  from path_jax import train
  data = str(tmp_path / "tfds")
  build_all.build_all(data, only=("mini_market", "mini_coco", "mini_pa100k", "mini_atr"))
  run = str(tmp_path / "pre")
  train.run(_tiny_pretrain_config(data, 2), run)
  with open(os.path.join(run, "eval_steps", "2", "results.json")) as f:
    during = json.load(f)
  out = suite.run_suite(backbone=run, protocol="none", workdir=str(tmp_path / "w"), suite="mini",
                        data_dir=data, chance=False,
                        datasets=["mini_market", "mini_coco", "mini_pa100k", "mini_atr",
                                  "mini_lip"])
  recs = out["datasets"]
  for name in ("mini_market", "mini_pa100k"):
    r = recs[name]
    assert r["status"] == "ok" and r["head"] == name and r["step"] == 2, r
    assert r["metrics"] == pytest.approx(during[name], rel=1e-6), name
  assert recs["mini_market"]["value"] == pytest.approx(100 * during["mini_market"]["mAP"])
  coco = recs["mini_coco"]
  assert coco["status"] == "ok" and coco["boxes"] == "GT boxes", coco
  assert 0.0 <= coco["metrics"]["AP"] <= 1.0 and "EPE" in during["mini_coco"]
  assert recs["mini_atr"]["status"] == "not_pretrained"
  # The run has no mini_lip row (removed above): not pretrained, named.
  assert recs["mini_lip"]["status"] == "not_pretrained"
  assert "no 'mini_lip' row" in recs["mini_lip"]["reason"]
  md = (tmp_path / "w" / "results.md").read_text()
  assert f"`{os.path.abspath(run)}`, step 2" in md
