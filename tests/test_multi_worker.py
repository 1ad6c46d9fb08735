"""--strategy multi_worker for real: two worker processes on 127.0.0.1 (TF_CONFIG, MultiWorkerMirroredStrategy)
train one smoke model through the command line; both end with the same weights and only the chief keeps a run.

Each worker runs `python run_experiments.py ...` in a wrapper that only records the network's weights before and
after training (so the two processes can be compared), nothing else.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np

import run_experiments

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import experiment, run_experiments

    original_fit = experiment.fit

    def fit(network, *args, **kwargs):
        before = [np.asarray(v) for v in network.trainable_variables]
        history = original_fit(network, *args, **kwargs)
        np.savez(sys.argv[1], *before, *[np.asarray(v) for v in network.trainable_variables])
        return history

    experiment.fit = fit
    sys.exit(run_experiments.main(sys.argv[2:]))
""")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:  # all bound at once, so the ports differ
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_train_the_same_weights_and_only_the_chief_writes_a_run(tmp_path):
    out = tmp_path / "runs"  # one --out for both, as on a shared file system: the worker must not write there
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    command = ["--model", "fcae", "--profile", "smoke", "--no-floor", "--strategy", "multi_worker", "--out", str(out)]
    workers = []
    for index in range(2):
        env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}  # gRPC would use one
        env.update(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
                   TF_CPP_MIN_LOG_LEVEL="3")
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path / f"weights{index}.npz"), *command], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        results = [worker.communicate(timeout=240) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, results):
        assert worker.returncode == 0, (stdout[-2000:], stderr[-3000:])

    weights = [list(np.load(tmp_path / f"weights{index}.npz").values()) for index in range(2)]
    half = len(weights[0]) // 2
    before, after = weights[0][:half], weights[0][half:]
    assert max(float(np.abs(a - b).max()) for a, b in zip(before, after)) > 1e-4  # the epoch trained
    for chief, other in zip(weights[0], weights[1]):
        np.testing.assert_allclose(chief, other, rtol=0, atol=1e-6)

    runs = [path.parent for path in out.glob("*/*/*/config.json")]
    assert len(runs) == 1 and json.loads((runs[0] / "config.json").read_text())["strategy"] == "multi_worker"
    assert (runs[0] / "saved_model" / "saved_model.pb").is_file()
    assert "not the chief" not in results[0][0]
    worker_line = next(line for line in results[1][0].splitlines() if "not the chief" in line)
    temporary = pathlib.Path(worker_line.split("writes into ")[1].split(" (removed")[0])
    assert not temporary.exists()  # removed when the worker exited


def test_resume_across_workers_is_refused_before_anything_runs(tmp_path, capsys, monkeypatch):
    """Only the chief keeps checkpoints: workers resuming at different epochs would wait on each other for ever."""
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}))
    assert run_experiments.main(["--model", "fcae", "--profile", "smoke", "--strategy", "multi_worker", "--resume",
                                 "--out", str(tmp_path)]) == 2
    assert "--resume does not work with --strategy multi_worker" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
