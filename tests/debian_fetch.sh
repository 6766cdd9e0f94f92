#!/usr/bin/env bash
# Fetch packages of a Debian suite (trixie, sid, ...) and unpack them (dpkg -x) into DEST, installing nothing
# (docs/testbed.md 10, 12): a sources list naming `SUITE main`, package lists and an apt cache of its own in a temp
# dir, so this machine's apt state is untouched. DEST is replaced whole, at the end, only when every package came.
# Used by tests/provision.sh (Engines 26 and 28) and, through tests/trixie_fetch.sh, tests/gpu/prepare.sh.
#
#   bash tests/debian_fetch.sh SUITE DEST PACKAGE...
set -euo pipefail
suite=${1:?usage: debian_fetch.sh SUITE DEST PACKAGE...}
dest=${2:?usage: debian_fetch.sh SUITE DEST PACKAGE...}
shift 2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/tree"
echo "deb http://deb.debian.org/debian $suite main" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -qq
(cd "$work/debs" && apt-get "${apt_opts[@]}" download -qq "$@")
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$work/tree"; done
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new" && mv "$work/tree" "$dest.new" && rm -rf "$dest" && mv "$dest.new" "$dest"
