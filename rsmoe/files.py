"""Write beside, then swap: a crashed or killed run leaves the previous file or folder (or none),
never a half-written one. The one implementation of it in the package; imports nothing of it."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def written_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; when the block ends normally it replaces
    `path` in one rename, and on an error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


@contextmanager
def swapped_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty sibling folder to write into, then swap it in for `folder` (the old one
    is removed after the swap); on an error the sibling is removed and `folder` is left as it was."""
    folder = Path(folder)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = folder.with_name(f"{folder.name}.old-{os.getpid()}")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, data: Any, *, indent: int = 1) -> None:
    """Write `data` as UTF-8 JSON (non-ASCII kept as is, one trailing newline), replacing `path` in one rename."""
    with written_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
