"""Pack a root filesystem tarball into an OCI image archive that ``ctr image import``, ``podman load`` and
``docker load`` accept (standard library only; no registry, no daemon).

    python3 image/oci.py --rootfs rootfs.tar --name localhost/spiderweb --tag 0.1.0 --out spiderweb.oci.tar \
        --env PATH=/opt/spiderweb/venv/bin:/usr/bin:/bin --workdir /opt/spiderweb --cmd spiderweb --cmd --help

The archive is an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) with one gzip layer; the
index names the image ``<name>:<tag>`` (``io.containerd.image.name``, and ``org.opencontainers.image.ref.name``
for the tag), and a Docker ``manifest.json`` beside it lists the same blobs for ``docker load``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import platform
import tarfile
import tempfile
from pathlib import Path

CHUNK = 1 << 20
ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _layer(rootfs: Path, blobs: Path) -> tuple[str, str, int]:
    """gzip the tarball into a blob; returns (diff_id, digest, size)."""
    uncompressed = hashlib.sha256()
    scratch = blobs / "layer.tmp"
    with open(rootfs, "rb") as source, open(scratch, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as zipped:
        while chunk := source.read(CHUNK):
            uncompressed.update(chunk)
            zipped.write(chunk)
    compressed = hashlib.sha256()
    with open(scratch, "rb") as blob:
        while chunk := blob.read(CHUNK):
            compressed.update(chunk)
    digest = compressed.hexdigest()
    scratch.rename(blobs / digest)
    return f"sha256:{uncompressed.hexdigest()}", f"sha256:{digest}", (blobs / digest).stat().st_size


def _blob(blobs: Path, data: dict) -> tuple[str, int]:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    (blobs / digest).write_bytes(raw)
    return f"sha256:{digest}", len(raw)


def build(*, rootfs: Path, name: str, tag: str, out: Path, env: list[str], workdir: str, cmd: list[str],
          labels: dict[str, str], created: str) -> dict:
    """Write the archive; returns the image's manifest digest, config digest and sizes."""
    arch = ARCHES.get(platform.machine(), platform.machine())
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        layout = Path(tmp)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        diff_id, layer_digest, layer_size = _layer(rootfs, blobs)
        config = {
            "architecture": arch, "os": "linux", "created": created,
            "config": {"Env": env, "WorkingDir": workdir, "Cmd": cmd, "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": "image/build.sh: mmdebstrap + the project's wheel"}],
        }
        config_digest, config_size = _blob(blobs, config)
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                        "size": layer_size}],
            "annotations": {"org.opencontainers.image.created": created},
        }
        manifest_digest, manifest_size = _blob(blobs, manifest)
        reference = f"{name}:{tag}"
        index = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                           "size": manifest_size, "platform": {"architecture": arch, "os": "linux"},
                           "annotations": {"io.containerd.image.name": reference,
                                           "org.opencontainers.image.ref.name": tag}}],
        }
        (layout / "index.json").write_text(json.dumps(index, indent=2))
        (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        docker = [{"Config": f"blobs/sha256/{config_digest[7:]}", "RepoTags": [reference],
                   "Layers": [f"blobs/sha256/{layer_digest[7:]}"]}]
        (layout / "manifest.json").write_text(json.dumps(docker))
        partial = out.with_suffix(out.suffix + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
            for path in sorted(layout.rglob("*")):
                info = archive.gettarinfo(str(path), arcname=str(path.relative_to(layout)))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if path.is_file():
                    with open(path, "rb") as handle:
                        archive.addfile(info, handle)
                else:
                    archive.addfile(info)
        os.replace(partial, out)
    return {"reference": reference, "manifest": manifest_digest, "config": config_digest, "layer": layer_digest,
            "layer_size": layer_size, "archive_size": out.stat().st_size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, required=True, help="root filesystem tarball")
    parser.add_argument("--name", required=True, help="image name, e.g. localhost/spiderweb")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--out", type=Path, required=True, help="archive to write")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--workdir", default="/")
    parser.add_argument("--cmd", action="append", default=[], help="one argument of the default command")
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or int(dt.datetime.now(dt.UTC).timestamp())
    created = dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = dict(item.split("=", 1) for item in args.label)
    result = build(rootfs=args.rootfs, name=args.name, tag=args.tag, out=args.out, env=args.env,
                   workdir=args.workdir, cmd=args.cmd, labels=labels, created=created)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
