"""HTTP client of the CLI: bearer token, problem+json turned into one-line errors.

Credentials are kept in ``~/.tre/credentials.json`` (mode 0600) by `tre login`, or taken
from ``TRE_TOKEN``; the API address from ``TRE_API_URL`` or the saved login.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tre.config import get_settings


class CliError(Exception):
    """Printed as one line by the CLI entry point, exit status 1."""


class TokenRefused(CliError):
    """The API refused the token (expired, revoked, unknown user)."""


def credentials_path() -> Path:
    return get_settings().home / "credentials.json"


def save_credentials(api_url: str, token: str, issuer: str | None = None) -> None:
    """Keep the login (0600); ``issuer`` records that the token came from an OpenID provider,
    so an expiry can say how to sign in again."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:  # ELOOP: a symlink where the credentials file should be
        raise CliError(f"cannot save the token to {path}: {exc.strerror}") from exc
    # The mode above applies only to a new file: an existing one keeps its permissions.
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"api_url": api_url, "token": token, **({"issuer": issuer} if issuer else {})}, fh)


def load_credentials() -> tuple[str, str | None]:
    settings = get_settings()
    api_url, token = settings.api_url, os.environ.get("TRE_TOKEN")
    path = credentials_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CliError(f"cannot read the saved login {path} ({exc}); run `tre login` again") from exc
        if not isinstance(saved, dict) or not all(
            isinstance(saved.get(k, ""), str) for k in ("api_url", "token")
        ):
            raise CliError(f"the saved login {path} is not a tre credentials file; run `tre login` again")
        if "TRE_API_URL" not in os.environ:
            api_url = saved.get("api_url", api_url)
        token = token or saved.get("token")
    return api_url, token


def _one_line(text: object, limit: int = 300) -> str:
    """Server text made fit for a one-line error: control characters shown, whitespace folded."""
    from tre.cli.output import terminal_safe

    return " ".join(terminal_safe(str(text)).split())[:limit]


NOT_THE_API = "is --api-url / TRE_API_URL the tre API, not a proxy or a web page?"


def problem_message(resp: httpx.Response) -> str:
    """One line from an error answer: the problem document's title and detail when it is one;
    otherwise the status, and what kind of answer came instead (an HTML error page of a proxy)."""
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "text/html":
        return f"HTTP {resp.status_code} {resp.reason_phrase} with an HTML page; {NOT_THE_API}"
    try:
        body = resp.json()
    except ValueError:
        text = _one_line(resp.text, 200) if ctype.startswith("text/") else ""
        return f"HTTP {resp.status_code} {resp.reason_phrase}" + (f": {text}" if text else "")
    if isinstance(body, dict):
        title, detail = body.get("title"), body.get("detail")
        if title or detail:
            return _one_line(f"{title or 'Error'}: {detail}" if detail else title)
    return f"HTTP {resp.status_code}: {_one_line(body, 200)}"


def checked_api_url(url: str) -> str:
    """The API address, or a one-line error naming where it came from."""
    try:
        parsed = urlsplit(url.strip())
    except ValueError as exc:  # an unclosed [IPv6 address
        raise CliError(f"the API address {url!r} is malformed ({exc}); fix --api-url or TRE_API_URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CliError(
            f"the API address {url!r} is not an http(s) URL such as http://127.0.0.1:8765; "
            "fix --api-url or TRE_API_URL"
        )
    try:
        parsed.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise CliError(f"the API address {url!r} has a bad port; fix --api-url or TRE_API_URL") from exc
    return url.strip().rstrip("/")


EXPIRED_HINT = (
    "get a new token (an admin runs `tre admin token --user USER --role ROLE`) and run "
    "`tre login`; where the API uses an OpenID provider, run `tre login --oidc`"
)


EMBEDDED_HINT = (
    "get a new token (an admin runs `tre admin token --user USER --role ROLE`) and run `tre login`"
)


def expired_hint(sign_in: Callable[[], tuple[str, str] | None] = lambda: None) -> str:
    """How to get a new token: sign in at the provider again when the saved one came from it;
    otherwise the way the API itself signs people in (``sign_in``: its mode and issuer), so
    an embedded token refused by an API that moved to a provider is told to sign in there
    (newcomer round 23: the line offered `tre admin token` first, which the API would refuse
    again); both ways only when the API cannot say."""
    from tre.cli.output import terminal_safe

    issuer = None
    if not os.environ.get("TRE_TOKEN"):
        try:
            issuer = json.loads(credentials_path().read_text()).get("issuer")
        except (OSError, ValueError, AttributeError):
            issuer = None
    if isinstance(issuer, str) and issuer:
        return f"sign in again at {terminal_safe(issuer)} with `tre login --oidc`"
    mode = sign_in()
    if mode is not None and mode[0] == "oidc" and mode[1]:
        return f"this API signs people in at {terminal_safe(mode[1])}: run `tre login --oidc`"
    if mode is not None and mode[0] == "embedded":
        return EMBEDDED_HINT
    return EXPIRED_HINT


class ApiClient:
    def __init__(self, api_url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        saved_url, saved_token = load_credentials()
        self.api_url = checked_api_url(api_url or saved_url)
        self.token = token or saved_token
        if not self.token:
            raise CliError("not logged in: run `tre login` (it asks for your token) or set TRE_TOKEN")
        # Asked for uncompressed answers (tre never compresses): a compressed one is refused
        # before a byte is decoded, so no server can inflate a small gzip/zstd/brotli "bomb"
        # into gigabytes of memory or disk on the user's machine.
        self._http = httpx.Client(
            base_url=self.api_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {self.token}", "Accept-Encoding": "identity"},
        )

    def _refuse_encoded(self, resp: httpx.Response, path: str) -> None:
        encoding = resp.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise CliError(
                f"the answer from {self.api_url}{path} is compressed ({_one_line(encoding, 40)}) "
                "although the client asked for none: refused unread"
            )

    def _refuse_unexpected(self, resp: httpx.Response, path: str, expect: tuple[str, ...]) -> None:
        """Refuse, unread, an answer the tre API never gives to this call.

        The API never redirects a CLI call: a 3xx comes from something in front of it (a
        proxy's sign-in page, a load balancer moving to https), and taking its empty body as
        the answer printed nothing as a job's log, or crashed on a missing record. A call
        whose answer is not JSON (a log, an export, a file) names the content types it takes
        (``expect``): an HTML page with status 200 is not a job log or an audit bundle.
        """
        where = f"{self.api_url}{path.split('?', 1)[0]}"
        if 300 <= resp.status_code < 400:
            location = _one_line(resp.headers.get("location", ""), 120)
            moved = f" to {location}" if location else ""
            raise CliError(
                f"HTTP {resp.status_code} {resp.reason_phrase} from {where}: a redirect{moved}, which "
                f"the tre API never sends; {NOT_THE_API}"
            )
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if expect and resp.status_code < 400 and ctype not in expect:
            raise CliError(
                f"the answer from {where} is {_one_line(ctype, 60) or 'of no stated type'}, not "
                f"{' or '.join(expect)}; {NOT_THE_API}"
            )

    def request(self, method: str, path: str, expect: tuple[str, ...] = (), **kw: Any) -> httpx.Response:
        """One call, its answer read whole; an error answer raised as one line. ``expect``:
        the content types a non-JSON answer must have (the JSON helpers check JSON)."""
        try:
            resp = self._http.send(self._http.build_request(method, path, **kw), stream=True)
            try:
                self._refuse_encoded(resp, path)
                self._refuse_unexpected(resp, path, expect)
                resp.read()
            finally:
                resp.close()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "request to", path) from exc
        if resp.status_code >= 400:
            raise self._refusal(resp)
        return resp

    def text(self, path: str, **kw: Any) -> str:
        """A plain-text answer (a job's log), refused when it is anything else."""
        return self.request("GET", path, expect=("text/plain",), **kw).content.decode("utf-8", "replace")

    def _transport_error(self, exc: httpx.HTTPError, what: str, path: str) -> CliError:
        """One line for a request that got no answer; the same words for every kind of call
        (a download used to say "download from ... failed: [Errno 111]" where a request said
        that nothing listens at the address)."""
        if isinstance(exc, httpx.ConnectError):
            return CliError(
                f"cannot reach the tre API at {self.api_url} ({exc}); is `tre serve` running, "
                "and is the address right (--api-url or TRE_API_URL)?"
            )
        # reset, timeout, protocol error, bad TLS
        return CliError(f"{what} {self.api_url}{path} failed: {_one_line(exc) or type(exc).__name__}")

    def _refusal(self, resp: httpx.Response) -> CliError:
        """An error answer (its body read) as one line; a refused token says how to renew it."""
        if resp.status_code == 401:
            return TokenRefused(f"{problem_message(resp)}; {expired_hint(self._sign_in_mode)}")
        return CliError(problem_message(resp))

    def _sign_in_mode(self) -> tuple[str, str] | None:
        """How the API signs people in (its public ``/auth/config``: mode and issuer), or None
        when it does not say."""
        try:
            body = self._http.get("/api/v1/auth/config", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(body, dict) or body.get("mode") not in ("oidc", "embedded"):
            return None
        return str(body["mode"]), str(body.get("issuer") or "")

    def _json(self, resp: httpx.Response) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except (ValueError, RecursionError):  # RecursionError: nested beyond the parser's depth
            ctype = resp.headers.get("content-type", "?").split(";")[0]
            raise CliError(
                f"the answer from {self.api_url}{resp.request.url.path} is not JSON ({ctype}); {NOT_THE_API}"
            ) from None

    def get(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("GET", path, **kw))

    def get_page(self, path: str, **kw: Any) -> tuple[Any, httpx.Headers]:
        """A JSON answer and its headers (a paged listing's ``X-Next-Offset``, ``X-Total-Count``)."""
        resp = self.request("GET", path, **kw)
        return self._json(resp), resp.headers

    def post(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("POST", path, **kw))

    def put(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("PUT", path, **kw))

    def patch(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("PATCH", path, **kw))

    def delete(self, path: str, **kw: Any) -> Any:
        return self._json(self.request("DELETE", path, **kw))

    def stream(self, path: str, expect: tuple[str, ...] = (), **kw: Any) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", path, **kw) as resp:
                self._refuse_encoded(resp, path)
                self._refuse_unexpected(resp, path, expect)
                if resp.status_code >= 400:
                    resp.read()
                    raise self._refusal(resp)
                yield from resp.iter_bytes()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "download from", path) from exc

    def download(
        self,
        path: str,
        dest: Path,
        progress: bool = True,
        headers_out: dict[str, str] | None = None,
        expect: tuple[str, ...] = (),
        sha256: str | None = None,
        sha256_header: str | None = None,
    ) -> int:
        """Stream to ``dest`` (written to a temp name first, so a failed download leaves nothing
        and a file already at ``dest`` stays as it was).

        ``headers_out``, if given, receives the response headers. ``expect``: the content
        types the answer must have. ``sha256`` (or the answer's header ``sha256_header``) is
        the hash the bytes must have: checked before ``dest`` is replaced, so a wrong answer
        never takes the place of a good file.
        """
        from rich import get_console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create the folder {dest.parent}: {exc.strerror or exc}") from exc
        tmp = dest.with_name(dest.name + ".part")
        written = 0
        try:
            with self._http.stream("GET", path) as resp:
                self._refuse_encoded(resp, path)
                self._refuse_unexpected(resp, path, expect)
                if resp.status_code >= 400:
                    resp.read()
                    raise self._refusal(resp)
                if headers_out is not None:
                    headers_out.update({k.lower(): v for k, v in resp.headers.items()})
                if sha256_header is not None:
                    sha256 = resp.headers.get(sha256_header)
                    if not sha256:
                        raise CliError(
                            f"the answer from {self.api_url}{path} has no {sha256_header}; {NOT_THE_API}"
                        )
                digest = hashlib.sha256()
                total = int(resp.headers.get("content-length", 0)) or None
                with Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    # Piped, no bar: a transient bar drawn into a pipe left an empty line
                    # in the output once it had refreshed (`tre audit export X | ...`).
                    disable=not progress or not get_console().is_terminal,
                    transient=True,
                ) as bar:
                    task = bar.add_task(dest.name, total=total)
                    with tmp.open("wb") as fh:
                        for chunk in resp.iter_bytes():
                            fh.write(chunk)
                            digest.update(chunk)
                            written += len(chunk)
                            bar.update(task, advance=len(chunk))
            if sha256 is not None and digest.hexdigest() != sha256.lower():
                raise CliError(
                    f"{dest.name}: the downloaded bytes hash to {digest.hexdigest()}, not "
                    f"{_one_line(sha256, 80)}; nothing was written"
                )
            tmp.replace(dest)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "download from", path) from exc
        except OSError as exc:
            raise CliError(f"cannot write {dest}: {exc.strerror or exc}") from exc
        finally:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        return written
