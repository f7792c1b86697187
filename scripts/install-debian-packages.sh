#!/usr/bin/env bash
# Install the Debian packages of scripts/debian-packages.txt that are not
# installed yet. Fast when nothing is missing (no apt-get at all), so
# `make test` can run it every time. As root it installs; as another user it
# lists what is missing and exits 0: the tests that need a missing tool, or
# root itself, are then skipped with the reason (tests/privileges.py).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
while read -r pkg _; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done < debian-packages.txt

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "note: not root, so not installing ${missing[*]}; the tests that need them are skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# (Debian's postgresql package may start a cluster of its own on 5432; the
# tests start a throwaway cluster on a free port and do not use it.)
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
