"""The portal's ``/metrics``: the instruments of ``spiderweb.metrics`` plus pool and subnet gauges read from the
database when scraped (spec §13.2).

Spiderpool refreshes its pool gauges on a timer and, upstream, adds the full value to a counter on every refresh
(Appendix A2); here they are real labelled gauges computed from the rows at scrape time: one grouped query for the
pools, one for the subnets, one per IP family for the reservations.

``MetricsMiddleware`` answers ``GET /metrics`` before Django's host check: Prometheus scrapes pods by IP, which is
never in ``SPIDERWEB_ALLOWED_HOSTS``. With ``SPIDERWEB_METRICS_TOKEN`` set, a scrape must send
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import logging
import os

from django.db import DatabaseError
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from spiderweb import metrics
from spiderweb.engine.ranges import RangeSet
from spiderweb.ipam.models import IPPool, Subnet
from spiderweb.ipam.validation import reserved_ranges

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
TOKEN_ENV = "SPIDERWEB_METRICS_TOKEN"


class PoolCollector(Collector):
    """Pool and subnet totals and per-object address counts, computed from the database at scrape time.

    A database that does not answer costs the scrape these gauges, not the scrape: ``spiderweb_database_up`` says 0.
    """

    def collect(self):
        up = GaugeMetricFamily("spiderweb_database_up", "1 when the portal read the pool gauges from the database")
        try:
            families = list(self._families())
        except DatabaseError as exc:
            log.warning("pool gauges unavailable: %s", exc)
            families = []
        up.add_metric([], 1 if families else 0)
        yield from families
        yield up

    def _families(self):
        pool_total = GaugeMetricFamily("spiderpool_total_ippool_counts", "Number of SpiderIPPools")
        subnet_total = GaugeMetricFamily("spiderpool_total_subnet_counts", "Number of SpiderSubnets")
        by_pool = ["SpiderIPPool"]
        pool_ips = GaugeMetricFamily("spiderpool_debug_ippool_total_ip_counts", "Total IPs of the pool (ips - "
                                     "excludeIPs)", labels=by_pool)
        pool_available = GaugeMetricFamily("spiderpool_debug_ippool_available_ip_counts", "Total minus allocated IPs "
                                           "of the pool (Spiderpool's definition)", labels=by_pool)
        ours = ["SpiderIPPool", "tenant", "ipVersion"]
        pool_allocated = GaugeMetricFamily("spiderweb_ippool_allocated_ip_counts", "Allocated IPs of the pool",
                                           labels=ours)
        pool_free = GaugeMetricFamily("spiderweb_ippool_free_ip_counts", "IPs a pod can still get from the pool "
                                      "(total - reserved - allocated)", labels=ours)
        pool_usable = GaugeMetricFamily("spiderweb_ippool_usable_ip_counts", "Total minus reserved IPs of the pool",
                                        labels=ours)
        by_subnet = ["SpiderSubnet"]
        subnet_pools = GaugeMetricFamily("spiderpool_debug_subnet_ippool_counts", "Pools the subnet controls",
                                         labels=by_subnet)
        subnet_ips = GaugeMetricFamily("spiderpool_debug_subnet_total_ip_counts", "Total IPs of the subnet",
                                       labels=by_subnet)
        subnet_available = GaugeMetricFamily("spiderpool_debug_subnet_available_ip_counts", "Subnet IPs not yet "
                                             "given to a pool it controls", labels=by_subnet)
        subnet_allocated = GaugeMetricFamily("spiderweb_subnet_allocated_ip_counts", "Allocated IPs in the pools the "
                                             "subnet controls", labels=["SpiderSubnet", "tenant"])

        reserved = {4: reserved_ranges(4), 6: reserved_ranges(6)}
        owned: dict[int, list[tuple[RangeSet, int]]] = {}
        pools = IPPool.objects.annotate(allocated=Count("allocations")).select_related("tenant").order_by("name")
        count = 0
        for pool in pools.only("name", "ip_version", "ips", "exclude_ips", "owner_subnet_id", "tenant__name"):
            count += 1
            total = pool.total_ranges
            usable = total.count() - total.intersect(reserved[pool.ip_version]).count()
            labels = [pool.name, pool.tenant.name, str(pool.ip_version)]
            pool_ips.add_metric([pool.name], total.count())
            pool_available.add_metric([pool.name], max(total.count() - pool.allocated, 0))
            pool_allocated.add_metric(labels, pool.allocated)
            pool_usable.add_metric(labels, usable)
            pool_free.add_metric(labels, max(usable - pool.allocated, 0))
            if pool.owner_subnet_id:
                owned.setdefault(pool.owner_subnet_id, []).append((total, pool.allocated))
        pool_total.add_metric([], count)

        subnets = Subnet.objects.select_related("tenant").order_by("name")
        count = 0
        for subnet in subnets.only("name", "ip_version", "ips", "exclude_ips", "tenant__name"):
            count += 1
            total = subnet.total_ranges
            given = RangeSet.empty(subnet.ip_version)
            for ranges, _ in owned.get(subnet.pk, []):
                given = given.union(ranges)
            subnet_pools.add_metric([subnet.name], len(owned.get(subnet.pk, [])))
            subnet_ips.add_metric([subnet.name], total.count())
            subnet_available.add_metric([subnet.name], total.subtract(given).count())
            subnet_allocated.add_metric([subnet.name, subnet.tenant.name],
                                        sum(n for _, n in owned.get(subnet.pk, [])))
        subnet_total.add_metric([], count)
        yield from (pool_total, subnet_total, pool_ips, pool_available, pool_allocated, pool_usable, pool_free,
                    subnet_pools, subnet_ips, subnet_available, subnet_allocated)


def metrics_response() -> HttpResponse:
    """One scrape of the portal: instruments (every gunicorn worker's), build info and the database gauges."""
    body = metrics.exposition(metrics.BuildInfo("portal"), PoolCollector())
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)


class MetricsMiddleware:
    """``GET /metrics`` answered first in the chain (before the host check; see the module docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.token = os.environ.get(TOKEN_ENV, "")

    def __call__(self, request):
        if request.path != METRICS_PATH:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponse("GET only\n", status=405, content_type="text/plain", headers={"Allow": "GET, HEAD"})
        if self.token:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
                return HttpResponse("metrics need Authorization: Bearer <SPIDERWEB_METRICS_TOKEN>\n", status=401,
                                    content_type="text/plain", headers={"WWW-Authenticate": "Bearer"})
        return metrics_response()
