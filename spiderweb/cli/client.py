"""The CLI's HTTP client for the portal's REST API (standard library only), and the CLI's errors and exit codes.

Every failure becomes a :class:`CliError` carrying the exit code a script can rely on (see ``EXIT_*``) and one
line that says what to do.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FINDINGS = 1  # check found problems; explain: the pod would get no address
EXIT_USAGE = 2  # bad arguments or input (also a 400 from the portal)
EXIT_NOT_FOUND = 3  # no such pool, subnet, tenant, pod, or the address is not allocated
EXIT_AUTH = 4  # no token, a token the portal refuses (401), or not allowed (403: staff only)
EXIT_CONFLICT = 5  # the portal refused the change (409), e.g. the address is held by another pod UID
EXIT_UNAVAILABLE = 6  # the portal is unreachable, timed out, or answered 5xx/503

STATUS_EXIT = {400: EXIT_USAGE, 401: EXIT_AUTH, 403: EXIT_AUTH, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT}


class CliError(Exception):
    """A failure with its exit code; ``str()`` is the message printed on stderr."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class PortalClient:
    """``GET``/``POST`` JSON against ``{url}/api/v1/`` with ``Authorization: Token <token>``."""

    url: str
    token: str
    timeout: float = 30.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"portal URL {self.url!r} is not an http(s) URL (use --portal or SPIDERWEB_PORTAL_URL)",
                           EXIT_USAGE)
        if not self.token:
            raise CliError("no API token: pass --token, or set SPIDERWEB_TOKEN or SPIDERWEB_TOKEN_FILE (get one with "
                           "`curl -u <user> -X POST <portal>/api/v1/auth/token/`)", EXIT_AUTH)
        self.url = self.url.rstrip("/")
        self._context = ssl.create_default_context(cafile=self.ca_file) if parts.scheme == "https" else None

    def get(self, path: str, **query) -> dict | list:
        query = {k: v for k, v in query.items() if v is not None}
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return self._request("GET", f"{path}{suffix}")

    def post(self, path: str, body: dict | None = None) -> dict:
        return self._request("POST", path, body if body is not None else {})

    def list(self, path: str, **query) -> list[dict]:
        """Every item of a paginated list (follows ``next``)."""
        page = self.get(path, limit=500, **query)
        items = list(page.get("results", []))
        while page.get("next"):
            page = self._request("GET", page["next"])
            items += page.get("results", [])
        return items

    def _request(self, method: str, path: str, body: dict | None = None):
        url = path if path.startswith(("http://", "https://")) else f"{self.url}/api/v1/{path.lstrip('/')}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Token {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, method, url) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliError(f"cannot reach the portal at {self.url}: {reason}", EXIT_UNAVAILABLE) from None
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise CliError(f"the portal at {self.url} answered {method} {url} with something that is not JSON "
                           f"(is --portal the Spiderweb portal?)", EXIT_UNAVAILABLE) from None


def _http_error(exc: urllib.error.HTTPError, method: str, url: str) -> CliError:
    try:
        body = json.loads(exc.read() or b"{}")
    except ValueError:
        body = {}
    message = body.get("message") or body.get("detail") if isinstance(body, dict) else None
    if not message and isinstance(body, dict) and body:
        message = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in body.items())
    message = message or exc.reason or "no details"
    if exc.code == 401:
        return CliError(f"the portal refused the token: {message}", EXIT_AUTH)
    if exc.code == 403:
        return CliError(f"not allowed: {message} (this needs a staff user's token)", EXIT_AUTH)
    code = STATUS_EXIT.get(exc.code, EXIT_UNAVAILABLE)
    return CliError(f"{method} {urllib.parse.urlsplit(url).path} failed ({exc.code}): {message}", code)
