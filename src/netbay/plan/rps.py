"""Receive Packet Steering settings: CPU lists, the masks sysfs takes, RFS table sizes; pure.

RPS spreads a device's receive processing over CPUs by flow hash (`rps_cpus`, a hex mask per
receive queue); RFS steers a flow to the CPU its socket runs on, which needs a per-queue flow
table (`rps_flow_cnt`) and the global socket flow table (`net.core.rps_sock_flow_entries`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigError

OPT_RPS = "rps"  # network option: "auto" or a CPU list
OPT_RPS_FLOWS = "rps_flows"  # network option: rps_flow_cnt per receive queue
DEFAULT_FLOWS = 4096  # per queue, when RPS is on and no --flows is given
MAX_FLOWS = 1 << 20
MAX_SOCK_FLOW_ENTRIES = 1 << 26  # what the kernel accepts for rps_sock_flow_entries
SOCK_FLOW_FLOOR = 32768  # Documentation/networking/scaling.rst: a moderately loaded server
_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class RpsSetting:
    """What to write to each receive queue: the CPUs (empty: RPS off) and the flow count."""

    cpus: frozenset[int]
    flows: int

    @property
    def mask(self) -> str:
        return cpu_mask(self.cpus)


def parse_cpu_list(field: str, text: str, online: Iterable[int] | None = None) -> frozenset[int]:
    """'0-3,6' -> {0,1,2,3,6}; 'auto' -> every online CPU; 'none' or '' -> {} (RPS off).
    With ONLINE given, every CPU named must be one of them."""
    value = text.strip()
    known = None if online is None else frozenset(online)
    if value == "auto":
        if known is None:
            raise ConfigError(field, text, "'auto' needs the list of online CPUs")
        return known
    if value in ("none", "off", ""):
        return frozenset()
    cpus: set[int] = set()
    for item in value.split(","):
        match = _ITEM.match(item.strip())
        if match is None:
            raise ConfigError(field, text, "expected a CPU list like 0-3,6, 'auto' or 'none'")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise ConfigError(field, text, f"range {item.strip()} runs backwards")
        if high - low > 4096:
            raise ConfigError(field, text, f"range {item.strip()} is too long")
        cpus.update(range(low, high + 1))
    if known is not None:
        missing = sorted(cpus - known)
        if missing:
            raise ConfigError(
                field, text, f"CPU {missing[0]} does not exist (online: {format_cpu_list(known)})"
            )
    return frozenset(cpus)


def parse_flows(field: str, text: str | int) -> int:
    try:
        flows = int(text)
    except ValueError:
        raise ConfigError(field, text, "expected a whole number") from None
    if not 0 <= flows <= MAX_FLOWS:
        raise ConfigError(field, text, f"out of range 0-{MAX_FLOWS}")
    return flows


def format_cpu_list(cpus: Iterable[int]) -> str:
    """{0,1,2,3,6} -> '0-3,6' (the kernel's own list format); empty -> ''."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def cpu_mask(cpus: Iterable[int]) -> str:
    """The hex mask sysfs takes and prints: 32-bit groups joined by ',' (CPU 0 = bit 0)."""
    bits = 0
    for cpu in cpus:
        bits |= 1 << cpu
    if bits <= 0xFFFFFFFF:
        return f"{bits:x}"
    groups = []
    while bits:
        groups.append(f"{bits & 0xFFFFFFFF:08x}")
        bits >>= 32
    return ",".join(reversed(groups))


def parse_mask(text: str) -> frozenset[int]:
    """'00000003' or '0,00000001' (as sysfs prints) -> the CPUs set in it."""
    bits = int(text.strip().replace(",", "") or "0", 16)
    return frozenset(i for i in range(bits.bit_length()) if bits >> i & 1)


def network_setting(
    options: dict[str, str] | None, online: Iterable[int]
) -> RpsSetting | None:
    """The RPS setting a network's options ask for (`-o rps=auto|LIST`, `-o rps_flows=N`),
    or None when they do not mention RPS. Raises ConfigError naming the option."""
    options = options or {}
    if OPT_RPS not in options:
        if OPT_RPS_FLOWS in options:
            raise ConfigError(f"opt {OPT_RPS_FLOWS}", options[OPT_RPS_FLOWS],
                              f"needs -o {OPT_RPS}=auto or a CPU list")
        return None
    cpus = parse_cpu_list(f"opt {OPT_RPS}", options[OPT_RPS], online)
    flows = DEFAULT_FLOWS if cpus else 0
    if OPT_RPS_FLOWS in options:
        flows = parse_flows(f"opt {OPT_RPS_FLOWS}", options[OPT_RPS_FLOWS])
    return RpsSetting(cpus, flows)


def sock_flow_entries(flow_counts: Iterable[int], current: int) -> int:
    """The size net.core.rps_sock_flow_entries should have for RFS: at least the kernel
    documentation's 32768 and the sum of the per-queue flow tables it serves, a power of two
    (as the kernel rounds it), never smaller than it is already. 0 flows: left alone."""
    wanted = sum(flow_counts)
    if wanted <= 0:
        return current
    size = SOCK_FLOW_FLOOR
    while size < wanted:
        size <<= 1
    return max(current, min(size, MAX_SOCK_FLOW_ENTRIES))
