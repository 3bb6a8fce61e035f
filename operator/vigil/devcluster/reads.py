"""Reads from the API server in this process: what ``kubectl get -o json`` prints.

Tests poll several objects twice a second; a kubectl process per read took about a
quarter of the e2e phase's CPU (bench/README.md, CI timing). Writes, waits and what a
person would type still go through kubectl.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import ssl
import tempfile
import threading
import urllib.error
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: One request for every group's resources (Kubernetes 1.30+: aggregated discovery).
_AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


class ReadError(Exception):
    """The API server answered a read with an error other than NotFound."""


@dataclass(frozen=True)
class Resource:
    """One served resource, as discovery names it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    #: Every name kubectl accepts for it: plural, singular, short names, kind.
    names: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        base += f"/{self.plural}"
        return f"{base}/{urllib.parse.quote(name)}" if name else base


@dataclass(frozen=True)
class Query:
    """The ``kubectl get`` arguments a reader answers: a type, a name or a selector."""

    resource: str
    name: str | None
    namespace: str | None
    selector: str | None
    managed_fields: bool

    @classmethod
    def parse(cls, args: tuple[str, ...]) -> Query | None:
        """``args`` of ``kubectl get`` (without ``-o json``); None for any other form."""
        words: list[str] = []
        namespace = selector = None
        managed = False
        rest = iter(args)
        for arg in rest:
            if arg in ("-n", "--namespace"):
                namespace = next(rest, None)
            elif arg == "-l":
                selector = next(rest, None)
            elif arg == "--show-managed-fields":
                managed = True
            elif arg.startswith("-"):
                return None
            else:
                words.append(arg)
        if len(words) == 1 and "/" in words[0]:
            words = words[0].split("/", 1)
        if not words or len(words) > 2 or (len(words) == 2 and selector is not None):
            return None
        name = words[1] if len(words) == 2 else None
        return cls(words[0].lower(), name, namespace, selector, managed)


class ApiReader:
    """GETs with a kubeconfig's credentials, and discovery to map a type to its path."""

    def __init__(self, server: str, context: ssl.SSLContext, token: str | None) -> None:
        self.server = server.rstrip("/")
        self._address = urllib.parse.urlsplit(self.server)
        self._tls = context
        #: One kept-alive connection per thread: a TLS handshake per read cost the API
        #: server more than the read itself.
        self._connections = threading.local()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._resources: list[Resource] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: Path | str) -> ApiReader | None:
        """A reader for the current context; None for credentials it does not handle
        (exec plugins, auth providers): those keep to kubectl."""
        config = yaml.safe_load(Path(path).read_text()) or {}
        context = _named(config.get("contexts"), config.get("current-context"))
        cluster = _named(config.get("clusters"), context.get("cluster"))
        user = _named(config.get("users"), context.get("user"))
        server = str(cluster.get("server") or "")
        if not server.startswith("https://") or set(user) - {"token", *_CERTIFICATE_KEYS}:
            return None
        tls = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif ca := _pem(cluster, "certificate-authority"):
            tls.load_verify_locations(cadata=ca.decode())
        certificate, key = _pem(user, "client-certificate"), _pem(user, "client-key")
        if certificate and key:
            with _private_files(certificate, key) as (certificate_file, key_file):
                tls.load_cert_chain(certificate_file, key_file)
        return cls(server, tls, user.get("token"))

    def get(self, query: Query, timeout: float = 30) -> dict[str, Any] | None:
        """The object or list as ``kubectl get -o json`` prints it; None when not found."""
        resource = self.resource(query.resource)
        if resource is None:
            raise ReadError(f'the server doesn\'t have a resource type "{query.resource}"')
        path = resource.path(query.namespace, query.name)
        if query.selector is not None:
            path += "?" + urllib.parse.urlencode({"labelSelector": query.selector})
        try:
            found = self._json(path, timeout=timeout)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise ReadError(_server_error(error)) from None
        items = found.get("items") if query.name is None else None
        for item in items if items is not None else [found]:
            # As kubectl prints them: each item with its kind, no managed fields unless asked.
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
            if not query.managed_fields:
                (item.get("metadata") or {}).pop("managedFields", None)
        if items is not None:
            found["kind"], found["apiVersion"] = "List", "v1"
        return found

    def resource(self, name: str) -> Resource | None:
        """The resource kubectl would pick for ``name`` (the core group first); discovery
        again once on a miss (a CRD established since)."""
        with self._lock:
            for refresh in (False, True):
                if refresh or self._resources is None:
                    self._resources = self._discover()
                plural, _, group = name.partition(".")
                for resource in self._resources:
                    if plural in resource.names and (not group or resource.group == group):
                        return resource
        return None

    def _discover(self) -> list[Resource]:
        found: list[Resource] = []
        for root in ("/api", "/apis"):
            for group in self._json(root, accept=_AGGREGATED).get("items") or ():
                group_name = (group.get("metadata") or {}).get("name") or ""
                versions = group.get("versions") or ()
                if versions:  # the first version is the preferred one
                    found += _resources(group_name, versions[0])
        return found

    def _json(self, path: str, accept: str = "application/json", timeout: float = 30) -> Any:
        headers = {**self._headers, "Accept": accept}
        while True:  # at most twice: a kept connection, then a new one
            connection, reused = self._connection(timeout)
            try:
                connection.request("GET", self._address.path + path, headers=headers)
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self._connections.current = None
                if reused:
                    continue  # the server closed a kept connection: once more on a new one
                raise OSError(f"GET {self.server}{path}: {error!r}") from error
            if response.status >= 400:
                raise urllib.error.HTTPError(
                    self.server + path, response.status, response.reason, response.headers,
                    io.BytesIO(body),
                )  # fmt: skip
            return json.loads(body)

    def _connection(self, timeout: float) -> tuple[http.client.HTTPSConnection, bool]:
        """This thread's connection, and whether it served a read before."""
        connection = getattr(self._connections, "current", None)
        if connection is not None:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            return connection, True
        host, port = self._address.hostname or "", self._address.port or 443
        connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls)
        self._connections.current = connection
        return connection, False


_CERTIFICATE_KEYS = frozenset(
    {"client-certificate", "client-certificate-data", "client-key", "client-key-data"}
)


def _resources(group: str, version: Mapping[str, Any]) -> Iterator[Resource]:
    for entry in version.get("resources") or ():
        kind = str((entry.get("responseKind") or {}).get("kind") or "")
        names = {entry["resource"], entry.get("singularResource") or "", kind.lower()}
        names.update(entry.get("shortNames") or ())
        yield Resource(
            group=group,
            version=str(version["version"]),
            plural=str(entry["resource"]),
            kind=kind,
            namespaced=entry.get("scope") == "Namespaced",
            names=frozenset(names - {""}),
        )


def _server_error(error: urllib.error.HTTPError) -> str:
    """As kubectl says it: ``Error from server (<reason>): <message>``."""
    body = error.read().decode(errors="replace")
    try:
        status = json.loads(body)
        return f"Error from server ({status.get('reason') or error.code}): {status['message']}"
    except (ValueError, KeyError, AttributeError):
        return f"Error from server ({error.code}): {body.strip()}"


def _named(entries: Any, name: Any) -> dict[str, Any]:
    for entry in entries or ():
        if entry.get("name") == name:
            key = next(k for k in entry if k != "name")
            return dict(entry[key] or {})
    return {}


def _pem(section: Mapping[str, Any], key: str) -> bytes | None:
    """A kubeconfig's ``<key>-data`` (base64) or ``<key>`` (a file), as PEM bytes."""
    if data := section.get(f"{key}-data"):
        return base64.b64decode(data)
    if file := section.get(key):
        return Path(file).read_bytes()
    return None


@contextmanager
def _private_files(*contents: bytes) -> Iterator[list[str]]:
    """Owner-only temporary files holding ``contents`` (ssl loads keys from files only)."""
    paths: list[str] = []
    try:
        for content in contents:
            descriptor, path = tempfile.mkstemp(prefix="vigil-read-")
            paths.append(path)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
        yield paths
    finally:
        for path in paths:
            os.unlink(path)
