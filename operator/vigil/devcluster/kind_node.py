"""A kind node image built on this machine, with no registry (``make kind-up`` here).

kind's own node images (``kindest/node``) come from a registry, and ``kind
build node-image`` pulls its base image and clones containerd, runc and the
CNI plugins from GitHub: neither works here. This module builds an
equivalent image from what is here, cached like the other images
(``~/.cache/vigil/images/kind-node/<tag>.tar``, the tag a hash of its inputs):

* a Debian bookworm root file system (``debootstrap``, point and security
  updates) with the packages of kind's ``images/base/Dockerfile``
  (``hack/kind/node/packages``), Debian's containerd 1.6, runc and CNI
  plugins standing in for kind's own builds of them;
* kind's own files from its Go module (the entrypoint, ``/kind/bin``, the
  kubelet and containerd units, the ``10-kubeadm.conf`` drop-in, sysctls), the
  containerd configuration of ``hack/kind/node`` (kind's, in format 2, with
  the sandbox image built here);
* kubeadm, kubelet and kubectl of this checkout's Kubernetes version
  (``hack/kind/build-tools.sh``, ``hack/build-cluster.sh``), ``/kind/version``;
* the control-plane images, built from those binaries as
  ``vigil.local/<component>:<version>`` docker archives under ``/kind/images``
  and imported into containerd by ``vigil-images.service`` before kubelet
  starts (the cluster's kubeadm configuration names ``vigil.local`` as its
  image repository: ``hack/kind/local-cluster.yaml``);
* no kindnetd or local-path-provisioner (they would need their own builds):
  a bridge CNI configuration for a single node, with the address plan below
  (pods have routes to pod, Service and node addresses only, no default
  route, no masquerading).

Development tooling only: never shipped to clusters.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from vigil.devcluster.engine import ImageError, run, stream
from vigil.devcluster.images import (
    ARCHIVE_FORMAT,
    CLEAN_CHROOT,
    DEBIAN_SUITE,
    REGISTRY,
    Builder,
    ImageArchive,
    Log,
    Recipe,
    cache_dir,
    debian_candidates,
    debian_sources,
    debootstrap,
    digest,
    file_layer,
    image_config,
    print_archives,
    source_root,
    tar_root_filesystem,
    write_docker_archive,
)

__all__ = ["NODE_IMAGE", "PROMETHEUS_IMAGE", "ensure_node_image"]

NODE_IMAGE = "kind-node"
# Prometheus for the kind cluster (hack/kind/prometheus.yaml runs it in a pod):
# the binary hack/build-cluster.sh builds, alone in an image.
PROMETHEUS_IMAGE = "prometheus"
KIND_VERSION = "v0.33.0"
# Bumped when _node_build changes what goes into the image (this module is not
# part of the key, so that editing its comments or style never rebuilds).
NODE_FORMAT = "kind-node/1"
# Versions of the binaries in hack/build-cluster.sh's cache folder (its name
# carries them): the image tags below, so the kubeadm configuration can name them.
ETCD_VERSION = "v3.6.10"
COREDNS_VERSION = "v1.14.7"
NODE_RECIPE = Path("hack") / "kind" / "node"
# The address plan, also in hack/kind/local-cluster.yaml and hack/kind/local.sh.
# Outside 10.100.0.0/16-10.199.0.0/16, the local clusters' ranges (network.py).
NODE_RANGE = "10.89.0.0/24"
POD_RANGE = "10.90.0.0/16"
# The first /24 of the pod range: the controller manager's podCIDR for the
# only node (a bridge CNI configuration cannot follow a per-node podCIDR).
POD_SUBNET = "10.90.0.0/24"
SERVICE_RANGE = "10.91.0.0/16"
# Debian packages whose candidate versions enter the image's key.
KEY_PACKAGES = ("containerd", "runc", "containernetworking-plugins", "systemd", "nftables")
# kind's files taken as they are (from its Go module's images/base/files).
KIND_FILES = (
    "usr/local/bin/entrypoint",
    "kind/bin/mount-product-files.sh",
    "kind/bin/undo-mount-hacks.sh",
    "kind/bin/create-kubelet-cgroup-v2.sh",
    "etc/systemd/system/kubelet.slice",
    "etc/systemd/system/kubelet.service",
    "etc/systemd/system/undo-mount-hacks.service",
    "etc/systemd/system/containerd.service",
    "etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
    "etc/systemd/system/kubelet.service.d/11-kind.conf",
    "etc/default/kubelet",
    "etc/sysctl.d/10-network-magic.conf",
    "etc/sysctl.d/10-network-security.conf",
    "etc/crictl.yaml",
)
# As kind's Dockerfile: systemd in a container starts only what the node needs.
NODE_SETUP = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
printf '%s\n' "$1" > /etc/apt/sources.list
apt-get -qq update
apt-get -qq -y upgrade
apt-get -qq clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/*
[ "$2" = node ] || exit 0
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/*
rm -f /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/basic.target.wants/*
cd /lib/systemd/system/sockets.target.wants && rm -f ./*udev* ./*initctl* && cd /
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
systemctl enable kubelet.service containerd.service undo-mount-hacks.service vigil-images.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests /opt/cni
ln -sfn /usr/lib/cni /opt/cni/bin
ctr oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": $hook}' \
    --arg hook /kind/bin/mount-product-files.sh \
  | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
: > /etc/resolv.conf
: > /etc/hostname
: > /etc/machine-id
"""


def ensure_node_image(log: Log = print) -> dict[str, ImageArchive]:
    """The node image and the pause image it names, built when missing."""
    recipes = {NODE_IMAGE: NODE_RECIPE_ENTRY, PROMETHEUS_IMAGE: PROMETHEUS_RECIPE_ENTRY}
    builder = Builder(source_root(), cache_dir(), log, recipes=recipes)
    with builder.locked():
        return {name: builder.ensure(name) for name in ("pause", NODE_IMAGE, PROMETHEUS_IMAGE)}


def cluster_bin_dir(root: Path) -> Path:
    """hack/build-cluster.sh's folder; its binaries must be built (make cluster-up builds them)."""
    folder = Path(
        run(
            ["bash", str(root / "hack" / "build-cluster.sh"), "--print"],
            what="build-cluster.sh --print",
        ).strip()
    )
    missing = [
        name
        for name in (
            "kubelet",
            "kubectl",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kube-proxy",
            "etcd",
            "coredns",
            "prometheus",
        )
        if not (folder / name).is_file()
    ]
    if missing:
        raise ImageError(f"{', '.join(missing)} not built in {folder}: run hack/build-cluster.sh")
    return folder


def kind_bin_dir(root: Path) -> Path:
    """kind and kubeadm (hack/kind/build-tools.sh builds them once)."""
    return Path(
        run(
            ["bash", str(root / "hack" / "kind" / "build-tools.sh")],
            what="hack/kind/build-tools.sh",
        ).strip()
    )


def kind_module_dir(root: Path) -> Path:
    """Where Go keeps kind's module source (downloaded once through the module proxy)."""
    tool = root / "hack" / "kind" / "tool"

    def listed() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kind"],
            cwd=tool,
            capture_output=True,
            text=True,
            check=False,
        )

    def complete(result: subprocess.CompletedProcess[str]) -> bool:
        folder = Path(result.stdout.strip())
        return result.returncode == 0 and (folder / "images" / "base" / "files").is_dir()

    result = listed()
    if not complete(result):
        subprocess.run(["go", "mod", "download", "sigs.k8s.io/kind"], cwd=tool, check=False)
        result = listed()
    if not complete(result):
        raise ImageError(
            f"kind's module source not found (go list -m sigs.k8s.io/kind: {result.stderr.strip()})"
        )
    return Path(result.stdout.strip())


def _recipe_lines(path: Path) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def _node_key(builder: Builder) -> str:
    versions = debian_candidates(KEY_PACKAGES)
    return digest(
        ARCHIVE_FORMAT,
        NODE_IMAGE,
        KIND_VERSION,
        DEBIAN_SUITE,
        *debian_sources(),
        *(f"{name}={version}" for name, version in sorted(versions.items())),
        NODE_FORMAT,
        # The setup script lives here, not in the recipe folder: its text is part of the key.
        NODE_SETUP,
        builder.files_digest(str(NODE_RECIPE)),
        # Both folders are named by the versions of what they hold.
        str(cluster_bin_dir(builder.root)),
        str(kind_bin_dir(builder.root)),
        builder.key("pause"),
    )


def _debootstrap(
    builder: Builder, rootfs: Path, packages: Sequence[str], role: str, log_path: Path
) -> None:
    debootstrap(builder.say, rootfs, packages, f"{NODE_IMAGE}: {role}", log_path)


def _chroot_setup(rootfs: Path, role: str, log_path: Path) -> None:
    script = rootfs / "tmp" / "vigil-setup.sh"
    script.write_text(NODE_SETUP)
    stream(
        [
            *CLEAN_CHROOT,
            str(rootfs),
            "/bin/sh",
            "/tmp/vigil-setup.sh",
            "\n".join(debian_sources()),
            role,
        ],
        what=f"setup of the {role} root file system (chroot)",
        log_path=log_path,
        progress=lambda _line: None,
    )
    script.unlink()


def _binary_image(
    work: Path, out: Path, ref: str, binary: Path, path: str, entrypoint: bool
) -> None:
    """A one-layer image holding one static binary (Kubernetes' images are distroless)."""
    layer = work / f"{binary.name}.layer.tar"
    file_layer(layer, {path: (binary, 0o755)})
    config: dict[str, object] = {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]}
    if entrypoint:
        config["Entrypoint"] = [path]
    write_docker_archive(
        out, ref, [layer], image_config(config, created_by=f"{binary} (hack/build-cluster.sh)")
    )
    layer.unlink()


def _node_build(builder: Builder, archive: ImageArchive, work: Path, log_path: Path) -> int:
    root = builder.root
    recipe = root / NODE_RECIPE
    k8s = cluster_bin_dir(root)
    tools = kind_bin_dir(root)
    kind_files = kind_module_dir(root) / "images" / "base" / "files"
    k8s_version = run(
        [str(tools / "kubeadm"), "version", "-o", "short"], what="kubeadm version"
    ).strip()
    pause = builder.ensure("pause")

    proxy_root = work / "kube-proxy"
    _debootstrap(
        builder, proxy_root, _recipe_lines(recipe / "kube-proxy-packages"), "kube-proxy", log_path
    )
    _chroot_setup(proxy_root, "kube-proxy", log_path)
    rootfs = work / "node"
    _debootstrap(builder, rootfs, _recipe_lines(recipe / "packages"), "node", log_path)

    builder.say(
        f"{NODE_IMAGE}: kind's files, containerd and CNI configuration, Kubernetes binaries"
    )
    for name in KIND_FILES:
        target = rootfs / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kind_files / name, target)
        target.chmod(0o755 if "/bin/" in f"/{name}" else 0o644)
    # Debian's containerd lives in /usr/bin, not kind's /usr/local/bin.
    unit = rootfs / "etc/systemd/system/containerd.service"
    unit.write_text(unit.read_text().replace("/usr/local/bin/containerd", "/usr/bin/containerd"))
    (rootfs / "kind").chmod(0o755)
    (rootfs / "etc/containerd").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/containerd/config.toml").write_text(
        (recipe / "containerd-config.toml").read_text().replace("@PAUSE_IMAGE@", pause.ref)
    )
    (rootfs / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
    conflist = (recipe / "10-vigil-bridge.conflist").read_text()
    for placeholder, value in {
        "@POD_SUBNET@": POD_SUBNET,
        "@POD_RANGE@": POD_RANGE,
        "@SERVICE_RANGE@": SERVICE_RANGE,
        "@NODE_RANGE@": NODE_RANGE,
    }.items():
        conflist = conflist.replace(placeholder, value)
    json.loads(conflist)
    (rootfs / "etc/cni/net.d/10-vigil-bridge.conflist").write_text(conflist)
    shutil.copyfile(
        recipe / "vigil-images.service", rootfs / "etc/systemd/system/vigil-images.service"
    )
    shutil.copyfile(
        recipe / "12-vigil-images.conf",
        rootfs / "etc/systemd/system/kubelet.service.d/12-vigil-images.conf",
    )
    shutil.copyfile(recipe / "import-images.sh", rootfs / "kind/bin/import-images.sh")
    (rootfs / "kind/bin/import-images.sh").chmod(0o755)
    for name, folder in (("kubeadm", tools), ("kubelet", k8s), ("kubectl", k8s)):
        shutil.copyfile(folder / name, rootfs / "usr/bin" / name)
        (rootfs / "usr/bin" / name).chmod(0o755)
    (rootfs / "kind/version").write_text(f"{k8s_version}\n")
    _chroot_setup(rootfs, "node", log_path)

    builder.say(f"{NODE_IMAGE}: control-plane images ({REGISTRY}/<component>)")
    images = rootfs / "kind" / "images"
    images.mkdir(parents=True)
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        _binary_image(
            work,
            images / f"{name}.tar",
            f"{REGISTRY}/{name}:{k8s_version}",
            k8s / name,
            f"/usr/local/bin/{name}",
            True,
        )
    _binary_image(
        work,
        images / "etcd.tar",
        f"{REGISTRY}/etcd:{ETCD_VERSION}",
        k8s / "etcd",
        "/usr/local/bin/etcd",
        False,
    )
    _binary_image(
        work,
        images / "coredns.tar",
        f"{REGISTRY}/coredns:{COREDNS_VERSION}",
        (k8s / "coredns").resolve(),
        "/coredns",
        True,
    )
    shutil.copyfile(pause.path, images / "pause.tar")
    shutil.copyfile(k8s / "kube-proxy", proxy_root / "usr/local/bin/kube-proxy")
    (proxy_root / "usr/local/bin/kube-proxy").chmod(0o755)
    proxy_layer = work / "kube-proxy.layer.tar"
    tar_root_filesystem(proxy_root, proxy_layer, log_path)
    write_docker_archive(
        images / "kube-proxy.tar",
        f"{REGISTRY}/kube-proxy:{k8s_version}",
        [proxy_layer],
        image_config(
            {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            created_by=f"debootstrap {DEBIAN_SUITE}; kube-proxy (hack/build-cluster.sh)",
        ),
    )
    proxy_layer.unlink()

    builder.say(f"{NODE_IMAGE}: the node's layer")
    layer = work / "layer.tar"
    tar_root_filesystem(rootfs, layer, log_path)
    config = image_config(
        {
            # systemd checks it to know it runs in a container (systemd.io/CONTAINER_INTERFACE).
            "Env": [
                "container=docker",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ],
            "Entrypoint": ["/usr/local/bin/entrypoint", "/sbin/init"],
            # systemd exits on SIGRTMIN+3; SIGTERM makes it re-execute.
            "StopSignal": "SIGRTMIN+3",
            "Labels": {
                "dev.vigil.kind-version": KIND_VERSION,
                "dev.vigil.kubernetes-version": k8s_version,
            },
        },
        created_by=f"debootstrap {DEBIAN_SUITE}; {NODE_RECIPE}; kind {KIND_VERSION} files",
    )
    write_docker_archive(archive.path, archive.ref, [layer], config)
    return layer.stat().st_size


NODE_RECIPE_ENTRY = Recipe(key=_node_key, build=_node_build)


def _prometheus_key(builder: Builder) -> str:
    return digest(ARCHIVE_FORMAT, PROMETHEUS_IMAGE, str(cluster_bin_dir(builder.root)))


def _prometheus_build(builder: Builder, archive: ImageArchive, work: Path, log_path: Path) -> int:
    binary = cluster_bin_dir(builder.root) / "prometheus"
    _binary_image(work, archive.path, archive.ref, binary, "/bin/prometheus", True)
    return binary.stat().st_size


PROMETHEUS_RECIPE_ENTRY = Recipe(key=_prometheus_key, build=_prometheus_build)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m vigil.devcluster.kind_node``: build the node image; print ``ref path`` lines."""
    del argv
    return print_archives(
        "kind node image",
        lambda: ensure_node_image(log=lambda line: print(line, file=sys.stderr, flush=True)),
        lambda archive: f"{archive.name} {archive.ref} {archive.path}",
    )


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
