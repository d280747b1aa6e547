"""The development signing key: random, one per installation, kept in the data dir (mode 0600).

There is no public development key: a key anyone can read in the source lets anyone
who can write to a command topic issue commands. In dev mode without
``LOOPWISE_SIGNING_KEY`` the first process that needs a key generates 32 random
bytes into ``<LOOPWISE_DATA_DIR>/signing.key`` (created atomically, so processes
sharing the data dir agree on one key); its path, never its value, is logged once.
Production never gets here: ``Settings.validate`` refuses to start without a key.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

log = logging.getLogger(__name__)

KEY_FILE = "signing.key"
_cache: dict[Path, bytes] = {}
_lock = threading.Lock()


def dev_signing_key(data_dir: Path) -> bytes:
    """This installation's development key, generated on first use."""
    path = (Path(data_dir) / KEY_FILE).resolve()
    with _lock:
        key = _cache.get(path)
        if key is None:
            key = _cache[path] = _load_or_create(path)
        return key


def _load_or_create(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and fails if another process won the race: then its key is the key
            log.warning("generated a development signing key at %s (dev mode, no LOOPWISE_SIGNING_KEY); "
                        "keep it private, and set LOOPWISE_SIGNING_KEY in production", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes().strip()
    if len(key) < 32:
        raise ValueError(f"{path}: a development signing key must be at least 32 characters")
    return key
