"""SavedModel export: raw images in, score / error map / reconstruction / decision out.

The serving functions call the same `to_model_input` as the tf.data pipeline and the same
detector (with its calibration weights) as evaluation, so a deployed model reproduces
scores.csv. Only TensorFlow is needed to use it: `tf.saved_model.load(path).signatures[...]`.
"""

import keras
import tensorflow as tf

from data.pipeline import to_model_input
from evaluation.scoring import module_scorers

SERVING_OUTPUTS = ("score", "is_anomalous", "error_map", "z_map", "anomaly_map", "reconstruction", "mse", "ssim_error")
MODULE_OUTPUTS = ("score", "mse", "ssim_error", "error_zmax")  # per cascade module, as "<module>_score" etc.


def export_saved_model(detector, path, image_size):
    """Write `path` with signatures `serving_default` (uint8 [N, H, W, C]) and `serving_float` ([0, 1] floats).

    Any H, W and C in {1, 2, 3, 4} are accepted and resized to the training size. Outputs:
    score (higher = more anomalous), is_anomalous (score >= stored threshold), error_map
    (|x - x̂| at image_size, on the [-1, 1] model scale), z_map (the smoothed error standardised
    per pixel by the training normals), anomaly_map (the localisation map: smoothed error relative
    to the normals' typical error there), reconstruction (in [0, 1]), and the
    score's raw components mse and ssim_error; a cascade also returns each module's
    `<module>_score`, `<module>_mse`, `<module>_ssim_error` and `<module>_error_zmax`.
    """
    names = [*SERVING_OUTPUTS, *(
        f"{prefix}{name}" for _, prefix in module_scorers(detector).values() if prefix for name in MODULE_OUTPUTS
    )]

    def serve(images01):
        outputs = detector(to_model_input(images01, image_size), training=False)
        outputs = {name: outputs[name] for name in names}
        outputs["reconstruction"] = (outputs["reconstruction"][..., 0] + 1.0) / 2.0
        return outputs

    def serve_uint8(images):
        return serve(tf.cast(images, tf.float32) / 255.0)

    archive = keras.export.ExportArchive()
    archive.track(detector)
    archive.add_endpoint(
        "serving_default",
        serve_uint8,
        input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name="images")],
    )
    archive.add_endpoint(
        "serving_float",
        serve,
        input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name="images")],
    )
    archive.write_out(str(path), verbose=False)
    return path
