"""Writes the runtime-facing executables: the CNI plugins (`netbay`, `netbay-ipam`) and the
netavark-compatible backend for podman (`netavark`).

Each is one self-contained file: the script (cni/plugin.py, podman/netavark.py) with the
shared client (thin.py) pasted in, its settings filled in (the daemon's socket, how to start
the daemon: this interpreter with `-m netbay.daemon`), and the shebang `#!<python> -IS`, so
it starts without site-packages and imports nothing of netbay's (the system's python3 by
default: see default_python).

The code is compiled here, once, by the interpreter of the shebang, and written as marshalled
bytecode: compiling ~500 lines at every start costs more than everything else the executable
does (a script run as a file is never cached). `source=True` writes the readable script.
"""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__
from .paths import DEFAULT_SOCKET

_HERE = Path(__file__).parent
CNI_SCRIPT = _HERE / "cni" / "plugin.py"
NETAVARK_SCRIPT = _HERE / "podman" / "netavark.py"
THIN = _HERE / "thin.py"


def _block(text: str, name: str) -> tuple[int, int]:
    """Where the lines `# <NAME>` ... `# </NAME>` are (start of the first, end of the last)."""
    start = text.index(f"# <{name}>\n")
    end = text.index(f"# </{name}>\n") + len(f"# </{name}>\n")
    return start, end


def render(script: Path, settings: dict[str, object], python: str) -> str:
    source = script.read_text()
    thin = THIN.read_text()
    t_start, t_end = _block(thin, "thin")
    start, end = _block(source, "thin")
    source = source[:start] + thin[t_start:t_end] + source[end:]
    start, end = _block(source, "settings")
    lines = ["# <settings>"] + [f"{key} = {value!r}" for key, value in settings.items()]
    source = source[:start] + "\n".join(lines) + "\n# </settings>\n" + source[end:]
    first, _, rest = source.partition("\n")
    assert first.startswith("#!")
    return f"#!{python} -IS\n{rest}"


_COMPILE = (
    "import marshal, sys; "
    "sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.read(), sys.argv[1], 'exec', "
    "optimize=2)))"
)


def compiled(
    source: str, python: str, name: str, settings: dict[str, object], what: str
) -> str:
    """The executable: a header saying what it is, then the code as marshalled bytecode of
    PYTHON (the format belongs to the interpreter version)."""
    filename = f"<netbay {name}>"
    if Path(python).resolve() == Path(sys.executable).resolve():
        code = marshal.dumps(compile(source, filename, "exec", optimize=2))
    else:
        code = subprocess.run(
            [python, "-I", "-S", "-c", _COMPILE, filename], input=source.encode(),
            capture_output=True, check=True,
        ).stdout
    shown = "\n".join(f"#   {key} = {value!r}" for key, value in settings.items())
    return (
        f"#!{python} -IS\n"
        f"# {what}, installed by netbay {__version__}.\n"
        f"# Settings:\n{shown}\n"
        "# The code below is netbay's script and thin.py, compiled at install time by the\n"
        "# interpreter above (compiling at every start would cost more than the rest).\n"
        "import marshal\n"
        f"exec(marshal.loads({code!r}))\n"
    )


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _common(socket: str | None, root: str | None) -> dict[str, object]:
    return {
        "SOCKET": socket or os.environ.get("NETBAY_SOCKET") or DEFAULT_SOCKET,
        "DAEMON": [sys.executable, "-m", "netbay.daemon"],
        "ROOT": root or "",
    }


SYSTEM_PYTHON = "/usr/bin/python3"


def default_python() -> str:
    """The executables' interpreter: the system's python3 when it is 3.10 or later (they
    need nothing from the venv, and a distribution's build starts ~2 ms faster than a
    source build with a shared libpython: PGO, LTO, static linking), else this one."""
    if Path(SYSTEM_PYTHON).exists() and os.access(SYSTEM_PYTHON, os.X_OK):
        probe = subprocess.run(
            [SYSTEM_PYTHON, "-I", "-S", "-c", "import sys; sys.exit(sys.version_info < (3, 10))"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return SYSTEM_PYTHON
    return sys.executable


def _executable(
    script: Path, settings: dict[str, object], python: str, name: str, what: str, source: bool
) -> str:
    text = render(script, settings, python)
    return text if source else compiled(text, python, name, settings, what)


def install_cni(
    directory: Path,
    name: str = "netbay",
    ipam_name: str = "netbay-ipam",
    *,
    socket: str | None = None,
    root: str | None = None,
    python: str | None = None,
    source: bool = False,
) -> list[Path]:
    written = []
    python = python or default_python()
    for kind, filename in (("netbay", name), ("netbay-ipam", ipam_name)):
        settings = {"KIND": kind, **_common(socket, root)}
        path = directory / filename
        what = f"netbay's CNI plugin ({kind}, CNI spec 1.1.0)"
        _write(path, _executable(CNI_SCRIPT, settings, python, filename, what, source))
        written.append(path)
    return written


def install_netavark(
    directory: Path,
    name: str = "netavark",
    *,
    socket: str | None = None,
    root: str | None = None,
    python: str | None = None,
    source: bool = False,
) -> Path:
    settings = {**_common(socket, root), "VERSION": __version__}
    path = directory / name
    what = "netbay's netavark-compatible network backend for podman"
    _write(path, _executable(NETAVARK_SCRIPT, settings, python or default_python(), name,
                             what, source))
    return path
