"""The Improved BiGAN two-phase schedule (paper §III, Fig. 4) as one Keras callback.

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

    def trains_discriminator(self, epoch):
        return self.phase(epoch) == ADVERSARIAL and (epoch - self.epochs_recon) % self.discriminator_every == 0

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_phase(self.phase(epoch) == ADVERSARIAL, self.trains_discriminator(epoch))
