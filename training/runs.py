"""Run directories: runs/<dataset>[-<category>]/<model>/<run-id>/ and their finished/unfinished state."""

import contextlib
import datetime
import json
import os
import pathlib
import socket
import threading
import time

STATE_FILE = "run_state.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = "run.lock"
REPORT_LOCK = "report.lock"  # in --out: one call at a time writes (and merges) its reports
# config.json keys that record where a run came from, not what it does: --resume ignores them (`spec` holds the
# call's own switches, such as --resume itself; the resolved settings beside it are what the run does).
PROVENANCE_KEYS = ("spec", "command", "git_commit", "versions")
# scale_to_data's record of how it stretched the epochs of a small training set (training/profiles.py).
SCALE_KEYS = ("steps_per_epoch", "epoch_scale")
EPOCH_KEYS = ("epochs", "epochs_recon", "epochs_adv")
# A lock file still empty after this long was left by a process that died between creating and writing it.
EMPTY_LOCK_SECONDS = 30
# A live holder touches its lock every HEARTBEAT_SECONDS; another host's lock untouched for STALE_SECONDS is left by a
# process that is gone (its PID cannot be checked from here).
HEARTBEAT_SECONDS, STALE_SECONDS = 60, 600
REPORT_WAIT_SECONDS = 600  # how long a call waits for another call's report


class RunBusyError(Exception):
    """The run folder is being written by another live process; str() is the user message."""


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
    """Newest run of this model, dataset and category that trained but did not finish (interrupted or diverged)
    and whose saved settings are this call's (`config`, the resolved config before scale_to_data), or None.
    A run without a checkpoint has nothing to continue: resuming it would only repeat its start."""
    resumable = [path for path in unfinished_runs(out, config) if not setting_differences(path, config)]
    return resumable[-1] if resumable else None


def unfinished_runs(out, config):
    """Every trained, unfinished run in this model's group, oldest first."""
    group = run_group(out, config)
    candidates = sorted(path for path in group.glob("*") if (path / "config.json").exists()) if group.exists() else []
    return [path for path in candidates if get_state(path)["status"] != "finished" and trained(path)]


def comparable(config):
    """A config as --resume compares it: JSON values, without provenance, and with the epochs as the command gave
    them (scale_to_data multiplied them by epoch_scale, a whole number, for a small training set)."""
    config = json.loads(json.dumps(config))
    scale = config.pop("epoch_scale", 1)
    for key in (*PROVENANCE_KEYS, *SCALE_KEYS):
        config.pop(key, None)
    return {**config, **{key: config[key] // scale for key in EPOCH_KEYS if key in config}}


def setting_differences(run_dir, config):
    """The settings (sorted keys) in which run_dir's config.json differs from `config`; [] for the same run."""
    saved, wanted = comparable(json.loads((pathlib.Path(run_dir) / "config.json").read_text())), comparable(config)
    return sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))


def _lock_holder(path):
    """({"pid", "host"} or None when unreadable, the lock's age in seconds)."""
    age = 0.0
    try:
        age = time.time() - path.stat().st_mtime
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, 0.0
    except (OSError, ValueError):
        return None, age
    return (holder if isinstance(holder, dict) and holder else None), age


def _alive(holder, age):
    if holder is None:  # created but not written yet, or a crash just then
        return age < EMPTY_LOCK_SECONDS
    if not holder:  # gone meanwhile
        return False
    if holder.get("host") != socket.gethostname():
        return age < STALE_SECONDS  # another machine's process: alive while it keeps touching the lock
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True


def lock_run(run_dir, name=LOCK_FILE, wait=0):
    """Take run_dir's lock (`name`, created atomically with O_CREAT | O_EXCL, holding this PID and host), so two
    processes never write into one run folder; a lock left by a dead process is taken over. Waits up to `wait`
    seconds for a live holder, then raises RunBusyError. Returns the lock's path (unlock_run removes it)."""
    path = pathlib.Path(run_dir) / name
    deadline, takeovers = time.monotonic() + wait, 0
    while True:
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder, age = _lock_holder(path)
            if not _alive(holder, age):
                takeovers += 1
                if takeovers > 3:
                    raise RunBusyError(f"{run_dir}: could not take its lock {path} (other processes keep taking it).") from None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # stale: its process is gone
            elif time.monotonic() < deadline:
                time.sleep(0.2)
            else:
                owner = f"process {holder['pid']} on {holder['host']}" if holder else "another process"
                raise RunBusyError(f"{run_dir} is in use by {owner} ({path}); wait for it to finish, or delete "
                                   "that file if the process is gone.") from None
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"pid": os.getpid(), "host": socket.gethostname()}, handle)
        return path


def unlock_run(run_dir, name=LOCK_FILE):
    """Remove run_dir's lock if this process holds it (a removed run folder has none left)."""
    path = pathlib.Path(run_dir) / name
    holder, _ = _lock_holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink()


@contextlib.contextmanager
def locked(run_dir, name=LOCK_FILE, wait=0):
    """lock_run(run_dir) for the block, touched every HEARTBEAT_SECONDS so other hosts see it live; released
    however the block ends (an error, Ctrl-C)."""
    path = lock_run(run_dir, name, wait)
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(path)

    threading.Thread(target=heartbeat, daemon=True).start()
    try:
        yield run_dir
    finally:
        stop.set()
        unlock_run(run_dir, name)


def locked_report(out):
    """The lock of `out`'s reports for the block: a second call waits (up to REPORT_WAIT_SECONDS) and then merges."""
    pathlib.Path(out).mkdir(parents=True, exist_ok=True)
    return locked(out, REPORT_LOCK, wait=REPORT_WAIT_SECONDS)
