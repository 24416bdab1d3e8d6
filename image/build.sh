#!/usr/bin/env bash
# Build Spiderweb's OCI image on this machine, from Debian packages and the project's own wheel (no registry pull):
#
#   1. the project's wheel (pip wheel) and the wheels of requirements.txt (pip download, binary only);
#   2. a Debian bookworm root filesystem with python3, iptables and CA certificates (mmdebstrap, the host's apt
#      sources), the wheels installed into /opt/spiderweb/venv, Django's static files collected;
#   3. an OCI archive of it (image/oci.py): ctr image import, podman load and docker load all take it.
#
#   ${SPIDERWEB_IMAGE_CACHE:-/var/cache/spiderweb-image}/spiderweb-<version>.oci.tar   named localhost/spiderweb:<version>
#
# Idempotent: exits at once when an archive built from the same sources exists (a hash of everything packaged).
# `--rebuild` forces a build. Needs root (mmdebstrap --mode=root) and installs mmdebstrap when it is missing.
# The last line of stdout is the archive's path; build time and size go to stderr and to $CACHE/build-times.log.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
CACHE=${SPIDERWEB_IMAGE_CACHE:-/var/cache/spiderweb-image}
NAME=${SPIDERWEB_IMAGE_NAME:-localhost/spiderweb}
SUITE=${SPIDERWEB_IMAGE_SUITE:-bookworm}
PACKAGES=python3,ca-certificates,iptables,tzdata
TARGET_PYTHON=${SPIDERWEB_IMAGE_PYTHON:-3.11.2}   # Debian bookworm's python3
RECIPE=1   # bump when the steps below change in a way the source hash cannot see

cd "$REPO"
VERSION=$("$PY" -c 'import spiderweb; print(spiderweb.__version__)')
OUT=$CACHE/spiderweb-$VERSION.oci.tar
STAMP=$OUT.source

source_hash() {
    {
        echo "recipe=$RECIPE suite=$SUITE packages=$PACKAGES python=$TARGET_PYTHON name=$NAME"
        find spiderweb agent cni workers image -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
            | sort -z | xargs -0 sha256sum
        sha256sum manage.py pyproject.toml requirements.txt README.md
    } | sha256sum | cut -d' ' -f1
}

HASH=$(source_hash)
if [[ ${1:-} != --rebuild && -f $OUT && "$(cat "$STAMP" 2>/dev/null)" == "$HASH" ]]; then
    echo "$OUT"
    exit 0
fi

if ! command -v mmdebstrap >/dev/null; then
    echo "installing mmdebstrap" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends mmdebstrap >&2
fi

started=$(date +%s)
mkdir -p "$CACHE"
WORK=$(mktemp -d "$CACHE/build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/wheels"

echo "== wheels" >&2
"$PY" -m pip wheel -q --no-deps -w "$WORK/wheels" "$REPO" >&2
# Binary wheels only, for the image's python3 (bookworm: 3.11.2). pip judges python_full_version markers for the
# Python running it, not for --python-version, so what the image's 3.11.2 adds is named here: redis wants
# async-timeout below 3.11.3. rootfs-setup.sh installs with --no-index, so anything missing fails the build.
"$PY" -m pip download -q --only-binary=:all: --python-version "$TARGET_PYTHON" -d "$WORK/wheels" \
    -r "$REPO/requirements.txt" pip==26.3 "async-timeout>=4.0.3" >&2
rm -rf "$REPO/build" "$REPO"/*.egg-info

echo "== root filesystem ($SUITE: $PACKAGES)" >&2
# Hooks run with the root filesystem in $1; commands inside it run through chroot.
# Downloaded .debs are kept in $CACHE/debs, so a rebuild downloads only what changed.
mkdir -p "$CACHE/debs"
mmdebstrap --mode=root --variant=minbase --format=tar --include="$PACKAGES" \
    --aptopt='Acquire::Retries "3"' \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $CACHE/debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $CACHE/debs" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='mkdir -p "$1/opt/spiderweb/wheels"' \
    --customize-hook="sync-in $WORK/wheels /opt/spiderweb/wheels" \
    --customize-hook="copy-in $REPO/manage.py $REPO/image/rootfs-setup.sh /opt/spiderweb" \
    --customize-hook='chroot "$1" sh /opt/spiderweb/rootfs-setup.sh' \
    --customize-hook='rm -rf "$1"/var/cache/apt/*.bin \
        "$1"/var/lib/apt/lists/* "$1"/var/log/*.log "$1"/var/cache/ldconfig/aux-cache' \
    "$SUITE" "$WORK/rootfs.tar" >&2

echo "== OCI archive" >&2
"$PY" "$REPO/image/oci.py" --rootfs "$WORK/rootfs.tar" --name "$NAME" --tag "$VERSION" --out "$OUT" \
    --workdir /opt/spiderweb \
    --env PATH=/opt/spiderweb/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env DJANGO_SETTINGS_MODULE=spiderweb.settings --env SPIDERWEB_STATIC_ROOT=/opt/spiderweb/static \
    --env PYTHONUNBUFFERED=1 \
    --cmd=spiderweb --cmd=--help \
    --label org.opencontainers.image.title=spiderweb --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.description=Spiderpool-compatible underlay IPAM (portal, workers, agent, CLI)" \
    >&2
echo "$HASH" > "$STAMP"

seconds=$(( $(date +%s) - started ))
size=$(stat -c %s "$OUT")
rootfs=$(stat -c %s "$WORK/rootfs.tar")
line="$(date -u +%FT%TZ) $NAME:$VERSION built in ${seconds}s: archive $((size / 1048576)) MiB, unpacked $((rootfs / 1048576)) MiB"
echo "$line" >> "$CACHE/build-times.log"
echo "$line" >&2
echo "$OUT"
