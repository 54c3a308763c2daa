"""Runs the four services as separate processes: `python -m tools.stack`.

Starts candidate, ranking, rerank and the gateway, waits until all report SERVING on grpc.health.v1,
prints recommendations for a few MovieLens users, and serves until Ctrl-C (SIGINT) or SIGTERM, which it
forwards to the services so they drain. The end-to-end tests use `Stack` with free ports.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from artifacts.paths import DEFAULT_VAR, REPO_ROOT

SERVICES = ("candidate", "ranking", "rerank", "gateway")
DEFAULT_PORTS = {"gateway": 50051, "candidate": 50052, "ranking": 50053, "rerank": 50054}
DEMO_USERS = ("196", "42", "655", "new-visitor")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    env: Mapping[str, str] = field(default_factory=dict)
    #: Extra variables of one service (e.g. its metrics port), on top of `env`.
    service_env_overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    log_dir: Path = DEFAULT_VAR / "logs"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def service_env(self, service: str) -> dict[str, str]:
        env = {**os.environ, **self.env}
        prefix = f"RECSYS_{service.upper()}_"
        env[prefix + "PORT"] = str(self.ports[service])
        env[prefix + "HOST"] = "127.0.0.1"
        if service == "gateway":
            for stage in ("candidate", "ranking", "rerank"):
                env[f"RECSYS_GATEWAY_{stage.upper()}_ADDRESS"] = self.address(stage)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.service_env_overrides.get(service, {}))
        return env

    def start(self, services: tuple[str, ...] = SERVICES) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in services:
            log = (self.log_dir / f"{service}.log").open("ab")
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                cwd=REPO_ROOT,
                env=self.service_env(service),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def health(self, service: str, timeout: float = 1.0) -> int:
        """The overall health status of a service (UNKNOWN when it does not answer)."""
        with grpc.insecure_channel(self.address(service)) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError:
                return health_pb2.HealthCheckResponse.UNKNOWN
            return int(reply.status)

    def wait_serving(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.processes)
        while pending:
            for service in sorted(pending):
                proc = self.processes[service]
                if proc.poll() is not None:
                    raise RuntimeError(f"{service} exited with {proc.returncode}:\n{self.log_tail(service)}")
                if self.health(service) == health_pb2.HealthCheckResponse.SERVING:
                    pending.discard(service)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not SERVING after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.5)

    def stop(self, service: str | None = None, grace: float = 10.0) -> None:
        targets = [service] if service else list(self.processes)
        for name in targets:
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name in targets:
            proc = self.processes.pop(name, None)
            if proc is None:
                continue
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log_tail(self, service: str, lines: int = 30) -> str:
        path = self.log_dir / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def print_demo(address: str) -> None:
    """A few users' recommendations, as `recsys recommend` prints them."""
    from client.gateway import format_recommendations, open_channel
    from recsys.gateway.v1 import gateway_pb2, gateway_pb2_grpc

    with open_channel(address) as channel:
        stub = gateway_pb2_grpc.GatewayServiceStub(channel)
        for user in DEMO_USERS:
            reply = stub.Recommend(gateway_pb2.RecommendRequest(user_id=user, count=8, explain=True), timeout=5.0)
            print(f"\n{format_recommendations(user, reply)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-demo", action="store_true", help="do not print sample recommendations")
    parser.add_argument("--exit-after-demo", action="store_true", help="stop once the demo is printed")
    args = parser.parse_args(argv)
    stack = Stack()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    print(f"starting {', '.join(SERVICES)} (logs in {stack.log_dir}) ...", flush=True)
    try:
        stack.start()
        stack.wait_serving()
        print(f"all four services SERVING after {time.monotonic() - started:.1f}s", flush=True)
        if not args.no_demo:
            print_demo(stack.address("gateway"))
        if args.exit_after_demo:
            return 0
        print(
            f"\ngateway on {stack.address('gateway')}; try `recsys recommend --user 1`. Ctrl-C stops.",
            flush=True,
        )
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(1.0)
        dead = [s for s, p in stack.processes.items() if p.poll() is not None]
        print(f"stopped: {', '.join(dead)} exited; see {stack.log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main())
