"""Training as a Ray job, submitted the way a user submits it: a local Ray head started with `ray start`, and
`python -m training.ray_jobs` sent through the Job Submission API with the repository as its working dir.

The job reads the Feast offline store through a private copy of the feature repository (applied here), trains
BPR-MF on two Ray Train workers (DDP over gloo) and writes its artifacts, which the test then checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from training.ray.job import RUNTIME_ENV_EXCLUDES

from ..conftest import REPO, copy_feature_repo, run_feast
from ..waiting import eventually

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
JOB_TIMEOUT_S = 300
EPOCHS = 2
WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_head(temp_dir: Path, token: str) -> None:
    """Stops this head's processes only: `ray stop` would stop every Ray instance on the machine, other users'
    and parallel runs' included. Ours mention the temp dir on their command line or carry the head's token in
    their environment (inherited by everything the head starts: agents, workers, the job's driver)."""
    import psutil

    ours: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in arg for arg in proc.info["cmdline"] or ()) or (
                proc.environ().get("RAY_AUTH_TOKEN") == token
            ):
                ours[proc.pid] = proc
                for child in proc.children(recursive=True):
                    ours[child.pid] = child
    ours.pop(os.getpid(), None)
    for proc in ours.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(ours.values()), timeout=15)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture
def ray_head() -> Iterator[tuple[str, dict[str, str]]]:
    """A Ray head on free ports with the dashboard (Job Submission API), with token authentication under a
    token of its own; its address (http://127.0.0.1:<port>) and the headers a client sends."""
    # Short on purpose: Ray puts Unix sockets under the temp dir and their paths are limited to ~107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    dashboard_port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # The job's `python` is this virtual environment's, as with an activated venv.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    token = uuid.uuid4().hex
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--num-cpus=2",
        f"--port={_free_port()}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield f"http://127.0.0.1:{dashboard_port}", {"Authorization": f"Bearer {token}"}
    finally:
        _stop_head(temp_dir, token)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def _wait(client: object, job_id: str) -> str:
    from ray.job_submission import JobStatus, JobSubmissionClient

    assert isinstance(client, JobSubmissionClient)

    def ended() -> JobStatus | None:
        status = client.get_job_status(job_id)
        return status if status.is_terminal() else None

    try:
        status = eventually(ended, timeout=JOB_TIMEOUT_S, interval=2, message=f"Ray job {job_id} ends")
    except pytest.fail.Exception:
        client.stop_job(job_id)
        print(client.get_job_logs(job_id)[-20000:])
        raise
    if status != JobStatus.SUCCEEDED:
        print(client.get_job_logs(job_id)[-20000:])
    return str(status)


def test_bpr_mf_job_trains_on_ray_and_writes_artifacts(
    ray_head: tuple[str, dict[str, str]], offline_dir: Path, tmp_path: Path
) -> None:
    from ray.job_submission import JobSubmissionClient

    repo = copy_feature_repo(tmp_path, offline_dir)
    run_feast(repo, "apply")
    out = tmp_path / "artifacts"
    address, headers = ray_head
    client = JobSubmissionClient(address, headers=headers)
    job_id = client.submit_job(
        entrypoint=(
            f"python -m training.ray_jobs --model bpr_mf --epochs {EPOCHS} --workers {WORKERS}"
            f" --feature-repo {repo} --out {out} --storage-path {tmp_path / 'ray_results'}"
        ),
        runtime_env={"working_dir": str(REPO), "excludes": RUNTIME_ENV_EXCLUDES},
    )
    status = _wait(client, job_id)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", f"job {job_id} ended {status}"
    assert f"epoch {EPOCHS}/{EPOCHS}" in logs  # per-epoch progress reaches the job's logs
    assert "Started a local Ray instance" not in logs  # the job trained on this cluster, not a Ray of its own

    inter = pd.read_parquet(offline_dir / "interactions.parquet")
    n_users, n_items = inter["user_id"].nunique(), inter["item_id"].nunique()
    metrics = json.loads((out / "metrics.json").read_text())
    dim = metrics["config"]["dim"]
    assert metrics["workers"] == WORKERS and metrics["data"]["interactions"] == len(inter)
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
    for epoch in metrics["epochs"]:
        assert np.isfinite(epoch["loss"]) and epoch["loss"] > 0
        assert epoch["samples_per_s"] > 0 and epoch["workers"] == WORKERS
    assert metrics["epochs"][-1]["loss"] < metrics["epochs"][0]["loss"]
    assert metrics["samples_per_s"] > 0 and metrics["timing"]["fit_s"] > 0

    with np.load(out / "embeddings.npz") as npz:
        assert npz["user_vectors"].shape == (n_users, dim + 1)
        assert npz["item_vectors"].shape == (n_items, dim + 1)
        assert len(npz["user_ids"]) == n_users and len(npz["item_ids"]) == n_items
        assert np.isfinite(npz["user_vectors"]).all() and np.isfinite(npz["item_vectors"]).all()
        assert set(npz["user_ids"]) == set(inter["user_id"])
    state = torch.load(out / "model.pt")
    assert state["user.weight"].shape == (n_users, dim)
    # Ray Train kept the run's checkpoints in the storage path.
    assert any((tmp_path / "ray_results").rglob("checkpoint_*"))
