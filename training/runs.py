"""Run directories: runs/<dataset>[-<category>]/<model>/<run-id>/ and their finished/unfinished state."""

import datetime
import json
import pathlib

STATE_FILE = "run_state.json"
CHECKPOINT_DIR = "checkpoints"
# What a resumed run must share with the call that resumes it (the run group fixes model, dataset and category).
RESUME_KEYS = ("seed", "data")


def run_group(out, config):
    """The folder holding every run of one model on one dataset."""
    dataset = config["dataset"] + (f"-{config['category']}" if config.get("category") else "")
    return pathlib.Path(out) / dataset / config["model"]


def new_run_dir(out, config):
    """A fresh, uniquely named run directory (timestamp + seed), created with its state 'running'."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    group = run_group(out, config)
    run_dir = group / f"{stamp}-seed{config['seed']}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = group / f"{stamp}-seed{config['seed']}-{suffix}"
    run_dir.mkdir(parents=True)
    set_state(run_dir, "running")
    return run_dir


def set_state(run_dir, status, **details):
    (pathlib.Path(run_dir) / STATE_FILE).write_text(json.dumps({"status": status, **details}))


def get_state(run_dir):
    path = pathlib.Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {"status": "unknown"}


def trained(run_dir):
    """Whether the run saved at least one checkpoint (tf.train.CheckpointManager writes a `checkpoint` file)."""
    return (pathlib.Path(run_dir) / CHECKPOINT_DIR / "checkpoint").exists()


def latest_unfinished_run(out, config):
    """Newest run of this model, dataset, data and seed that trained but did not finish (interrupted or
    diverged), or None. A run without a checkpoint has nothing to continue: resuming it would only
    repeat its start with its old settings."""
    group = run_group(out, config)
    candidates = sorted(path for path in group.glob("*") if (path / "config.json").exists()) if group.exists() else []
    resumable = [
        path for path in candidates
        if get_state(path)["status"] != "finished" and trained(path) and _same_run(path, config)
    ]
    return resumable[-1] if resumable else None


def _same_run(run_dir, config):
    saved = json.loads((run_dir / "config.json").read_text())
    return all(saved.get(key) == config.get(key) for key in RESUME_KEYS)
