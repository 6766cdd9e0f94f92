#!/bin/sh
# Install gpuprep from this wheelhouse (built by `make dist`; docs/packaging.md), offline: no package index
# is asked, so no name on a public index is taken on trust.
#   - a venv of this host's python3 at /opt/gpuprep, made without pip: the pip wheel shipped here installs,
#     so the host's pip (or its absence: Debian and Ubuntu split ensurepip off) does not matter;
#   - every wheel checked against requirements.txt's sha256 hashes (--require-hashes);
#   - /usr/sbin/gpuprep linked to the venv's script: /usr/sbin is in root's PATH and in sudo's secure_path
#     on every target (RHEL-family and Amazon Linux sudoers: /sbin:/bin:/usr/sbin:/usr/bin, no /usr/local).
# Run it as root; run a newer wheelhouse's to upgrade in place. Settings: GPUPREP_PYTHON (python3),
# GPUPREP_PREFIX (/opt/gpuprep), GPUPREP_LINK (/usr/sbin/gpuprep; empty: no link).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${GPUPREP_PYTHON:-python3}
prefix=${GPUPREP_PREFIX:-/opt/gpuprep}
link=${GPUPREP_LINK-/usr/sbin/gpuprep}
target=$(cat "$here/PYTHON")  # the X.Y this wheelhouse was built for

die() { code=$1; shift; echo "gpuprep install.sh: $*" >&2; exit "$code"; }

if [ "$(id -u)" != 0 ] && { [ "$prefix" = /opt/gpuprep ] || [ "$link" = /usr/sbin/gpuprep ]; }; then
  die 3 "run it as root: it writes $prefix and $link"
fi

command -v "$python" >/dev/null 2>&1 || die 3 "no $python on PATH: install Python $target (Amazon Linux 2023: dnf install python3)"
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' ||
  die 3 "gpuprep needs Python 3.9 or newer; $python is $have (set GPUPREP_PYTHON to a newer one)"
[ "$have" = "$target" ] ||
  die 3 "this wheelhouse is for Python $target and $python is $have: build one with \`make dist DIST_PYTHON=$have\`, or set GPUPREP_PYTHON to a python$target"
set -- "$here"/pip-*.whl
[ -f "$1" ] || die 1 "no pip wheel in $here: rebuild the wheelhouse with \`make dist\`"
pip_wheel=$1

echo "gpuprep install.sh: a venv of $python $have at $prefix, from $here (offline, hash-checked)"
"$python" -m venv --without-pip "$prefix"
# pip runs from its wheel (a zip with pip/__main__.py) with the venv's interpreter, so it installs there.
# --force-reinstall: a rebuilt wheel of the same version must replace the old one.
"$prefix/bin/python" "$pip_wheel/pip" install --quiet --disable-pip-version-check --no-index \
  --find-links "$here" --require-hashes --force-reinstall --requirement "$here/requirements.txt"
if [ -n "$link" ]; then
  ln -sfn "$prefix/bin/gpuprep" "$link"
  echo "gpuprep install.sh: $link -> $prefix/bin/gpuprep"
fi
"$prefix/bin/gpuprep" --version
