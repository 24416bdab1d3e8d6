"""A database outage or a stalled lock holder is a retryable 503 `unavailable`, never an HTML 500 (issue 7 §4).

Node agents retry 429/502/503/504 and give up on everything else, so a PostgreSQL restart or one request stuck
while holding a pool lock must reach them as 503 in the API's JSON error shape.
"""

import json
import threading
import time

import pytest
from django.db import close_old_connections, connection, connections
from django.urls import reverse

from spiderweb.ipam import services
from tests.ipam import factories as f

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="backend termination and lock timeouts are PostgreSQL's"
    ),
]

ALLOCATE = reverse("internal-allocate")


def node_client(node_name="node-1"):
    from rest_framework.test import APIClient

    _, token = services.node_credential_issue(node_name=node_name)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def allocate_body(name="web-0"):
    facts = f.facts(name, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p1"]})})
    return {"facts": facts.to_dict(), "ifName": "eth0", "containerID": "sandbox-1"}


def terminate_this_connections_backend():
    """What a PostgreSQL restart does to the portal's open connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])  # waits until it is gone
    finally:
        other.close()


@pytest.fixture
def pool():
    return f.pool("p1", "10.1.0.0/24", ["10.1.0.10-10.1.0.19"])


@pytest.fixture
def drop_the_dead_connection():
    """The test client skips Django's end-of-request cleanup; drop the dead connection so teardown reconnects."""
    yield
    connection.close()


def assert_503_unavailable_json(response):
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "unavailable"
    assert "retry" in body["message"]
    return body


# ----------------------------------------------------------------------------------- fault 3: connection lost


def test_a_lost_database_connection_is_a_503_on_the_internal_api(pool, drop_the_dead_connection):
    client = node_client()
    terminate_this_connections_backend()
    assert_503_unavailable_json(client.post(ALLOCATE, allocate_body(), format="json"))


def test_a_lost_database_connection_is_a_503_on_the_rest_api(api, staff, drop_the_dead_connection):
    client = api(staff)
    terminate_this_connections_backend()
    assert_503_unavailable_json(client.get(reverse("ippool-list")))


def test_a_connection_lost_between_requests_is_replaced_before_the_next_request(pool, drop_the_dead_connection):
    client = node_client()
    # Given the database restarted while the portal's connection was idle
    terminate_this_connections_backend()
    # When the next request starts (Django runs close_old_connections on request_started; the test client skips it)
    close_old_connections()
    response = client.post(ALLOCATE, allocate_body(), format="json")
    # Then the health check found the dead connection and the request ran on a new one
    assert response.status_code == 200, response.content


# ------------------------------------------------------------------------------------ fault 4: stalled holders


def test_the_portal_connection_carries_the_lock_and_idle_in_transaction_timeouts():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, setting, unit FROM pg_settings "
            "WHERE name IN ('lock_timeout', 'idle_in_transaction_session_timeout')"
        )
        settings = {name: (setting, unit) for name, setting, unit in cursor.fetchall()}
    assert settings == {"lock_timeout": ("5000", "ms"), "idle_in_transaction_session_timeout": ("30000", "ms")}


def test_an_allocation_behind_a_stalled_pool_lock_holder_is_a_503_within_the_lock_timeout(pool):
    client = node_client()
    # Given a request stuck while holding the pool's row lock (as a pool edit holds it; allocations only share it)
    holder = connections.create_connection("default")
    holder.inc_thread_sharing()  # the safety timer below may end it from its own thread
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT id FROM ipam_ippool WHERE id = %s FOR UPDATE", [pool.pk])
    # (without a lock timeout the allocation would wait for as long as the holder stalls; end it after 30 s)
    safety = threading.Timer(30, holder.rollback)
    safety.start()
    try:
        # When a node agent allocates from that pool
        started = time.monotonic()
        response = client.post(ALLOCATE, allocate_body(), format="json")
        elapsed = time.monotonic() - started
    finally:
        safety.cancel()
        holder.rollback()
        holder.close()
    # Then it gets a retryable 503 well before the holder lets go, naming the lock wait
    body = assert_503_unavailable_json(response)
    assert body["details"] == {"sqlstate": "55P03"}
    assert "lock" in body["message"]
    assert elapsed < 25
