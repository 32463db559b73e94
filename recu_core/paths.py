"""Dataset roots confined to the data directory (no torch here: the service uses it).

A root is taken relative to the data directory; after lexical normalisation it must stay
inside it: ``../x``, ``a/../../x`` and absolute paths elsewhere are refused. The check is
lexical (symbolic links an operator placed inside the data directory are followed as
usual); a job's spec cannot create links.
"""

from __future__ import annotations

import os
from pathlib import Path


class RootOutsideDataDirError(ValueError):
    pass


def confined_root(root: str, data_dir: Path) -> Path:
    """``root`` resolved under ``data_dir``; RootOutsideDataDirError when it leaves it."""
    base = os.path.normpath(os.path.abspath(data_dir.expanduser()))
    if "\x00" in root:
        raise RootOutsideDataDirError("dataset.root must not contain NUL characters")
    path = os.path.normpath(os.path.join(base, os.path.expanduser(root)))
    if os.path.commonpath([base, path]) != base:
        raise RootOutsideDataDirError(
            f"dataset.root {root!r} is outside the data directory: give a folder relative "
            "to it (no '..' leaving it, no absolute path elsewhere)"
        )
    return Path(path)
