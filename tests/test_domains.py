"""Per-domain quick defaults (training/domains.py): applied where the dev sets chose them, and nowhere else."""

import experiment
import run_experiments
from training.domains import QUICK_DEFAULTS, RECOMMENDED, domain_of
from training.profiles import resolve_config


def test_plant_quick_runs_in_colour_under_the_ssim_score_and_the_floors_read_colour_with_their_own_score():
    deep = resolve_config("fcae", "plant_village", "quick")
    assert deep["architecture"]["channels"] == 3 and deep["score"] == "mse_ssim"
    assert deep["domain_defaults"] == {"channels": 3, "score": "mse_ssim"}
    floor = resolve_config("pca", "plant_village", "quick")
    assert floor["architecture"]["channels"] == 3 and floor["score"] == "mse"


def test_paper_and_smoke_keep_their_settings_and_a_flag_beats_the_domain():
    for profile in ("paper", "smoke"):
        config = resolve_config("fcae", "plant_village", profile)
        assert config["architecture"]["channels"] == 1 and config["domain_defaults"] == {}
    config = resolve_config("fcae", "plant_village", "quick", channels=1, score="mse")
    assert config["architecture"]["channels"] == 1 and config["score"] == "mse"
    assert resolve_config("cae", "chest_xray_1", "quick")["score"] == "mse_ssim"
    assert resolve_config("cae", "phantom", "quick")["score"] == "error_zmax"  # the phantom keeps quick's own


def test_tfds_plant_village_stays_grayscale_and_every_domain_names_a_model_that_exists():
    args = run_experiments.parse_args(["--dataset", "plant_village", "--source", "tfds", "--model", "fcae"])
    assert experiment.run_config(args, "fcae", 0, None, True)["architecture"]["channels"] == 1
    from models.names import MODEL_NAMES

    assert all(model in MODEL_NAMES for model, _, _ in RECOMMENDED.values())
    assert set(QUICK_DEFAULTS) <= set(RECOMMENDED) and domain_of("mvtec_ad") == "industrial"
    assert "recommended for chest data: --model draem" in experiment.domain_note("chest_xray_2", "quick", ["fcae"])
