"""The BiGAN adversarial game over image-latent pairs, shared by the Improved BiGAN and the plain BiGAN family.

`PairAdversary` is a mixin for a models.base.AnomalyModel with `encoder`, `generator`, `discriminator` (a
models.layers.pair_discriminator), `discriminator_optimizer`, trackers d_loss, d_real and d_fake
and `config["latent_dim"]`: real pairs (x, E(x)), fake pairs (G(z), z), z ~ N(0, I), and the
discriminator's update on them (Donahue et al. 2017).
"""

import tensorflow as tf

from models.losses import bigan_losses


class PairAdversary:
    def _pair_logit(self, images, latent):
        """D(x, z) as a logit (a discriminator that also returns features overrides this)."""
        return self.discriminator([images, latent], training=True)

    def _pairs_logits(self, images, training):
        """Discriminator logits for real pairs (x, E(x)) and fake pairs (G(z), z), z ~ N(0, I)."""
        latent_real = self.encoder(images, training=training)
        noise = tf.random.normal((tf.shape(images)[0], self.config["latent_dim"]))
        fake_images = self.generator(noise, training=training)
        return self._pair_logit(images, latent_real), self._pair_logit(fake_images, noise)

    def _discriminator_update(self, images):
        """One discriminator step on the BiGAN loss; E and G run but are not updated."""
        with tf.GradientTape() as tape:
            real, fake = self._pairs_logits(images, training=True)
            d_loss, _ = bigan_losses(real, fake)
        self.apply_gradients(self.discriminator_optimizer, tape, d_loss, self.discriminator.trainable_variables)
        self.track({"d_loss": d_loss, "d_real": tf.reduce_mean(tf.sigmoid(real)), "d_fake": tf.reduce_mean(tf.sigmoid(fake))})
