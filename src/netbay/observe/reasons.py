"""Why a rule of netbay's own tables dropped a traced packet; pure.

Read from what the rule matches (the sets it names, which interface it looks at, the chain
it is in), not from its exact text: an IPv6 twin of an IPv4 rule (`ip6 saddr` for `ip
saddr`, a set `bridged6` beside `bridged`) and a rule reworded later are named by what they
do. A rule none of these describes is still named, by its table, chain and text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Json = dict[str, Any]
# a set's name with its address family's mark taken off: bridged6, endpoints_v6 -> bridged...
_SET = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*?)(?:_?(?:ip)?v?[46])?\b")
_LOOPBACK = re.compile(r"(127\.0\.0\.0/8|::1(?:/128)?)(?![0-9a-f:])")

ANTI_SPOOFING = ("anti-spoofing: a container's port passes only frames with the MAC and the "
                 "IP addresses (IPv4 and IPv6) netbay gave that container")
ROUTER_SPOOFING = ("anti-spoofing: a container is no router: its router advertisements and "
                   "redirects are dropped (they would draw the other containers' traffic)")
NEIGHBOUR_SPOOFING = ("anti-spoofing: a container advertises only its own addresses as a "
                      "neighbour (IPv6 neighbour discovery); this one named another's")
ICC_OFF = ("inter-container traffic is off on this network "
           "(-o com.docker.network.bridge.enable_icc=false)")
INTERNAL_SOURCE = ("the source network is internal (--internal): its containers reach only "
                   "each other")
INTERNAL_DESTINATION = ("the destination network is internal (--internal): nothing from "
                        "outside it gets in")
ISOLATION = ("network isolation: a container network takes only traffic from its own bridge, "
             "replies to its containers' own connections, and published ports (-p); the source "
             "is on another network (or outside)")
CLUSTER_ISOLATION = ("network isolation: a cluster-wide network's pool takes traffic only from "
                     "its own bridge and its other nodes; the source is on another network")
ROUTED_ISOLATION = ("network isolation: a routed network's pool takes only its own traffic; "
                    "the other end is on another network")


def sets_named(rule: str) -> set[str]:
    """The sets and maps RULE looks up, each by its name without a family's mark."""
    return set(_SET.findall(rule))


def _looks_at(rule: str, direction: str, name: str) -> bool:
    """RULE matches DIRECTION (iifname/oifname) against set NAME (of either family)."""
    pattern = rf"\b{direction}\b(?:\s*\.\s*\S+)*\s*(?:!=\s*)?@{name}(?:_?(?:ip)?v?[46])?\b"
    return re.search(pattern, rule) is not None


def _loopback(rule: str) -> str | None:
    found = _LOOPBACK.search(rule)
    if found is None or 'iifname != "lo"' not in rule:
        return None
    return (f"{found.group(1)} is accepted only from lo: loopback-bound published ports are "
            "not reachable from other machines or containers")


Test = Callable[[Json, str, set[str]], str | None]
_TESTS: list[Test] = [
    lambda line, rule, sets: ICC_OFF if "icc_off_ports" in sets else None,
    lambda line, rule, sets: (ROUTER_SPOOFING if "nd-router-advert" in rule
                              or "nd-redirect" in rule else None),
    lambda line, rule, sets: NEIGHBOUR_SPOOFING if "nd-neighbor-advert" in rule else None,
    lambda line, rule, sets: (ANTI_SPOOFING if line["family"] == "bridge"
                              and line["chain"] == "prerouting" else None),
    lambda line, rule, sets: _loopback(rule),
    lambda line, rule, sets: INTERNAL_SOURCE if _looks_at(rule, "iifname", "internal") else None,
    lambda line, rule, sets: (INTERNAL_DESTINATION if _looks_at(rule, "oifname", "internal")
                              else None),
    lambda line, rule, sets: CLUSTER_ISOLATION if sets & {"overlay_pools", "overlay_own"} else None,
    lambda line, rule, sets: ROUTED_ISOLATION if sets & {"routed_pools", "same_pool"} else None,
    lambda line, rule, sets: ISOLATION if _looks_at(rule, "oifname", "bridges") else None,
]


def netbay_reason(line: Json) -> str:
    """Why the rule (or policy) of LINE, in one of netbay's tables, drops: LINE has the
    family, chain, kind and rule text of a trace line."""
    rule = line.get("rule") or ""
    if line.get("kind") == "rule" and rule:
        sets = sets_named(rule)
        for test in _TESTS:
            reason = test(line, rule, sets)
            if reason:
                return reason
    return f"a rule of netbay's own table ({line['family']} netbay {line['chain']})"
