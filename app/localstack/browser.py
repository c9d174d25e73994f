"""Headless Chromium for the dashboard's browser test, from Debian's `chromium`
package (no browser download: only package registries are reachable).

Not a service (nothing runs in the background), so it is not part of
`cinerec services`; `make browser` (a prerequisite of `make test`) runs
`python -m app.localstack.browser`, which installs it when missing.
"""
from __future__ import annotations

import logging
import shutil

from app.localstack import proc

log = logging.getLogger(__name__)

CHROMIUM_PACKAGE = "chromium"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
# Flags of a quiet, isolated headless run (no sandbox: CI runs as root).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """The Chromium binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure_chromium() -> str:
    """Chromium's path, installing the Debian package first when it is missing (idempotent)."""
    found = chromium_path()
    if found is None:
        proc.apt_install([CHROMIUM_PACKAGE])
        found = chromium_path()
    if found is None:
        raise proc.ServiceError(f"apt-get installed {CHROMIUM_PACKAGE} but no {'/'.join(CHROMIUM_NAMES)} is on PATH")
    return found


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"chromium: {ensure_chromium()}")
