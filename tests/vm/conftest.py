"""The VM tier: tests of device types this machine's kernel may lack (ipvlan, 802.1q VLAN,
dummy). scripts/vm-tests.sh runs them with `-m vm`: natively where the kernel has the types,
else inside Debian's stock kernel under QEMU (see notes/kernel-vm.md), all in one boot.

A plain `pytest` run (no `-m vm`) leaves them to that script and says so. Asked for with
`-m vm` on a kernel without the types, they are skipped, loudly, in the summary.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lans import Site
from netbay import Host
from netbay.daemon.api import Api
from netbay.daemon.reaper import Reaper

_PROBES = {
    "dummy": "ip link add nbprobe0 type dummy",
    "802.1q vlan": "ip link add link nbprobe1 name nbprobe1.10 type vlan id 10",
    "ipvlan": "ip link add link nbprobe1 name nbprobe3 type ipvlan mode l3",
}


@functools.cache
def missing_kinds() -> tuple[str, ...]:
    """The device types the running kernel cannot make, tried in a throwaway namespace."""
    if os.geteuid() != 0:
        return tuple(_PROBES)
    script = "ip link add nbprobe1 type veth peer name nbprobe2 || exit 9\n" + "".join(
        f"{command} >/dev/null 2>&1 || echo '{kind}'\n" for kind, command in _PROBES.items()
    )
    result = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True)
    if result.returncode != 0:
        return tuple(_PROBES)
    return tuple(line for line in result.stdout.splitlines() if line)


@functools.cache
def has_flowtables() -> bool:
    """Whether the running kernel makes an nftables flowtable (in a throwaway namespace)."""
    flowtable = ("add table inet p; add flowtable inet p ft { hook ingress priority filter; "
                 "devices = { lo }; }")
    return os.geteuid() == 0 and subprocess.run(
        ["unshare", "-n", "nft", flowtable], capture_output=True).returncode == 0


def _vm_requested(config: pytest.Config) -> bool:
    return "vm" in (config.option.markexpr or "")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vm: needs ipvlan, 802.1q vlan or dummy links (scripts/vm-tests.sh)"
    )
    config.addinivalue_line("markers", "flowtable: needs nftables flowtables (a vm test too)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mine = [i for i in items if "vm" in i.keywords]
    if not mine:
        return
    if not _vm_requested(config):
        config.hook.pytest_deselected(items=mine)
        items[:] = [i for i in items if "vm" not in i.keywords]
        config.stash[_LEFT] = len(mine)
        return
    for item in mine:  # a flowtable test needs the kinds and flowtables
        missing = missing_kinds() + (
            ("flowtables",) if "flowtable" in item.keywords and not has_flowtables() else ())
        if missing:
            reason = f"VM TIER NOT RUN: this kernel lacks {', '.join(missing)}"
            item.add_marker(pytest.mark.skip(reason=reason))
            config.stash[_SKIPPED] = reason


_LEFT = pytest.StashKey[int]()
_SKIPPED = pytest.StashKey[str]()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    left = config.stash.get(_LEFT, 0)
    if left:
        terminalreporter.write_line(
            f"tests/vm: {left} tests left to scripts/vm-tests.sh (ipvlan, 802.1q vlan, dummy: "
            "natively where the kernel has them, else under QEMU)"
        )
    skipped = config.stash.get(_SKIPPED, "")
    if skipped:
        terminalreporter.section("VM TIER NOT RUN", sep="!", red=True, bold=True)
        terminalreporter.write_line(
            f"{skipped}; run scripts/vm-tests.sh to boot a kernel that has them", red=True,
            bold=True,
        )


@pytest.fixture
def site(tmp_path: Path, host_ns: Path) -> Iterator[Site]:
    """The LAN machines of tests/lans.py, removed after the test."""
    machines = Site(tmp_path)
    try:
        yield machines
    finally:
        machines.close()


@pytest.fixture
def api(host: Host) -> Iterator[Api]:
    """netbayd's API on HOST, without its HTTP server."""
    reaper = Reaper(lambda *_: None)
    try:
        yield Api(host, reaper)
    finally:
        reaper.close()
