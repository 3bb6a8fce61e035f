"""The address plan of one local cluster, and the real node's network namespace.

Every local cluster owns ``10.<octet>.0.0/16``, the octet following its port
base's hundreds as the kwok pods' loopback ranges do (25400 -> 10.154.0.0/16).
Two port bases in the same hundred (26400 and 26410) or 10000 apart (16400)
give the same octet, so the same addresses, namespace and cgroups:
``LocalCluster.up`` refuses a base whose octet a running cluster has. Clusters
of distinct octets never share an address::

    10.<o>.0.0/24     the real node's pods; 10.<o>.0.1 is its bridge and node IP
    10.<o>.128.0/20   Services (10.<o>.128.1 kubernetes, 10.<o>.128.10 DNS)
    10.<o>.255.0/30   the link between the machine (.1) and the node (.2)

The real node lives in a network namespace of its own (``vigil-<o>``):
kube-proxy's iptables rules, the bridge, the pods' veths and conntrack stay
inside it, and deleting it removes them all. The machine reaches pods and
Services through the link (a route for each range; its connections enter the
bridge with the node's address, to which pods have a route); pods have no
default route and nothing they send is masqueraded, so they reach only pod
and Service addresses (and the API server through the ``kubernetes`` Service).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class NetworkError(RuntimeError):
    """A network step failed; the message says which and what to do."""


def pod_octet(port_base: int) -> int:
    """The second octet of a cluster's addresses: 26400 -> 164 (100-199). Only the base's
    hundreds count: 26400 and 26410 share it (``LocalCluster.up`` refuses the second)."""
    return 100 + (port_base // 100) % 100


@dataclass(frozen=True)
class NodeNetwork:
    """One cluster's ranges and the names of its real node's network objects."""

    octet: int

    @classmethod
    def for_port_base(cls, port_base: int) -> NodeNetwork:
        return cls(pod_octet(port_base))

    @property
    def cluster_range(self) -> str:
        return f"10.{self.octet}.0.0/16"

    @property
    def pod_range(self) -> str:
        return f"10.{self.octet}.0.0/24"

    @property
    def node_ip(self) -> str:
        """The bridge's address: kubelet's node IP (kubelet refuses a loopback one)."""
        return f"10.{self.octet}.0.1"

    @property
    def service_range(self) -> str:
        return f"10.{self.octet}.128.0/20"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"10.{self.octet}.128.1"

    @property
    def dns_service_ip(self) -> str:
        return f"10.{self.octet}.128.10"

    @property
    def host_ip(self) -> str:
        """The machine's end of the link: the API server's address for pods and the node."""
        return f"10.{self.octet}.255.1"

    @property
    def link_node_ip(self) -> str:
        return f"10.{self.octet}.255.2"

    @property
    def link_prefix(self) -> int:
        return 30

    @property
    def netns(self) -> str:
        return f"vigil-{self.octet}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def host_link(self) -> str:
        return f"vigil{self.octet}h"

    @property
    def node_link(self) -> str:
        return f"vigil{self.octet}n"

    @property
    def bridge(self) -> str:
        """Inside the node's namespace, so the name is the same in every cluster."""
        return "cni0"

    @property
    def cni_network(self) -> str:
        """The CNI network's name: libcni keys its cache files (/var/lib/cni) by it."""
        return f"vigil-{self.octet}"

    def nsenter(self) -> list[str]:
        """The prefix running a command in the node's network namespace (only that one:
        kubelet's mounts must stay visible to containerd, so no mount namespace)."""
        return ["nsenter", f"--net={self.netns_path}", "--"]

    # -- set up and tear down ---------------------------------------------------

    def create(self) -> None:
        """The namespace, the link, the bridge and the routes; fails if any exists."""
        self.check_free()
        _ip("netns", "add", self.netns, what="create the node's network namespace")
        try:
            self._wire()
        except BaseException:
            self.delete()
            raise

    def _wire(self) -> None:
        link = f"{self.host_ip}/{self.link_prefix}"
        node_link = f"{self.link_node_ip}/{self.link_prefix}"
        _ip(
            "link", "add", self.host_link, "type", "veth", "peer", "name", self.node_link,
            "netns", self.netns, what="create the link to the node (veth)",
        )  # fmt: skip
        _ip("addr", "add", link, "dev", self.host_link, what="address the link")
        _ip("link", "set", self.host_link, "up", what="bring the link up")
        inside = ("-n", self.netns)
        _ip(*inside, "link", "set", "lo", "up", what="bring the node's loopback up")
        _ip(*inside, "addr", "add", node_link, "dev", self.node_link, what="address the link")
        _ip(*inside, "link", "set", self.node_link, "up", what="bring the link up")
        _ip(
            *inside, "link", "add", self.bridge, "type", "bridge",
            what="create the pods' bridge (kernel bridge support)",
        )  # fmt: skip
        _ip(*inside, "addr", "add", f"{self.node_ip}/24", "dev", self.bridge, what="address it")
        _ip(*inside, "link", "set", self.bridge, "up", what="bring the bridge up")
        # Locally started connections to a Service address need a route before
        # kube-proxy's DNAT rewrites them; a route, not a default one.
        _ip(*inside, "route", "add", self.service_range, "dev", self.bridge, what="route Services")
        # No ICMP redirects: a pod's packets to a Service leave by the bridge they came in by,
        # and the redirects they drew used up the kernel's per-host ICMP budget, so
        # kube-proxy's rejects (a Service without endpoints) never reached the pod.
        redirects = (f"net.ipv4.conf.{name}.send_redirects=0" for name in ("all", self.bridge))
        for sysctl in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1", *redirects):
            _run(
                [*self.nsenter(), "sysctl", "-q", "-w", sysctl],
                what=f"set {sysctl} in the node's namespace"
                + (" (the kernel's br_netfilter)" if "bridge" in sysctl else ""),
            )
        for network in (self.pod_range, self.service_range):
            _ip(
                "route", "add", network, "via", self.link_node_ip, "dev", self.host_link,
                what=f"route {network} to the node",
            )  # fmt: skip
        # Pods have no route back to the machine's end of the link (no default route):
        # the machine's connections to pod IPs (Prometheus' scrapes, probes from the
        # host) leave the bridge with the node's address, as kube-proxy does for Services.
        _run(
            [
                *self.nsenter(), "iptables", "-t", "nat", "-A", "POSTROUTING",
                "-s", f"{self.host_ip}/32", "-d", self.pod_range, "-o", self.bridge,
                "-j", "SNAT", "--to-source", self.node_ip,
            ],
            what="let the machine reach pod IPs (iptables SNAT in the node's namespace)",
        )  # fmt: skip

    def check_free(self) -> None:
        """No other cluster (or anything else) uses this cluster's range or names.

        A namespace with no process in it is what a killed cluster leaves behind
        (its node components ran inside): that one is removed, not reported."""
        if self.netns_path.exists():
            if self.processes_inside():
                raise NetworkError(
                    f"the network namespace {self.netns} exists and processes run in it: "
                    f"another local cluster with the same address octet ({self.cluster_range}, "
                    "port bases in one hundred or 10000 apart share it) has a real node here "
                    "(make cluster-down from that checkout); choose another "
                    "VIGIL_CLUSTER_PORT_BASE"
                )
            self.delete()
        ours = ipaddress.ip_network(self.cluster_range)
        for entry in _ip_json("route", "show", "table", "all"):
            destination = entry.get("dst", "")
            if destination in ("", "default") or ":" in destination:
                continue
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(destination, strict=False).overlaps(ours):
                    raise NetworkError(
                        f"{self.cluster_range} is this cluster's, but the machine already "
                        f"routes {destination} (dev {entry.get('dev', '?')}); remove that "
                        "or choose another VIGIL_CLUSTER_PORT_BASE"
                    )

    def delete(self) -> None:
        """Remove the namespace (its bridge, veths, iptables rules and conntrack go with it)
        and the machine's end of the link (its routes go with it)."""
        if self.netns_path.exists():
            _ip("netns", "delete", self.netns, what="delete the node's network namespace")
        if Path(f"/sys/class/net/{self.host_link}").exists():
            _ip("link", "delete", self.host_link, what="delete the link")

    def processes_inside(self) -> list[int]:
        """The processes running in the node's namespace (none once its cluster is gone)."""
        if not self.netns_path.exists():
            return []
        listed = _ip("netns", "pids", self.netns, what="list the namespace's processes")
        return [int(pid) for pid in listed.split()]

    def leftovers(self) -> list[str]:
        """What of this network still exists on the machine (empty after ``delete``)."""
        found = []
        if self.netns_path.exists():
            found.append(f"network namespace {self.netns}")
        if Path(f"/sys/class/net/{self.host_link}").exists():
            found.append(f"link {self.host_link}")
        for entry in _ip_json("route", "show"):
            if entry.get("dev") == self.host_link:
                found.append(f"route {entry.get('dst')} dev {self.host_link}")
        return found


def _run(args: Sequence[str], what: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(
            f"cannot {what}: `{' '.join(args)}` said {result.stderr.strip() or result.returncode}"
        )
    return result.stdout


def _ip(*args: str, what: str) -> str:
    return _run(["ip", *args], what)


def _ip_json(*args: str) -> list[dict[str, str]]:
    return list(json.loads(_ip("-j", *args, what="read the machine's routes") or "[]"))
