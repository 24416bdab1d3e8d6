"""Read one CNI invocation (CNI_* environment, CNI_ARGS and the stdin network config) into a frozen record.

Everything a runtime hands over is checked here, once, before any handler runs, so a handler can trust its
input and nothing calls the agent on garbage. The order and codes follow the reference Go ``skel`` package:
environment (4), stdin decoding (6), network name (7), version (1), then CNI_ARGS (4).
"""

from __future__ import annotations

import posix

from cni import addresses, errors, jsontext
from cni.record import Record
from cni.results import ResultFormatError, convert_result
from cni.versions import COMMAND_FLOORS, LATEST_VERSION, SUPPORTED_VERSIONS, parse_version

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Callable, Mapping

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# Which CNI_* variables each command needs (spec "Parameters"; same table as the reference skel).
REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}

# A prevResult for a big multi-NIC pod is a few KiB; anything near this is not a network config.
MAX_STDIN_BYTES = 16 * 1024 * 1024

_MAX_IFNAME_BYTES = 15

# Character classes of the reference library's and Kubernetes' name patterns, checked without ``re`` (whose
# import is a few milliseconds of start-up). ASCII only, as the patterns are.
_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALNUM = _DIGITS | _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_cni_name(text: str) -> bool:
    """``[a-zA-Z0-9][a-zA-Z0-9_.-]*``: network names and container IDs."""
    return bool(text) and text[0] in _ALNUM and all(c in _ALNUM or c in "_.-" for c in text)


def _is_dns1123_label(text: str) -> bool:
    """``[a-z0-9]([-a-z0-9]*[a-z0-9])?``: a namespace name."""
    return (bool(text) and text[0] != "-" and text[-1] != "-"
            and all(c in _LOWER or c in _DIGITS or c == "-" for c in text))


def _is_dns1123_subdomain(text: str) -> bool:
    """DNS-1123 labels joined by dots: a pod name."""
    return all(_is_dns1123_label(label) for label in text.split("."))


def _is_pod_uid(text: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9_.:-]*``."""
    return bool(text) and text[0] in _ALNUM and all(c in _ALNUM or c in "_.:-" for c in text)


class PodArgs(Record):
    """Pod identity from CNI_ARGS. Empty strings mean "not given"; handlers decide what they require."""

    __slots__ = ("namespace", "name", "uid", "infra_container_id", "ignore_unknown")
    _defaults = {"namespace": "", "name": "", "uid": "", "infra_container_id": "", "ignore_unknown": False}

    def require_identity(self) -> None:
        """Fail with code 4 unless namespace and name are present: the agent cannot act on an unnamed pod."""
        missing = [
            key for key, value in (("K8S_POD_NAMESPACE", self.namespace), ("K8S_POD_NAME", self.name)) if not value
        ]
        if missing:
            raise errors.CNIError(
                errors.INVALID_ENVIRONMENT,
                f"CNI_ARGS lacks {' and '.join(missing)}; the runtime must pass the pod's identity",
            )


class Invocation(Record):
    """One validated CNI call. ``config`` is the decoded stdin object; handlers read it and never change it."""

    __slots__ = ("command", "cni_version", "container_id", "netns", "ifname", "cni_path", "cni_args", "pod", "config")
    _defaults = {"container_id": "", "netns": "", "ifname": "", "cni_path": "", "cni_args": "", "pod": PodArgs(),
                 "config": {}}
    _not_compared = frozenset({"config"})

    @property
    def prev_result(self) -> object:
        """The raw ``prevResult`` of a chained call, or ``None``."""
        return self.config.get("prevResult")

    def validated_prev_result(self) -> dict | None:
        """The ``prevResult`` checked and put in this call's version, or ``None``; a malformed one is code 7."""
        if self.prev_result is None:
            return None
        try:
            return convert_result(self.prev_result, self.cni_version)
        except ResultFormatError as exc:
            raise errors.CNIError(errors.INVALID_NETWORK_CONFIG, f"invalid prevResult: {exc}") from exc

    def require_netns(self) -> None:
        """Code 3 (container unknown) when ``CNI_NETNS`` names nothing: the sandbox is gone or never existed.

        Checked by the shims before the agent is called, so an ADD for a dead sandbox allocates nothing.
        """
        if not path_exists(self.netns):
            raise errors.CNIError(
                errors.UNKNOWN_CONTAINER,
                f"network namespace {self.netns!r} does not exist",
                f"CNI_NETNS of container {self.container_id} names no file",
            )


def error_version(config_version: object) -> str:
    """The ``cniVersion`` to stamp on an error: the caller's if we speak it, else our newest."""
    return config_version if config_version in SUPPORTED_VERSIONS else LATEST_VERSION


def path_exists(path: str) -> bool:
    """`os.path.exists` without importing `os` (~1 ms of start-up); False for an empty path."""
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return bool(path)


def read_command(environ: Mapping[str, str]) -> str:
    """CNI_COMMAND, validated (code 4 when missing or unknown)."""
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise errors.CNIError(errors.INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}")
    return command


def read_invocation(environ: Mapping[str, str], read_stdin: Callable[[], bytes]) -> Invocation:
    """Build the ``Invocation`` for this process or raise ``CNIError``.

    VERSION reads stdin only to echo the request's ``cniVersion`` (the dispatcher never reads a terminal).
    """
    command = read_command(environ)
    missing = [name for name in REQUIRED_ENV[command] if not environ.get(name)]
    if missing:
        raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    if command == "VERSION":
        return Invocation(command=command, cni_version=version_request(read_stdin))
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    if "CNI_CONTAINERID" in REQUIRED_ENV[command]:
        validate_container_id(container_id)
    if "CNI_IFNAME" in REQUIRED_ENV[command]:
        validate_interface_name(ifname, errors.INVALID_ENVIRONMENT, "CNI_IFNAME")

    config = decode_config(read_stdin())
    try:
        validate_network_name(config.get("name"))
        cni_version = check_version(command, config)
        raw_args = environ.get("CNI_ARGS", "")
        return Invocation(
            command=command,
            cni_version=cni_version,
            container_id=container_id,
            netns=environ.get("CNI_NETNS", ""),
            ifname=ifname,
            cni_path=environ.get("CNI_PATH", ""),
            cni_args=raw_args,
            pod=parse_cni_args(raw_args),
            config=config,
        )
    except errors.CNIError as exc:
        exc.cni_version = error_version(config.get("cniVersion"))
        raise


def version_request(read_stdin: Callable[[], bytes]) -> str:
    """The ``cniVersion`` a VERSION answer carries: the request's when we speak it, else our newest.

    The spec's VERSION result echoes the ``cniVersion`` of the request config; a request without one (or with
    one we do not speak, or no config at all) gets the newest version, as the reference skel answers.
    """
    try:
        config = decode_config(read_stdin())
    except (errors.CNIError, OSError):
        return LATEST_VERSION
    return error_version(config.get("cniVersion"))


def decode_config(data: bytes) -> dict:
    """Decode stdin as a JSON object (code 5 when oversized, 6 when it is not a JSON object)."""
    if len(data) > MAX_STDIN_BYTES:
        raise errors.CNIError(errors.IO_FAILURE, f"network config on stdin is larger than {MAX_STDIN_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.CNIError(errors.DECODING_FAILURE, f"error decoding network config: not UTF-8 ({exc})") from exc
    try:
        config = jsontext.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise errors.CNIError(errors.DECODING_FAILURE, f"error decoding network config: {exc}") from exc
    if not isinstance(config, dict):
        raise errors.CNIError(
            errors.DECODING_FAILURE, f"error decoding network config: expected a JSON object, got {_json_kind(config)}"
        )
    return config


def validate_network_name(name: object) -> None:
    """The network ``name`` is required and limited to ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` (code 7)."""
    if name is None or name == "":
        raise errors.CNIError(errors.INVALID_NETWORK_CONFIG, "missing network name")
    if not isinstance(name, str) or not _is_cni_name(name):
        raise errors.CNIError(
            errors.INVALID_NETWORK_CONFIG, "invalid characters found in network name", _printable(name)
        )


def check_version(command: str, config: Mapping[str, object]) -> str:
    """Return the config's ``cniVersion`` if we speak it and it has ``command`` (code 1 otherwise).

    A config without ``cniVersion`` is a 0.1.0 config to the reference library, which we do not speak.
    """
    version = config.get("cniVersion", "0.1.0")
    if not isinstance(version, str):
        raise errors.CNIError(errors.DECODING_FAILURE, "cniVersion must be a string", _printable(version))
    if version not in SUPPORTED_VERSIONS:
        raise errors.CNIError(
            errors.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is {jsontext.dumps(version)}, plugin supports {jsontext.dumps(list(SUPPORTED_VERSIONS))}",
        )
    floor = COMMAND_FLOORS.get(command)
    if floor and parse_version(version) < parse_version(floor):
        raise errors.CNIError(
            errors.INCOMPATIBLE_VERSION,
            f"config version does not allow {command}",
            f"{command} needs cniVersion {floor} or later, config is {version}",
        )
    return version


def validate_container_id(container_id: str) -> None:
    """Container IDs are ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` (code 4), as in the reference library."""
    if not _is_cni_name(container_id):
        raise errors.CNIError(errors.INVALID_ENVIRONMENT, "invalid characters in containerID", _printable(container_id))


def validate_interface_name(ifname: str, code: int, what: str) -> None:
    """Linux interface names: 1..15 bytes, not ``.``/``..``, no ``/``, ``:`` or whitespace."""
    if not ifname:
        raise errors.CNIError(code, f"{what}: interface name is empty")
    if len(ifname.encode("utf-8", "surrogateescape")) > _MAX_IFNAME_BYTES:
        raise errors.CNIError(code, f"{what}: interface name is too long (max {_MAX_IFNAME_BYTES})", _printable(ifname))
    if ifname in (".", ".."):
        raise errors.CNIError(code, f"{what}: interface name is . or ..", ifname)
    if any(char in "/:" or char.isspace() or not char.isprintable() for char in ifname):
        raise errors.CNIError(
            code, f"{what}: interface name contains / or : or whitespace or a control character", _printable(ifname)
        )


def parse_cni_args(raw: str) -> PodArgs:
    """Parse ``CNI_ARGS`` (``K=V;K=V``) into ``PodArgs``; malformed input is code 4.

    Known keys: ``IgnoreUnknown``, ``K8S_POD_NAMESPACE``, ``K8S_POD_NAME``, ``K8S_POD_UID``,
    ``K8S_POD_INFRA_CONTAINER_ID`` and ``IP`` (parsed, then ignored, as Spiderpool does). Unknown keys are an
    error unless ``IgnoreUnknown`` is ``1``/``true``. Empty segments (a trailing ``;``) are skipped.

    >>> parse_cni_args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;FOO=bar").name
    'web-0'
    """
    values: dict[str, str] = {}
    unknown: list[str] = []
    for pair in raw.split(";"):
        if pair == "":
            continue
        key, sep, value = pair.partition("=")
        if not sep or "=" in value or not key:
            raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"CNI_ARGS: invalid pair {_printable(pair)}")
        if key not in _KNOWN_ARGS:
            unknown.append(key)
            continue
        if key in values and values[key] != value and (  # Multus adds IgnoreUnknown=true to a runtime's =1
                key != "IgnoreUnknown" or _parse_bool_arg(values[key]) != _parse_bool_arg(value)):
            raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"CNI_ARGS: {key} given twice with different values")
        values[key] = value
    for key, value in values.items():
        _KNOWN_ARGS[key](key, value)
    ignore_unknown = _parse_bool_arg(values.get("IgnoreUnknown", "false"))
    if unknown and not ignore_unknown:
        raise errors.CNIError(
            errors.INVALID_ENVIRONMENT,
            f"CNI_ARGS: unknown args {_printable(unknown)} (set IgnoreUnknown=1 to allow them)",
        )
    return PodArgs(
        namespace=values.get("K8S_POD_NAMESPACE", ""),
        name=values.get("K8S_POD_NAME", ""),
        uid=values.get("K8S_POD_UID", ""),
        infra_container_id=values.get("K8S_POD_INFRA_CONTAINER_ID", ""),
        ignore_unknown=ignore_unknown,
    )


def _parse_bool_arg(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"CNI_ARGS: IgnoreUnknown must be 1/true/0/false, not {value!r}")


def _check_bool(key: str, value: str) -> None:
    _parse_bool_arg(value)


def _check_pattern(matches: Callable[[str], bool], max_length: int, meaning: str) -> Callable[[str, str], None]:
    def check(key: str, value: str) -> None:
        if value and (len(value) > max_length or not matches(value)):
            raise errors.CNIError(errors.INVALID_ENVIRONMENT, f"CNI_ARGS: {key} is not {meaning}", _printable(value))

    return check


def _check_ip(key: str, value: str) -> None:
    # Spiderpool parses IP into a net.IP and then ignores it; a value that is not an address is still an error.
    if value:
        try:
            addresses.ip_version(value)
        except ValueError as exc:
            raise errors.CNIError(
                errors.INVALID_ENVIRONMENT, "CNI_ARGS: IP is not an address", _printable(value)
            ) from exc


_KNOWN_ARGS: dict[str, Callable[[str, str], None]] = {
    "IgnoreUnknown": _check_bool,
    "K8S_POD_NAMESPACE": _check_pattern(_is_dns1123_label, 63, "a Kubernetes namespace name"),
    "K8S_POD_NAME": _check_pattern(_is_dns1123_subdomain, 253, "a Kubernetes pod name"),
    "K8S_POD_UID": _check_pattern(_is_pod_uid, 128, "a pod UID"),
    "K8S_POD_INFRA_CONTAINER_ID": _check_pattern(_is_cni_name, 256, "a container ID"),
    "IP": _check_ip,
}


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return jsontext.dumps(value)
    return "a number"


def _printable(value: object) -> str:
    """A short, safe rendering of untrusted input for error messages."""
    if isinstance(value, str):
        text = value
    else:
        import json  # only on the error path (see cni/jsontext.py)

        text = json.dumps(value, default=repr)
    text = text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text
    return text if len(text) <= 200 else text[:200] + "..."
