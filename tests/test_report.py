"""Run summaries: report.md/csv/txt/png over seeds and models, the end-of-run tables, config resolution."""

import csv
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation import plots
from evaluation.report import console_table, report_rows, summary_table, write_report
from models.config import ConfigError
from training.profiles import resolve_config


def result(model, seed, auroc, dataset="brain_mri"):
    config = {"model": model, "dataset": dataset, "category": None, "seed": seed}
    return config, {"auroc": auroc, "accuracy": 0.5, "f1": 0.4}, f"runs/{model}/{seed}"


def scored_result(tmp_path, model, seed, shift, dataset="brain_mri", minutes=1.0):
    """A finished run on disk: scores.csv with 30 normals and 20 abnormals whose scores sit `shift` higher."""
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 30 + [1] * 20)
    scores = rng.normal(size=labels.size) + shift * labels
    run_dir = tmp_path / dataset / model / f"seed{seed}"
    run_dir.mkdir(parents=True)
    lines = [f"img{i},{label},{score}" for i, (label, score) in enumerate(zip(labels, scores))]
    (run_dir / "scores.csv").write_text("\n".join(["path,label,score", *lines]) + "\n")
    config = {"model": model, "dataset": dataset, "category": None, "seed": seed}
    return config, {"auroc": roc_auc_score(labels, scores), "average_precision": 0.5, "minutes": minutes}, run_dir


def test_report_averages_seeds_per_model_and_shows_the_paper(tmp_path):
    results = [result("improved_bigan", 0, 0.70), result("improved_bigan", 1, 0.80), result("improved_bigan", 2, 0.90)]
    (row,) = report_rows(results)
    assert row["seeds"] == "0,1,2"
    assert row["auroc_mean"] == pytest.approx(0.80) and row["auroc_std"] == pytest.approx(0.0816, abs=1e-4)
    assert row["auroc_paper"] == pytest.approx(0.892)
    assert math.isnan(row["pixel_auroc_mean"]) and math.isnan(row["pro_mean"])  # not measured: missing, not 0

    stem = write_report(results, tmp_path)
    assert stem == tmp_path / "brain_mri" / "report"
    markdown = stem.with_suffix(".md").read_text()
    assert "0.800 ± 0.082 (0.892)" in markdown
    with open(stem.with_suffix(".csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and float(rows[0]["auroc_mean"]) == pytest.approx(0.8)


def test_localisation_metrics_sit_side_by_side_over_seeds(tmp_path):
    results = [result("fcae", seed, 0.8, dataset="mvtec_ad") for seed in (0, 1)]
    for (_, metrics, _), pro in zip(results, (0.6, 0.7)):
        metrics.update(pixel_auroc=0.9, pro=pro)
    (row,) = report_rows(results)
    assert row["pro_mean"] == pytest.approx(0.65) and row["pro_std"] == pytest.approx(0.05)
    header, _, line = write_report(results, tmp_path).with_suffix(".md").read_text().splitlines()[-3:]
    columns = header.split(" | ")
    assert columns.index("pro") == columns.index("pixel_auroc") + 1 and line.split(" | ")[columns.index("pro")] == "0.650 ± 0.050"
    assert "pixel_auroc  0.900\npro          0.600" in summary_table(results[0][1], results[0][0])


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
    # Issue 21.14: the refusal listed internal setting names (['architecture', 'beta_1', ...]), not flags.
    with pytest.raises(ConfigError, match=r"--epochs-recon does not apply to fcae; the flags it takes are --batch-size, "
                                          r"--channels, --epochs, --image-size, --latent-dim, --lr, --min-updates, "):
        resolve_config("fcae", "phantom", "quick", epochs_recon=3)
    # Issue 21.9: sizes beyond what memory is sized for are refused with the model's settings, before any data.
    with pytest.raises(ConfigError, match="pixels a step"):
        resolve_config("ganomaly", "phantom", "paper", image_size=512)
    assert resolve_config("ganomaly", "phantom", "paper", image_size=512, batch_size=16)["batch_size"] == 16


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


def test_report_ranks_rows_by_auroc_within_each_dataset_and_marks_the_floors(tmp_path):
    results = [result("pca", 0, 0.70), result("improved_bigan", 0, 0.90), result("knn", 0, 0.75),
               result("bigan", 0, 0.60), result("pca", 0, 0.85, dataset="chest_xray_1"),
               result("cae_d_gan", 0, 0.80, dataset="chest_xray_1"), result("cae", 0, float("nan"))]
    rows = report_rows(results)
    assert [(row["dataset"], row["model"], row["floor"]) for row in rows] == [
        ("brain_mri", "improved_bigan", False), ("brain_mri", "knn", True), ("brain_mri", "pca", True),
        ("brain_mri", "bigan", False), ("brain_mri", "cae", False),  # no AUROC: last, not first
        ("chest_xray_1", "pca", True), ("chest_xray_1", "cae_d_gan", False)]
    markdown = write_report(results, tmp_path).with_suffix(".md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| brain_mri")]
    assert [line.split(" | ")[1] for line in table] == ["improved_bigan", "knn (floor)", "pca (floor)", "bigan", "cae"]


def test_minutes_are_the_mean_over_each_models_runs(tmp_path):
    results = [scored_result(tmp_path, "improved_bigan", seed, 1.0, minutes=minutes)
               for seed, minutes in ((0, 2.0), (1, 4.0))]
    results.append(scored_result(tmp_path, "pca", 0, 0.5, minutes=0.05))
    rows = {row["model"]: row for row in report_rows(results)}
    assert rows["improved_bigan"]["minutes_mean"] == pytest.approx(3.0)
    assert rows["improved_bigan"]["minutes_std"] == pytest.approx(1.0)
    assert rows["pca"]["minutes_mean"] == pytest.approx(0.05)
    stem = write_report(results, tmp_path)
    header, _, deep, floor = stem.with_suffix(".md").read_text().splitlines()[-4:]
    column = header.split(" | ").index("minutes")
    assert deep.split(" | ")[column] == "3.000 ± 1.000" and floor.split(" | ")[column] == "0.050"
    with open(stem.with_suffix(".csv")) as handle:
        assert {row["model"]: float(row["minutes_mean"]) for row in csv.DictReader(handle)} == pytest.approx(
            {"improved_bigan": 3.0, "pca": 0.05})


def test_one_seed_has_no_std_it_is_left_empty_not_zero(tmp_path):
    """Issue 21.15: report.csv gave std 0.0 for a model run on one seed; that std is undefined."""
    results = [scored_result(tmp_path, "improved_bigan", seed, 1.0, minutes=2.0 * (seed + 1)) for seed in (0, 1)]
    results.append(scored_result(tmp_path, "pca", 0, 0.5, minutes=0.05))
    rows = {row["model"]: row for row in report_rows(results)}
    assert math.isnan(rows["pca"]["auroc_std"]) and math.isnan(rows["pca"]["minutes_std"])
    assert rows["pca"]["auroc_mean"] == pytest.approx(results[2][1]["auroc"])  # the mean is unchanged
    stem = write_report(results, tmp_path)
    with open(stem.with_suffix(".csv")) as handle:
        written = {row["model"]: row for row in csv.DictReader(handle)}
    assert written["pca"]["auroc_std"] == "" and written["pca"]["minutes_std"] == ""
    assert float(written["improved_bigan"]["minutes_std"]) == pytest.approx(1.0)  # two seeds: a std
    header, _, deep, floor = stem.with_suffix(".md").read_text().splitlines()[-4:]
    column = header.split(" | ").index("minutes")
    assert deep.split(" | ")[column] == "3.000 ± 1.000" and floor.split(" | ")[column] == "0.050"
    assert "±" not in next(line for line in stem.with_suffix(".txt").read_text().splitlines() if line.startswith("pca"))


def test_console_table_is_the_written_report_txt_and_fits_100_columns(tmp_path):
    results = [scored_result(tmp_path, model, seed, shift, minutes=12.5)
               for seed in (0, 1) for model, shift in (("knn", 0.5), ("improved_bigan", 2.0), ("vq_vae", 1.0))]
    for config, metrics, _ in results:  # the Improved BiGAN scored by error_zmax, its paper's score kept as a variant
        if config["model"] == "improved_bigan":
            config["score"], metrics["score_variants"] = "error_zmax", {"paper": 0.6 + config["seed"] / 10}
    rows = report_rows(results)
    text = console_table(rows)
    stem = write_report(results, tmp_path)
    assert stem.with_suffix(".txt").read_text() == text + "\n"
    lines = text.splitlines()
    assert lines[0] == "brain_mri (paper: Improved BiGAN Table I, brain MRI)"
    assert lines[1].split() == ["model", "AUROC", "95%", "CI", "AP", "paper", "AUROC", "minutes", "AUROC,", "paper's",
                                "score"]
    assert [line.split()[0] for line in lines[3:]] == ["improved_bigan", "vq_vae", "knn"]
    best = rows[0]
    assert lines[3].split() == [
        "improved_bigan", f"{best['auroc_mean']:.3f}", "±", f"{best['auroc_std']:.3f}",
        f"{best['auroc_ci95_low']:.3f}–{best['auroc_ci95_high']:.3f}", "0.500", "0.892", "12.50",
        "0.650", "±", "0.050", "(paper)"]
    assert lines[5].split()[:2] == ["knn", "(floor)"] and lines[5].split()[-3::2] == ["–", "–"]  # no paper number, no paper score
    assert lines[4].split()[-1] == "–"  # vq_vae's runs kept no variant: nothing is made up
    assert max(map(len, lines)) <= 100


def test_report_png_shows_each_model_with_its_interval_the_paper_and_the_better_floor(tmp_path, monkeypatch):
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append((fig, path)) or save(fig, path))
    results = [scored_result(tmp_path, model, 0, shift) for model, shift in
               (("pca", 0.3), ("knn", 0.8), ("improved_bigan", 2.0), ("cae_d_gan", 1.2))]
    results += [scored_result(tmp_path, "pca", 0, 0.5, dataset="chest_xray_1")]
    stem = write_report(results, tmp_path)
    figure, path = figures[0]
    assert path == stem.with_suffix(".png") and path.stat().st_size > 0
    brain, chest = figure.axes
    assert brain.get_title() == "brain_mri\npaper: Improved BiGAN Table I, brain MRI"
    assert chest.get_title() == "chest_xray_1\nno paper numbers for this dataset"
    rows = [row for row in report_rows(results) if row["dataset"] == "brain_mri"]
    assert [label.get_text() for label in brain.get_yticklabels()] == ["improved_bigan", "cae_d_gan", "knn (floor)",
                                                                      "pca (floor)"]
    ours, floors = brain.containers  # one error-bar set for the deep models, one for the floors
    assert list(ours.lines[0].get_xdata()) == pytest.approx([rows[0]["auroc_mean"], rows[1]["auroc_mean"]])
    assert list(floors.lines[0].get_xdata()) == pytest.approx([rows[2]["auroc_mean"], rows[3]["auroc_mean"]])
    whiskers = ours.lines[2][0].get_segments()[0]  # improved_bigan's interval
    assert [point[0] for point in whiskers] == pytest.approx([rows[0]["auroc_ci95_low"], rows[0]["auroc_ci95_high"]])
    handles, labels = brain.get_legend_handles_labels()
    paper = handles[labels.index("paper's AUROC")]
    assert list(paper.get_xdata()) == pytest.approx([0.892])  # Table I; cae_d_gan has no brain MRI number
    better = rows[2]["auroc_mean"]
    floor_line = handles[labels.index(f"better floor: knn (floor) {better:.3f}")]
    assert list(floor_line.get_xdata()) == pytest.approx([better, better])


def test_report_roc_overlays_one_curve_per_model_from_the_first_seed(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append((fig, path)) or path)
    results = [scored_result(tmp_path, model, seed, shift + seed)
               for seed in (3, 4) for model, shift in (("pca", 0.3), ("knn", 0.8), ("improved_bigan", 2.0))]
    stem = write_report(results, tmp_path)
    figure, path = figures[1]
    assert path == stem.with_name("report_roc.png")
    (ax,) = figure.axes
    assert ax.get_title() == "brain_mri, seed 3"
    curves = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("chance")]
    first_seed = {config["model"]: metrics["auroc"] for config, metrics, _ in results if config["seed"] == 3}
    assert curves == [f"improved_bigan (AUROC {first_seed['improved_bigan']:.3f})",
                      f"knn (floor) (AUROC {first_seed['knn']:.3f})", f"pca (floor) (AUROC {first_seed['pca']:.3f})"]


@pytest.mark.parametrize("dataset, source", [
    ("chest_xray_1", "paper (CAE-D-GAN Table 3, chest X-ray, dataset not stated; module AUROCs Fig. 9, dataset 1)"),
    ("chest_xray_3", "paper (CAE-D-GAN Table 3, chest X-ray, dataset not stated)"),
])
def test_summary_table_labels_the_paper_column_and_shows_figure_9_for_its_dataset_only(dataset, source):
    sets = {name: {"auroc": 0.8, "module_auroc": {"module_1": 0.6}} for name in ("25", "100")}
    text = summary_table({**sets["100"], "precision": 0.9, "test_sets": sets},
                         {"model": "cae_d_gan", "dataset": dataset, "category": None})
    assert text.splitlines()[0].endswith("  " + source)
    assert ("paper (Fig. 9, dataset 1)" in text) == (dataset == "chest_xray_1")


def test_plant_village_paper_numbers_stand_beside_the_pooled_species_only():
    pooled = summary_table({"auroc": 0.9}, {"model": "improved_bigan", "dataset": "plant_village", "category": None})
    assert "paper (Improved BiGAN Table III, Plant Disease, all species pooled)" in pooled and "0.939" in pooled
    tomato = summary_table({"auroc": 0.9}, {"model": "improved_bigan", "dataset": "plant_village", "category": "Tomato"})
    assert "paper" not in tomato and "0.939" not in tomato


def test_chest_report_gives_table_3_columns_for_the_five_cae_d_gan_paper_models(tmp_path):
    """CAE-D-GAN Table 3 (precision, recall, F1, AUROC, PSNR, SSIM): ours beside the paper's for each of its models."""
    table_3 = ("ganomaly", "efficient_gan", "skip_ganomaly", "egbad", "cae_d_gan")
    results = []
    for index, model in enumerate(table_3):
        config, metrics, run_dir = scored_result(tmp_path, model, 0, 0.5 + index / 4, dataset="chest_xray_3")
        metrics.update(precision=0.7, recall=0.8, f1=0.75, psnr=20.0 + index, ssim=0.5)
        results.append((config, metrics, run_dir))
    markdown = write_report(results, tmp_path).with_suffix(".md").read_text().splitlines()
    header = markdown[-7].split(" | ")
    rows = {line.split(" | ")[1]: line.split(" | ") for line in markdown[-5:]}
    assert set(rows) == set(table_3)
    paper = {"egbad": ("0.830", "0.930", "0.880", "0.800", "27.320", "0.890"),
             "cae_d_gan": ("0.850", "0.950", "0.910", "0.860", "28.460", "0.940")}
    for model, values in paper.items():
        cells = [rows[model][header.index(column)] for column in ("precision", "recall", "f1", "auroc", "psnr", "ssim")]
        assert [cell.rsplit("(", 1)[1].rstrip(")") for cell in cells] == list(values)
    assert rows["egbad"][header.index("psnr")].startswith("23.000 (")


def saved_result(root, model, seed, shift, profile="smoke", score="mse"):
    """scored_result with its config.json and metrics.json written, as a finished run leaves them."""
    config, metrics, run_dir = scored_result(root, model, seed, shift)
    config.update(profile=profile, score=score)
    (run_dir / "config.json").write_text(json.dumps(config))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return config, metrics, run_dir


def report_csv(stem):
    with open(stem.with_suffix(".csv")) as handle:
        return {(row["model"], row["profile"]): row for row in csv.DictReader(handle)}


def test_a_second_call_into_the_same_out_merges_its_rows_and_loses_none(tmp_path):
    """Issue 21.6: every call rewrote report.md/csv/txt/png, so the first call's rows vanished without a word."""
    out = tmp_path / "runs"
    first = [saved_result(tmp_path / "call1", model, seed, 1.0) for model in ("fcae", "pca") for seed in (0, 1)]
    write_report(first, out)
    second = [saved_result(tmp_path / "call2", model, seed, 2.0) for model in ("cae", "pca") for seed in (5, 6)]
    stem = write_report(second, out)
    rows = report_csv(stem)
    assert set(rows) == {("fcae", "smoke"), ("cae", "smoke"), ("pca", "smoke")}
    assert rows["fcae", "smoke"]["seeds"] == "0,1"  # the first call's row, kept
    assert rows["pca", "smoke"]["seeds"] == "5,6"  # same dataset, model, profile and score: the later call's
    assert rows["cae", "smoke"]["better_floor"] == "pca" and "| brain_mri | fcae | 0,1 |" in stem.with_suffix(".md").read_text()
    assert "fcae" in stem.with_suffix(".txt").read_text()
    # Another profile is another row; a model in two rows says which is which.
    third = [saved_result(tmp_path / "call3", "fcae", seed, 0.5, profile="quick") for seed in (0, 1)]
    rows = report_csv(write_report(third, out))
    assert set(rows) == {("fcae", "smoke"), ("fcae", "quick"), ("cae", "smoke"), ("pca", "smoke")}
    assert rows["fcae", "quick"]["better_floor"] == ""  # the floors ran under smoke: not the same comparison
    markdown = stem.with_suffix(".md").read_text()
    assert "fcae [profile quick, score mse]" in markdown and "fcae [profile smoke, score mse]" in markdown
    assert len(json.loads((stem.parent / "report_runs.json").read_text())) == 8


def test_a_model_trained_with_synthetic_anomalies_is_its_own_row(tmp_path):
    """improved_bigan with and without --synthetic-anomalies are two detectors: two rows, told apart by name."""
    plain, synthetic = (scored_result(tmp_path / name, "improved_bigan", 0, shift) for name, shift in (("a", 1.0), ("b", 2.0)))
    synthetic[0]["architecture"] = {"synthetic_anomalies": True}
    rows = report_rows([plain, synthetic])
    assert [row["synthetic_anomalies"] for row in rows] == [True, False]  # ranked by AUROC
    markdown = write_report([plain, synthetic], tmp_path).with_suffix(".md").read_text()
    assert "| improved_bigan+synthetic |" in markdown and "| improved_bigan |" in markdown
