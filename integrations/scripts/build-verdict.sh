#!/bin/sh
# Fail the image build when build-doctor.sh found the host critical (2) or could not tell (3): a warning (1)
# is kept in the report and does not stop the image.
set -eu
report=${GPUPREP_DOCTOR_JSON:-/tmp/gpuprep-doctor.json}
rc=$(cat "$report.rc")
case "$rc" in
  0|1) echo "gpuprep doctor: exit $rc: the image goes on to seal" ;;
  *) echo "gpuprep doctor: exit $rc: not sealing an image of a broken host; see $report" >&2; exit 1 ;;
esac
