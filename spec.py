"""The run spec: one typed, frozen record of what a call trains (models, data, profile, seeds, overrides, where to
write), built by the command line's parser and by `api.train` alike, checked by `check`, consumed by experiment.py
and recorded in every run's config.json so the run can be repeated (`train --config RUN/config.json`).

Free of TensorFlow: `check` refuses every bad value it can before TensorFlow is imported.
"""

import dataclasses
import json
import math
import os
import pathlib
import shlex

import checks
from data.protocols import PROTOCOLS
from data.sources import DATASET_NAMES, SOURCES, DatasetError, available_categories, check_options, load_dataset, resolve_data_dir
from models.backbone_names import BACKBONES, check_backbone_weights
from models.names import model_list
from training.names import OVERRIDABLE, PROFILE_NAMES, SCORE_NAMES, STRATEGIES, flag_name, flag_problem, score_problem
from training.runs import get_state, trained

# The model a call trains without --model, and whose settings describe resolves the protocol with.
DEFAULT_MODEL = "improved_bigan"
ACTIONS = ("train", "describe", "download")
# Bounds of the typed settings (checks.py says why); epochs_recon / epochs_adv may be 0 (skip that phase).
INTEGERS = {
    "epochs": (1, checks.MAX_EPOCHS), "epochs_recon": (0, checks.MAX_EPOCHS), "epochs_adv": (0, checks.MAX_EPOCHS),
    "batch_size": (1, checks.MAX_BATCH_SIZE), "image_size": (checks.MIN_IMAGE_SIZE, checks.MAX_IMAGE_SIZE),
    "latent_dim": (1, checks.MAX_LATENT_DIM), "min_updates": (0, checks.MAX_MIN_UPDATES),
}
# Numbers in (0, high]: a negative or zero learning rate trains nothing sensible; a coreset keeps a share of patches.
POSITIVE_NUMBERS = {"lr": checks.MAX_LR, "coreset_ratio": 1.0}
CHOICES = {
    "action": ACTIONS, "dataset": DATASET_NAMES, "source": SOURCES, "protocol": PROTOCOLS, "profile": PROFILE_NAMES,
    "channels": checks.CHANNELS, "backbone": BACKBONES, "xla": ("auto", "on", "off"), "strategy": STRATEGIES,
    "phantom_draw": ("test", "dev"), "lr_schedule": ("constant", "cosine"),
}
TEXTS = ("model", "category", "data_dir", "normal_dir", "abnormal_dir", "perceptual_weights", "backbone_weights",
         "score", "out")
SWITCHES = ("mixed_precision", "deterministic", "synthetic_anomalies", "no_floor", "verbose")
# The settings a re-run from config.json may still change: where it writes, how it talks, whether it resumes.
RERUN_SETTINGS = ("out", "verbose", "resume")


class SpecError(ValueError):
    """A refused setting; str() is the one-sentence reason (the command line prints it and exits 2)."""


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a call decides; None for an override means "the profile's value". `resume` is False, True (the
    newest unfinished run of these settings) or a run folder; `command` is provenance only (not compared)."""

    action: str = "train"
    model: str = DEFAULT_MODEL
    dataset: str = "phantom"
    category: str | None = None
    data_dir: str | None = None
    normal_dir: str | None = None
    abnormal_dir: str | None = None
    source: str = "local"
    protocol: str | None = None
    profile: str = "quick"
    seeds: tuple = (0,)
    epochs: int | None = None
    epochs_recon: int | None = None
    epochs_adv: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    perceptual_weights: str | None = None
    image_size: int | None = None
    latent_dim: int | None = None
    xla: str | None = None
    mixed_precision: bool | None = None
    strategy: str | None = None
    score: str | None = None
    phantom_draw: str | None = None
    min_updates: int | None = None
    deterministic: bool | None = None
    lr_schedule: str | None = None
    channels: int | None = None
    backbone: str | None = None
    backbone_weights: str | None = None
    coreset_ratio: float | None = None
    synthetic_anomalies: bool | None = None
    out: str = "runs"
    resume: bool | str = False
    no_floor: bool = False
    verbose: bool = False
    command: str | None = dataclasses.field(default=None, compare=False)

    @property
    def overrides(self):
        """{setting: value} of the OVERRIDABLE settings (None = the profile's)."""
        return {key: getattr(self, key) for key in OVERRIDABLE}

    def as_json(self):
        """The spec as config.json records it (`spec`); from_json reads it back."""
        return {**dataclasses.asdict(self), "seeds": list(self.seeds)}


FIELDS = tuple(field.name for field in dataclasses.fields(RunSpec))
assert set(OVERRIDABLE) <= set(FIELDS), "every overridable setting is a spec field"


def make_spec(**settings):
    """A RunSpec from keyword settings as `api.train` takes them: the spec's fields, plus the command line's
    `seed` (one seed) and `nondeterministic` (True turns op determinism off). Values keep their types: 0 is 0."""
    settings = dict(settings)
    names = {*FIELDS, "seed", "nondeterministic"}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise SpecError(f"Unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(names - {'command'}))}.")
    if "seed" in settings:
        if "seeds" in settings:
            raise SpecError("Give seed or seeds, not both.")
        settings["seeds"] = [settings.pop("seed")]
    if "nondeterministic" in settings:
        nondeterministic = settings.pop("nondeterministic")
        if not isinstance(nondeterministic, bool):
            raise SpecError(f"nondeterministic must be True or False, got {nondeterministic!r}.")
        settings.setdefault("deterministic", False if nondeterministic else None)
    seeds = settings.get("seeds", (0,))
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise SpecError(f"seeds must be a list of whole numbers, got {seeds!r}.")
    settings["seeds"] = tuple(seeds)
    for key, value in settings.items():  # pathlib paths as the text the command line gives
        if isinstance(value, os.PathLike):
            settings[key] = os.fspath(value)
    return RunSpec(**settings)


def build(config=None, **settings):
    """The spec of a call: repeating a recorded run (`config`, its config.json; only RERUN_SETTINGS may be given),
    continuing the run folder `resume` names with its own settings, or from the settings (make_spec)."""
    resume = settings.get("resume")
    if config is None and isinstance(resume, (str, os.PathLike)):
        problem = resume_problem(os.fspath(resume))
        if problem:
            raise SpecError(problem)
        run_dir = pathlib.Path(resume)  # <out>/<dataset>/<model>/<run>: the report goes to its own <out>
        config = run_dir / "config.json"
        settings = {"out": str(run_dir.resolve().parents[2]), **settings, "resume": os.fspath(resume)}
    return from_config(config, **settings) if config is not None else make_spec(**settings)


def from_json(recorded, **changes):
    """The spec config.json recorded, with `changes` (only RERUN_SETTINGS) applied."""
    known = {key: value for key, value in recorded.items() if key in FIELDS}
    return make_spec(**{**known, **changes})


def from_config(path, **changes):
    """The spec that repeats the run whose config.json is `path`: its model, seed and category, its settings;
    `changes` may set only RERUN_SETTINGS. Raises SpecError when the file is not a run's config.json."""
    refused = sorted(set(changes) - set(RERUN_SETTINGS))
    if refused:
        raise SpecError(f"--config repeats a run's recorded settings; {flag_name(refused[0])} cannot change them "
                        f"(only {', '.join('--' + key for key in RERUN_SETTINGS)} may be given with it).")
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"--config {path}: no such file; give a run folder's config.json.") from None
    except (OSError, ValueError) as error:
        raise SpecError(f"--config {path}: not a readable JSON file ({error}).") from None
    if not isinstance(config, dict) or not isinstance(config.get("spec"), dict):
        raise SpecError(f"--config {path}: not a run's config.json (it records no `spec`; runs of older versions "
                        "cannot be repeated this way).")
    # The run's own model, seed and category, and the absolute folders it read (a relative one may not resolve again).
    run = {"model": config["model"], "seeds": [config["seed"]], "category": config["category"], "resume": False,
           **{key: value for key, value in config.get("data", {}).items() if key in FIELDS and value is not None}}
    return from_json({**config["spec"], **run, "command": None}, **changes)


def command_line(spec):
    """The `run_experiments.py` call that builds `spec` (config.json's `command` for a call from the API)."""
    argv = ["python", "run_experiments.py", spec.action]
    defaults = RunSpec()
    for key in FIELDS:
        value = getattr(spec, key)
        if key in ("action", "command") or value == getattr(defaults, key):
            continue
        if key == "seeds":
            argv += ["--seeds", ",".join(map(str, value))]
        elif key == "deterministic":
            argv.append("--nondeterministic")
        elif value is True:
            argv.append(flag_name(key))
        else:
            argv += [flag_name(key), str(value)]
    return shlex.join(argv)


def check(spec):
    """Raise SpecError with the one-sentence reason if `spec` is refused: every check that needs no TensorFlow.
    Nothing is read beyond whether folders and files exist; `--out` is test-written (and left as it was)."""
    problem = value_problem(spec) or data_flag_problem(spec)
    if not problem and spec.action == "train":
        problem = (setting_problem(spec) or checks.writable_folder_problem(spec.out)
                   or (resume_problem(spec.resume) if isinstance(spec.resume, str) else None))
    problem = problem or path_problem(spec) or data_problem(spec)
    if problem:
        raise SpecError(problem)


def value_problem(spec):
    """A value of the wrong type or out of bounds (the API's typed values; the parser's are already numbers)."""
    for key, (low, high) in INTEGERS.items():
        value = getattr(spec, key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            return f"{flag_name(key)}: must be from {low} to {high:,}, got {value!r}."
    for key, high in POSITIVE_NUMBERS.items():
        value = getattr(spec, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or not 0 < value <= high):
            return f"{flag_name(key)}: must be a finite number above 0 and at most {high:g}, got {value!r}."
    for key, allowed in CHOICES.items():
        value = getattr(spec, key)
        if value is not None and value not in allowed:
            return f"{flag_name(key)}: {value!r} is not one of {', '.join(map(str, allowed))}."
    for key in TEXTS:
        value = getattr(spec, key)
        if value is not None and not isinstance(value, str):
            return f"{flag_name(key)} must be text (a name or path), got {value!r}."
    for key in SWITCHES:
        if getattr(spec, key) not in (None, True, False):
            return f"{flag_name(key)} must be True or False, got {getattr(spec, key)!r}."
    if not isinstance(spec.resume, (bool, str)):
        return f"--resume must be True, False or a run folder, got {spec.resume!r}."
    return seeds_problem(spec.seeds)


def seeds_problem(seeds):
    if not seeds:
        return "--seeds needs at least one seed."
    bad = [seed for seed in seeds if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= checks.MAX_SEED]
    if bad:
        return f"seeds must be from 0 to {checks.MAX_SEED:,} (whole numbers), got {bad[0]!r}."
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        return f"seed {repeated[0]} is given twice; each seed is one run, so a repeat would count one run twice."
    return None


def data_flag_problem(spec):
    """Folders given to a dataset that does not read them would be ignored silently: refuse instead."""
    if (spec.normal_dir or spec.abnormal_dir) and spec.dataset != "folder":
        return (f"--normal-dir/--abnormal-dir are read by --dataset folder only (this call has --dataset "
                f"{spec.dataset}); add --dataset folder.")
    if spec.data_dir and spec.dataset in ("phantom", "folder"):
        return (f"--dataset {spec.dataset} does not read --data-dir; name the dataset in that folder, "
                "e.g. --dataset brain_mri (or --dataset folder --normal-dir A --abnormal-dir B).")
    return None


def setting_problem(spec):
    """A setting wrong whatever the data: an unknown or repeated model, a score or flag a named model has no use
    for, a pixel budget beyond memory, missing weights files, phases without epochs, XLA or cluster settings."""
    try:
        names = model_list(spec.model)
    except ValueError as error:
        return str(error)
    if spec.score is not None and spec.score not in SCORE_NAMES:
        return f"--score {spec.score} does not exist; the score variants are {', '.join(SCORE_NAMES)}."
    given = [key for key, value in spec.overrides.items() if value is not None]
    for model in names:  # a floor the call did not name takes only the flags it has a use for (experiment.py)
        problem = next(filter(None, (flag_problem(model, key) for key in given)), None)
        if spec.score is not None:
            problem = problem or score_problem(model, spec.score, spec.synthetic_anomalies)
        if problem:
            return problem
    if spec.batch_size is not None and spec.image_size is not None \
            and spec.batch_size * spec.image_size ** 2 > checks.MAX_PIXELS_PER_STEP:
        return (f"--batch-size {spec.batch_size} of {spec.image_size} px images is {spec.batch_size * spec.image_size ** 2:,} "
                f"pixels a step, more than the {checks.MAX_PIXELS_PER_STEP:,} (64 images of 256 px) memory is sized for; "
                "lower --batch-size or --image-size.")
    if spec.perceptual_weights not in (None, "imagenet", "none") and not os.path.isfile(spec.perceptual_weights):
        return (f"--perceptual-weights {spec.perceptual_weights}: no such file; give imagenet, none or the path of "
                "a VGG16 no-top weights file.")
    if spec.backbone_weights is not None:
        try:
            check_backbone_weights(spec.backbone or BACKBONES[0], spec.backbone_weights)
        except ValueError as error:
            return str(error)
    if spec.epochs_recon == 0 and spec.epochs_adv == 0:
        return "--epochs-recon 0 with --epochs-adv 0 trains nothing; give at least one phase an epoch."
    return checks.xla_problem(spec.xla, spec.deterministic is not False) or (
        checks.tf_config_problem() if spec.strategy == "multi_worker" else None)


def resume_problem(run_dir):
    """--resume RUN_DIR must name a run that trained (has a checkpoint) and did not finish."""
    if not (pathlib.Path(run_dir) / "config.json").is_file():
        return f"--resume {run_dir}: not a run folder (no config.json there)."
    if get_state(run_dir)["status"] == "finished":
        return f"--resume {run_dir}: that run finished; there is nothing to continue."
    if not trained(run_dir):
        return f"--resume {run_dir}: that run saved no checkpoint; run its command again to start it afresh."
    return None


def path_problem(spec):
    """A data path that names a file where a folder is needed (the loaders would say it "does not exist")."""
    for key in ("data_dir", "normal_dir", "abnormal_dir"):
        path = getattr(spec, key)
        if path and os.path.exists(path) and not os.path.isdir(path):
            return f"{flag_name(key)} {path} is a file, not a folder; give the folder that holds the images."
    return None


def data_problem(spec):
    """Options the dataset does not take (--category, --source), a data folder that does not exist and a category
    not in it, or None. Only existence is checked here: nothing is decoded (the loaders raise these errors first)."""
    try:
        check_options(spec.dataset, spec.category, spec.source)
        if spec.action == "download" or spec.dataset == "phantom" or spec.source == "tfds":
            return None
        if spec.dataset == "folder":
            if not spec.normal_dir or not all(pathlib.Path(path).is_dir() for path in (spec.normal_dir, spec.abnormal_dir) if path):
                load_dataset("folder", normal_dir=spec.normal_dir, abnormal_dir=spec.abnormal_dir)  # raises
            return None
        root = resolve_data_dir(spec.dataset, spec.data_dir)
        if root is None or not root.is_dir() or (spec.dataset == "mvtec_ad" and spec.category is None):
            load_dataset(spec.dataset, data_dir=spec.data_dir, category=spec.category, source=spec.source)  # raises
        if spec.category not in (None, "all"):
            found = available_categories(spec.dataset, spec.data_dir, spec.source)
            if spec.category.lower() not in {name.lower() for name in found}:
                return (f"--category {spec.category}: no such category under '{root}'; found: "
                        f"{', '.join(found) or 'none'} (or --category all).")
    except DatasetError as error:
        return str(error)
    return None
