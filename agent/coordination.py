"""The coordinator and ifacer half of the socket API: configuration for a pod, and the netlink work itself.

The ``coordinator`` and ``ifacer`` CNI executables are thin shims; the agent merges the conflist entry with the
cluster's SpiderCoordinator (spec §8.1) and calls :mod:`agent.netlink`. The cluster configuration comes from the
portal and is cached for a few seconds: it changes rarely and every pod start would otherwise pay for it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from agent import request_fields as rf
from agent.netlink import coordinator as netlink_coordinator
from agent.netlink import coordinator_config
from agent.netlink import ifacer as netlink_ifacer
from agent.podfacts import FactsSource
from agent.portal import PortalClient
from agent.ttl_cache import TTLCache
from spiderweb.engine.errors import InvalidInput, IPAMError, Unavailable
from spiderweb.engine.keys import ANNO_DEFAULT_ROUTE_NIC

log = logging.getLogger(__name__)

_CLUSTER = "cluster"

# ``details.reason`` of an ``invalid_input`` that the CNI shims report with a CNI code of the spec's own
# (cni/errors.py): a bad value in the network config is code 7, a netns that does not exist is code 3.
INVALID_CONFIG = "invalid_config"
UNKNOWN_CONTAINER = "unknown_container"


class CoordinatorService:
    """``GET /v1/coordinator/config``, ``POST /v1/coordinator/{add,del,check}`` and ``POST /v1/ifacer/add``."""

    def __init__(self, *, portal: PortalClient, facts: FactsSource, cache_seconds: float = 5.0,
                 host_netns_path: str | None = None) -> None:
        self.portal = portal
        self.facts = facts
        self.host_netns_path = host_netns_path
        self._cluster: TTLCache[dict] = TTLCache(cache_seconds)
        self._last_good: dict | None = None

    def cluster_config(self) -> dict:
        """The SpiderCoordinator ``default`` as the portal serves it (cached). While the portal cannot be reached
        the last configuration it served is used: the cluster's coordinator settings change rarely, and a pod's
        setup or teardown must not depend on the portal being up at that moment (upstream reads an informer)."""
        try:
            config = self._cluster.get_or_load(_CLUSTER, self.portal.coordinator_config)
        except Unavailable as exc:
            if self._last_good is None:
                raise
            log.warning("portal unreachable (%s); using the last SpiderCoordinator configuration it served", exc)
            return dict(self._last_good)
        self._last_good = config
        return dict(config)

    def config(self, query: dict[str, str], body: object) -> dict:
        """``GET /v1/coordinator/config``: the cluster config with the pod's default-route-nic annotation applied.

        ``podNamespace``/``podName`` come from the body (Spiderpool's ``GetCoordinatorArgs``) or the query.
        """
        args = dict(query)
        if isinstance(body, dict):
            args.update({k: v for k, v in body.items() if isinstance(v, str)})
        return self._for_pod(args.get("podNamespace", ""), args.get("podName", ""), args.get("podUID", ""))

    def _for_pod(self, namespace: str, name: str, uid: str) -> dict:
        config = self.cluster_config()
        if namespace and name:
            facts = self.facts.lookup(namespace, name, uid)
            nic = facts.annotations.get(ANNO_DEFAULT_ROUTE_NIC, "").strip() if facts else ""
            if nic:
                config["podDefaultRouteNIC"] = nic
        return config

    # --------------------------------------------------------------------------------------- netlink calls

    def add(self, body: object) -> dict:
        """``POST /v1/coordinator/add``: returns ``{"result": <CNI result>}``."""
        call = _CoordinatorCall.parse(body, need_prev_result=True)
        merged = _merge(call.config, self._for_pod(call.namespace, call.name, call.uid))
        _require_netns(call.netns, merged)
        result = netlink_coordinator.coordinator_add(
            netns_path=call.netns, if_name=call.if_name, container_id=call.container_id, config=merged,
            prev_result=call.prev_result, host_netns_path=self.host_netns_path,
        )
        return {"result": result}

    def delete(self, body: object) -> None:
        """``POST /v1/coordinator/del``: cluster defaults only (the pod may be gone; its annotation is irrelevant).

        Without a SpiderCoordinator, or while its phase is ``NotReady``, the conflist entry and built-in defaults are
        used, so a DEL never fails for lack of configuration (an ADD does: see ``add``).
        """
        call = _CoordinatorCall.parse(body, need_prev_result=False)
        try:
            defaults = self.cluster_config()
        except IPAMError as exc:
            if exc.code not in ("not_found", "conflict") and not isinstance(exc, Unavailable):
                raise
            # No SpiderCoordinator, one not synced, or the portal unreachable since this agent started: tear down
            # with the conflist entry and the built-in defaults rather than fail (a pod must always be deletable; a
            # failed DEL is never retried once Multus dropped its cache, and the IPAM DEL behind it would not run).
            log.info("coordinator DEL without a usable cluster configuration (%s): using the conflist entry only",
                     exc.message)
            defaults = {}
        netlink_coordinator.coordinator_del(
            netns_path=call.netns, if_name=call.if_name, container_id=call.container_id,
            config=_merge(call.config, defaults), host_netns_path=self.host_netns_path,
        )
        return None

    def check(self, body: object) -> None:
        """``POST /v1/coordinator/check``."""
        call = _CoordinatorCall.parse(body, need_prev_result=False)
        merged = _merge(call.config, self._for_pod(call.namespace, call.name, call.uid))
        _require_netns(call.netns, merged)
        netlink_coordinator.coordinator_check(
            netns_path=call.netns, if_name=call.if_name, container_id=call.container_id, config=merged,
            host_netns_path=self.host_netns_path,
        )
        return None

    def ifacer_add(self, body: object) -> dict:
        """``POST /v1/ifacer/add``: create the VLAN/bond parents the entry names; ``{"result": ...}``."""
        data = rf.body_object(body, "IfacerArgs")
        config = rf.obj(data, "config")
        try:
            # The node's namespace, as for the coordinator's host side (a lab node lives in a netns of its own).
            result = netlink_ifacer.ifacer_add(config=config, netns_path=self.host_netns_path)
        except ValueError as exc:
            raise InvalidInput(f"invalid ifacer config: {exc}", details={"reason": INVALID_CONFIG}) from exc
        return {"result": result}


class _CoordinatorCall:
    """The body of ``/v1/coordinator/{add,del,check}``."""

    def __init__(self, data: dict, need_prev_result: bool) -> None:
        self.container_id = rf.text(data, "containerID")
        self.netns = rf.text(data, "netNamespace")
        self.if_name = rf.text(data, "ifName")
        self.namespace = rf.text(data, "podNamespace")
        self.name = rf.text(data, "podName")
        self.uid = rf.text(data, "podUID")
        self.cni_version = rf.text(data, "cniVersion")
        self.config = rf.obj(data, "config")
        self.prev_result: dict[str, Any] = rf.obj(data, "prevResult") if need_prev_result else {}

    @classmethod
    def parse(cls, body: object, *, need_prev_result: bool) -> _CoordinatorCall:
        data = rf.body_object(body, "CoordinatorArgs")
        names = ["containerID", "netNamespace", "ifName", "podNamespace", "podName", "cniVersion", "config"]
        rf.require(data, *names, *(["prevResult"] if need_prev_result else []), what="CoordinatorArgs")
        return cls(data, need_prev_result)


def _merge(entry: dict, defaults: dict) -> coordinator_config.CoordinatorConfig:
    try:
        return coordinator_config.merge(entry, defaults)
    except ValueError as exc:
        raise InvalidInput(f"invalid coordinator config: {exc}", details={"reason": INVALID_CONFIG}) from exc


def _require_netns(netns: str, config: coordinator_config.CoordinatorConfig) -> None:
    """ADD and CHECK work inside the pod's netns; one that does not exist is the spec's "unknown container".

    ``mode: disable`` touches no netns (the result is ``prevResult``), so it needs none, as in the shim.
    """
    if config.mode == coordinator_config.MODE_DISABLE:
        return
    if not netns or not os.path.exists(netns):
        raise InvalidInput(f"network namespace {netns!r} does not exist",
                           details={"reason": UNKNOWN_CONTAINER, "netNamespace": netns})
