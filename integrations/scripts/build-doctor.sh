#!/bin/sh
# The image build's doctor: `gpuprep --json doctor`, its report kept as a build artefact, its verdict kept for
# build-verdict.sh. Exits 0 whatever the verdict, so the pipeline fetches the report before it decides.
#   GPUPREP_DOCTOR_ARGS  more doctor arguments (split on spaces; say --image REF)
#   GPUPREP_DOCTOR_JSON  where the report goes, default /tmp/gpuprep-doctor.json
#   GPUPREP               the program, default /usr/local/bin/gpuprep
set -eu
set -f
report=${GPUPREP_DOCTOR_JSON:-/tmp/gpuprep-doctor.json}
rc=0
"${GPUPREP:-/usr/local/bin/gpuprep}" --json doctor ${GPUPREP_DOCTOR_ARGS:-} > "$report" || rc=$?
echo "$rc" > "$report.rc"
echo "gpuprep doctor: exit $rc (0 ok, 1 warning, 2 critical, 3 unknown); report in $report"
