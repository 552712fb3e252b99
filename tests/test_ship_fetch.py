"""``tuneq ship`` as a subprocess: the commands that fetch the folder name the host and port a laptop
reaches ($SSH_CONNECTION, $TUNEQ_SHIP_HOST, the state directory's ``ship_host``), and a copy onto a full
disk (a 2 MiB tmpfs) leaves no truncated file under its final name."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from runner.ship.files import SUMS, write_sums


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run directory ``my run`` with a finished ship folder holding a 3 MiB GGUF."""
    ship = tmp_path / "my run" / "ship"
    ship.mkdir(parents=True)
    (ship / "m-Q4_K_M.gguf").write_bytes(b"GGUF" + os.urandom(3 << 20))
    (ship / "README.md").write_text("# m\n")
    (ship / "commands.txt").write_text("llama-cli -m ./m-Q4_K_M.gguf -cnv\n")
    write_sums(ship)
    return tmp_path / "my run"


def ship(*args: str, state: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m runner ship ARGS`` as user ``alice``, with only ``env`` of the ssh variables set."""
    base = {k: v for k, v in os.environ.items() if k not in ("SSH_CONNECTION", "TUNEQ_SHIP_HOST")}
    full = {**base, "LOGNAME": "alice", "TUNEQ_HOME": str(state), "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, "-m", "runner", "ship", *args]
    return subprocess.run(command, env=full, capture_output=True, text=True, timeout=60, check=False)


def test_the_fetch_commands_name_the_ssh_server_address_and_port(run_dir: Path, tmp_path: Path) -> None:
    done = ship(str(run_dir), state=tmp_path / "state", SSH_CONNECTION="198.51.100.4 51234 203.0.113.9 2222")
    assert done.returncode == 0, done.stderr
    folder = run_dir / "ship"
    assert "host from $SSH_CONNECTION" in done.stdout
    assert f"  rsync -avP -e 'ssh -p 2222' alice@203.0.113.9:'{folder}/' './my run/'\n" in done.stdout
    assert f"  scp -r -P 2222 alice@203.0.113.9:'{folder}' './my run'\n" in done.stdout
    assert "llama-cli -m ./m-Q4_K_M.gguf -cnv" in done.stdout  # then how to run it there


def test_ipv6_addresses_are_bracketed_and_port_22_is_left_out(run_dir: Path, tmp_path: Path) -> None:
    connection = "2001:db8::1 51234 2001:db8::7 22"
    done = ship(str(run_dir), state=tmp_path / "state", SSH_CONNECTION=connection)
    assert done.returncode == 0, done.stderr
    folder = run_dir / "ship"
    assert f"  rsync -avP alice@[2001:db8::7]:'{folder}/' './my run/'\n" in done.stdout
    assert f"  scp -r alice@[2001:db8::7]:'{folder}' './my run'\n" in done.stdout
    mapped = ship(
        str(run_dir), state=tmp_path / "state", SSH_CONNECTION="::ffff:10.1.2.3 5 ::ffff:10.1.2.4 2200"
    )
    assert f"scp -r -P 2200 alice@10.1.2.4:'{folder}'" in mapped.stdout  # an IPv4 client on a dual stack


def test_a_configured_ship_host_wins_over_ssh_connection(run_dir: Path, tmp_path: Path) -> None:
    """Behind a rented server's forwarded port $SSH_CONNECTION names the inner address: the setting wins,
    the environment's over the state directory's."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "ship_host").write_text("root@ssh4.example.net:41234\n")
    inner = "172.17.0.1 40000 172.17.0.2 22"
    done = ship(str(run_dir), state=state, SSH_CONNECTION=inner)
    assert done.returncode == 0, done.stderr
    assert f"host from {state / 'ship_host'}" in done.stdout
    assert f"scp -r -P 41234 root@ssh4.example.net:'{run_dir / 'ship'}'" in done.stdout
    done = ship(str(run_dir), state=state, SSH_CONNECTION=inner, TUNEQ_SHIP_HOST="[2001:db8::9]:2022")
    assert "host from $TUNEQ_SHIP_HOST" in done.stdout
    assert f"rsync -avP -e 'ssh -p 2022' alice@[2001:db8::9]:'{run_dir / 'ship'}/'" in done.stdout


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("2001:db8::9", "is not a host"),  # IPv6 needs brackets
        ("me@gpu-box:0", "'0' is not a port"),
        ("bad user@gpu-box", "'bad user' is not a valid user name"),
        ("gpu-box;rm -rf ~", "is not a host"),
    ],
)
def test_a_bad_ship_host_is_one_line_and_exit_2(
    run_dir: Path, tmp_path: Path, setting: str, says: str
) -> None:
    done = ship(str(run_dir), state=tmp_path / "state", TUNEQ_SHIP_HOST=setting)
    assert done.returncode == 2
    assert done.stderr.startswith("tuneq ship: $TUNEQ_SHIP_HOST: ") and says in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stdout == ""


# --- a full disk --------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root); skipped where it cannot be mounted, except under CI=true."""
    disk = tmp_path / "small"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mount.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {mount.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs: {mount.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_ship_onto_a_full_disk_leaves_no_partial_file_and_finishes_when_run_again(
    run_dir: Path, tmp_path: Path, small_disk: Path
) -> None:
    dest = small_disk / "model"
    done = ship(str(run_dir), str(dest), state=tmp_path / "state")
    assert done.returncode == 2, done
    assert done.stderr.startswith(f"tuneq ship: no space left on the disk of {dest} for m-Q4_K_M.gguf")
    assert "free space there or choose another DEST" in done.stderr and len(done.stderr.splitlines()) == 1
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "commands.txt"]  # complete, no SUMS
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    again = ship(str(run_dir), str(dest), state=tmp_path / "state")  # into the unfinished copy
    assert again.returncode == 0, again.stderr
    assert f"checksums verified in {dest}" in again.stdout
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["README.md", "commands.txt", "m-Q4_K_M.gguf", SUMS]
    )


def test_a_failed_copy_over_an_earlier_one_leaves_no_sums_to_vouch_for_it(
    run_dir: Path, tmp_path: Path, small_disk: Path
) -> None:
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    dest = small_disk / "model"
    assert ship(str(run_dir), str(dest), state=tmp_path / "state").returncode == 0
    (run_dir / "ship" / "m-Q4_K_M.gguf").write_bytes(b"GGUF" + os.urandom(9 << 20))  # more than the disk
    write_sums(run_dir / "ship")
    done = ship(str(run_dir), str(dest), state=tmp_path / "state")
    assert done.returncode == 2 and "no space left" in done.stderr, done
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "commands.txt"]


def test_the_tui_refuses_to_start_on_a_bad_ship_host(tmp_path: Path) -> None:
    env = {**os.environ, "TUNEQ_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "runner", "tui"]
    done = subprocess.run(
        command,
        env={**env, "TUNEQ_SHIP_HOST": "gpu box"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr == "tuneq tui: $TUNEQ_SHIP_HOST: 'gpu box' is not a host: write [user@]host[:port], "
        "e.g. root@ssh4.example.net:41234 ([addr]:port for IPv6)\n"
    )
