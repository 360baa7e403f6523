"""The Hugging Face hub, and what happens without it: a name that is not a local path is looked up on
the hub only when the hub can be reached; otherwise the user gets one line saying so at once (not a
minute-long retry loop ending in a traceback)."""

from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path

from thresher.errors import InputError

HUB_HOST = "huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


def offline_setting() -> str | None:
    """The environment variable that switches the hub off, if one does."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return name
    return None


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout_s`` (DNS included)."""
    if offline_setting():
        return False
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((HUB_HOST, 443), timeout=timeout_s).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return bool(opened)


def require_hub(name: str, what: str) -> None:
    """Raise a one-line InputError when ``name`` (not a local path) would need the hub and it is unreachable."""
    if Path(os.path.expanduser(name)).exists() or hub_reachable():
        return
    setting = offline_setting()
    why = f"{setting} is set" if setting else f"{HUB_HOST} cannot be reached"
    raise InputError(f"{name}: the {what} would come from the Hugging Face hub, which is offline here ({why}); give a local path instead")
