"""Fixtures: every kernel test runs in a throwaway network namespace standing in for the host,
with its own state root, socket and netns directory; teardown always runs and removes what
the test made (processes by recorded PID, namespaces by their pinned files)."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from helpers import Env, Lan, kill_recorded_processes, link_names, sh
from realhost import RealHost

# Property tests check what an input does, not how fast: with two cores shared by the kernel
# and e2e tiers, an example may take longer than hypothesis's 200 ms default deadline.
settings.register_profile("netbay", deadline=None)
settings.load_profile("netbay")

STATE = "state"  # the state root under the test's directory (a tmpfs on the real host)


def _root() -> bool:
    return os.geteuid() == 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "shared_sys: runs `env` in a throwaway network namespace only, under the "
        "test runner's /sys, /run and PID namespace (not on the real host)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _root():
        return
    skip = pytest.mark.skip(reason="needs root (kernel tier)")
    for item in items:
        if "kernel" in item.keywords or "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _no_netns_mount_left() -> Iterator[None]:
    """Podman (like `ip netns add`) makes /run/netns a shared bind mount of itself the first
    time it pins a namespace there, and never removes it. A booted host has none, so the
    suite takes away the one it made, once no namespace is pinned there."""
    netns_dir = "/run/netns"
    before = _mounted(netns_dir)
    yield
    if _root() and not before and _mounted(netns_dir) and not os.listdir(netns_dir):
        from netbay import _linux

        with contextlib.suppress(OSError):
            _linux.umount(netns_dir)


def _mount_targets() -> list[str]:
    """Every mount point of this mount namespace, from mountinfo (os.path.ismount misses a
    bind mount of its own filesystem)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        return [line.split()[4] for line in info]


def _mounted(target: str) -> bool:
    return target in _mount_targets()


@pytest.fixture
def realhost(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RealHost | None]:
    """The host of a test that uses `env`: a sandbox with its own network, mount and PID
    namespaces, /sys, /run and state root (tests/realhost.py), which this thread joins; the
    CLI, the daemon and the runtimes' plugins run inside it (Env.enter). None for the other
    tests and for those marked shared_sys."""
    if "env" not in request.fixturenames or request.node.get_closest_marker("shared_sys"):
        yield None
        return
    sandbox = RealHost(tmp_path / STATE)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def host_ns(tmp_path: Path, realhost: RealHost | None) -> Iterator[Path]:
    """This thread (and every process it starts) lives in a fresh namespace for the test:
    the real host's when there is one."""
    if realhost is not None:
        yield realhost.netns
        return
    from netbay import _linux
    from netbay.kernel import netns
    from netbay.kernel.rtnetlink import Rtnetlink

    path = tmp_path / "hostns"
    netns.create(path)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    fd = os.open(path, os.O_RDONLY)
    _linux.setns(fd, _linux.CLONE_NEWNET)
    os.close(fd)
    try:
        with Rtnetlink(None) as nl:
            nl.set_up(1)
        yield path
    finally:
        _linux.setns(home, _linux.CLONE_NEWNET)
        os.close(home)
        _cleanup_mounts(tmp_path)
        netns.delete(path)


def _cleanup_mounts(tmp_path: Path) -> None:
    """Unmount every mount the test left under its directory (netns pins, the shared dir)."""
    from netbay import _linux

    prefix = str(tmp_path) + "/"
    targets = [target for target in _mount_targets() if target.startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        if target.endswith("/hostns"):
            continue
        with contextlib.suppress(OSError):
            _linux.umount(target)


@pytest.fixture
def paths(tmp_path: Path, host_ns: Path, realhost: RealHost | None):  # type: ignore[no-untyped-def]
    from netbay.paths import Paths

    resolv = tmp_path / "resolv.conf"
    # A nameserver inside the test's own address space: nothing can leave the machine.
    resolv.write_text("nameserver 127.0.0.53\nnameserver 10.99.99.53\n")
    os.environ["NETBAY_RESOLV_CONF"] = str(resolv)
    p = Paths(
        root=tmp_path / STATE, socket=tmp_path / "netbay.sock", netns_dir=tmp_path / "netns"
    )
    try:
        yield p
    finally:
        if realhost is None:  # the real host's end stops every process in it
            kill_recorded_processes(p.db)
        os.environ.pop("NETBAY_RESOLV_CONF", None)


@pytest.fixture
def host(paths):  # type: ignore[no-untyped-def]
    from netbay import Host

    h = Host(paths)
    try:
        yield h
    finally:
        kill_recorded_processes(paths.db)
        h.close()


@pytest.fixture
def env(paths, tmp_path: Path, realhost: RealHost | None) -> Iterator[Env]:  # type: ignore[no-untyped-def]
    e = Env(paths, tmp_path, realhost)
    try:
        yield e
    finally:
        e.close()
        if realhost is None:
            kill_recorded_processes(paths.db)


@pytest.fixture
def namespaces(
    tmp_path: Path, realhost: RealHost | None
) -> Iterator[Callable[[str], Path]]:
    """Network namespaces the test makes as a container runtime would (`namespaces("web")`:
    TMP/ns-web), each removed afterwards; on the real host, pinned there (it comes first)."""
    from netbay.kernel import netns

    made: list[Path] = []

    def make(name: str) -> Path:
        path = tmp_path / f"ns-{name}"
        netns.create(path)
        made.append(path)
        return path

    yield make
    for path in made:
        netns.delete(path)


@pytest.fixture
def lan(tmp_path: Path, host_ns: Path) -> Iterator[Lan]:
    """Another machine on the host's external link: ext0 (198.51.100.1) <-> lan0 (.2)."""
    from netbay.kernel import netns

    path = tmp_path / "lan"
    netns.create(path)
    machine = Lan(path)
    try:
        sh("ip link add ext0 type veth peer name lan0")
        sh(f"ip link set lan0 netns {path}")
        sh("ip addr add 198.51.100.1/24 dev ext0 && ip link set ext0 up")
        machine.sh(
            "ip link set lo up && ip addr add 198.51.100.2/24 dev lan0 && ip link set lan0 up"
        )
        yield machine
    finally:
        machine.stop()
        netns.delete(path)


__all__ = [
    "host_ns",
    "paths",
    "host",
    "env",
    "link_names",
    "sqlite3",
    "signal",
    "subprocess",
    "sys",
    "time",
]
