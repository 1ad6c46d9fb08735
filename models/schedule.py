"""Training schedules as Keras callbacks: the Improved BiGAN's two phases, or one phase.

Every schedule has `total_epochs`, `phase(epoch)` (the name logged with each epoch) and
`representative_epochs()` (one epoch per distinct training step, for the benchmark).

The Improved BiGAN two-phase schedule (paper §III, Fig. 4):
Epochs 0 .. epochs_recon-1 are phase 1 (encoder + generator on the reconstruction loss);
the next epochs_adv are phase 2 (adversarial). In phase 2 the discriminator learns on every
`discriminator_every`-th epoch, starting with the first, so the adversarial signal never comes
from an untrained discriminator.
"""

import keras

RECONSTRUCTION = "reconstruction"
ADVERSARIAL = "adversarial"


class TwoPhaseSchedule(keras.callbacks.Callback):
    def __init__(self, epochs_recon, epochs_adv, discriminator_every=5):
        super().__init__()
        self.epochs_recon = epochs_recon
        self.epochs_adv = epochs_adv
        self.discriminator_every = discriminator_every

    @property
    def total_epochs(self):
        return self.epochs_recon + self.epochs_adv

    def phase(self, epoch):
        return RECONSTRUCTION if epoch < self.epochs_recon else ADVERSARIAL

    def representative_epochs(self):
        """One epoch of each distinct training step (for the benchmark)."""
        return {
            "phase1_reconstruction": 0,
            "phase2_with_discriminator": self.epochs_recon,
            "phase2_without_discriminator": self.epochs_recon + 1,
        }

    def trains_discriminator(self, epoch):
        return self.phase(epoch) == ADVERSARIAL and (epoch - self.epochs_recon) % self.discriminator_every == 0

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_phase(self.phase(epoch) == ADVERSARIAL, self.trains_discriminator(epoch))


class SinglePhaseSchedule(keras.callbacks.Callback):
    """All epochs run the same training step (e.g. the CAE-D-GAN cascade); 0 epochs for the floors."""

    def __init__(self, epochs, name="training"):
        super().__init__()
        self.total_epochs = epochs
        self.name = name

    def phase(self, epoch):
        return self.name

    def representative_epochs(self):
        return {self.name: 0} if self.total_epochs else {}
