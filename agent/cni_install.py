"""Install the CNI executables (``spiderpool``, ``coordinator``, ``ifacer``) into the node's CNI bin directory.

Spiderpool's agent does this at start-up (spec §12.1: the old binary is kept as ``<name>.old``). The runtime may
execute a plugin at any moment, so each file is replaced by ``rename(2)``: it sees the old executable or the new
one, never a half-written file. Building goes through :func:`cni.package.build` into a staging directory inside
the bin directory (same filesystem, so the renames are atomic).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from cni import package

log = logging.getLogger(__name__)


def install_cni_executables(bin_dir: str | os.PathLike) -> list[Path]:
    """Build and install the executables into ``bin_dir``; return the installed paths.

    For each executable an existing file is first preserved as ``<name>.old`` (hard link, so the live name never
    disappears), then the new one is renamed over it.
    """
    target_dir = Path(bin_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".spiderweb-cni-", dir=target_dir))
    installed = []
    try:
        for built in package.build(staging):
            target = target_dir / built.name
            if target.exists():
                _keep_old(target)
            os.replace(built, target)
            installed.append(target)
            log.info("installed CNI executable %s", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return installed


def _keep_old(target: Path) -> None:
    old = target.with_name(target.name + ".old")
    partial = target.with_name(f".{target.name}.old.partial")
    try:
        partial.unlink(missing_ok=True)
        try:
            os.link(target, partial)
        except OSError:  # a filesystem without hard links: a copy does as well
            shutil.copy2(target, partial)
        os.replace(partial, old)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        log.warning("could not keep %s as %s: %s", target, old, exc)
