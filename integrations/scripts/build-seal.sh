#!/bin/sh
# The image build's last step: `gpuprep seal` (stop ECS, remove containers, images and the agent's state).
#   GPUPREP_SEAL_ARGS  more seal arguments (split on spaces; say --keep-image REF or --deep)
#   GPUPREP            the program, default /usr/local/bin/gpuprep
# The doctor report of build-doctor.sh goes first: the pipeline has fetched it, the image must not keep it.
set -eu
set -f
report=${GPUPREP_DOCTOR_JSON:-/tmp/gpuprep-doctor.json}
rm -f "$report" "$report.rc"
exec "${GPUPREP:-/usr/local/bin/gpuprep}" seal --yes ${GPUPREP_SEAL_ARGS:-}
