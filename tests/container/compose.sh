# The compose file, end to end (sourced by run.sh, after the image tests, with its step,
# setup, api and first_key helpers and its freshly built $IMAGE): `podman-compose
# --profile metrics up` of compose.yaml brings PostgreSQL, Tally and Prometheus up; the
# `tally` command awards and reads through the real API, and reads an error in words; the
# entry is in PostgreSQL; Prometheus scrapes Tally; `down` and `up` again keep the data;
# `down -v` leaves nothing behind.
#
# compose.yaml names the official postgres:15 and prom/prometheus images, which no
# registry here can give us: tests/container/compose.override.yaml swaps in stand-ins
# built from tests/container/postgres and tests/container/prometheus (and the Tally image
# run.sh built), and changes nothing else.
# Skips, saying so, where podman-compose cannot be installed.

COMPOSE_VERSION=1.6.0
PG_STANDIN=localhost/tally-postgres:15
PROM_STANDIN=localhost/tally-prometheus:test
PROJECT=${RUN_ID//-/_}_compose
TALLY=$(dirname "$PY")/tally

compose() { # the metrics profile too: Prometheus
  PATH=$WORK/tools/bin:$PATH podman-compose -p "$PROJECT" --profile metrics \
    -f "$RUN/context/compose.yaml" -f "$RUN/context/tests/container/compose.override.yaml" "$@"
}

install_compose() { # podman-compose from PyPI, in the tools venv beside hadolint
  if ! "$WORK/tools/bin/podman-compose" --version 2>/dev/null | grep -q "$COMPOSE_VERSION"; then
    [ -x "$WORK/tools/bin/pip" ] || python3 -m venv "$WORK/tools" || return
    "$WORK/tools/bin/pip" install -q "podman-compose==$COMPOSE_VERSION" || return
  fi
  "$WORK/tools/bin/podman-compose" --version 2>/dev/null | grep -m 1 podman-compose
}

project_containers() {
  podman ps -a -q --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null
}

# remember_volumes: the anonymous volumes (the image's VOLUME /var/lib/tally) of the
# project's containers, which `down` leaves behind and `down -v` no longer sees.
remember_volumes() {
  local ids
  ids=$(project_containers)
  [ -n "$ids" ] && podman inspect -f '{{range .Mounts}}{{.Name}}{{"\n"}}{{end}}' $ids \
    | grep -E '^[0-9a-f]{64}$' >>"$RUN/compose-volumes"
  return 0
}

compose_cleanup() { # containers, their anonymous volumes, then the network and volume
  local ids
  remember_volumes
  ids=$(project_containers)
  [ -n "$ids" ] && podman rm -f -v -t 0 $ids >/dev/null 2>&1
  compose down -v >/dev/null 2>&1
  [ -s "$RUN/compose-volumes" ] && sort -u "$RUN/compose-volumes" | xargs podman volume rm -f \
    >/dev/null 2>&1
  rm -f "$RUN/compose-volumes"
}

compose_up() {
  TALLY_PORT=$COMPOSE_PORT PROMETHEUS_PORT=$PROM_PORT compose up -d --no-build >"$RUN/compose-up.log" 2>&1 \
    || { grep -v 'systemd connection' "$RUN/compose-up.log" | tail -n 15; return 1; }
  echo "$(podman ps -q --filter "label=io.podman.compose.project=$PROJECT" | wc -l) containers up"
}

# tally_cli ARGS...: the installed `tally` command against the stack, with its first key.
tally_cli() {
  TALLY_TARGET=127.0.0.1:$COMPOSE_PORT TALLY_API_KEY=$(cat "$RUN/compose.key") "$TALLY" "$@"
}

award_and_read() {
  tally_cli systems create xp --name Experience >/dev/null || return
  tally_cli award xp alice 50 --reason compose --idempotency-key compose-alice >/dev/null \
    || return
  expect_balance 50
}

expect_balance() { # expect_balance N: GetBalance(alice) through `tally --json balance`
  local got
  got=$(tally_cli --json balance xp alice | "$PY" -c \
    'import json, sys; print(json.load(sys.stdin)["balance"].get("balance", "0"))') || return
  [ "$got" = "$1" ] || { echo "balance of alice is $got, expected $1"; return 1; }
  echo "tally balance xp alice: $got"
}

error_in_words() { # a refused Deduct, as `tally` shows it to a person
  local out
  out=$(tally_cli deduct xp alice 80 2>&1) && { echo "the Deduct of 80 from 50 passed"; return 1; }
  printf '%s\n' "$out"
  grep -q '^tally: FAILED_PRECONDITION INSUFFICIENT_POINTS: ' <<<"$out" \
    && grep -q '^  available: 50$' <<<"$out" && grep -q '^  requested: 80$' <<<"$out" \
    || { echo "the error does not name its reason and metadata"; return 1; }
}

in_postgres() { # the entry is in the compose PostgreSQL, not in an SQLite file
  local rows
  rows=$(podman exec "${PROJECT}_postgres_1" psql -U tally -d tally -tAc \
    "SELECT count(*) || ' entry, ' || sum(amount) || ' points' FROM ledger_entries") || return
  [ "$rows" = "1 entry, 50 points" ] || { echo "ledger_entries in PostgreSQL: $rows"; return 1; }
  echo "PostgreSQL ledger_entries: $rows (schema $(podman exec "${PROJECT}_postgres_1" psql \
    -U tally -d tally -tAc 'SELECT version_num FROM alembic_version'))"
}

# Prometheus scrapes tally:9464 (compose.yaml sets TALLY_METRICS_LISTEN): the target must
# be up. Right after start Prometheus may list no target yet (discovery runs first).
prometheus_scrapes() {
  "$PY" - "$PROM_PORT" <<'PY'
import json, sys, time, urllib.request

port = sys.argv[1]
start, seen = time.monotonic(), "no answer"
while time.monotonic() - start < 60:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
    except OSError as error:
        seen = str(error)
    else:
        tally = [t for t in targets if t["labels"].get("job") == "tally"]
        seen = f"no tally target yet: {targets}"
        if tally:
            (target,) = tally
            seen = f"{target['scrapeUrl']}: {target['health']} {target.get('lastError', '')}"
            if target["scrapeUrl"] != "http://tally:9464/metrics":
                sys.exit(f"Prometheus scrapes {seen}")
            if target["health"] == "up":
                break
    time.sleep(1)
else:
    sys.exit(f"Prometheus: {seen}")
print(f"Prometheus scrapes {seen}".strip())
PY
}

compose_down() { # down keeps the named volume: the database outlives its containers
  remember_volumes
  compose down -t 10 >/dev/null 2>&1 || return
  [ -z "$(project_containers)" ] \
    || { echo "containers left after down"; return 1; }
  echo "down: no containers left, volume kept"
}

compose_gone() {
  compose_cleanup
  local left
  left=$(podman volume ls -q | grep -c "^${PROJECT}_")
  [ "$left" = 0 ] || { echo "$left volumes left after down -v"; return 1; }
  [ -z "$(project_containers)" ] || { echo "containers left after down -v"; return 1; }
  echo "down -v: nothing left"
}

echo "compose test: $ROOT/compose.yaml with tests/container/compose.override.yaml"
compose_start=$EPOCHREALTIME
if ! setup "podman-compose" install_compose; then
  echo "compose test skipped: podman-compose cannot be installed ($(tail -n 1 "$RUN/setup.log"))"
else
  trap 'compose_cleanup; cleanup' EXIT
  read -r COMPOSE_PORT PROM_PORT < <(free_ports 2)
  [ -n "${PROM_PORT:-}" ] || { echo "FAIL: no two free ports in 58051-58060"; failed=$((failed + 1)); }
  [ -n "${PROM_PORT:-}" ] &&
  step "compose: $PG_STANDIN, the stand-in for postgres:15" \
    build "$PG_STANDIN" "$RUN/context/tests/container/postgres" &&
  step "compose: $PROM_STANDIN, the stand-in for prom/prometheus" \
    build "$PROM_STANDIN" "$RUN/context/tests/container/prometheus" &&
  step "compose: up -d (port $COMPOSE_PORT)" compose_up &&
  step "compose: PostgreSQL up, Tally migrated and SERVING" \
    api wait-serving "127.0.0.1:$COMPOSE_PORT" 90 &&
  step "compose: first-run admin key in the logs" \
    first_key "${PROJECT}_tally_1" "$RUN/compose.key" &&
  step "compose: tally award and tally balance" award_and_read &&
  step "compose: tally deduct, refused in words" error_in_words &&
  step "compose: the entry is in PostgreSQL" in_postgres &&
  step "compose: Prometheus (--profile metrics, port $PROM_PORT)" prometheus_scrapes &&
  step "compose: down" compose_down &&
  step "compose: up again" compose_up &&
  step "compose: SERVING again" api wait-serving "127.0.0.1:$COMPOSE_PORT" 90 &&
  step "compose: no new key" no_new_key "${PROJECT}_tally_1" &&
  step "compose: balance still there" expect_balance 50 &&
  step "compose: down -v" compose_gone
  compose_seconds=$(since "$compose_start")
fi
