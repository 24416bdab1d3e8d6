"""GET /healthz: the portal's readiness against its database, answered for any Host (kubelet probes pod IPs)."""

import json
import urllib.error
import urllib.request

import pytest
from django.test import Client

from tests import live
from tests.lab.controlplane import free_port


@pytest.mark.django_db
def test_healthz_is_200_when_the_database_answers_whatever_the_host():
    response = Client().get("/healthz", HTTP_HOST="10.244.0.9:8000")
    assert (response.status_code, response.json()) == (200, {"database": "ok"})


def test_healthz_is_503_and_metrics_still_answer_when_the_database_is_down(db, tmp_path):
    # Given the portal under gunicorn pointed at a PostgreSQL port where nothing listens
    dead = f"postgres://spiderweb:spiderweb@127.0.0.1:{free_port()}/spiderweb"
    portal = live.portal_start(tmp_path, live.live_env(DATABASE_URL=dead), workers=1)
    try:
        # When the kubelet probes it
        with pytest.raises(urllib.error.HTTPError) as probe:
            urllib.request.urlopen(f"{portal.url}/healthz", timeout=10)
        # Then it is not ready, and says why
        assert probe.value.code == 503
        assert json.loads(probe.value.read()) == {"database": "unavailable"}
        # And Prometheus still gets the instruments, with the database marked down
        scraped = live.scrape(f"{portal.url}/metrics")
        assert scraped.value("spiderweb_database_up") == 0
        assert "spiderpool_total_ippool_counts" not in scraped.families
    finally:
        live.stop(portal)
