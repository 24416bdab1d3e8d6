"""`make bench-portal`: how long the admin takes to open a pool holding 60,000 live allocations.

The allocations are bulk-inserted (the rows the allocator writes) into a /16 pool on a throw-away database
(`spiderweb_bench_portal`). Each page is fetched once to warm up, then SAMPLES times through Django's test client
as a logged-in superuser; the median is printed with the page size. Pages: the pool's change page (usage, free
ranges, next free addresses), the first page of its allocations (paginated, filtered by pool), the pool list, the
subnet page, the search for an address and the capacity dashboard. Last line: portal_pool_page_s=<median>.
"""

import os
import statistics

from tests.bench.common import now, setup_django_on_bench_db

ALLOCATIONS = int(os.environ.get("BENCH_ALLOCATIONS", "60000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "5"))


def _time(client, url: str) -> tuple[float, int]:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(SAMPLES):
        start = now()
        response = client.get(url)
        times.append(now() - start)
    return statistics.median(times), len(response.content)


def main() -> None:
    setup_django_on_bench_db("bench_portal")
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse
    from django.utils.http import urlencode

    from spiderweb.ipam import services
    from tests.portal.bulk import bulk_allocate

    tenant = services.tenant_create(name="bench")
    subnet = services.subnet_create(tenant=tenant, name="bench-subnet",
                                    spec={"subnet": "10.50.0.0/16", "ips": ["10.50.0.1-10.50.255.254"]})
    pool = services.ippool_create(tenant=tenant, name="bench-pool",
                                  spec={"subnet": "10.50.0.0/16", "ips": ["10.50.0.1-10.50.254.254"]})
    start = now()
    addresses = bulk_allocate(pool, ALLOCATIONS)
    print(f"portal fill allocations={ALLOCATIONS} insert_s={now() - start:.2f}", flush=True)
    user = get_user_model().objects.create_superuser("bench", email="bench@example.com")
    client = Client(SERVER_NAME="localhost")
    client.force_login(user)
    pages = [
        ("pool_page", reverse("admin:ipam_ippool_change", args=[pool.pk])),
        ("pool_allocations_page", reverse("admin:ipam_allocation_changelist") + "?"
         + urlencode({"pool__id__exact": pool.pk})),
        ("pool_list", reverse("admin:ipam_ippool_changelist")),
        ("subnet_page", reverse("admin:ipam_subnet_change", args=[subnet.pk])),
    ]
    pages += [(name, url) for name, url in _portal_pages(addresses[ALLOCATIONS // 2])]
    figures = {}
    for name, url in pages:
        seconds, size = _time(client, url)
        figures[name] = seconds
        print(f"portal page={name} allocations={ALLOCATIONS} median_s={seconds:.3f} bytes={size}", flush=True)
    print(f"portal_pool_page_s={figures['pool_page']:.3f}")


def _portal_pages(address: str) -> list[tuple[str, str]]:
    """The portal's own pages, when this checkout has them."""
    from django.urls import NoReverseMatch, reverse
    from django.utils.http import urlencode

    pages = []
    for name, view, query in (("search_address", "portal-search", {"q": address}),
                              ("dashboard", "portal-dashboard", {})):
        try:
            pages.append((name, reverse(view) + ("?" + urlencode(query) if query else "")))
        except NoReverseMatch:
            continue
    return pages


if __name__ == "__main__":
    main()
