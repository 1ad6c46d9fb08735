"""Deployable artefacts: raw images in, score / error map / reconstruction / decision out.

`ImageDetector` wraps the evaluated detector with training's own preprocessing (the decoder's
intensity step `unit_range` and the pipeline's `to_model_input`), so model.keras and the
SavedModel, which serves that same model, reproduce scores.csv from decoded image files of any
bit depth. Importing this module registers every layer a run's model.keras holds, so it is the
one import needed to load one. Using the SavedModel needs only TensorFlow.
"""

import keras
import tensorflow as tf

import models.registry  # noqa: F401  (registers every model family's layers for keras.saving.load_model)
from data.decode import unit_range
from data.pipeline import to_model_input
from evaluation.scoring import module_scorers

SERVING_OUTPUTS = ("score", "is_anomalous", "error_map", "z_map", "anomaly_map", "reconstruction", "mse", "ssim_error")
MODULE_OUTPUTS = ("score", "mse", "ssim_error", "error_zmax")  # per cascade module, as "<module>_score" etc.
# Input dtype -> the bit depth training's decoder reports for such a file (floats are taken as already in [0, 1]).
BIT_DEPTHS = {tf.uint8: 8, tf.uint16: 16}
SIGNATURES = {"serving_default": tf.uint8, "serving_uint16": tf.uint16, "serving_float": tf.float32}


def unit_images(images):
    """Images as decoded from files -> float32 in [0, 1], by training's intensity step for their dtype."""
    images = tf.convert_to_tensor(images)
    if images.dtype in BIT_DEPTHS:
        return unit_range(tf.cast(images, tf.float32), BIT_DEPTHS[images.dtype])
    if not images.dtype.is_floating:
        raise TypeError(f"Images must be uint8, uint16 or float in [0, 1]; got {images.dtype.name}.")
    return tf.cast(images, tf.float32)


@keras.saving.register_keras_serializable(package="bigan_ad")
class ImageDetector(keras.Model):
    """Images [N, H, W, C] (any H, W; C in 1..4) as decoded from files -> the serving outputs.

    The dtype says how the values were stored, and picks training's intensity step: uint8 is
    divided by 255, uint16 stretched by each image's own min..max (a 12-bit scan in a 16-bit
    PNG would otherwise come out nearly black, or overflow a uint8 path), floats are taken as
    already in [0, 1]. Then grayscale or RGB (the detector's input channels), antialiased resize
    and [-1, 1] exactly as in training,
    the detector with its calibration, and the outputs the SavedModel serves. No weights of its
    own and no Lambda layer, so it saves to model.keras and loads with safe_mode=True.
    """

    def __init__(self, detector, **kwargs):
        super().__init__(**kwargs)
        self.detector = detector
        self.built = True  # the detector is built; this model adds no weights

    def call(self, images):
        return self.serve_unit_range(unit_images(images))

    def serve_unit_range(self, images):
        """The serving outputs of float images in [0, 1] (what `unit_images` makes of any stored dtype)."""
        _, size, _, channels = self.detector.input_shape
        outputs = self.detector(to_model_input(images, size, channels), training=False)
        names = [*SERVING_OUTPUTS, *(
            f"{prefix}{name}" for _, prefix in module_scorers(self.detector).values() if prefix for name in MODULE_OUTPUTS
        )]
        outputs = {name: outputs[name] for name in names if name in outputs}  # a map-only model has no reconstruction
        if "reconstruction" in outputs:
            reconstruction = outputs["reconstruction"][..., 0] if channels == 1 else outputs["reconstruction"]
            outputs["reconstruction"] = (reconstruction + 1.0) / 2.0  # grey [N, S, S] as before, colour [N, S, S, 3]
        threshold = self.detector.get_layer("score_combiner").threshold
        outputs["threshold"] = tf.fill(tf.shape(outputs["score"]), tf.cast(threshold, tf.float32))
        return outputs

    def get_config(self):
        return {"name": self.name, "detector": keras.saving.serialize_keras_object(self.detector)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config.pop("detector")), **config)


def export_saved_model(image_detector, path):
    """Write `path` with one signature per input dtype (SIGNATURES), each serving `image_detector`.

    Outputs: score (higher = more anomalous), is_anomalous (score >= stored threshold), threshold,
    error_map (|x - x̂| at the model's size, on the [-1, 1] model scale), z_map (the smoothed error
    standardised per pixel by the training normals), anomaly_map (the localisation map: smoothed
    error relative to the normals' typical error there), reconstruction (in [0, 1]; [N, S, S], or
    [N, S, S, 3] for a colour model), and the
    score's raw components mse and ssim_error (a model that predicts its anomaly map, e.g. patchcore, has no
    reconstruction, mse or ssim_error: its error_map is its own map); a cascade also returns each module's
    `<module>_score`, `<module>_mse`, `<module>_ssim_error` and `<module>_error_zmax`.
    """
    archive = keras.export.ExportArchive()
    archive.track(image_detector)
    # The model is traced once, on [0, 1] floats; each signature only adds its dtype's intensity step in front.
    serve_unit_range = tf.function(image_detector.serve_unit_range,
                                   input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])

    def serve(images):
        return serve_unit_range(unit_images(images))

    for name, dtype in SIGNATURES.items():
        archive.add_endpoint(name, serve, input_signature=[tf.TensorSpec([None, None, None, None], dtype, name="images")])
    archive.write_out(str(path), verbose=False)
    return path
