#!/usr/bin/env bash
# What the local executor needs to isolate jobs (docs/decisions/0001-job-isolation.md): bubblewrap,
# and util-linux's setpriv, unshare and nsenter and iproute2's ip, which Debian ships by default.
# Idempotent and quiet when all is there. Installs only as root on a Debian-like host with apt;
# anywhere else it says what is missing and exits 0, so that `npm start` still starts: `fabrik up`
# then says whether jobs are isolated, and refuses several members without isolation unless
# --single-tenant. Facts behind it: ../shared/docs/isolation-on-debian.md.
#
#   scripts/isolation/install.sh        # then: fabrik up (prints which isolation is in force)
set -euo pipefail

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
for b in setpriv unshare nsenter; do command -v "$b" >/dev/null || need+=(util-linux); done
command -v ip >/dev/null || need+=(iproute2)
((${#need[@]})) || exit 0
# One package name once, however many of its tools were missing.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

if [[ $(id -u) -ne 0 ]]; then
  echo "isolation: ${need[*]} missing; not root, so not installing (jobs of several members will be refused)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "isolation: ${need[*]} missing and no apt-get here: install them with this system's package manager" >&2
  exit 0
fi
echo "isolation: installing ${need[*]}" >&2
# The package lists may be missing on a fresh machine (or a container image that deleted them).
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
