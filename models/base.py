"""The contract every registered model keeps, the machinery they share, and how a family is declared.

A family (models/registry.py) is a `Family`: its model class, architecture presets (`paper` / `quick` /
`tiny`), run settings per profile (each naming its preset), the settings every profile shares, and the check
of an architecture.

Every model class derives from `AnomalyModel`, a keras.Model that builds its functional networks in
`build_networks` and implements
- `configure(run_config)`: optimizers (`adam`: built at once, so a checkpoint restores their slots before
  the first step), losses and loss trackers (`start_trackers`);
- `make_schedule(run_config)`: its epochs and phases (models.schedule);
- `checkpoint_items()`: the networks and optimizers a checkpoint holds, i.e. everything training changes;
- `train_step(data)`: one update, its gradients applied by `apply_gradients` (right under tf.distribute);
- `score_pairs(images)`: {module name: ScorePair} in inference mode, which evaluation.scoring scores;
- `finish_training(normals)`: what readies it for inference after the last epoch (e.g. BatchNorm statistics);
- `training_data(dataset)`: the batches it learns from, given the augmented training normals (the normals
  themselves by default; a synthetic-anomaly model, e.g. DRAEM, adds its corruptions: data.synthesis).
A model fitted in one pass from the training normals (the classical floors) derives from `FittedModel`:
`fit_normals(dataset)` replaces the epochs. `score_variants` (a class attribute) adds scores built on a
model's extra terms to the common ones (evaluation.scoring).
"""

import dataclasses
import typing

import keras
import numpy as np
import tensorflow as tf

from data.collection import DatasetError
from models.schedule import SinglePhaseSchedule


class ScorePair(typing.NamedTuple):
    """What one module of a model offers for scoring: its input, its rebuild, per-image terms, and its own map.

    A module that predicts where an image is anomalous (a memory bank's patch distances, a segmentation head)
    gives `anomaly_map` ([N, S, S] at the input size, higher = more anomalous); it then enters scoring where
    the reconstruction error |x − x̂| enters otherwise (evaluation.scoring: one mechanism for both). A module
    with a map may have no reconstruction (`None`): it then has no reconstruction terms (mse, ssim_error).
    """

    reference: typing.Any
    reconstruction: typing.Any
    terms: dict | None = None  # {term name: [N] values}, e.g. a latent distance; score variants weight them
    anomaly_map: typing.Any = None


@dataclasses.dataclass(frozen=True)
class Family:
    """The registry's view of one model: its class, presets, run profiles, shared settings and architecture check."""

    model_class: type
    presets: dict
    training: dict  # profile -> run settings, each naming its preset
    training_common: dict
    validate_architecture: typing.Callable
    synthetic_training: dict = dataclasses.field(default_factory=dict)  # profile -> settings with --synthetic-anomalies

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


# Score variants: name -> {term: weight}; a variant's raw score is Σ weight · term, then standardised
# on the validation normals. Every variant is computed for every image (metrics.json: score_variants);
# the run's `score` setting picks the one behind `score`, the threshold and the exports.
# A family adds its own variants (class attribute `score_variants`, e.g. the BiGAN's latent distance).
COMMON_VARIANTS = {
    "paper": {"mse": 0.7, "ssim_error": 0.3},  # Improved BiGAN §III: 0.7·MSE + 0.3·(1 − SSIM) on [0, 1] intensities
    # The same weights applied to [-1, 1] pixels (MSE 4x): the chest and leaf defaults were chosen with it
    # when it was called `paper` (docs/defaults.md, docs/fidelity.md).
    "mse_ssim": {"mse": 2.8, "ssim_error": 0.3},
    "mse": {"mse": 1.0},
    "error_zmax": {"error_zmax": 1.0},
}


RECONSTRUCTION_TERMS = ("mse", "ssim_error")  # the terms only a model that rebuilds its input has


def score_variants(model, architecture=None):
    """Every score variant a model supports: the common ones it has the terms for, and its own. `model` is an
    instance, or a class with the run's `architecture` (an option may add variants: own_score_variants)."""
    if architecture is None:
        architecture = {} if isinstance(model, type) else getattr(model, "config", {})
    common = {name: weights for name, weights in COMMON_VARIANTS.items()
              if getattr(model, "reconstructs", True) or not set(weights) & set(RECONSTRUCTION_TERMS)}
    own = getattr(model, "own_score_variants", None)  # any keras.Model with score_pairs can be scored (test stand-ins)
    return {**common, **(own(architecture) if own else getattr(model, "score_variants", {}))}


def replica_gradients(tape, loss, variables):
    """Gradients of this replica's share of `loss`.

    Keras optimizers sum gradients over replicas, while every loss here is a mean over the
    replica's own slice of the global batch; dividing by the replica count makes the summed
    gradient the gradient of the global-batch mean, the same update as on one device.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    gradients = tape.gradient(loss, variables)
    return gradients if replicas == 1 else [None if g is None else g / replicas for g in gradients]


class AnomalyModel(keras.Model):
    """The base of every registered model (module docstring): shared state, optimizers, trackers, saving."""

    SETTINGS = ()  # run settings the model reads at training time (e.g. a VQ-VAE's commitment cost)
    progress_logs = ()  # the logs on the console's epoch line (training.callbacks.ProgressLine); () = all
    score_variants = {}
    reconstructs = True  # False: its ScorePairs carry an anomaly_map and no reconstruction (e.g. PatchCore)
    takes_domain_score = True  # False: a domain's quick score (training.domains) is not applied to it

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        self.settings = {}
        self.trackers = {}
        self.build_networks()
        self.built = True  # the functional sub-networks are built already

    def build_networks(self):
        raise NotImplementedError

    @classmethod
    def preflight(cls, run_config):
        """Check what the run needs beyond its settings (e.g. a weights file) before any data is read; raise
        ConfigError with the reason. Nothing by default."""

    @classmethod
    def own_score_variants(cls, architecture):
        """The family's own score variants (`score_variants`) for an architecture config; an option may add some."""
        return cls.score_variants

    def take_settings(self, run_config):
        self.settings = {key: run_config[key] for key in self.SETTINGS}

    @staticmethod
    def adam(run_config, variables, learning_rate=None, **options):
        """Adam with the run's lr and betas (or `learning_rate`, e.g. a schedule), built on `variables` at once."""
        optimizer = keras.optimizers.Adam(run_config["lr"] if learning_rate is None else learning_rate,
                                          beta_1=run_config["beta_1"], beta_2=run_config["beta_2"], **options)
        optimizer.build(variables)
        return optimizer

    @staticmethod
    def apply_gradients(optimizer, tape, loss, variables):
        optimizer.apply_gradients(zip(replica_gradients(tape, loss, variables), variables))

    def start_trackers(self, names):
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}

    def track(self, values):
        for name, value in values.items():
            self.trackers[name].update_state(value)

    def logs(self, names=None):
        return {name: self.trackers[name].result() for name in (self.trackers if names is None else names)}

    @property
    def metrics(self):
        return list(getattr(self, "trackers", {}).values())

    def get_compile_config(self):
        return None  # optimizers and losses are rebuilt by configure; a saved model carries weights only

    def get_config(self):
        return {**super().get_config(), "config": self.config}

    def call(self, images, training=False):
        """The reconstruction scored for anomalies: the last module's (models with one module: its only one)."""
        return list(self.score_pairs(images).values())[-1].reconstruction

    def configure(self, run_config):
        raise NotImplementedError

    def make_schedule(self, run_config):
        raise NotImplementedError

    def checkpoint_items(self):
        raise NotImplementedError

    def score_pairs(self, images):
        raise NotImplementedError

    def finish_training(self, normals):
        """Nothing by default."""

    def training_data(self, dataset):
        """The batches `train_step` receives: the training normals as given, by default."""
        return dataset


class FittedModel(AnomalyModel):
    """A model fitted in one pass from the training normals (`fit_normals`): no epochs, optimizer or checkpoint."""

    def configure(self, run_config):
        self.take_settings(run_config)

    def make_schedule(self, run_config):
        """0 epochs: keras fit never runs, so history, checkpoints and TensorBoard stay empty."""
        return SinglePhaseSchedule(0, name="fit")

    def fit_normals(self, dataset):
        raise NotImplementedError

    def require_finite(self, normals):
        """Refuse non-finite training normals: a fit on them would make every score meaningless, silently."""
        if not np.isfinite(normals).all():
            raise DatasetError(f"{self.name}: the training normals hold non-finite values (NaN or inf); "
                               "fitting on them would make every score meaningless.")

    def train_step(self, data):
        raise TypeError(f"{self.name} is fitted in one pass by fit_normals, not trained by steps.")
