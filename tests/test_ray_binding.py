"""What `ray start --head --node-ip-address=127.0.0.1` really binds, and the worker's warning about it.

Each case runs a real head in a network namespace the test makes (tests/netns.py) and a fresh PID
namespace: a machine with only loopback, and one with a routable, public-looking address on a private
switch of the test's, so no packet reaches any real network. When the PID namespace's first process exits,
the kernel ends every Ray process it started. Needs root, ip and unshare; skips without them, except in CI
(``CI=true``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from netns import Network, unavailable

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "1.2.3.4"  # global, so Ray and the worker treat it as the machine's public address
PROBE = (
    "import json; from runner.cluster.address import exposure_warning, ray_listeners; "
    "print(json.dumps({'listening': ray_listeners(), 'warning': exposure_warning()}))"
)


def head_in_namespace(tmp_path: Path, public: bool) -> dict[str, object]:
    """Start a Ray head as the README's `ray start` line does, on 127.0.0.1, in its own namespaces (with
    a public address besides loopback, or loopback only); what listens, and what the worker would warn."""
    if why := unavailable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and this test's network namespace {why}", pytrace=False)
        pytest.skip(f"network namespaces: {why}")
    ray = Path(sys.executable).with_name("ray")
    temp = Path(tempfile.mkdtemp(prefix="tq-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    script = (
        "set -e; "
        f"{ray} start --head --node-ip-address=127.0.0.1 --port=6390 --num-cpus=1 --include-dashboard=false "
        f"--disable-usage-stats --temp-dir={temp} >{tmp_path / 'ray.log'} 2>&1; "
        f"{sys.executable} -c {json.dumps(PROBE)}"
    )
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    net = Network()
    try:
        if public:
            net.add("head", f"{PUBLIC}/24", gateway="1.2.3.1")
        else:
            net.add("head")
        done = subprocess.run(
            [*net.exec("head"), "unshare", "--pid", "--fork", "--mount-proc", "bash", "-c", script],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
    finally:
        net.remove()
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr + (tmp_path / "ray.log").read_text(errors="replace")
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def servers(found: dict[str, object]) -> set[str]:
    listening = found["listening"]
    assert isinstance(listening, list)
    return {ip.removeprefix("::ffff:") for name, ip, _ in listening if name in ("gcs_server", "raylet")}


def test_node_ip_127_0_0_1_binds_every_address_on_a_machine_with_a_public_one(tmp_path: Path) -> None:
    found = head_in_namespace(tmp_path, public=True)
    assert servers(found) <= {"0.0.0.0", "::"} and servers(found)  # the GCS and raylets: every address
    assert f"Local node IP: {PUBLIC}" in (tmp_path / "ray.log").read_text()  # 127.0.0.1 was replaced
    warning = found["warning"]
    assert isinstance(warning, str) and "Ray listens on a public address" in warning
    assert f"gcs_server on port 6390 of every address, {PUBLIC} among them" in warning
    assert f"ray::RuntimeEnvAgent on {PUBLIC}:" in warning  # bound to the public address itself
    assert "firewall" in warning


def test_on_a_machine_with_loopback_only_ray_stays_on_loopback(tmp_path: Path) -> None:
    found = head_in_namespace(tmp_path, public=False)
    assert servers(found) == {"127.0.0.1"}
    assert found["warning"] is None
