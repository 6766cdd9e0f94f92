#!/bin/sh
# Install gpuprep from a wheelhouse directory, offline, into its own venv, and put it where root's PATH and the
# shipped units look (/usr/local/bin/gpuprep). Run as root on the instance. Idempotent: a second run with the
# same wheelhouse installs nothing.
#
#   GPUPREP_WHEELHOUSE  the directory of wheels (`make dist` builds one), default /tmp/gpuprep-wheelhouse
#   GPUPREP_PREFIX      the venv, default /opt/gpuprep
#
# Packer (integrations/packer), Image Builder and SSM (integrations/aws) and the Ansible role run this file or
# these lines; tests/system/test_fleet_pipelines.py runs them in a simulated instance.
set -eu
wheelhouse=${GPUPREP_WHEELHOUSE:-/tmp/gpuprep-wheelhouse}
prefix=${GPUPREP_PREFIX:-/opt/gpuprep}
if ! ls "$wheelhouse"/gpuprep-*.whl >/dev/null 2>&1; then
  echo "install-wheelhouse: no gpuprep wheel in $wheelhouse (build one with \`make dist\`, copy it there)" >&2
  exit 2
fi
before=$("$prefix/bin/gpuprep" --version 2>/dev/null || echo none)
[ -x "$prefix/bin/python" ] || python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$wheelhouse" \
  --upgrade gpuprep
after=$("$prefix/bin/gpuprep" --version)
link=$(readlink /usr/local/bin/gpuprep || true)
[ "$link" = "$prefix/bin/gpuprep" ] || ln -sfn "$prefix/bin/gpuprep" /usr/local/bin/gpuprep
# One line a caller can read (Ansible's changed_when does): installed, or unchanged.
if [ "$before" != "$after" ] || [ "$link" != "$prefix/bin/gpuprep" ]; then
  echo "install-wheelhouse: installed $after in $prefix (was: $before)"
else
  echo "install-wheelhouse: unchanged: $after in $prefix"
fi
