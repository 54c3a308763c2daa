"""Runs a real Triton server on the CPU from the nvidia-pytriton wheel, for tests, benchmarks and local use.

    python -m tools.local_triton --repository var/bundles/triton

The wheel ships `tritonserver` (Triton 2.51) with only the python backend. Its Python side needs its own
environment with numpy<2 (`make triton-env` builds var/triton-venv); the ONNX models are served by the
Python-based `onnxruntime` stand-in in deploy/triton/cpu-backends/. The server process gets its own process
group and is stopped by its PID, together with its backend stubs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from artifacts.paths import DEFAULT_VAR, REPO_ROOT
from tools.stack import free_port

TRITON_VENV = DEFAULT_VAR / "triton-venv"
CPU_BACKENDS = REPO_ROOT / "deploy" / "triton" / "cpu-backends"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _site_packages(venv: Path) -> Path:
    out = subprocess.run(
        [str(_venv_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip())


@dataclass
class LocalTriton:
    repository: Path
    venv: Path = TRITON_VENV
    model_control: str = "explicit"
    models: tuple[str, ...] = ()
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _scratch: Path | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self, backend_dir: Path) -> list[str]:
        server = _site_packages(self.venv) / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        cmd = [
            str(server),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_dir}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=false",
            f"--model-control-mode={self.model_control}",
            "--log-verbose=0",
        ]
        if self.model_control == "poll":
            cmd.append("--repository-poll-secs=5")
        cmd += [f"--load-model={m}" for m in self.models]
        return cmd

    def _backend_dir(self) -> Path:
        """The wheel's python backend (with the stub for this Python) next to the onnxruntime stand-in.

        Copied, not linked: Triton refuses backend files whose real path lies outside the backend directory.
        """
        wheel = _site_packages(self.venv) / "pytriton" / "tritonserver"
        target = Path(tempfile.mkdtemp(prefix="triton-backends-"))
        python = target / "python"
        shutil.copytree(wheel / "backends" / "python", python, ignore=shutil.ignore_patterns("__pycache__"))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = python / "triton_python_backend_stub"
        shutil.copy2(wheel / "python_backend_stubs" / version / "triton_python_backend_stub", stub)
        shutil.copytree(
            CPU_BACKENDS / "onnxruntime", target / "onnxruntime", ignore=shutil.ignore_patterns("__pycache__")
        )
        self._scratch = target
        return target

    def environment(self) -> dict[str, str]:
        # The backend stub must load this interpreter's libpython (not the distribution's) and import the
        # numpy<2 environment: with numpy 2 the python backend reports READY and returns empty outputs.
        # The copied stub also needs the wheel's bundled libraries, which its RPATH no longer reaches.
        libdir = str(sysconfig.get_config_var("LIBDIR"))
        bundled = str(_site_packages(self.venv) / "nvidia_pytriton.libs")
        return {
            **os.environ,
            "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [libdir, bundled, os.environ.get("LD_LIBRARY_PATH", "")])),
            # The stub finds its site-packages through the first `python` on PATH, not through PYTHONPATH.
            "PATH": os.pathsep.join([str(self.venv / "bin"), os.environ.get("PATH", "")]),
            "VIRTUAL_ENV": str(self.venv),
            "PYTHONNOUSERSITE": "1",
        }

    def start(self, timeout: float = 120.0) -> LocalTriton:
        if not _venv_python(self.venv).exists():
            raise FileNotFoundError(f"no Triton environment at {self.venv}; run `make triton-env`")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(self._backend_dir()), env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        import tritonclient.grpc as triton_grpc

        client = triton_grpc.InferenceServerClient(self.grpc_url)
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.process.returncode} (log: {self.log_path})")
            try:
                if client.is_server_ready() and all(client.is_model_ready(m) for m in self.models):
                    return
            except Exception:  # not listening yet
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Triton not ready after {timeout:.0f}s (log: {self.log_path})")
            time.sleep(0.3)

    def stop(self, grace: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait()
        with contextlib.suppress(ProcessLookupError):  # backend stubs left behind
            os.killpg(pgid, signal.SIGKILL)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=DEFAULT_VAR / "bundles" / "triton")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)
    server = LocalTriton(
        args.repository, model_control="poll", grpc_port=args.grpc_port, http_port=args.http_port,
        metrics_port=args.metrics_port,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops it like Ctrl-C
    server.start()
    print(f"Triton ready on {server.grpc_url} (gRPC), repository {args.repository}; Ctrl-C stops", flush=True)
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
