#!/bin/sh
# The image build's install: `gpuprep install`, a line per step in the build's log. Run as root.
#   GPUPREP_INSTALL_ARGS  more install arguments (split on spaces; say --repo-file PATH --image REF offline)
#   GPUPREP               the program, default /usr/local/bin/gpuprep (sudo's secure_path may not list the dir)
# Exit: gpuprep's own (0 done, 1 a step failed, 2 bad input, 3 a precondition; docs/contract.md).
set -eu
set -f  # the arguments are words, never globs
exec "${GPUPREP:-/usr/local/bin/gpuprep}" install ${GPUPREP_INSTALL_ARGS:-}
