"""The IPAM half of the socket API: allocate, release, batch release, endpoint view and CNI GC (spec §11.2, §11.3).

Allocation decisions are the portal's; what stays here is what needs the node: the pod's facts (Kubernetes view),
whether a DEL may release at all (alive pod, StatefulSet ordinal, KubeVirt VM), and the probes inside the pod's
network namespace (IP conflict, gateway reachability, gratuitous ARP).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent import request_fields as rf
from agent.config import AgentConfig
from agent.errors import ForbidStateful, ForbidStateless, PortalError
from agent.netlink import detection
from agent.netlink.errors import DetectionError
from agent.podfacts import RELEASE, FactsSource
from agent.portal import AUTOPOOL_NOT_READY, PortalClient
from spiderweb.engine.errors import Conflict, InvalidInput
from spiderweb.engine.facts import PodFacts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddArgs:
    """``IpamAddArgs``."""

    container_id: str
    if_name: str
    netns: str
    namespace: str
    name: str
    uid: str
    default_ipv4: list[str]
    default_ipv6: list[str]
    clean_gateway: bool
    match_master_subnet: bool
    network: str

    @classmethod
    def parse(cls, body: object) -> AddArgs:
        data = rf.body_object(body, "IpamAddArgs")
        rf.require(data, "containerID", "ifName", "netNamespace", "podNamespace", "podName", "podUID",
                   what="IpamAddArgs", may_be_empty=("podUID",))
        return cls(
            container_id=rf.text(data, "containerID"), if_name=rf.text(data, "ifName"),
            netns=rf.text(data, "netNamespace"), namespace=rf.text(data, "podNamespace"),
            name=rf.text(data, "podName"), uid=rf.text(data, "podUID"),
            default_ipv4=rf.text_list(data, "defaultIPv4IPPool"), default_ipv6=rf.text_list(data, "defaultIPv6IPPool"),
            clean_gateway=rf.flag(data, "cleanGateway"), match_master_subnet=rf.flag(data, "matchMasterSubnet"),
            network=rf.text(data, "network"),
        )


class IpamService:
    """Socket API operations under ``/v1/ipam`` and ``/v1/workloadendpoint``; each returns the JSON answer."""

    def __init__(self, *, config: AgentConfig, portal: PortalClient, facts: FactsSource,
                 on_auto_pool_wait: Callable[[], None] = lambda: None, sleep: Callable[[float], None] = time.sleep,
                 ) -> None:
        self.config = config
        self.portal = portal
        self.facts = facts
        self.on_auto_pool_wait = on_auto_pool_wait
        self.sleep = sleep

    # -------------------------------------------------------------------------------------------------- ADD

    def add(self, body: object) -> dict:
        """``POST /v1/ipam/ip``: allocate through the portal, then probe and announce inside the pod netns."""
        args = AddArgs.parse(body)
        facts = self.facts.facts(args.namespace, args.name, args.uid)
        if not facts.alive:
            raise InvalidInput(f"pod {args.namespace}/{args.name} is terminating or finished (dead Pod)")
        if args.match_master_subnet:
            log.debug("matchMasterSubnet is not supported by the portal yet; ignored for %s", args.name)
        result = self._allocate_waiting_for_auto_pool(args, facts)
        mine = [ip for ip in result.get("ips") or [] if isinstance(ip, dict) and ip.get("nic") == args.if_name]
        self._detect(args, facts, mine)
        self._announce(args, mine)
        return result

    def _allocate_waiting_for_auto_pool(self, args: AddArgs, facts: PodFacts) -> dict:
        """Spec §4.4: while the application's auto pool is missing or still growing, wait and ask again (the portal
        answers at once; the agent holds the ADD, up to ``SPIDERPOOL_WAIT_SUBNET_POOL_MAX_RETRIES`` waits of
        ``SPIDERPOOL_WAIT_SUBNET_POOL_TIME_IN_SECOND``); every wait is counted (A20)."""
        for attempt in range(self.config.auto_pool_wait_retries + 1):
            try:
                return self.portal.allocate(
                    facts=facts, if_name=args.if_name, container_id=args.container_id,
                    default_ipv4=args.default_ipv4, default_ipv6=args.default_ipv6, clean_gateway=args.clean_gateway,
                    cluster_network=self.config.cluster_network, network=args.network,
                )
            except PortalError as exc:
                if exc.code != AUTOPOOL_NOT_READY or attempt == self.config.auto_pool_wait_retries:
                    raise
                log.info("ADD %s/%s waits for its auto pool (%d/%d): %s", args.namespace, args.name, attempt + 1,
                         self.config.auto_pool_wait_retries, exc.message)
                self.on_auto_pool_wait()
                self.sleep(self.config.auto_pool_wait_seconds)
        raise AssertionError("unreachable")

    def _detect(self, args: AddArgs, facts: PodFacts, mine: list[dict]) -> None:
        """Spec §11.4: conflict/unreachable releases the pod's addresses and fails the ADD; other errors just fail."""
        wanted = [ip for ip in mine if ip.get("enableIPConflictDetection") or ip.get("enableGatewayDetection")]
        if not wanted:
            return
        if any(ip.get("enableIPConflictDetection") for ip in wanted) and self.facts.skip_conflict_detection(facts):
            log.info("pod %s/%s is a KubeVirt migration target: no IP conflict detection", facts.namespace, facts.name)
            wanted = [dict(ip, enableIPConflictDetection=False) for ip in wanted]
        try:
            verdict = detection.detect(netns_path=args.netns, if_name=args.if_name, ip_configs=wanted)
        except DetectionError:
            raise
        except (OSError, ValueError) as exc:
            raise DetectionError(f"detection on {args.if_name} in {args.netns} could not run: {exc}") from exc
        if isinstance(verdict, detection.ConflictFound):
            details = {"reason": "ip_conflict", "address": verdict.ip, "mac": verdict.mac}
        elif isinstance(verdict, detection.GatewayUnreachable):
            details = {"reason": "gateway_unreachable", "gateway": verdict.gw}
        else:
            return
        outcome = self._release_after_detection(facts)
        details["released"] = outcome
        raise Conflict(f"{verdict.message} (pod {facts.namespace}/{facts.name}, {args.if_name}); {outcome}",
                       details=details)

    def _release_after_detection(self, facts: PodFacts) -> str:
        """Batch-release the pod (with ``isReleaseConflictIPs``, spec A10); say what happened, never raise."""
        if not self.config.release_conflict_ips:
            return "its addresses were kept (SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS=false)"
        try:
            released = self.portal.release_pod(namespace=facts.namespace, name=facts.name, uid=facts.uid,
                                               is_release_conflict_ips=True, owner_kind=facts.owner.kind)
        except PortalError as exc:
            if exc.code == "forbid_stateful":
                return f"its addresses were kept ({facts.owner.kind} pods keep their addresses)"
            log.warning("release after failed detection for %s/%s: %s", facts.namespace, facts.name, exc.message)
            return f"releasing its addresses failed ({exc.message}); GC will reclaim them"
        except Exception as exc:  # noqa: BLE001 - the ADD fails anyway; say why the release did not happen
            log.warning("release after failed detection for %s/%s: %s", facts.namespace, facts.name, exc)
            return f"releasing its addresses failed ({exc}); GC will reclaim them"
        return f"released {', '.join(released) or 'nothing'}; the runtime will retry"

    def _announce(self, args: AddArgs, mine: list[dict]) -> None:
        """Gratuitous ARP / unsolicited NA so neighbours forget a previous owner's MAC now (errors only logged)."""
        addresses = [str(ip["address"]).split("/")[0] for ip in mine if ip.get("address")]
        if not addresses:
            return
        try:
            detection.announce(netns_path=args.netns, if_name=args.if_name, addresses=addresses)
        except Exception as exc:  # noqa: BLE001 - an announcement is best effort by definition
            log.info("announce %s on %s in %s failed: %s", addresses, args.if_name, args.netns, exc)

    # -------------------------------------------------------------------------------------------------- DEL

    def delete(self, body: object) -> None:
        """``DELETE /v1/ipam/ip``: release unless the pod still needs its addresses (see ``podfacts``)."""
        data = rf.body_object(body, "IpamDelArgs")
        rf.require(data, "containerID", "ifName", "podNamespace", "podName", "podUID", what="IpamDelArgs",
                   may_be_empty=("podUID",))
        namespace, name = rf.text(data, "podNamespace"), rf.text(data, "podName")
        decision = self.facts.release_decision(namespace, name, rf.text(data, "podUID"))
        if decision.action != RELEASE:
            log.info("DEL %s/%s %s: %s (%s)", namespace, name, rf.text(data, "ifName"), decision.action,
                     decision.reason)
            return None
        released = self.portal.release(namespace=namespace, name=decision.name, uid=decision.uid,
                                       if_name=rf.text(data, "ifName"), container_id=rf.text(data, "containerID"),
                                       pod_dead=decision.pod_dead)
        log.info("DEL %s/%s: released %s (%s)", namespace, name, released or "nothing", decision.reason)
        return None

    def delete_all(self, body: object) -> None:
        """``DELETE /v1/ipam/ips``: release every address of the pod (521/522 when that is not allowed)."""
        data = rf.body_object(body, "IpamBatchDelArgs")
        rf.require(data, "containerID", "podNamespace", "podName", "podUID", what="IpamBatchDelArgs",
                   may_be_empty=("podUID",))
        conflict = rf.flag(data, "isReleaseConflictIPs")
        if conflict and not self.config.release_conflict_ips:
            raise ForbidStateless("releasing the IPs of a pod after an IP conflict is disabled "
                                  "(SPIDERPOOL_ENABLED_RELEASE_CONFLICT_IPS=false)")
        namespace, name, uid = rf.text(data, "podNamespace"), rf.text(data, "podName"), rf.text(data, "podUID")
        facts = self.facts.lookup(namespace, name, uid)
        if facts is None and not uid:
            log.info("batch DEL %s/%s: pod gone and no UID given; nothing to release", namespace, name)
            return None
        try:
            self.portal.release_pod(
                namespace=namespace, name=facts.name if facts else name, uid=facts.uid if facts else uid,
                is_release_conflict_ips=conflict, owner_kind=facts.owner.kind if facts else "",
            )
        except PortalError as exc:
            if exc.code == "forbid_stateful":
                raise ForbidStateful(exc.message, details=exc.details) from exc
            raise
        return None

    # ------------------------------------------------------------------------------------------ read / GC

    def workloadendpoint(self, query: dict[str, str]) -> dict:
        """``GET /v1/workloadendpoint?podNamespace=&podName=``."""
        rf.require(query, "podNamespace", "podName", what="the query")
        return self.portal.workloadendpoint(namespace=query["podNamespace"], name=query["podName"])

    def gc(self, body: object) -> dict:
        """``POST /v1/ipam/gc`` (CNI 1.1 GC): the portal releases this node's allocations of ``network`` (the
        conflist name) whose attachment is not in the list; the list covers one network, so the name is required.
        """
        data = rf.body_object(body, "IpamGCArgs")
        rf.require(data, "network", what="IpamGCArgs")
        attachments = data.get("validAttachments")
        if not isinstance(attachments, list):
            raise InvalidInput("validAttachments must be a list (an empty list releases every attachment)")
        for index, item in enumerate(attachments):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), str) and item.get(k)
                                                     for k in ("containerID", "ifname")):
                raise InvalidInput(f"validAttachments[{index}] needs containerID and ifname strings")
        valid = [{"containerID": a["containerID"], "ifname": a["ifname"]} for a in attachments]
        released = self.portal.gc(network=rf.text(data, "network"), valid_attachments=valid)
        return {"released": len(released)}
