"""Files the service writes hold customer ids, scores and features: readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path


def private_file(path: str | Path) -> Path:
    """Create `path` (and its folder) if missing, mode 600; an existing file is set to 600. SQLite gives its
    -wal and -shm files the database file's mode, so they are private too."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    os.chmod(path, 0o600)
    return path
