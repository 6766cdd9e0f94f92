#!/usr/bin/env bash
# Fetch Debian trixie packages and unpack them into DEST (tests/debian_fetch.sh with SUITE trixie), installing
# nothing. Kept for tests/gpu/prepare.sh (the docker CLI 26 for the accelerator machine).
#
#   bash tests/trixie_fetch.sh DEST PACKAGE...
set -euo pipefail
exec bash "$(dirname "$0")/debian_fetch.sh" trixie "$@"
