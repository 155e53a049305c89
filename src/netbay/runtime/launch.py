"""The container launcher: `python -m netbay.runtime.launch SPEC_JSON`.

Single-threaded by design (setns into a mount namespace needs that): joins the container's
network namespace, makes its own UTS and mount namespaces, bind-mounts the container's
/etc files, sets the hostname and execs the command. Imports only the standard library.
"""

from __future__ import annotations

import errno
import json
import os
import sys

from .. import _linux


def enter(spec: dict[str, object]) -> None:
    netns = spec.get("netns")
    flags = _linux.CLONE_NEWNS | (_linux.CLONE_NEWUTS if spec.get("hostname") else 0)
    _linux.unshare(flags)
    # Slave: the host's unmounts (deleted netns files) still reach us; our mounts stay here.
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_SLAVE)
    if isinstance(netns, str):
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _linux.setns(fd, _linux.CLONE_NEWNET)
        finally:
            os.close(fd)
        mount_sysfs()
    files = spec.get("files") or {}
    assert isinstance(files, dict)
    for target, source in files.items():
        if os.path.exists(target):
            _linux.mount(source, target, None, _linux.MS_BIND)
    hostname = spec.get("hostname")
    if isinstance(hostname, str) and hostname:
        _linux.sethostname(hostname)


def mount_sysfs() -> None:
    """The container's own /sys, read-only, as Docker and podman give it: sysfs shows the
    network namespace of whoever mounts it, so the host's one would list the host's links.
    EBUSY: /sys already shows this namespace (the kernel does not stack it on itself).

    Read-only is set on this mount alone (a bind remount), never at mount time: the kernel
    keeps one sysfs superblock per network namespace, and MS_RDONLY on the first mount would
    make that superblock read-only for everyone, so `netbay rps set` on the container's
    devices would fail."""
    flags = _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC
    try:
        _linux.mount("sysfs", "/sys", "sysfs", flags)
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
    remount = _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY
    _linux.mount(None, "/sys", None, remount | flags)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    try:
        enter(spec)
    except OSError as exc:
        print(f"netbay: cannot enter the container: {exc}", file=sys.stderr)
        return 126
    command = [str(c) for c in spec["command"]]
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    if spec.get("hostname"):
        env["HOSTNAME"] = str(spec["hostname"])
    if spec.get("workdir"):
        os.chdir(str(spec["workdir"]))
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        print(f"netbay: {command[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"netbay: {command[0]}: permission denied", file=sys.stderr)
        return 126


if __name__ == "__main__":
    sys.exit(main(sys.argv))
