#!/bin/sh
# Runs inside the image's root filesystem (chroot, from image/build.sh): the project and its pinned dependencies
# into /opt/spiderweb/venv from the wheels in /opt/spiderweb/wheels, Django's static files collected, then the
# wheels, pip and this script removed. Python is Debian's python3.
set -eu
cd /opt/spiderweb
# Only what this script says: no pip settings from the environment that ran mmdebstrap.
unset PIP_FIND_LINKS PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m venv --without-pip /opt/spiderweb/venv
pip_wheel=$(ls /opt/spiderweb/wheels/pip-*.whl)
# Only the wheels build.sh downloaded: nothing is fetched or compiled here.
/opt/spiderweb/venv/bin/python "$pip_wheel/pip" install -q --no-cache-dir --no-index \
    --find-links /opt/spiderweb/wheels spiderweb
SPIDERWEB_SECRET_KEY=image-build SPIDERWEB_STATE_DIR=/tmp/image-build SPIDERWEB_STATIC_ROOT=/opt/spiderweb/static \
    /opt/spiderweb/venv/bin/python manage.py collectstatic --noinput -v0
/opt/spiderweb/venv/bin/spiderweb version >/dev/null
rm -rf /opt/spiderweb/wheels /tmp/image-build /opt/spiderweb/rootfs-setup.sh
