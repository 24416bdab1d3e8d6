"""The CNI entry point shared by all three executables: read the call, run one handler, print, exit.

A runtime reads a plugin's stdout as JSON and its exit code as success or failure, and nothing else. So this
is the one place that turns *any* outcome into exactly one JSON document on stdout: a result (or nothing) with
exit code 0, or a CNI error object with exit code 1. No exception escapes, so no traceback ever reaches the
runtime; the traceback goes to the plugin's log file when one is configured.
"""

from __future__ import annotations

import posix
import sys

from cni import errors, jsontext, logs
from cni.config_values import LogSettings
from cni.invocation import Invocation, error_version, read_invocation
from cni.results import ResultFormatError
from cni.versions import LATEST_VERSION, SUPPORTED_VERSIONS

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Callable, Mapping

    Handler = Callable[[Invocation], Mapping[str, object] | None]
    LogSettingsReader = Callable[[Mapping[str, object]], LogSettings]

log = logs.Logger("cni")


def main(
    handlers: Mapping[str, Handler],
    *,
    plugin: str,
    log_settings: LogSettingsReader | None = None,
    environ: Mapping[str, str] | None = None,
    stdin: object = None,
    stdout: object = None,
) -> int:
    """Run the CNI call described by ``environ`` and ``stdin``; return the process exit code (0 or 1).

    ``handlers`` maps ``CNI_COMMAND`` values to ``cmd_*`` functions that return the object to print (or
    ``None``). ``log_settings`` reads the plugin's log keys from the config; it runs after the config was
    decoded, so a bad log key is a config error like any other. ``environ``/``stdin``/``stdout`` (binary
    streams) default to the process's own and exist so tests can call this in-process.
    """
    environ = process_environ() if environ is None else environ
    stdin = _binary(sys.stdin) if stdin is None else stdin
    stdout = _binary(sys.stdout) if stdout is None else stdout
    version = LATEST_VERSION
    file_handler = None
    try:
        try:
            invocation = read_invocation(environ, lambda: _read_all(stdin))
            version = invocation.cni_version
            if log_settings is not None and invocation.command != "VERSION":
                file_handler = _attach_file_log(log_settings(invocation.config), plugin, invocation)
            log.info(
                "%s %s containerID=%s ifName=%s netns=%s args=%s",
                plugin,
                invocation.command,
                invocation.container_id,
                invocation.ifname,
                invocation.netns,
                invocation.cni_args,
            )
            handler = handlers.get(invocation.command)
            if handler is None:
                raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"{plugin} does not implement {invocation.command}")
            output = handler(invocation)
            if output is not None:
                _write_json(stdout, output)
                log.debug("%s %s printed %s", plugin, invocation.command, jsontext.dumps(output))
            log.info("%s %s succeeded", plugin, invocation.command)
            return 0
        except BaseException as exc:  # noqa: BLE001 - the CNI contract: every failure becomes an error object
            _report_failure(exc, plugin, environ, stdout, version)
            return 1
    finally:
        if file_handler is not None:
            logs.detach(file_handler)


def process_environ() -> dict[str, str]:
    """The process's environment as `os.environ` decodes it, without importing `os` (~1 ms of start-up)."""
    encoding = sys.getfilesystemencoding()
    return {key.decode(encoding, "surrogateescape"): value.decode(encoding, "surrogateescape")
            for key, value in posix.environ.items()}


def _report_failure(exc: BaseException, plugin: str, environ: Mapping[str, str], stdout: object, version: str) -> None:
    """Log the failure and print its CNI error object; nothing in here may raise."""
    try:
        error = _as_cni_error(exc, plugin)
    except BaseException:  # noqa: BLE001 - e.g. an exception whose __str__ fails
        error = errors.CNIError(errors.INTERNAL, f"{plugin}: unexpected error")
    try:
        if not environ.get("CNI_COMMAND"):
            _about(plugin)
        if isinstance(exc, _EXPECTED_FAILURES):
            log.error("%s failed: code %s: %s (%s)", plugin, error.code, error.msg, error.details)
        else:
            log.error("%s failed: code %s: %s", plugin, error.code, error.msg, exc_info=exc)
    except BaseException:  # noqa: BLE001 - logging is best effort
        pass
    try:
        _write_json(stdout, error.to_dict(error_version(error.cni_version or version)))
    except BaseException:  # noqa: BLE001 - stdout is gone; the exit code still tells the runtime
        pass


# Failures with a known meaning are logged as one line; anything else gets its traceback in the log file.
_EXPECTED_FAILURES = (
    errors.CNIError,
    errors.AgentUnreachable,
    errors.AgentError,
    errors.AgentBadResponse,
    ResultFormatError,
)


def _as_cni_error(exc: BaseException, plugin: str) -> errors.CNIError:
    """Map any exception to the CNI error the runtime sees (agent failures through ``cni.errors``)."""
    if isinstance(exc, errors.CNIError):
        return exc
    if isinstance(exc, errors.AgentUnreachable):
        return errors.cni_error_from_unreachable(exc)
    if isinstance(exc, errors.AgentError):
        return errors.cni_error_from_agent_error(exc)
    if isinstance(exc, errors.AgentBadResponse):
        return errors.CNIError(errors.AGENT_BAD_RESPONSE, f"spiderpool-agent answered badly: {exc}")
    if isinstance(exc, ResultFormatError):
        return errors.CNIError(errors.AGENT_BAD_RESPONSE, f"spiderpool-agent returned a bad result: {exc}")
    if isinstance(exc, OSError):
        return errors.CNIError(errors.IO_FAILURE, f"{plugin}: I/O error: {exc}")
    if isinstance(exc, KeyboardInterrupt):
        return errors.CNIError(errors.INTERNAL, f"{plugin} was interrupted")
    return errors.CNIError(errors.INTERNAL, f"{plugin}: unexpected error: {type(exc).__name__}: {exc}")


def _read_all(stream: object) -> bytes:
    """All of stdin; nothing from a terminal (a person running ``CNI_COMMAND=VERSION spiderpool`` by hand)."""
    if stream is None or _is_terminal(stream):
        return b""
    data = stream.read()
    return data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)


def _is_terminal(stream: object) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _binary(stream: object) -> object:
    """The byte stream under ``sys.stdin``/``sys.stdout``, or ``None`` when the descriptor is closed."""
    return getattr(stream, "buffer", stream)


def _write_json(stream: object, value: object) -> None:
    """ASCII-only JSON, so the runtime's decoding never depends on this process's locale."""
    data = (jsontext.dumps(value, indent=4) + "\n").encode("ascii")
    if stream is None:
        raise OSError("stdout is closed")
    stream.write(data)
    stream.flush()


def _about(plugin: str) -> None:
    try:
        sys.stderr.write(
            f"Spiderweb CNI plugin {plugin}\nCNI protocol versions supported: {', '.join(SUPPORTED_VERSIONS)}\n"
        )
    except BaseException:  # noqa: BLE001 - stderr is optional
        pass


def _attach_file_log(settings: LogSettings, plugin: str, invocation: Invocation) -> object | None:
    """Log to ``settings.path`` when set. A log file that cannot be opened never fails the CNI call."""
    if not settings.path:
        return None
    return logs.attach_file(
        path=settings.path, level=settings.level, max_size_mb=settings.max_size_mb, max_count=settings.max_count,
        line_prefix=f"{plugin}[%(process)d] {invocation.command} {invocation.container_id[:12]}",
    )
