"""Errors that explain a user's mistake (bad input, missing file, wrong params).

`InputError` is the base of every bad-input error: it names the file, the record when there is
one, the problem and the fix. The CLI (`rsmoe.cli`) prints it, and the other user errors, as one
message and exits 2 instead of showing a traceback; anything else is a bug and keeps its traceback.
This module imports nothing from the package: every layer may raise its errors.
"""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    def __init__(self, path: str | Path, problem: str, fix: str, record: object = None):
        self.path, self.record, self.problem, self.fix = str(path), record, problem, fix
        super().__init__(f"{self.where}: {problem}. Fix: {fix}")

    @property
    def where(self) -> str:
        return self.path if self.record is None else f"{self.path}: {self.record}"

