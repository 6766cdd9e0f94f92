#!/usr/bin/env bash
# Fetch Debian trixie packages and unpack them (dpkg -x) into DEST, installing nothing (docs/testbed.md 10): a
# sources list, package lists and an apt cache of its own in a temp dir, so this machine's apt state is untouched.
# DEST is replaced whole, at the end, only when every package came. Used by tests/provision.sh (Engine 26) and
# tests/gpu/prepare.sh (the docker CLI 26 for the accelerator machine).
#
#   bash tests/trixie_fetch.sh DEST PACKAGE...
set -euo pipefail
dest=${1:?usage: trixie_fetch.sh DEST PACKAGE...}
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/tree"
echo "deb http://deb.debian.org/debian trixie main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq
(cd "$work/debs" && apt-get "${apt_opts[@]}" download -qq "$@")
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/tree"; done
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new" && mv "$work/tree" "$dest.new" && rm -rf "$dest" && mv "$dest.new" "$dest"
