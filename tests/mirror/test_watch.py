"""The resume-from-cursor watch loop (pure, with scripted list and watch answers): resume, bookmarks, 410 relist."""

import threading

import pytest

from spiderweb.k8s.client import KubeGone
from spiderweb.k8s.crd import SPIDER_IPPOOL
from spiderweb.k8s.watch import WatchEvent, WatchLoop, parse_watch_line


def _obj(name, rv):
    return {"metadata": {"name": name, "resourceVersion": str(rv)}}


class Script:
    """Scripted API answers: each watch call pops the next list of events (an exception is raised)."""

    def __init__(self, watches, list_result=([], "100")):
        self.stop = threading.Event()
        self.watches = list(watches)
        self.list_result = list_result
        self.watched_from: list[str] = []
        self.lists = 0

    def lister(self):
        self.lists += 1
        return self.list_result

    def stream(self, resource_version):
        self.watched_from.append(resource_version)
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        return self._events(step)

    def _events(self, events):
        yield from events
        if not self.watches:
            self.stop.set()  # script exhausted: the loop ends after this watch


def _loop(script, cursor):
    handled, relisted = [], []

    def save(rv):
        cursor["rv"] = rv

    loop = WatchLoop(client=None, resource=SPIDER_IPPOOL, load_cursor=lambda: cursor["rv"], save_cursor=save,
                     handle=lambda e: handled.append((e.type, e.name)), relist=lambda items: relisted.append(items),
                     stop=script.stop, lister=script.lister, stream_factory=script.stream)
    return loop, handled, relisted


def test_resumes_from_the_stored_cursor_without_listing():
    script = Script([[WatchEvent("ADDED", _obj("p1", 11)), WatchEvent("MODIFIED", _obj("p1", 12))]])
    cursor = {"rv": "10"}
    loop, handled, relisted = _loop(script, cursor)
    loop.run()
    assert script.watched_from == ["10"] and script.lists == 0 and relisted == []
    assert handled == [("ADDED", "p1"), ("MODIFIED", "p1")] and cursor["rv"] == "12"


def test_bookmarks_move_the_cursor_without_handling():
    script = Script([[WatchEvent("BOOKMARK", _obj("", 50))]])
    cursor = {"rv": "10"}
    loop, handled, _ = _loop(script, cursor)
    loop.run()
    assert handled == [] and cursor["rv"] == "50"


def test_410_gone_relists_then_watches_from_the_list_version():
    script = Script([KubeGone("too old resource version: 10 (90)"), [WatchEvent("DELETED", _obj("p2", 101))]],
                    list_result=([_obj("p1", 95)], "100"))
    cursor = {"rv": "10"}
    loop, handled, relisted = _loop(script, cursor)
    loop.run()
    assert script.watched_from == ["10", "100"], "relisted, then watched from the list's resourceVersion"
    assert relisted == [[_obj("p1", 95)]] and loop.relists == 1
    assert handled == [("DELETED", "p2")] and cursor["rv"] == "101"


def test_first_start_lists():
    script = Script([[]], list_result=([], "7"))
    cursor = {"rv": ""}
    loop, _, relisted = _loop(script, cursor)
    loop.run()
    assert script.lists == 1 and script.watched_from == ["7"] and relisted == [[]]


def test_error_events():
    with pytest.raises(KubeGone):
        parse_watch_line(b'{"type":"ERROR","object":{"kind":"Status","code":410,"message":"gone"}}')
    event = parse_watch_line('{"type":"MODIFIED","object":{"metadata":{"name":"x","resourceVersion":"3"}}}')
    assert (event.type, event.name, event.resource_version) == ("MODIFIED", "x", "3")


def _counting_loop(script, cursor, saves, handle):
    def save(rv):
        saves.append(rv)
        cursor["rv"] = rv

    return WatchLoop(client=None, resource=SPIDER_IPPOOL, load_cursor=lambda: cursor["rv"], save_cursor=save,
                     handle=handle, relist=lambda items: None, stop=script.stop, lister=script.lister,
                     stream_factory=script.stream, save_interval=3600)


def test_a_burst_of_events_saves_the_cursor_once_when_the_stream_ends():
    script = Script([[WatchEvent("MODIFIED", _obj(f"p{i}", 11 + i)) for i in range(50)]])
    cursor, saves, handled = {"rv": "10"}, [], []
    _counting_loop(script, cursor, saves, handled.append).run()
    assert len(handled) == 50 and saves == ["60"]


def test_a_failed_handler_leaves_the_cursor_at_the_last_event_handled():
    def handle(event):
        if event.name == "p3":
            raise RuntimeError("database down")

    script = Script([[WatchEvent("MODIFIED", _obj(f"p{i}", 11 + i)) for i in range(5)], []])
    cursor, saves = {"rv": "10"}, []
    loop = _counting_loop(script, cursor, saves, handle)
    loop.stop.wait = lambda seconds: None  # no back-off wait in a unit test
    loop.run()
    assert saves == ["13"], "p0..p2 handled (13), p3 failed"
    assert script.watched_from == ["10", "13"], "the next watch replays from the failed event on"
