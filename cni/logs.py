"""Plugin logging that costs nothing until a log file is configured.

``import logging`` (with ``logging.handlers``) is several milliseconds of an executable's start-up, and by default
(no ``log_file_path``) a plugin logs nowhere. So the plugins log through :class:`Logger`, which drops records
until :func:`attach_file` has imported ``logging`` and opened the file; from then on each record goes to the
standard logger of the same name, under ``cni``, which writes only to that file.
"""

from __future__ import annotations

# The standard library's level numbers (logging.DEBUG ...), named here so reading a config needs no logging import.
DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50

_attached = 0  # how many file handlers are attached; records are dropped while it is 0


class Logger:
    """``logging.Logger``'s calling convention (``%``-style args, ``exc_info``) for the plugins' few log calls."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def _log(self, level: int, msg: str, args: tuple, exc_info: object) -> None:
        if _attached:
            import logging

            logging.getLogger(self.name).log(level, msg, *args, exc_info=exc_info)

    def debug(self, msg: str, *args: object, exc_info: object = None) -> None:
        self._log(DEBUG, msg, args, exc_info)

    def info(self, msg: str, *args: object, exc_info: object = None) -> None:
        self._log(INFO, msg, args, exc_info)

    def warning(self, msg: str, *args: object, exc_info: object = None) -> None:
        self._log(WARNING, msg, args, exc_info)

    def error(self, msg: str, *args: object, exc_info: object = None) -> None:
        self._log(ERROR, msg, args, exc_info)


def attach_file(*, path: str, level: int, max_size_mb: int, max_count: int, line_prefix: str) -> object | None:
    """Start writing records of ``level`` and above to ``path`` (size-rotated); return the handle for ``detach``.

    A log file that cannot be opened never fails the CNI call: ``None`` is returned and records stay dropped.
    ``line_prefix`` follows the time and level on each line (the plugin, its pid, the command and container).
    """
    global _attached
    import logging
    import logging.handlers
    import os

    # A failing log write (disk full, file removed) must not print logging's "--- Logging error ---" traceback.
    logging.raiseExceptions = False
    root = logging.getLogger("cni")
    root.propagate = False
    root.setLevel(level)
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max(max_size_mb, 0) * 1024 * 1024, backupCount=max(max_count, 0), encoding="utf-8"
        )
    except (OSError, ValueError):
        return None
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {line_prefix} %(message)s"))
    root.addHandler(handler)
    _attached += 1
    return handler


def detach(handler: object) -> None:
    """Stop writing to the file of ``attach_file``'s ``handler`` and close it."""
    global _attached
    import logging

    logging.getLogger("cni").removeHandler(handler)
    handler.close()
    _attached -= 1
