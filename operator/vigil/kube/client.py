"""A small asynchronous Kubernetes API client for the operator's own reads and writes.

Kopf watches and handles; this adapter does the rest (list a ModelDeployment's
children, server-side apply them, delete them, patch status). It speaks plain
JSON over aiohttp so that objects stay dicts, exactly as the API server sends
them: the pure core compares and builds dicts, never client models.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from vigil.kube.cache import ObjectCache, resource_version

FIELD_MANAGER = "vigil-operator"

# kind -> (API path prefix, plural) for the kinds the operator touches.
_RESOURCES: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "ModelDeployment": ("/apis/vigil.dev/v1alpha1", "modeldeployments"),
}


#: A JSON surrogate-pair escape ("\\ud83d\\ude00") preceded by an even number of backslashes.
_SURROGATE_PAIR = re.compile(
    r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.I
)


def yaml_safe_json(text: str) -> str:
    """JSON that the API server's YAML parser also reads (apply patches are parsed as YAML).

    json.dumps writes a character outside the Basic Multilingual Plane (an emoji in
    a command line or an env value) as a UTF-16 surrogate pair, which is valid JSON
    but not valid YAML: the server answers 400 "found invalid Unicode character
    escape code" and the Deployment is never written. YAML's own 8-digit escape
    (\\U0001F600) means the same character in both readings that matter here.
    """

    def join(match: re.Match[str]) -> str:
        high, low = int(match.group(2), 16), int(match.group(3), 16)
        code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        return f"{match.group(1)}\\U{code:08X}"

    return _SURROGATE_PAIR.sub(join, text)


#: The longest Retry-After honoured: a misconfigured server cannot park the operator.
MAX_RETRY_AFTER_SECONDS = 300.0


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's seconds (at most MAX_RETRY_AFTER_SECONDS); None when absent
    or unreadable (the API server sends seconds, never the HTTP-date form)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def _status_message(text: str) -> str:
    """An error answer's words: a Status object's message, or the text as it came."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text
    return str(answer.get("message", text)) if isinstance(answer, dict) else text


def _not_json(method: str, path: str, error: ValueError) -> KubeError:
    """An answer that is no JSON text (a proxy's page in the API server's place): retryable."""
    return KubeError(0, f"{method} {path}: {error!r}")


class KubeError(RuntimeError):
    """An API call failed; `status` is the HTTP status (0 for a connection failure).

    `retry_after`: the seconds the server asked to wait before trying again (its
    Retry-After header: a 429 from API Priority and Fairness, some 5xx), or None.
    """

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """5xx, throttling, conflicts and network failures may pass on retry; other 4xx will not."""
        return self.status == 0 or self.status >= 500 or self.status in (409, 429)


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate (token or client certificate)."""

    server: str
    ca_path: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    token: str | None = None
    scheme: str | None = None
    certificate_path: str | None = None
    private_key_path: str | None = None


# The measurements behind these limits: docs/design/api-traffic.md.
#: Longer than the API server's own (60 s): it answers 504 itself, and a client that gave
#: up earlier would retry work still running server-side.
DEFAULT_TIMEOUT_SECONDS = 75.0
#: The API server allocates ClusterIPs one at a time: more Service writes in flight only
#: queue there, holding the operator's share of its fair queuing.
MAX_CONCURRENT_SERVICE_WRITES = 8
#: Other writes (Deployments, ConfigMaps, status), apart from the Services' so that slow
#: Service creations never hold them up.
MAX_CONCURRENT_WRITES = 16
#: Each TLS connection holds a 256 KiB read buffer (aiohttp's default would allow 100).
MAX_CONNECTIONS = 32


class KubeClient:
    """The operator's API access: get, list, server-side apply, delete, patch status.

    With a `cache` (vigil.kube.cache), reads of watched objects are answered
    from it and every write's answer is recorded in it.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        cache: ObjectCache | None = None,
    ) -> None:
        self._connection = connection
        self.cache = cache
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        #: The session of the current credentials; None until a request needs one.
        self._session: aiohttp.ClientSession | None = None
        #: Requests in flight by session: the current one's, and those of sessions replaced
        #: by a login while busy (the last of their requests closes them).
        self._in_flight: dict[aiohttp.ClientSession, int] = {}
        self._closed = False
        self._write_slots = asyncio.Semaphore(MAX_CONCURRENT_WRITES)
        self._service_write_slots = asyncio.Semaphore(MAX_CONCURRENT_SERVICE_WRITES)

    def _ssl(self) -> ssl.SSLContext | bool:
        connection = self._connection
        if not connection.server.startswith("https"):
            return False
        if connection.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(
                cafile=connection.ca_path, cadata=connection.ca_data
            )
        if connection.certificate_path:
            context.load_cert_chain(connection.certificate_path, connection.private_key_path)
        return context

    def _open(self) -> aiohttp.ClientSession:
        """The current session, counted as in use until `_release`.

        Not a coroutine: nothing runs between finding no session and storing the new
        one, so concurrent requests never open two.
        """
        if self._closed:
            raise KubeError(0, "the API client is closed (the operator is stopping)")
        if self._session is None:
            headers = {"Accept": "application/json", "User-Agent": FIELD_MANAGER}
            if self._connection.token:
                headers["Authorization"] = (
                    f"{self._connection.scheme or 'Bearer'} {self._connection.token}"
                )
            self._session = aiohttp.ClientSession(
                base_url=None,
                headers=headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=MAX_CONNECTIONS),
            )
        self._in_flight[self._session] = self._in_flight.get(self._session, 0) + 1
        return self._session

    async def _release(self, session: aiohttp.ClientSession) -> None:
        """A request on `session` is over: the last one on a replaced session closes it."""
        users = self._in_flight.get(session, 0) - 1
        if users < 0:  # close() closed it already
            return
        if users:
            self._in_flight[session] = users
            return
        del self._in_flight[session]
        if session is not self._session:  # replaced by a login: nothing will use it again
            await session.close()

    async def reconnect(self, connection: Connection) -> None:
        """New credentials (a login again): later requests use them, on a new session.

        The client stays the same object, so a caller holding it (a reconcile under
        way) goes on with the new credentials. Requests in flight finish on the
        previous session, which the last of them closes: closing it under them would
        fail them (or cancel those waiting for a connection).
        """
        self._connection = connection
        # Detached before any await: a request meanwhile opens the new session.
        session, self._session = self._session, None
        if session is not None and session not in self._in_flight:
            await session.close()

    async def close(self) -> None:
        """For good, requests in flight too; later ones fail instead of opening a session."""
        self._closed = True
        sessions = set(self._in_flight)
        if self._session is not None:
            sessions.add(self._session)
        self._session = None
        self._in_flight.clear()  # so that no `_release` closes one of them again
        await asyncio.gather(*(session.close() for session in sessions))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """One API call; None for 404 on reads, KubeError for every other failure."""
        if method == "GET":
            return await self._send(method, path, query, body, content_type)
        slots = self._service_write_slots if "/services/" in path else self._write_slots
        async with slots:  # the wait for a slot is outside the request's timeout
            return await self._send(method, path, query, body, content_type)

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
    ) -> dict[str, Any] | None:
        data = None if body is None else json.dumps(body)
        if data is not None and content_type == "application/apply-patch+yaml":
            data = yaml_safe_json(data)
        headers = {"Content-Type": content_type} if data is not None else {}
        # The URL with the session: both of the same credentials, should a login change them.
        url = self._connection.server.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        session = self._open()
        try:
            async with session.request(method, url, data=data, headers=headers) as response:
                try:
                    text = await response.text()
                except ValueError as error:  # undecodable: a proxy's page in its place, say
                    raise _not_json(method, path, error) from error
                if response.status == 404 and method == "GET":
                    return None
                if response.status >= 400:
                    raise KubeError(
                        response.status,
                        f"{method} {path}: {_status_message(text)}",
                        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                    )
                try:
                    return json.loads(text) if text else {}
                except ValueError as error:
                    raise _not_json(method, path, error) from error
        except (aiohttp.ClientError, TimeoutError) as error:
            raise KubeError(0, f"{method} {path}: {error!r}") from error
        finally:
            await self._release(session)

    @staticmethod
    def _path(kind: str, namespace: str, name: str | None = None) -> str:
        """The collection's path (``name`` None), or one object's (an empty name is none)."""
        prefix, plural = _RESOURCES[kind]
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        if name is None:
            return path
        if not name:
            raise KubeError(400, f"{kind} in {namespace}: an empty name names no object")
        return f"{path}/{name}"

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        if self.cache is not None and kind in self.cache.kinds:
            cached = self.cache.get(kind, namespace, name)  # a copy of its own
            if cached is not None:
                return cached
        return await self._request("GET", self._path(kind, namespace, name))

    async def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace matching a label selector."""
        if self.cache is not None and self.cache.serves_list(kind, namespace, label_selector):
            return self.cache.list(kind, namespace, label_selector)
        result = await self._request(
            "GET", self._path(kind, namespace), query={"labelSelector": label_selector}
        )
        return list((result or {}).get("items") or [])

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as Vigil's field manager: creates, updates, drops removed fields.

        `force` takes over fields another manager set (someone's `kubectl scale`):
        the ModelDeployment is the source of truth for what Vigil manages.
        """
        metadata = manifest["metadata"]
        path = self._path(str(manifest["kind"]), metadata["namespace"], metadata["name"])
        result = await self._request(
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=manifest,
            content_type="application/apply-patch+yaml",
        )
        if result and self.cache is not None:
            self.cache.store(str(manifest["kind"]), result)
        return result or {}

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete in the background (dependents are garbage-collected); gone already is fine."""
        answer: Any = None
        try:
            answer = await self._request(
                "DELETE",
                self._path(kind, namespace, name),
                body={
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "propagationPolicy": "Background",
                },
            )
        except KubeError as error:
            if error.status != 404:
                raise
        if self.cache is not None:
            # The answer is the object as deleted (its last resourceVersion), or a Status.
            self.cache.forget(kind, namespace, name, deleted_at=resource_version(answer))

    async def create_event(self, manifest: Mapping[str, Any]) -> bool:
        """Create a core/v1 Event; False when one of that name exists (already posted)."""
        namespace = manifest["metadata"]["namespace"]
        try:
            await self._request("POST", f"/api/v1/namespaces/{namespace}/events", body=manifest)
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        return True

    async def patch_status(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A JSON merge patch of the status subresource."""
        result = await self._request(
            "PATCH",
            self._path(kind, namespace, name) + "/status",
            body={"status": patch},
            content_type="application/merge-patch+json",
        )
        if result and self.cache is not None:
            self.cache.store(kind, result)
        return result or {}
