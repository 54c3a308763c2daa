"""The CPU benchmark's /proc readings, against this test process itself."""

from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from tools.bench import cpu

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def test_finds_the_process_listening_on_a_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert cpu.pid_listening_on(server.getsockname()[1]) == os.getpid()


def test_a_port_nobody_listens_on_says_to_start_the_stack() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening
    with pytest.raises(LookupError, match="start the stack"):
        cpu.pid_listening_on(port)


def test_cpu_seconds_grow_with_work_done() -> None:
    before = cpu.cpu_seconds(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    spent = cpu.cpu_seconds(os.getpid()) - before
    assert 0.15 <= spent <= 1.0
