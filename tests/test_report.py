"""Run summaries: report.md/csv over seeds and models, the end-of-run tables, config resolution."""

import csv
import math

import pytest

from evaluation.report import report_rows, summary_table, write_report
from models.config import ConfigError
from training.profiles import resolve_config


def result(model, seed, auroc, dataset="brain_mri"):
    config = {"model": model, "dataset": dataset, "category": None, "seed": seed}
    return config, {"auroc": auroc, "accuracy": 0.5, "f1": 0.4}, f"runs/{model}/{seed}"


def test_report_averages_seeds_per_model_and_shows_the_paper(tmp_path):
    results = [result("improved_bigan", 0, 0.70), result("improved_bigan", 1, 0.80), result("improved_bigan", 2, 0.90)]
    (row,) = report_rows(results)
    assert row["seeds"] == "0,1,2"
    assert row["auroc_mean"] == pytest.approx(0.80) and row["auroc_std"] == pytest.approx(0.0816, abs=1e-4)
    assert row["auroc_paper"] == pytest.approx(0.892)
    assert math.isnan(row["pixel_auroc_mean"])  # not measured: reported as missing, not as 0

    stem = write_report(results, tmp_path)
    assert stem == tmp_path / "brain_mri" / "report"
    markdown = stem.with_suffix(".md").read_text()
    assert "0.800 ± 0.082 (0.892)" in markdown
    with open(stem.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and float(rows[0]["auroc_mean"]) == pytest.approx(0.8)


def test_report_has_one_row_per_model_and_dataset(tmp_path):
    results = [result("improved_bigan", 0, 0.7), result("cae_d_gan", 0, 0.6, dataset="chest_xray_1")]
    rows = report_rows(results)
    assert [(row["dataset"], row["model"]) for row in rows] == [("brain_mri", "improved_bigan"), ("chest_xray_1", "cae_d_gan")]
    assert rows[1]["psnr_paper"] == pytest.approx(28.46)  # CAE-D-GAN Table 3
    assert write_report(results, tmp_path) == tmp_path / "multi" / "report"


def test_summary_table_lists_test_sets_and_modules():
    sets = {name: {"auroc": 0.5 + i / 10, "module_auroc": {"module_1": 0.6, "module_2": 0.7}}
            for i, name in enumerate(("25", "50", "75", "100"))}
    metrics = {**sets["100"], "precision": 0.9, "test_sets": sets}
    config = {"model": "cae_d_gan", "dataset": "chest_xray_1", "category": None}
    text = summary_table(metrics, config)
    assert "precision  0.900  0.850" in text  # ours beside the paper's Table 3
    assert "module_2 auroc" in text and "0.91 / 0.90 / 0.85" in text  # Figure 9, 100% set


def test_flags_that_do_not_apply_to_a_model_are_refused():
    config = resolve_config("improved_bigan", "phantom", "quick", epochs_adv=3, image_size=32)
    assert config["epochs_adv"] == 3 and config["architecture"]["image_size"] == 32
    with pytest.raises(ConfigError, match="--epochs does not apply to improved_bigan"):
        resolve_config("improved_bigan", "phantom", "quick", epochs=5)
    with pytest.raises(ConfigError, match="multiple of 16"):
        resolve_config("improved_bigan", "phantom", "quick", image_size=72)


def test_report_over_categories_lands_in_the_dataset_folder(tmp_path):
    results = [result("improved_bigan", 0, 0.7, dataset="mvtec_ad"), result("improved_bigan", 0, 0.8, dataset="mvtec_ad")]
    results[0][0]["category"], results[1][0]["category"] = "bottle", "cable"
    assert [row["dataset"] for row in report_rows(results)] == ["mvtec_ad-bottle", "mvtec_ad-cable"]
    assert report_rows(results)[0]["auroc_paper"] == pytest.approx(0.921)
    assert write_report(results, tmp_path) == tmp_path / "mvtec_ad" / "report"


def test_report_gives_cascade_module_aurocs_beside_figure_9(tmp_path):
    results = [result("cae_d_gan", seed, 0.8, dataset="chest_xray_1") for seed in (0, 1)] + [result("improved_bigan", 0, 0.7)]
    for (_, metrics, _), module_1 in zip(results, (0.82, 0.86)):
        metrics["module_auroc"] = {"module_1": module_1, "module_2": 0.8, "module_3": 0.75}
    cascade, single = report_rows(results)
    assert cascade["module_1_auroc_mean"] == pytest.approx(0.84) and cascade["module_1_auroc_paper"] == pytest.approx(0.91)
    assert math.isnan(single["module_1_auroc_mean"])
    markdown = write_report(results, tmp_path).with_suffix(".md").read_text()
    assert "module_3_auroc" in markdown and "0.840 ± 0.020 (0.910)" in markdown
