"""Create Spiderweb's install-time objects when they are missing (the chart's spiderweb-init Job, spec §10.4).

Reads a JSON list of ``{"plural": ..., "body": {...}}`` Spiderpool custom objects (group ``spiderpool.spidernet.io``,
version ``v2beta1``; cluster-scoped, or in ``"namespace"``) and creates each one that does not exist yet. Objects
that exist are never changed: the chart values only seed a fresh cluster. Creation goes through the admission
webhooks, which may not answer for a while after install, so transient failures are retried until a deadline.

An object with ``"detectNameFrom": <directory>`` is the ``custom`` SpiderMultusConfig of the cluster's own CNI: it
is named after the ``name`` inside the node's first CNI configuration there (``00-multus*`` skipped, as Spiderpool
does), and skipped when there is none.

Runs inside the Spiderweb image (which ships the ``kubernetes`` client) with the Job's service account.
Usage: ``python spiderweb_init.py OBJECTS_JSON [TIMEOUT_SECONDS]``.
"""

from __future__ import annotations

import json
import os
import sys
import time

GROUP = "spiderpool.spidernet.io"
VERSION = "v2beta1"
# Statuses worth retrying: webhook not reachable yet (500 "failed calling webhook"), apiserver busy, and 404 on
# create, which the apiserver answers while a CRD installed moments ago is not served yet.
RETRYABLE = {404, 429, 500, 502, 503, 504}


def ensure_objects(api, objects: list[dict], *, deadline: float, sleep=time.sleep, clock=time.monotonic) -> list[str]:
    """Create every object of ``objects`` that is missing; return "created"/"exists" lines, one per object.

    ``api`` is a ``kubernetes.client.CustomObjectsApi`` (or anything with the same two methods). Raises the
    last API error when an object still cannot be created at ``deadline`` (a ``clock()`` value).
    """
    report = []
    for obj in objects:
        plural, body, namespace = obj["plural"], obj["body"], obj.get("namespace")
        if obj.get("detectNameFrom"):
            detected = default_cni_name(obj["detectNameFrom"])
            if not detected:
                report.append(f"skipped {plural}: no CNI configuration in {obj['detectNameFrom']}")
                continue
            body = {**body, "metadata": {**body["metadata"], "name": detected}}
        name = body["metadata"]["name"]
        what = f"{plural}/{namespace}/{name}" if namespace else f"{plural}/{name}"
        delay = 1.0
        while True:
            try:
                try:
                    if namespace:
                        api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
                    else:
                        api.get_cluster_custom_object(GROUP, VERSION, plural, name)
                    report.append(f"exists {what}")
                    break
                except Exception as exc:  # noqa: BLE001 - only ApiException carries .status
                    if getattr(exc, "status", None) != 404:
                        raise
                if namespace:
                    api.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
                else:
                    api.create_cluster_custom_object(GROUP, VERSION, plural, body)
                report.append(f"created {what}")
                break
            except Exception as exc:  # noqa: BLE001
                status = getattr(exc, "status", None)
                if status == 409:  # created by someone else between our get and create
                    report.append(f"exists {what}")
                    break
                if status not in RETRYABLE or clock() + delay > deadline:
                    raise
                print(f"retrying {what} in {delay:.0f}s: HTTP {status}", file=sys.stderr, flush=True)
                sleep(delay)
                delay = min(delay * 2, 10.0)
    return report


def default_cni_name(directory: str) -> str:
    """The ``name`` inside the first ``.conf``/``.conflist`` file of ``directory`` (``00-multus*`` skipped); ``""``
    when there is none or it cannot be read."""
    try:
        files = sorted(f for f in os.listdir(directory) if f.endswith((".conf", ".conflist")) and "00-multus" not in f)
    except OSError:
        return ""
    for file in files[:1]:
        try:
            with open(os.path.join(directory, file), encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError):
            return ""
        return str(config.get("name") or "") if isinstance(config, dict) else ""
    return ""


def main(argv: list[str]) -> int:
    from kubernetes import client, config

    with open(argv[1]) as fh:
        objects = json.load(fh)
    timeout = float(argv[2]) if len(argv) > 2 else 600.0
    config.load_incluster_config()
    for line in ensure_objects(client.CustomObjectsApi(), objects, deadline=time.monotonic() + timeout):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
