"""Installing the CNI executables: atomic replacement, the previous file kept as ``<name>.old``."""

from __future__ import annotations

import os
import subprocess

from agent.cni_install import install_cni_executables


def test_install_then_upgrade_keeps_the_previous_executables(tmp_path):
    first = install_cni_executables(tmp_path)
    assert sorted(p.name for p in first) == ["coordinator", "ifacer", "spiderpool"]
    assert all(os.access(p, os.X_OK) for p in first)
    (tmp_path / "spiderpool").write_bytes(b"#!/bin/sh\necho previous\n")

    install_cni_executables(tmp_path)

    assert (tmp_path / "spiderpool.old").read_bytes() == b"#!/bin/sh\necho previous\n"
    assert {p.name for p in tmp_path.iterdir()} == {"coordinator", "ifacer", "spiderpool", "coordinator.old",
                                                     "ifacer.old", "spiderpool.old"}  # no staging leftovers
    version = subprocess.run([str(tmp_path / "spiderpool")], env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
                             input="{}", capture_output=True, text=True, timeout=60)
    assert '"supportedVersions"' in version.stdout
