#!/bin/sh
# Runs inside the freshly bootstrapped root file system (chroot), as root.
# $1: the Debian sources.list lines (the host's own mirrors, with point and
# security updates); /tmp/wheels: the wheels of requirements.txt.
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
printf '%s\n' "$1" > /etc/apt/sources.list
# As Debian's slim images: no manuals, documentation (but licences) or translations.
cat > /etc/dpkg/dpkg.cfg.d/slim <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
CFG
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/man /usr/share/info /usr/share/lintian -mindepth 1 -delete 2>/dev/null || true
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
apt-get -qq update
apt-get -qq -y upgrade
apt-get -qq clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
# The official image's layout: python, pip and site-packages under /usr/local,
# so `pip install --prefix=/install` then `COPY /install /usr/local` works.
python3 -m venv /usr/local
/usr/local/bin/pip install --quiet --no-index --no-cache-dir --find-links /tmp/wheels \
  -r /tmp/wheels/requirements.txt
rm -rf /tmp/wheels /root/.cache
# The runtime mounts its own; no trace of the build machine's resolver.
: > /etc/resolv.conf
chmod 644 /etc/resolv.conf
: > /etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' > /etc/hosts
