"""Cluster addresses without Ray: the public-address warning, ``cluster.toml``, and bad input."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runner.cluster.address import (
    ClusterAddressError,
    ClusterInfo,
    configured_address,
    exposed,
    public_warning,
    read_cluster_info,
    too_many_gpus,
    write_cluster_info,
)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8:6379", True),
        ("http://1.1.1.1:8265", True),
        ("[2606:4700::1111]:6379", True),
        ("10.0.0.1:6379", False),
        ("192.168.1.5:6379", False),
        ("100.64.0.1:6379", False),  # carrier-grade NAT / Tailscale
        ("127.0.0.1:6379", False),
        ("http://127.0.0.1:8265", False),
        ("[fd00::1]:6379", False),
    ],
)
def test_public_addresses_are_warned_about(address: str, public: bool) -> None:
    warning = public_warning("the Ray head", address)
    assert (warning is not None) == public
    if warning:
        assert address in warning and "RAY_AUTH_MODE=token" in warning


def test_cluster_toml_gives_the_address(tmp_path: Path) -> None:
    assert configured_address(tmp_path) is None
    (tmp_path / "cluster.toml").write_text('address = "10.0.0.1:6379"\n')
    assert configured_address(tmp_path) == "10.0.0.1:6379"
    (tmp_path / "cluster.toml").write_text('address = "10.0.0.1"\n')
    with pytest.raises(ClusterAddressError, match="expected HOST:PORT"):
        configured_address(tmp_path)
    (tmp_path / "cluster.toml").write_text("adress = 1\n")
    with pytest.raises(ClusterAddressError, match="address: missing"):
        configured_address(tmp_path)


def test_what_the_worker_saw_decides_what_fits(tmp_path: Path) -> None:
    assert read_cluster_info(tmp_path) is None
    write_cluster_info(ClusterInfo("10.0.0.1:6379", (0, 8, 4), 1.0), tmp_path)
    info = read_cluster_info(tmp_path)
    assert info is not None and info.max_node_gpus == 8
    assert too_many_gpus(8, info) is None
    assert "no node of the cluster at 10.0.0.1:6379 has more than 8" in (too_many_gpus(9, info) or "")


def test_a_bad_cluster_address_is_one_line_exit_2(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runner", "worker", "--cluster", "10.0.0.1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "expected HOST:PORT" in done.stderr and "Traceback" not in done.stderr


def test_ray_servers_on_public_addresses_are_found() -> None:
    ips = ["127.0.0.1", "10.0.0.1", "203.0.113.9", "8.8.4.4", "fe80::1%eth0"]
    listening = [
        ("gcs_server", "0.0.0.0", 6379),  # `ray start` binds every address
        ("raylet", "::ffff:127.0.0.1", 4000),
        ("raylet", "10.0.0.1", 4001),
        ("raylet", "8.8.4.4", 4002),
        ("ray::RuntimeEnvAgent", "8.8.4.4", 4003),  # `ray start` binds it to the node's own address
        ("sshd", "0.0.0.0", 22),  # not Ray's
    ]
    assert exposed(listening, ips) == [
        "gcs_server on port 6379 of every address, 8.8.4.4 among them",
        "raylet on 8.8.4.4:4002",
        "ray::RuntimeEnvAgent on 8.8.4.4:4003",
    ]
    assert exposed(listening, ["127.0.0.1", "10.0.0.1"]) == [
        "raylet on 8.8.4.4:4002",
        "ray::RuntimeEnvAgent on 8.8.4.4:4003",
    ]
    assert exposed(listening[1:3], ips) == []


def test_a_cluster_without_ray_installed_is_one_line(home: Path) -> None:
    code = "import sys; sys.modules['ray'] = None; from runner.worker.loop import serve; sys.exit(serve(cluster='10.0.0.1:6379'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "pip install 'tuneq[cluster]'" in done.stderr and "Traceback" not in done.stderr


def test_a_cluster_address_where_nothing_answers_is_one_line(home: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: connections are refused
        done = subprocess.run(
            [sys.executable, "-m", "runner", "worker", "--cluster", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"nothing answers at 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
