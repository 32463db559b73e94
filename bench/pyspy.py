"""A py-spy profile of a running process over one bench phase, and where its samples went.

``profiled(pid, out)`` records the process (and its children: uvicorn's worker processes)
while the ``with`` block runs, GIL-holding samples only (the work that serialises a Python
process), in py-spy's raw format (one collapsed stack per line, ``frame;frame;... count``).
``summary(out)`` attributes every sample twice: to the package its innermost frame runs in
(where the CPU is spent, self time) and to every package on its stack (inclusive: a
request's share spent under SQLAlchemy, pydantic, ...), as % of the samples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: The frame's file in a raw py-spy line: ``function (path/to/file.py:123)``.
_FILE = re.compile(r"\(([^()]*?\.py)(?::\d+)?\)$")
_OURS = ("service", "recu_db", "recu_core", "recu_cli", "workers", "bench")
#: This project's files that wrap every request (the entry point, the ASGI middlewares):
#: counted with the framework, not as the work under them.
_WRAPPERS = ("service/__main__.py", "service/limits.py")


def py_spy() -> str | None:
    """The py-spy executable (a dev dependency), beside this interpreter or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def profiled(pid: int, out: Path, rate: int = 250) -> Iterator[None]:
    """Record ``pid`` with py-spy (``--gil --subprocesses``) while the block runs."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (it is a dev dependency: make install)")
    command = [exe, "record", "--pid", str(pid), "--gil", "--subprocesses", "--rate", str(rate)]
    command += ["--format", "raw", "--output", str(out)]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        _, err = recorder.communicate(timeout=120)
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def package(frame: str) -> str:
    """The package a raw frame runs in: the first directory of its file as py-spy shows it
    (``sqlalchemy/engine/base.py`` -> sqlalchemy; this project's own packages likewise),
    ``stdlib:<module>`` for a top-level or frozen module, ``native`` without a file."""
    found = _FILE.search(frame) or re.search(r"\((<frozen [^>]+>)", frame)
    if found is None:
        return "native"
    parts = Path(found.group(1)).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if len(parts) > 1 and not parts[0].startswith("<"):
        return parts[0]
    return f"stdlib:{Path(parts[-1]).stem.removeprefix('<frozen ').rstrip('>')}"


def _ours(frame: str) -> str | None:
    """``package/module.py:function`` for a frame of this project's request code (not the
    entry point or the middlewares around every request), else None."""
    found = _FILE.search(frame)
    name = package(frame)
    if found is None or name not in _OURS or name == "recu_cli" or found.group(1) in _WRAPPERS:
        return None
    return f"{found.group(1)}:{frame.split(' (', 1)[0]}"


def summary(out: Path, top: int = 10) -> str:
    """Where the samples went, % of them: by the package of the innermost frame (self
    time), and by the innermost frame of this project's code on the stack (which of its
    functions the time was spent under; "framework only" when none: the server, router,
    middleware, validation and serialisation machinery around the request, itself split
    by package)."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    framework: Counter[str] = Counter()  # self time by package of the "framework only" ones
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[package(frames[-1])] += n
        ours = [name for f in frames if (name := _ours(f)) is not None]
        under[ours[-1] if ours else "framework only"] += n
        if not ours:
            framework[package(frames[-1])] += n
    if total == 0:
        return "no samples"

    def shares(counts: Counter[str]) -> str:
        return ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in counts.most_common(top))

    return (
        f"{total} samples; self by package: {shares(own)}; under: {shares(under)}; "
        f"framework only, by package: {shares(framework)}"
    )
