"""Training and inference throughput (images/s) and peak memory of a model at a given size.

    python -m evaluation.benchmark --model improved_bigan --preset paper --batch-size 32
    python -m evaluation.benchmark --model cae_d_gan --preset quick --image-size 64
    python -m evaluation.benchmark --model knn --preset quick --image-size 64

Synthetic batches, so the numbers measure the model, not the disk. Each training mode of the
model's schedule (e.g. the Improved BiGAN's phase 1, and phase 2 with and without the
discriminator) is timed separately; the first epoch of each (graph tracing) is excluded. A floor
(pca, knn) has no training steps: its one fit on steps × batch_size synthetic normals is timed,
and that many normals are what the kNN searches at inference.
"""

import argparse
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from evaluation.scoring import build_detector  # noqa: E402
from models.registry import architecture  # noqa: E402
from training.profiles import resolve_config  # noqa: E402
from training.trainer import compiled_model, dtype_policy  # noqa: E402


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start


def peak_memory_mb():
    """Peak accelerator memory if there is a GPU, else the process's peak resident memory."""
    if tf.config.list_physical_devices("GPU"):
        return {"gpu_peak_mb": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20}
    return {"cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def benchmark(model_name, preset, batch_size, image_size, steps, perceptual_weights, mixed_precision=False, xla="auto"):
    overrides = {"perceptual_weights": perceptual_weights} if perceptual_weights else {}
    config = resolve_config(model_name, "phantom", "paper", batch_size=batch_size, mixed_precision=mixed_precision,
                            deterministic=False,  # a speed measurement; also lets --xla on compile
                            xla=xla, **overrides)
    config["architecture"] = architecture(model_name, preset, image_size=image_size)
    model = compiled_model(config)
    schedule = model.make_schedule(config)
    schedule.set_model(model)
    batch = tf.random.uniform((batch_size, image_size, image_size, 1), -1.0, 1.0)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    results = {"model": model_name, "preset": preset, "batch_size": batch_size, "image_size": image_size,
               "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU", "dtype_policy": dtype_policy(config),
               "xla": xla, **overrides}
    if hasattr(model, "fit_normals"):
        normals = tf.random.uniform((steps * batch_size, image_size, image_size, 1), -1.0, 1.0)
        start = time.perf_counter()
        model.fit_normals(tf.data.Dataset.from_tensor_slices(normals).batch(batch_size))
        results.update(fit_seconds=time.perf_counter() - start, fit_images=steps * batch_size)
    for mode, epoch in schedule.representative_epochs().items():
        schedule.on_epoch_begin(epoch)
        timer = _EpochTimer()
        model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[timer])
        results[f"train_{mode}_images_per_s"] = steps * batch_size / timer.seconds
    detector = build_detector(model, image_size, score=config["score"])

    @tf.function
    def infer(images):
        return detector(images, training=False)["score"]

    infer(batch).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        infer(batch).numpy()
    results["inference_images_per_s"] = steps * batch_size / (time.perf_counter() - start)
    results.update(peak_memory_mb())
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="improved_bigan")
    parser.add_argument("--preset", default="paper", help="architecture preset: paper | quick | tiny")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode (after one warm-up epoch)")
    parser.add_argument("--perceptual-weights", help="improved_bigan: 'none' (default) measures the networks alone; 'random' adds the cost of the VGG16 perceptual loss")
    parser.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute (float32 weights and outputs)")
    parser.add_argument("--xla", choices=("auto", "on", "off"), default="auto")
    args = parser.parse_args(argv)
    if args.model == "improved_bigan" and args.perceptual_weights is None:
        args.perceptual_weights = "none"
    results = benchmark(args.model, args.preset, args.batch_size, args.image_size, args.steps, args.perceptual_weights,
                        args.mixed_precision, args.xla)
    for name, value in results.items():
        print(f"{name:40s} {value:.1f}" if isinstance(value, float) else f"{name:40s} {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
