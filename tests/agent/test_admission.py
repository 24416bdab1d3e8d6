"""The admission queue (bounded in-flight work, "queue is full" beyond it), at the unit level."""

from __future__ import annotations

import threading
import time

import pytest

from agent.admission import Admission
from agent.errors import QueueFull


def test_beyond_the_waiting_line_requests_are_refused_at_once():
    gate = Admission(max_active=2, max_waiting=1)
    gate.acquire()
    gate.acquire()
    waiter = threading.Thread(target=lambda: (gate.acquire(), gate.release()))
    waiter.start()
    deadline = time.monotonic() + 5
    while gate.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    with pytest.raises(QueueFull, match="queue is full") as caught:
        gate.acquire()

    assert caught.value.code == "unavailable" and caught.value.details == {"queueSize": 1}
    gate.release()
    waiter.join(5)
    gate.release()
    assert (gate.active, gate.waiting) == (0, 0)


def test_waiters_are_served_in_arrival_order_and_report_their_wait():
    gate = Admission(max_active=1, max_waiting=10)
    gate.acquire()
    order, waits = [], []

    def worker(n: int) -> None:
        waited = gate.acquire()
        order.append(n)
        waits.append(waited)
        gate.release()

    threads = []
    for n in range(5):
        threads.append(threading.Thread(target=worker, args=(n,)))
        threads[-1].start()
        while gate.waiting < n + 1:
            time.sleep(0.005)
    time.sleep(0.05)
    gate.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert min(waits) >= 0.05


def test_drain_waits_for_running_work():
    gate = Admission(max_active=1, max_waiting=0)
    gate.acquire()
    assert gate.drain(0.05) is False
    threading.Timer(0.05, gate.release).start()
    assert gate.drain(5) is True


def test_nonsense_bounds_are_refused():
    with pytest.raises(ValueError):
        Admission(max_active=0, max_waiting=1)
