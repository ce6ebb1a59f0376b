"""The data ``make demo`` keeps for ``make serve``: a folder (``.demo`` by default,
git-ignored) holding Azurite's data on disk (``azurite/``) and a local function key
(``key``), so that the curl commands the demo prints answer with the demo's fleet.
One process at a time uses the folder (a lock): two Azurites writing one folder
would spoil it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from standins.services import ROOT

DEFAULT = ROOT / ".demo"


class Unusable(RuntimeError):
    """The folder cannot hold the demo's data (not a folder, not writable)."""


class InUse(Unusable):
    """Another process (a demo, a server) uses the folder."""


@dataclass(frozen=True)
class DemoData:
    folder: Path

    @property
    def azurite(self) -> Path:
        return self.folder / "azurite"

    @property
    def key_file(self) -> Path:
        return self.folder / "key"

    def present(self) -> bool:
        """Whether a demo kept data here (Azurite's folder and the key)."""
        return self.azurite.is_dir() and self.key_file.is_file()

    def key(self) -> str:
        return self.key_file.read_text().strip()

    def reset(self) -> str:
        """Empty the folder for a new demo; returns its new key (a local development key,
        readable by this user only)."""
        shutil.rmtree(self.azurite, ignore_errors=True)
        self.key_file.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(24)
        descriptor = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(key + "\n")
        return key

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the folder's lock for the block (made if missing); :class:`InUse` when
        another process holds it, :class:`Unusable` when it cannot be a folder of ours."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = (self.folder / "lock").open("w")
        except OSError as exc:
            raise Unusable(f"{self.folder} cannot hold the demo's data: {exc.strerror}") from None
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InUse(f"{self.folder} is in use by another process (make demo or make serve): "
                            "stop it first") from None
            yield
