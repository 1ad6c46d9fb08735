"""--strategy mirrored: the same update as on one device, and whole runs, on two logical CPU replicas.

TensorFlow fixes its devices when it starts, so the check runs in a fresh interpreter that
splits the CPU in two first.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, pathlib, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    import run_experiments
    from models.cae_d_gan import ConvAutoencoder, build_cae_decoder, build_cae_encoder
    from models.registry import architecture
    from training.distribution import make_strategy

    config = architecture("cae_d_gan", "tiny")
    images = np.random.default_rng(0).uniform(-1, 1, (8, 32, 32, 1)).astype("float32")

    def trained(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            cae = ConvAutoencoder(build_cae_encoder(config), build_cae_decoder(config))
            cae.compile(keras.optimizers.SGD(0.5))
        initial = [np.asarray(v) for v in cae.trainable_variables]
        cae.fit(tf.data.Dataset.from_tensors(images).repeat(2), epochs=1, verbose=0)
        return initial, [np.asarray(v) for v in cae.trainable_variables]

    mirrored = make_strategy("mirrored")
    (start, one_device), (_, two_replicas) = trained(make_strategy("default")), trained(mirrored)
    out = pathlib.Path(sys.argv[1])
    code = run_experiments.main(["--model", "fcae", "--profile", "smoke", "--strategy", "mirrored", "--no-floor",
                                 "--out", str(out)])
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "change": max(float(np.abs(a - b).max()) for a, b in zip(start, one_device)),
        "difference": max(float(np.abs(a - b).max()) for a, b in zip(one_device, two_replicas)),
        "exit": code,
        "metrics": [json.loads(path.read_text()) for path in sorted(out.glob("phantom/*/*/metrics.json"))],
        "configs": [json.loads(path.read_text()) for path in sorted(out.glob("phantom/*/*/config.json"))],
    }))
""")


@pytest.fixture(scope="module")
def mirrored_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored")
    completed = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_two_replicas_make_the_same_update_as_one_device(mirrored_results):
    assert mirrored_results["replicas"] == 2
    assert mirrored_results["change"] > 1e-3  # the step really moved the weights
    # Summed, unshared replica gradients would make the two-replica step twice as large.
    assert mirrored_results["difference"] < 1e-3 * mirrored_results["change"]


def test_a_whole_run_trains_evaluates_and_records_the_strategy_under_mirrored(mirrored_results):
    assert mirrored_results["exit"] == 0
    # One deep model, the cheapest: every model applies its gradients through models.base.apply_gradients
    # (replica_gradients, checked above); the floors are fitted in numpy, outside the strategy.
    assert [config["model"] for config in mirrored_results["configs"]] == ["fcae"]
    assert {config["strategy"] for config in mirrored_results["configs"]} == {"mirrored"}
    for metrics in mirrored_results["metrics"]:
        assert 0.0 <= metrics["auroc"] <= 1.0
