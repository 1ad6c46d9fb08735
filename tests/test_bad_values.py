"""Issue 21: every bad flag value is refused by the parser (exit 2, one line on stderr, no traceback, no TensorFlow,
nothing read or written), and the run-folder lock / settings match behind --resume. In-process, TensorFlow only for
the score-name check: the whole file takes a few seconds."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

import pytest

import run_experiments
from evaluation import predict
from training import runs

REPO = pathlib.Path(__file__).resolve().parents[1]
TF_CONFIG = {"cluster": {"worker": ["127.0.0.1:12345", "127.0.0.1:12346"]}, "task": {"type": "worker", "index": 0}}


def refused(parse, argv, capsys):
    """The one line `parse(argv)` printed on stderr before exiting with code 2."""
    with pytest.raises(SystemExit) as stop:
        parse(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    return err


BAD_TRAINING_FLAGS = {
    # 1. the learning rate and the other numeric flags: --lr -1 ascended the loss and exited 0, --lr 0 trained nothing
    "lr -1": (["--lr", "-1"], "--lr: must be a finite number above 0"),
    "lr 0": (["--lr", "0"], "--lr: must be a finite number above 0"),
    "lr nan": (["--lr", "nan"], "--lr: must be a finite number above 0"),
    "lr inf": (["--lr", "inf"], "--lr: must be a finite number above 0"),
    "lr 5": (["--lr", "5"], "at most 1"),
    "lr text": (["--lr", "fast"], "--lr: must be a number"),
    "epochs 0": (["--epochs", "0"], "--epochs: must be from 1"),
    "epochs huge": (["--epochs", "100000000"], "--epochs: must be from 1 to 100,000"),
    "epochs-recon -1": (["--epochs-recon", "-1"], "--epochs-recon: must be from 0"),
    "both phases 0": (["--epochs-recon", "0", "--epochs-adv", "0"], "trains nothing"),
    "batch 0": (["--batch-size", "0"], "--batch-size: must be from 1"),
    "batch huge": (["--batch-size", "100000"], "--batch-size: must be from 1 to 1,024"),
    "min-updates -1": (["--min-updates", "-1"], "--min-updates: must be from 0"),
    "min-updates huge": (["--min-updates", "10000000000"], "--min-updates: must be from 0"),
    # 2. a repeated seed trained seed 0 twice and reported "± 0.000 over 2 runs"
    "seeds 0,0": (["--seeds", "0,0"], "seed 0 is given twice"),
    "seeds 1,2,1": (["--seeds", "1,2,1"], "seed 1 is given twice"),
    # 3. an empty model name trained nothing and exited 0
    "model empty": (["--model", ""], "--model needs a model name"),
    "model comma": (["--model", ","], "--model needs a model name"),
    "model repeated": (["--model", "fcae,fcae"], "--model names fcae twice"),
    # 5. multi_worker without TF_CONFIG ran as one worker (TF_CONFIG is removed by the test)
    "multi_worker": (["--strategy", "multi_worker"], "needs the TF_CONFIG environment variable"),
    # 8. negative and huge seeds: a numpy traceback, exit 1
    "seeds -1": (["--seeds", "-1"], "seeds must be from 0 to 4,294,967,295"),
    "seeds huge": (["--seeds", "0,4294967296"], "seeds must be from 0 to 4,294,967,295"),
    "seed -1": (["--seed", "-1"], "--seed: must be from 0 to 4,294,967,295"),
    "seed huge": (["--seed", str(2**40)], "--seed: must be from 0 to 4,294,967,295"),
    # 9. sizes: --image-size 100000 read the data for 52 s then ran out of memory; --latent-dim 10000000 wrote 9.9 GB
    "image-size huge": (["--image-size", "100000"], "--image-size: must be from 8 to 512"),
    "image-size 4": (["--image-size", "4"], "--image-size: must be from 8 to 512"),
    "latent huge": (["--latent-dim", "10000000"], "--latent-dim: must be from 1 to 1,024"),
    "latent 0": (["--latent-dim", "0"], "--latent-dim: must be from 1"),
    # 14. errors that need no TensorFlow
    "unknown model": (["--model", "fcae,nonsense"], "Unknown model 'nonsense'"),
    "score foo": (["--model", "fcae", "--score", "foo"], "--score foo does not exist; the score variants are paper"),
    "xla on": (["--xla", "on"], "--xla on needs --nondeterministic"),
    "category": (["--category", "bottle"], "--category applies to mvtec_ad and plant_village only"),
    "tfds": (["--dataset", "brain_mri", "--source", "tfds"], "--source tfds is available for plant_village only"),
    # issue 27: the option of one model, and the scores only its head has
    "synthetic on fcae": (["--model", "fcae", "--synthetic-anomalies"], "--synthetic-anomalies does not apply to fcae"),
    "draem score without head": (["--score", "draem"], "reads the map of a segmentation head; improved_bigan has one "
                                                        "with --synthetic-anomalies"),
}


@pytest.mark.parametrize("argv, message", BAD_TRAINING_FLAGS.values(), ids=BAD_TRAINING_FLAGS)
def test_a_bad_training_flag_is_one_line_and_exit_2(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    out = tmp_path / "runs"
    err = refused(run_experiments.parse_args, [*argv, "--out", str(out)], capsys)
    assert message in err
    assert not out.exists()


def test_missing_data_folders_are_refused_by_the_parser(tmp_path, capsys):
    """Item 14: a missing --data-dir, --normal-dir or MVTec category used to wait 7-10 s for TensorFlow."""
    missing = str(tmp_path / "nowhere")
    assert "The brain_mri folder" in refused(run_experiments.parse_args, ["--dataset", "brain_mri", "--data-dir", missing], capsys)
    assert "The --normal-dir folder" in refused(run_experiments.parse_args, ["--dataset", "folder", "--normal-dir", missing], capsys)
    assert "needs --normal-dir" in refused(run_experiments.parse_args, ["--dataset", "folder"], capsys)
    assert "The mvtec_ad folder" in refused(run_experiments.parse_args, ["--dataset", "mvtec_ad", "--data-dir", missing,
                                                                         "--category", "bottle"], capsys)
    (tmp_path / "bottle" / "train" / "good").mkdir(parents=True)
    (tmp_path / "bottle" / "test").mkdir()
    assert "needs --category" in refused(run_experiments.parse_args, ["--dataset", "mvtec_ad", "--data-dir", str(tmp_path)], capsys)


@pytest.mark.parametrize("tf_config, message", [
    ("not json", "not valid JSON"),
    (json.dumps({"cluster": {}}), 'no "cluster"'),
    (json.dumps({**TF_CONFIG, "task": {"type": "worker", "index": 2}}), '"task" must name'),
    (json.dumps({"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}), "list of"),
])
def test_multi_worker_needs_a_valid_tf_config(tf_config, message, monkeypatch, capsys):
    """Item 5: --strategy multi_worker without a cluster used to train as one worker, silently."""
    monkeypatch.setenv("TF_CONFIG", tf_config)
    assert message in refused(run_experiments.parse_args, ["--strategy", "multi_worker"], capsys)


def test_good_values_at_the_bounds_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(TF_CONFIG))
    args = run_experiments.parse_args(["--lr", "1", "--epochs-recon", "0", "--batch-size", "1", "--image-size", "512",
                                       "--latent-dim", "1024", "--min-updates", "0", "--seeds", f"0,{2**32 - 1}",
                                       "--model", "improved_bigan", "--strategy", "multi_worker", "--score", "latent",
                                       "--xla", "on", "--nondeterministic", "--out", str(tmp_path / "a" / "b")])
    assert args.seeds == (0, 2**32 - 1) and args.lr == 1.0 and args.epochs_recon == 0
    assert run_experiments.parse_args(["--model", "all", "--out", str(tmp_path / "a" / "b")]).model == "all"
    assert not (tmp_path / "a").exists()  # the writability probe leaves nothing behind


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "NaN", "many"])
def test_predict_refuses_a_threshold_that_is_not_a_finite_number(threshold, tmp_path, capsys):
    """Item 4: --threshold nan was accepted and marked every image normal."""
    err = refused(predict.parse_args, ["run", "images", f"--threshold={threshold}", "--out", str(tmp_path)], capsys)
    assert "--threshold: must be a" in err


def test_predict_refuses_an_out_that_is_a_file_before_tensorflow(tmp_path, capsys):
    """Item 10: predict --out onto a file raised NotADirectoryError after loading the model."""
    existing = tmp_path / "predictions.csv"
    existing.write_text("")
    for out in (existing, existing / "below"):
        assert "is a file, not a folder" in refused(predict.parse_args, ["run", "images", "--out", str(out)], capsys)


@pytest.mark.skipif(not pathlib.Path("/proc/self").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("parse, argv", [(run_experiments.parse_args, []), (predict.parse_args, ["run", "images"])])
def test_an_out_that_cannot_really_be_written_is_refused_up_front(parse, argv, capsys):
    """Item 11: /proc passes os.access's check (as root), so training crashed later; now a probe file is written."""
    assert "cannot create and write files there" in refused(parse, [*argv, "--out", "/proc/runs"], capsys)


def test_the_parser_checks_never_import_tensorflow():
    """Item 14: each of these used to wait 7-10 s for TensorFlow before saying what was wrong."""
    bad = [["--model", "nonsense"], ["--score", "foo"], ["--xla", "on"], ["--category", "bottle"],
           ["--dataset", "brain_mri", "--data-dir", "/nowhere/at/all"], ["--lr", "-1"], ["--seeds", "0,0"]]
    script = ("import sys, run_experiments\n"
              f"for argv in {bad!r}:\n"
              "    try:\n        run_experiments.parse_args(argv)\n"
              "    except SystemExit as stop:\n        assert stop.code == 2, argv\n"
              "    else:\n        raise AssertionError(argv)\n"
              "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n")
    checked = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and checked.stdout.strip() == "[]", checked.stdout + checked.stderr


def test_score_names_are_every_models_variants():
    """The TensorFlow-free list --score is checked against is the union of the models' score variants."""
    from models.base import score_variants
    from models.registry import FAMILIES
    from training.names import SCORE_NAMES

    assert sorted(SCORE_NAMES) == sorted({name for f in FAMILIES.values() for name in score_variants(f.model_class)})


# Item 7: --resume takes only a run of this command's settings, and one process at a time writes a run folder.

def saved_run(out, config, checkpointed=True, **saved_extra):
    run_dir = runs.new_run_dir(out, config)
    (run_dir / "config.json").write_text(json.dumps({**config, **saved_extra}))
    if checkpointed:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"')
    return run_dir


def test_resume_needs_the_same_settings_not_just_the_same_seed(tmp_path):
    """A leftover `--epochs 100000000` run was resumed from a one-epoch command: only model, data and seed were compared."""
    config = {"model": "improved_bigan", "dataset": "phantom", "category": None, "seed": 0, "epochs_recon": 1,
              "epochs_adv": 1, "lr": 1e-3, "architecture": {"image_size": 32, "filters": (4, 8)}, "data": {"source": "local"}}
    saved_run(tmp_path, {**config, "epochs_recon": 100000000})
    assert runs.latest_unfinished_run(tmp_path, config) is None
    assert runs.setting_differences(runs.unfinished_runs(tmp_path, config)[-1], config) == ["epochs_recon"]
    # Provenance differs and scale_to_data stretched the epochs x3 for a small set: still this command's run.
    same = saved_run(tmp_path, {**config, "epochs_recon": 3, "epochs_adv": 3}, command="python other", git_commit="x",
                     versions={"python": "3.0"}, steps_per_epoch=2, epoch_scale=3)
    saved_run(tmp_path, {**config, "lr": 1e-4})
    saved_run(tmp_path, config, checkpointed=False)  # nothing to resume
    assert runs.latest_unfinished_run(tmp_path, config) == same


def test_a_run_folder_is_locked_atomically_and_a_dead_processs_lock_is_taken_over(tmp_path):
    """Two --resume calls at once wrote into one run folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with runs.locked(run_dir):
        holder = json.loads((run_dir / runs.LOCK_FILE).read_text())
        assert holder == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(runs.RunBusyError, match=f"in use by process {os.getpid()}"):
            runs.lock_run(run_dir)
    assert not (run_dir / runs.LOCK_FILE).exists()  # released at the end of the block

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / runs.LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(runs.RunBusyError, match=f"process {sleeper.pid}"):
            runs.lock_run(run_dir)
    finally:
        sleeper.kill()
        sleeper.wait()
    runs.lock_run(run_dir)  # its holder is dead now: taken over
    assert json.loads((run_dir / runs.LOCK_FILE).read_text())["pid"] == os.getpid()
    runs.unlock_run(run_dir)
    (run_dir / runs.LOCK_FILE).write_text("")  # created but never written, by a process that died long ago
    os.utime(run_dir / runs.LOCK_FILE, (0, 0))
    runs.lock_run(run_dir)
    runs.unlock_run(run_dir)
    assert not (run_dir / runs.LOCK_FILE).exists()


@pytest.mark.parametrize("command", sorted(run_experiments.SUBCOMMANDS))
def test_every_subcommand_answers_help_and_the_top_help_names_them(command):
    """Issue 19: --describe / --download were flags that exit, and --help never mentioned predict."""
    answer = subprocess.run([sys.executable, "run_experiments.py", command, "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0 and answer.stdout.startswith("usage: run_experiments.py"), answer.stderr
    assert command == "train" or f"run_experiments.py {command}" in answer.stdout.splitlines()[0]
    top = subprocess.run([sys.executable, "run_experiments.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert f"{command}:" in top.stdout or "[train|" in top.stdout.splitlines()[0]
    assert all(f"{name}: " in top.stdout for name in run_experiments.SUBCOMMANDS if name != "train")


def test_the_bare_form_is_train_and_data_subcommands_take_no_training_flags(tmp_path, capsys):
    bare = run_experiments.parse_args(["--model", "fcae", "--out", str(tmp_path)])
    train = run_experiments.parse_args(["train", "--model", "fcae", "--out", str(tmp_path)])
    assert bare.action == train.action == "train" and bare.model == train.model == "fcae"
    assert run_experiments.parse_args(["describe", "--dataset", "phantom"]).action == "describe"
    assert "unrecognized arguments: --epochs" in refused(run_experiments.parse_args, ["describe", "--epochs", "3"], capsys)
    assert "unrecognized arguments: --seed" in refused(run_experiments.parse_args, ["download", "--seed", "3"], capsys)


# Issue 26: one typed run spec under the command line and the API, checked before TensorFlow.

NO_TENSORFLOW_SCRIPT = """
import json, os, sys
import api, run_experiments
from evaluation import benchmark, predict
from spec import SpecError
refusals = []
for parse, argv in json.loads(sys.argv[1]):
    try:
        {"train": run_experiments.parse_args, "predict": predict.parse_args, "benchmark": benchmark.parse_args}[parse](argv)
    except SystemExit as stop:
        refusals.append(stop.code)
    else:
        refusals.append(argv)
reasons = []
for settings in json.loads(sys.argv[2]):
    try:
        api.train(**settings)
    except SpecError as error:
        reasons.append(str(error))
    else:
        reasons.append(None)
print(json.dumps({"refusals": refusals, "reasons": reasons, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_every_tensorflow_free_refusal_comes_before_tensorflow(tmp_path):
    """Items 4, 7, 8, 9, 10: each answered after a 6-9 s TensorFlow import, with a traceback, or not at all."""
    (tmp_path / "bottle" / "train" / "good").mkdir(parents=True)
    (tmp_path / "bottle" / "test").mkdir()
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"")
    out = ["--out", str(tmp_path / "runs")]
    cli = [
        ("train", ["--model", "fcae", "--score", "latent", *out]), ("train", ["--model", "fcae", "--epochs-recon", "3", *out]),
        ("train", ["--image-size", "512", "--batch-size", "1024", *out]),
        ("train", ["--perceptual-weights", str(tmp_path / "missing.h5"), *out]),
        ("train", ["--dataset", "mvtec_ad", "--data-dir", str(tmp_path), "--category", "nope", *out]),
        ("train", ["--dataset", "brain_mri", "--data-dir", str(a_file), *out]), ("train", ["trian", *out]),
        ("train", ["--seeds", "1,,2", *out]), ("train", ["--resume", str(tmp_path), *out]),
        ("predict", [str(tmp_path / "no run"), str(a_file), "--out", str(tmp_path / "p")]),
        ("benchmark", ["--model", "nope"]), ("benchmark", ["--batch-size", "0"]), ("benchmark", ["--preset", "huge"]),
    ]
    api_settings = [{"model": "fcae", "score": "latent", "out": str(tmp_path / "runs")}, {"lr": -1},
                    {"epochs_recon": "3"}, {"seeds": [1, 1]}, {"epoch": 3}]
    answer = subprocess.run([sys.executable, "-c", NO_TENSORFLOW_SCRIPT, json.dumps(cli), json.dumps(api_settings)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout.strip().splitlines()[-1])
    assert result["refusals"] == [2] * len(cli) and not result["tensorflow"], result
    assert "Traceback" not in answer.stderr and answer.stderr.count("\n") == len(cli), answer.stderr
    for expected in ("--score latent does not apply to fcae", "--epochs-recon does not apply to fcae", "268,435,456 pixels",
                     "--perceptual-weights", "--category nope: no such category", "is a file, not a folder",
                     "unknown subcommand 'trian'", "has an empty item", "not a run folder", "No SavedModel",
                     "invalid choice: 'nope'", "--batch-size: must be from 1", "invalid choice: 'huge'"):
        assert expected in answer.stderr, expected
    # Item 7: the API raises the reason itself (it used to say "the reason is printed above").
    assert result["reasons"][0].startswith("--score latent does not apply to fcae;")
    assert result["reasons"][1].startswith("--lr: must be a finite number above 0")
    assert result["reasons"][2].startswith("--epochs-recon: must be from 0") and "'3'" in result["reasons"][2]
    assert result["reasons"][3].startswith("seed 1 is given twice") and result["reasons"][4].startswith("Unknown setting 'epoch'")
    assert not (tmp_path / "runs").exists()


def test_a_zero_setting_reaches_the_spec_and_the_run_config(tmp_path):
    """Item 1: api.train(epochs_recon=0) trained one phase-1 epoch: the 0 never reached the parser."""
    import api

    spec = api.spec(epochs_recon=0, min_updates=0, profile="smoke", out=str(tmp_path))
    assert spec.epochs_recon == 0 and spec.min_updates == 0
    from experiment import run_config

    config = run_config(spec, "improved_bigan", 0, None, True)
    assert config["epochs_recon"] == 0 and config["min_updates"] == 0


# A command-line value and the typed value api.train takes, per flag (the model a flag applies to where it matters).
FLAG_SAMPLES = {
    "--dataset": ("folder", "folder"), "--category": None, "--data-dir": None, "--source": ("local", "local"),
    "--protocol": ("cae_d_gan", "cae_d_gan"), "--profile": ("smoke", "smoke"), "--model": ("fcae,vae", "fcae,vae"),
    "--epochs": ("3", 3), "--epochs-recon": ("0", 0), "--epochs-adv": ("2", 2), "--batch-size": ("8", 8),
    "--image-size": ("48", 48), "--latent-dim": ("16", 16), "--channels": ("3", 3), "--lr": ("0.01", 0.01),
    "--perceptual-weights": ("none", "none"), "--backbone": ("resnet50", "resnet50"),
    "--backbone-weights": ("imagenet", "imagenet"), "--coreset-ratio": ("0.2", 0.2), "--xla": ("off", "off"),
    "--strategy": ("mirrored", "mirrored"), "--mixed-precision": (None, True),
    "--synthetic-anomalies": (None, True), "--score": ("mse", "mse"),
    "--phantom-draw": ("dev", "dev"), "--min-updates": ("0", 0), "--nondeterministic": (None, True),
    "--lr-schedule": ("cosine", "cosine"), "--resume": (None, True), "--no-floor": (None, True),
    "--verbose": (None, True), "--seed": ("3", 3), "--seeds": ("1,2", [1, 2]), "--config": None,
    "--out": None, "--normal-dir": None, "--abnormal-dir": None,
}


def test_the_command_line_and_the_api_build_equal_specs_for_every_flag(tmp_path):
    """Every flag of `train`, given on the command line and as api.train's keyword, builds the same spec."""
    import api
    from training.names import MODEL_FLAGS

    parser = run_experiments.build_parser("train")
    flags = {option for action in parser._actions for option in action.option_strings if option.startswith("--")} - {"--help"}
    assert flags == set(FLAG_SAMPLES), flags ^ set(FLAG_SAMPLES)
    (tmp_path / "n").mkdir()
    (tmp_path / "a").mkdir()
    base = {"--dataset": "folder", "--normal-dir": str(tmp_path / "n"), "--abnormal-dir": str(tmp_path / "a"),
            "--out": str(tmp_path / "runs")}
    for flag, sample in FLAG_SAMPLES.items():
        if sample is None:
            continue
        text, typed = sample
        key = flag[2:].replace("-", "_")
        model = next((model for model, keys in MODEL_FLAGS.items() if key in keys), None) if key != "model" else None
        given = {**base, **({"--model": model} if model else {}), **({flag: text} if text is not None else {})}
        argv = [item for option, value in given.items() for item in (option, value)]
        if text is None:
            argv.append(flag)
        settings = {option[2:].replace("-", "_"): value for option, value in given.items() if option != flag}
        assert run_experiments.parse_args(argv) == api.spec(**settings, **{key: typed}), flag


def test_the_model_tables_the_spec_checks_are_the_families():
    """training.names' TensorFlow-free tables (what each model takes) are what resolve_config accepts."""
    from models.names import MODEL_NAMES
    from training.names import MODEL_FLAGS, MODEL_SCORES, OVERRIDABLE, SYNTHETIC_SCORES
    from training.profiles import resolve_config, score_variant_names

    for model in MODEL_NAMES:
        config = resolve_config(model, "phantom", "smoke")
        assert set(MODEL_FLAGS[model]) == {key for key in OVERRIDABLE if key in config or key in config["architecture"]}, model
        assert sorted(MODEL_SCORES[model]) == score_variant_names(model), model
    with_head = resolve_config("improved_bigan", "phantom", "smoke", synthetic_anomalies=True)
    assert score_variant_names("improved_bigan", with_head["architecture"]) == sorted(
        (*MODEL_SCORES["improved_bigan"], *SYNTHETIC_SCORES))


def test_the_three_bigan_detectors_differ_under_the_smoke_profile():
    """Item 3: bigan, egbad and efficient_gan were the same network under --profile smoke (scores equal to 8 digits)."""
    from training.profiles import resolve_config

    def network(model):
        config = resolve_config(model, "phantom", "smoke")
        return config["architecture"], config["ema_momentum"]

    assert network("bigan") != network("egbad") != network("efficient_gan") != network("bigan")
    assert resolve_config("efficient_gan", "phantom", "smoke")["architecture"]["image_size"] == 64


def test_a_second_report_writer_waits_for_the_first(tmp_path, monkeypatch):
    """Item 11: two calls writing the same report at once were not locked against each other."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.0)"])
    threading.Thread(target=sleeper.wait).start()  # reaped when it ends, as its own parent would
    try:
        (tmp_path / runs.REPORT_LOCK).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        monkeypatch.setattr(runs, "REPORT_WAIT_SECONDS", 0.3)
        with pytest.raises(runs.RunBusyError, match=f"process {sleeper.pid}"), runs.locked_report(tmp_path):
            pass
        monkeypatch.setattr(runs, "REPORT_WAIT_SECONDS", 30)
        with runs.locked_report(tmp_path):  # waits until the holder ends, then takes the lock
            assert sleeper.poll() is not None
            assert json.loads((tmp_path / runs.REPORT_LOCK).read_text())["pid"] == os.getpid()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (tmp_path / runs.REPORT_LOCK).exists()


def test_a_stale_lock_from_another_host_is_taken_over_and_a_fresh_one_is_not(tmp_path):
    """Item 11: a lock another host left was treated as live forever; a live holder touches its lock (heartbeat)."""
    lock = tmp_path / runs.LOCK_FILE
    lock.write_text(json.dumps({"pid": 1, "host": "another-host"}))
    with pytest.raises(runs.RunBusyError, match="process 1 on another-host"):
        runs.lock_run(tmp_path)
    old = lock.stat().st_mtime - runs.STALE_SECONDS - 1
    os.utime(lock, (old, old))
    runs.lock_run(tmp_path)
    assert json.loads(lock.read_text())["host"] == socket.gethostname()
    runs.unlock_run(tmp_path)


def test_a_bare_benchmark_times_the_quick_preset_and_says_so_before_loading_tensorflow(monkeypatch, capsys):
    """Item 6: a bare `benchmark` ran improved_bigan's paper preset and printed nothing for 5 minutes."""
    from evaluation import benchmark

    def timed(model, preset, batch_size, image_size, *rest):
        assert "Timing improved_bigan (preset quick, 64 px, batch 32" in capsys.readouterr().out
        return {"model": model}

    monkeypatch.setattr(benchmark, "benchmark", timed)
    benchmark.main([])
    assert '"model": "improved_bigan"' in capsys.readouterr().out
