"""python -m path_jax.ablate: variant configs, the table's arithmetic, and (slow) a real run."""
import json
import os

import numpy as np
import pytest

from path_jax import ablate, paper_results


def _suite(values, lower=()):
  return {"suite": {"datasets": {
      d: {"status": "ok" if v is not None else "failed", "value": v,
          "metric": {"lower_is_better": d in lower}} for d, v in values.items()}}}


def test_variants_follow_table4():
  """(a) A, (b) S, (c) T with a positional embedding per dataset; (d) T with the shared one."""
  from configs import mini_suite
  want = {"a": ("all", "dataset"), "b": ("dataset", "dataset"), "c": ("task", "dataset"),
          "d": ("task", "shared")}
  for v, (share, pos) in want.items():
    cfg = mini_suite.pretrain_config(3)
    ablate.apply_variant(cfg, ablate.VARIANTS[v], seed=7)
    assert (cfg.model.projector.share, cfg.model.backbone.pos_embed, cfg.seed) == (share, pos, 7)
    assert cfg.model.projector.enabled
  cfg = mini_suite.pretrain_config(3)
  ablate.apply_variant(cfg, ablate.VARIANTS["noproj"], seed=0)
  assert not cfg.model.projector.enabled
  assert set(ablate.SUITE_DATASETS["humanbench"]) == set(paper_results.TABLE4_DATASETS)
  # The paper's averages are the means of its seven columns (to its rounding).
  for v, row in paper_results.TABLE4.items():
    assert np.mean([row[d] for d in paper_results.TABLE4_DATASETS]) == pytest.approx(
        row["average"], abs=0.1)


def test_summary_means_spread_average_and_ranking():
  columns = {"x_caltech": "caltech", "x_peta": "peta"}
  runs = {"a": {0: _suite({"x_caltech": 40.0, "x_peta": 80.0}, lower={"x_caltech"}),
                1: _suite({"x_caltech": 50.0, "x_peta": 70.0}, lower={"x_caltech"})},
          "d": {0: _suite({"x_caltech": 30.0, "x_peta": 82.0}, lower={"x_caltech"}),
                1: _suite({"x_caltech": 45.0, "x_peta": None}, lower={"x_caltech"})}}
  s = ablate.summarise(runs, columns)
  a = s["variants"]["a"]
  # Lower-is-better (MR^-2) counts as 100 - value, the paper's dagger.
  assert a["columns"]["x_caltech"]["per_seed"] == [60.0, 50.0]
  assert a["columns"]["x_caltech"]["mean"] == pytest.approx(55.0)
  assert a["columns"]["x_caltech"]["std"] == pytest.approx(np.std([60, 50], ddof=1))
  assert a["columns"]["x_caltech"]["paper"] == paper_results.TABLE4["a"]["caltech"]
  assert a["average"]["per_seed"] == [70.0, 60.0]
  # A seed with a failed dataset has no average; the column mean uses the seeds that ran.
  d = s["variants"]["d"]
  assert d["average"]["per_seed"] == [pytest.approx(76.0)]
  assert d["columns"]["x_peta"]["mean"] == 82.0 and d["columns"]["x_peta"]["std"] is None
  assert s["ranking_per_seed"] == {"0": ["d", "a"], "1": ["a"]}
  assert s["ranking_of_means"] == ["d", "a"] and s["paper_ranking"] == ["d", "a"]
  assert s["same_ordering_as_paper"] is True
  text = ablate.render_markdown(s, {"suite": "mini", "protocol": "full", "seeds": [0, 1]})
  assert "| x_caltech (caltech) | 55.0 ± 7.1 [60.6] |" in text
  assert "same ordering" in text


def test_bad_arguments_are_named(tmp_path):
  with pytest.raises(ValueError, match="--variants"):
    ablate.run_ablation(workdir=str(tmp_path), variants=["e"])
  with pytest.raises(ValueError, match="--datasets"):
    ablate.run_ablation(workdir=str(tmp_path), datasets=["market1501"])
  with pytest.raises(ValueError, match="--pretrain_set"):
    ablate.pretrain_config("mini", "", 2, "", ["train.num_steps"])
  with pytest.raises(KeyError, match="no field"):
    ablate.pretrain_config("mini", "", 2, "", ["train.num_stepz=3"])


@pytest.fixture(scope="module")
def mini_data_dir(tmp_path_factory):
  from data.humanbench_mini import build_all
  d = str(tmp_path_factory.mktemp("mini") / "tfds")
  build_all.build_all(d, size="tiny", only=("mini_market", "mini_coco", "mini_lip",
                                            "mini_pa100k", "mini_peta"))
  return d


@pytest.mark.slow
def test_ablation_runs_end_to_end(tmp_path, mini_data_dir):
  """Two variants (all-shared projector with per-dataset embeddings, and PATH), one seed, a few
  steps: each pretrains on the mini mixture (ReID's cls token with pose, parsing, attributes),
  exports (the keyed embeddings folded into the shared layout), finetunes and evaluates; the
  table and JSON are written, and a rerun reads the finished runs back."""
  work = str(tmp_path / "ablate")
  kw = dict(workdir=work, suite="mini", variants=["a", "d"], seeds=[0],
            datasets=["mini_peta"], data_dir=mini_data_dir, pretrain_steps=2,
            pretrain_overrides=["datasets.mini_market.batch_size=16"],
            overrides=["train.num_steps=2"])
  doc = ablate.run_ablation(**kw)
  for v in ("a", "d"):
    rec = doc["runs"][v]["0"]["datasets"]["mini_peta"]
    assert rec["status"] == "ok" and 0 < rec["value"] <= 100
  with open(os.path.join(work, "a", "seed0", "pretrain", "export", "export_report.json")) as f:
    report = json.load(f)
  # The mixture's first dataset's embedding (as the authors exported task 0's, COCO pose).
  from configs import mini_suite
  first = list(mini_suite.pretrain_config(2).datasets)[0]
  assert report["pos_embed"]["mode"] == "dataset" and report["pos_embed"]["exported"] == first
  assert sorted(report["pos_embed"]["not_exported"]) == sorted(
      n for n in mini_suite.pretrain_config(2).datasets if n != first)
  with open(os.path.join(work, "d", "seed0", "pretrain", "export", "export_report.json")) as f:
    assert "pos_embed" not in json.load(f)
  assert "(a) A" in open(os.path.join(work, "ablation.md")).read()
  again = ablate.run_ablation(**kw)
  assert all(again["runs"][v]["0"]["reused"] for v in ("a", "d"))
  assert again["summary"]["variants"]["a"]["columns"] == doc["summary"]["variants"]["a"]["columns"]
