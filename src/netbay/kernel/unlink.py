"""Delete a link without waiting out the kernel's RCU barrier.

RTM_DELLINK is acknowledged only after the kernel has also waited out an RCU barrier (~16
ms here, for any link), long after the link (and a veth's peer, in whatever namespace) is
unlisted. So a helper thread sends the request and sits that wait out, while the caller
returns on the link's RTM_DELLINK notification, or on the ack if there was nothing to delete
or the delete failed.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable

from ..errors import KernelError
from . import netlink
from .netlink import GONE, NLMSG_ERROR, NetlinkSocket, Netns
from .rtnl_wire import IFINFOMSG, IFLA_IFNAME, RTM_DELLINK, RTNLGRP_LINK, link_by_name

_POLL = 0.05  # how often the caller looks whether the helper thread failed to send


def remove_link(netns: Netns, name: str, *, fallback: Callable[[str], bool]) -> bool:
    """Delete NAME in NETNS; True if it was there. FALLBACK deletes it the plain way (ack
    awaited) when no thread can be started (interpreter shutdown)."""
    watch = netlink.route_socket(netns, groups=(RTNLGRP_LINK,))
    seq, message = watch.frame(RTM_DELLINK, 0, link_by_name(name))
    finished = threading.Event()
    failed: list[KernelError] = []

    def send() -> None:
        try:
            watch.send(message)
        except KernelError as exc:
            failed.append(exc)
        finally:
            finished.wait()  # the caller has its answer: nobody reads the socket any more
            watch.close()

    sender = threading.Thread(target=send, name="netbay-unlink", daemon=True)
    try:
        sender.start()
    except RuntimeError:
        watch.close()
        return fallback(name)
    try:
        return _await_unlisted(watch, seq, name, failed)
    finally:
        finished.set()


def _await_unlisted(watch: NetlinkSocket, seq: int, name: str, failed: list[KernelError]) -> bool:
    """Wait on WATCH (subscribed to link events) for NAME's RTM_DELLINK notification, or
    for the ack of the delete request SEQ."""
    wanted = netlink.string(name)
    while True:
        try:
            data = watch.receive(_POLL)
        except KernelError as exc:
            if exc.errno == errno.ENOBUFS:  # events overran the socket: the ack still comes
                continue
            raise
        if data is None:
            if failed:
                raise netlink.kernel_error(f"delete link {name}", failed[0].errno)
            continue
        for kind, _, found_seq, payload in netlink.messages(data):
            if kind == NLMSG_ERROR and found_seq == seq:
                code = netlink.error_code(payload)
                if code in GONE:
                    return False
                if code:
                    raise netlink.kernel_error(f"delete link {name}", code)
                return True
            if (
                kind == RTM_DELLINK
                and payload[0] == socket.AF_UNSPEC
                and netlink.find_attribute(payload, IFINFOMSG.size, IFLA_IFNAME) == wanted
            ):
                return True
