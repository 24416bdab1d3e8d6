"""``python -m agent`` as a process: installs the CNI executables, serves, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from cni.agent_client import AgentClient
from tests.agent.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_the_daemon_installs_serves_and_stops_on_sigterm(short_dir, tmp_path):
    health = free_port()
    socket_path = short_dir / "agent.sock"
    env = {
        "PATH": os.environ["PATH"], "SPIDERWEB_NODE_NAME": "node-1", "SPIDERWEB_PORTAL_URL": "http://127.0.0.1:9",
        "SPIDERWEB_NODE_TOKEN": "swn_x.y", "SPIDERWEB_AGENT_MODE": "standalone",
        "SPIDERWEB_AGENT_SOCKET": str(socket_path), "SPIDERWEB_AGENT_HEALTH_PORT": str(health),
        "SPIDERWEB_AGENT_METRICS_PORT": "0", "SPIDERWEB_CNI_BIN_DIR": str(tmp_path / "bin"),
    }
    process = subprocess.Popen([sys.executable, "-m", "agent"], cwd=REPO, env=env, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{health}/v1/runtime/startup", timeout=2).status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the agent did not start"
            time.sleep(0.1)
        assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["coordinator", "ifacer", "spiderpool"]
        AgentClient(str(socket_path)).healthy()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not socket_path.exists()
    assert "agent stopped" in process.stderr.read()
