"""saguaro.serve.launch: the launcher refuses a host or port of the caller's, reports a server that
exits during start-up with its log, and stops a healthy one with SIGTERM (exit 0)."""
from __future__ import annotations

import pytest

from saguaro.serve.launch import launch_server, start_server


@pytest.mark.parametrize("arg", ["--port", "--host", "--port=8000"])
def test_refuses_a_host_or_port_of_its_own(arg):
    with pytest.raises(ValueError, match="chooses the host and port"):
        start_server([arg, "1"])


def test_a_server_that_exits_during_startup_is_reported_with_its_log():
    with pytest.raises(RuntimeError, match=r"exited with status 2(.|\n)*invalid choice"):
        with launch_server(["--mode", "no-such-mode"], startup_timeout=120):
            pass


@pytest.mark.slow
def test_launch_server_is_healthy_inside_and_stopped_after(server):
    # the session's server came from launch_server: it answered /health before the tests ran
    import httpx

    assert server.proc.poll() is None
    assert httpx.get(server.url + "/health", timeout=30).json() == {"status": "ok"}
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
