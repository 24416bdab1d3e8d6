"""Run a function inside another network namespace without moving the agent.

Every job that opens a socket or a file in a pod or host namespace needs the *calling task* to sit in it: netlink
and raw ``AF_PACKET`` sockets (a socket belongs to the namespace of the task that created it, for life), reading and
writing ``/proc/sys/net/...`` (resolved against the namespace of the task that opens the file), spawning
``iptables`` (a child inherits its parent thread's namespace).

``setns(2)`` with ``CLONE_NEWNET`` changes the namespace of the calling *thread* only, so the agent's other
threads (its HTTP server, other pods' requests) never notice. We therefore run the function in a short-lived
thread that enters the namespace first and dies afterwards, instead of forking (a fork would cost a process
per call and would have to send sockets back over a unix socket). A socket created in that thread stays in the
pod namespace after the thread is gone and can be used from any thread.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

CLONE_NEWNET = 0x40000000

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def _enter_netns(netns_path: str) -> None:
    """Move the calling thread into the namespace at ``netns_path`` (a bind mount or ``/proc/<pid>/ns/net``)."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns_path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in_netns(netns_path: str | None, func: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Call ``func(*args, **kwargs)`` in a fresh thread that first entered ``netns_path``; return its result.

    ``netns_path=None`` means the caller's own namespace: the function is called directly. Exceptions raised by
    ``func`` (or by entering the namespace, e.g. ``FileNotFoundError`` when the netns is gone) are re-raised in
    the caller.
    """
    if netns_path is None:
        return func(*args, **kwargs)

    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            _enter_netns(netns_path)
            outcome["value"] = func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns:{os.path.basename(netns_path)}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
