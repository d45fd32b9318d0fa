#!/usr/bin/env bash
# The suite's Citus run: builds Citus where it is missing (the recipe in ../shared/citus,
# from Debian's registry and the source tarball there), starts a coordinator on 127.0.0.1:9700
# with workers on 9701 and 9702 unless one answers already, and runs against it the
# integration suite (test_citus.py included) and the end-to-end feed, watch and write tests.
# Skips, saying why, where Citus cannot be built or started; exits 1 when a test fails.
set -uo pipefail
cd "$(dirname "$0")/../.."
RECIPE=""
for dir in ../shared/citus /work/shared/citus; do
  [ -x "$dir/build-citus.sh" ] || [ -f "$dir/build-citus.sh" ] && { RECIPE=$dir; break; }
done
skip() { echo "citus run: skipped: $*"; exit 0; }
[ -n "$RECIPE" ] || skip "no Citus recipe (../shared/citus) on this machine"
[ "$(id -u)" = 0 ] || skip "building and starting a cluster needs root"
bash "$RECIPE/build-citus.sh" >/tmp/tally-citus-build.log 2>&1 ||
  skip "Citus did not build (/tmp/tally-citus-build.log)"
if ! pg_isready -h 127.0.0.1 -p 9700 -q 2>/dev/null; then
  [ -d /tmp/citus-cluster ] && bash "$RECIPE/cluster-down.sh" >/dev/null 2>&1
  bash "$RECIPE/cluster-up.sh" >/tmp/tally-citus-up.log 2>&1 ||
    skip "the cluster did not start (/tmp/tally-citus-up.log)"
fi
URL=postgresql+psycopg://postgres@127.0.0.1:9700/postgres
echo "citus run: the integration suite and the end-to-end feed, watch and write tests on $URL"
TALLY_TEST_POSTGRES_URL=$URL TALLY_TEST_CITUS_URL=$URL .venv/bin/pytest -q -p no:cacheprovider \
  -k "not sqlite" tests/integration tests/e2e/test_watch.py tests/e2e/test_api.py \
  tests/e2e/test_triggers_api.py
