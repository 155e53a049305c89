"""The neighbour and bridge FDB half of the rtnetlink client (kernel/rtnetlink.py's
Rtnetlink inherits it): permanent neighbour entries of both families and a VXLAN device's
FDB entries, the `ip neigh` and `bridge fdb` objects.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

from ..errors import KernelError
from .netlink import GONE, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE, NetlinkSocket
from .rtnl_wire import (
    AF_BRIDGE,
    NUD_REACHABLE,
    RTM_DELNEIGH,
    RTM_GETNEIGH,
    RTM_NEWNEIGH,
    FdbEntry,
    Neighbour,
    decode_fdb,
    decode_neighbour,
    device_fdb_dump_body,
    device_neighbour_dump_body,
    fdb_body,
    neighbour_body,
    neighbour_dump_body,
)
from .rtnl_wire6 import Neighbour6, decode_neighbour6, neighbour6_body, neighbour6_dump_body

_ENSURE = NLM_F_CREATE | NLM_F_REPLACE
_ZERO_MAC = "00:00:00:00:00:00"


class NeighbourMethods:
    """Neighbour and FDB requests on the rtnetlink socket _SOCKET (set by Rtnetlink)."""

    _socket: NetlinkSocket

    def _removed(self, what: str, kind: int, body: bytes) -> bool:
        """Send a delete; False if the kernel says it was already gone."""
        try:
            self._socket.request(what, kind, 0, body)
            return True
        except KernelError as exc:
            if exc.errno in GONE:
                return False
            raise

    # --- neighbours ----------------------------------------------------------------------
    def ensure_neighbour(self, index: int, address: IPv4Address, lladdr: str) -> None:
        """A permanent neighbour entry: ADDRESS on device INDEX is at LLADDR (replaced if
        there was another)."""
        self._socket.request(f"add neighbour {address}", RTM_NEWNEIGH, _ENSURE,
                             neighbour_body(index, address, lladdr))

    def learn_neighbour(self, index: int, address: IPv4Address, lladdr: str) -> None:
        """ADDRESS on device INDEX is at LLADDR, as if just confirmed (REACHABLE: the kernel
        ages it as its own, and an entry still resolving is answered now)."""
        self._socket.request(f"replace neighbour {address}", RTM_NEWNEIGH, _ENSURE,
                             neighbour_body(index, address, lladdr, NUD_REACHABLE))

    def remove_neighbour(self, index: int, address: IPv4Address) -> bool:
        return self._removed(f"delete neighbour {address}", RTM_DELNEIGH,
                             neighbour_body(index, address))

    def neighbours(self, index: int | None = None) -> list[Neighbour]:
        """IPv4 neighbours (device INDEX's only, if given: the kernel leaves out the rest)."""
        body = (neighbour_dump_body(socket.AF_INET) if index is None
                else device_neighbour_dump_body(index))
        found = (decode_neighbour(p) for p in self._socket.dump(
            "dump neighbours", RTM_GETNEIGH, body))
        return [n for n in filter(None, found) if index is None or n.index == index]

    def ensure_neighbour6(self, index: int, address: IPv6Address, lladdr: str) -> None:
        """ensure_neighbour for an IPv6 ADDRESS (a permanent entry: no solicitation)."""
        self._socket.request(f"add neighbour {address}", RTM_NEWNEIGH, _ENSURE,
                             neighbour6_body(index, address, lladdr))

    def remove_neighbour6(self, index: int, address: IPv6Address) -> bool:
        return self._removed(f"delete neighbour {address}", RTM_DELNEIGH,
                             neighbour6_body(index, address))

    def neighbours6(self, index: int | None = None) -> list[Neighbour6]:
        """IPv6 neighbours (device INDEX's only, if given)."""
        found = (decode_neighbour6(p) for p in self._socket.dump(
            "dump IPv6 neighbours", RTM_GETNEIGH, neighbour6_dump_body(index)))
        return [n for n in filter(None, found) if index is None or n.index == index]

    # --- FDB -----------------------------------------------------------------------------
    def ensure_fdb(self, index: int, lladdr: str, destination: IPv4Address) -> None:
        """Device INDEX (a vxlan) sends frames for LLADDR to DESTINATION. The all-zero MAC
        (broadcast, multicast, unknown unicast) floods to every destination added for it,
        as `bridge fdb append` does; any other MAC has one destination, replaced."""
        flags = NLM_F_CREATE | (NLM_F_APPEND if lladdr == _ZERO_MAC else NLM_F_REPLACE)
        self._socket.request(f"add fdb {lladdr} dst {destination}", RTM_NEWNEIGH, flags,
                             fdb_body(index, lladdr, destination))

    def remove_fdb(self, index: int, lladdr: str, destination: IPv4Address) -> bool:
        """True if there was such an entry. Looked up first: a vxlan acks the delete of a
        destination it does not have for a MAC it has."""
        if not any(e.lladdr == lladdr and e.destination == destination for e in self.fdb(index)):
            return False
        return self.delete_fdb(index, lladdr, destination)

    def delete_fdb(self, index: int, lladdr: str, destination: IPv4Address) -> bool:
        """remove_fdb without the lookup, for a caller that has just dumped the entry."""
        return self._removed(f"delete fdb {lladdr} dst {destination}", RTM_DELNEIGH,
                             fdb_body(index, lladdr, destination))

    def fdb(self, index: int | None = None) -> list[FdbEntry]:
        """Bridge FDB entries (device INDEX's only, if given: the kernel leaves out the rest)."""
        body = neighbour_dump_body(AF_BRIDGE) if index is None else device_fdb_dump_body(index)
        found = (decode_fdb(p) for p in self._socket.dump("dump fdb", RTM_GETNEIGH, body))
        return [e for e in filter(None, found) if index is None or e.index == index]
