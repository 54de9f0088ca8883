#!/usr/bin/env bash
# The deployment files under test (README, "Deploying"):
#  1. parsers: the seccomp profiles are what deploy/seccomp/profile.js makes;
#     compose.yaml passes `docker-compose config` (Debian's docker-compose),
#     the systemd unit `systemd-analyze verify`, the Kubernetes manifests
#     `kubernetes-validate --strict` (PyPI, in a cached venv) for the oldest
#     and newest Kubernetes it knows. A typo fails here.
#  2. the image: builds deploy/Dockerfile with PREBUILT, the optimized
#     binary (target/attack/shardcast), on a Debian base image made
#     with debootstrap (no registry is reachable; the image is cached by its
#     tag, so later runs skip debootstrap), then runs it with host networking
#     on 127.0.0.1: with deploy/seccomp.json the health check turns healthy and
#     pusher-js and the pusher library work (tests/clients/container_check.js),
#     `docker stop` drains (4200, exit 0); the same for compose.yaml's single
#     profile run by docker-compose; with the Kubernetes profile the server
#     starts too; with Docker >= 25's default (the profile without the
#     io_uring rule) and with a 64 KiB memlock limit it exits 1 with the
#     diagnosis, and shardcast-check-env in the image says the same.
# Installs docker.io, debootstrap and docker-compose with apt-get when
# missing. Starts dockerd (--bridge=none --iptables=false) when none runs and
# stops it at the end; when no daemon can run here, part 2 is skipped with a
# message. Removes every container it started, also on failure.
# SHARDCAST_TEST_IMAGE=IMAGE runs part 2 against that image instead of
# building one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
PATH="$PATH:/usr/sbin:/sbin"

work=$(mktemp -d)
containers=()
dockerd_pid=""
compose_up=""
cleanup() {
  local c
  if [ -n "$compose_up" ]; then (cd deploy && "${compose[@]}" down >/dev/null 2>&1) || true; fi
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  if [ -n "$dockerd_pid" ]; then
    $sudo kill "$dockerd_pid" 2>/dev/null || true
    # dockerd stops its containerd; wait so no daemon outlives the script.
    for _ in $(seq 1 100); do $sudo kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

missing=()
have dockerd || missing+=(docker.io)
have debootstrap || missing+=(debootstrap)
have docker-compose || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages, for the container test)"
  install_packages() {
    $sudo apt-get update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
  install_packages || { echo "apt-get failed; retrying in 10 s" >&2; sleep 10; install_packages; }
  # The package may start a system-wide daemon with a bridge; this test
  # starts its own below.
  $sudo service docker stop >/dev/null 2>&1 || true
fi

echo "== deploy files: seccomp profiles, compose.yaml, systemd unit, Kubernetes manifests"
node deploy/seccomp/profile.js check
for profile in single cluster; do
  (cd deploy && docker-compose -f compose.yaml --profile "$profile" config -q)
done
echo "compose.yaml: ok (docker-compose config, profiles single and cluster)"
if have systemd-analyze; then
  # verify wants the ExecStart binary to exist: check a copy that starts /bin/true.
  sed 's#^ExecStart=/usr/local/bin/shardcast #ExecStart=/bin/true #' deploy/systemd/shardcast.service \
    >"$work/shardcast.service"
  out=$(systemd-analyze verify "$work/shardcast.service" 2>&1) || { echo "$out"; exit 1; }
  if [ -n "$out" ]; then echo "systemd-analyze verify: $out"; exit 1; fi
  echo "shardcast.service: ok (systemd-analyze verify)"
else
  echo "shardcast.service: NOT checked (no systemd-analyze here)"
fi
kv_version=1.37.0
venv="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/shardcast/kubernetes-validate-$kv_version"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$kv_version"
fi
for k8s in 1.28.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s" deploy/kubernetes/*.yaml
done
echo "kubernetes manifests: ok (kubernetes-validate --strict, Kubernetes 1.28 and 1.37)"

echo "== container image"
if ! docker info >/dev/null 2>&1; then
  $sudo dockerd --bridge=none --iptables=false --ip-forward=false \
    --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 100); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.2
  done
  if ! docker info >/dev/null 2>&1; then
    echo "== container image part SKIPPED (the files above were checked): no Docker daemon can run on this machine; dockerd said:"
    tail -n 5 "$work/dockerd.log" | sed 's/^/   /'
    exit 0
  fi
fi
export DOCKER_BUILDKIT=0 # the classic builder, in every Docker: nothing to fetch

if [ -n "${SHARDCAST_TEST_IMAGE:-}" ]; then
  # An image built elsewhere (e.g. the normal multi-stage build) instead.
  image=$SHARDCAST_TEST_IMAGE
  echo "testing the given image $image"
else
  . /etc/os-release
  base="shardcast-test/debian:${VERSION_CODENAME}-1"
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "making $base with debootstrap (once; cached by its tag)"
    started=$SECONDS
    rootfs="$work/rootfs"
    $sudo debootstrap --variant=minbase "$VERSION_CODENAME" "$rootfs" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log"; exit 1; }
    $sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    $sudo tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$base" >/dev/null
    $sudo rm -rf "$rootfs"
    echo "made $base in $((SECONDS - started)) s"
  fi

  # The binary: the optimized build scripts/test.sh made (a no-op then).
  cargo build --locked --profile attack --bin shardcast
  context="$work/context"
  mkdir -p "$context/deploy" "$context/scripts"
  cp target/attack/shardcast "$context/shardcast"
  cp deploy/ready.sh "$context/deploy/"
  cp scripts/check-env.sh "$context/scripts/"
  image=shardcast-test/shardcast:test
  docker build --force-rm --network host -f deploy/Dockerfile --build-arg "RUST_IMAGE=$base" \
    --build-arg "RUNTIME_IMAGE=$base" --build-arg PREBUILT=shardcast -t "$image" "$context" \
    >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
  # The previous run's image and build stage, now untagged.
  docker image prune -f --filter label=io.shardcast.image >/dev/null
  echo "built $image (deploy/Dockerfile with PREBUILT, on $base)"
fi

node deploy/seccomp/profile.js deny-io-uring >"$work/deny-io-uring.json"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
cat >"$work/shardcast.toml" <<EOF
[server]
host = "127.0.0.1"
port = $port

[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
EOF
chmod 0644 "$work/shardcast.toml"
# The limits deploy/ recommends (memlock unlimited, nofile 1048576) as far as
# this machine's own hard limits allow: runc cannot raise them above those.
memlock=$(ulimit -Hl); nofile=$(ulimit -Hn)
if [ "$memlock" = unlimited ]; then memlock=-1; else memlock=$((memlock * 1024)); fi
if [ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ]; then nofile=1048576; fi
run_args=(--network host --ulimit "memlock=$memlock:$memlock" --ulimit "nofile=$nofile:$nofile"
  -e "SHARDCAST_READY_PORT=$port" -v "$work/shardcast.toml:/etc/shardcast/shardcast.toml:ro")

# Waits until the container's health check says healthy; fails on its exit.
wait_healthy() {
  local name=$1 status
  for _ in $(seq 1 150); do
    status=$(docker inspect --format '{{.State.Status}} {{.State.Health.Status}}' "$name")
    case "$status" in
      "running healthy") return 0;;
      exited*) echo "container $name exited:"; docker logs "$name" 2>&1 | tail -n 20; return 1;;
    esac
    sleep 0.2
  done
  echo "container $name not healthy after 30 s ($status):"; docker logs "$name" 2>&1 | tail -n 20
  return 1
}

# With the shipped profile: healthy, real clients, graceful stop.
name="shardcast-test-$$-docker"
containers+=("$name")
docker run -d --name "$name" --health-interval 1s --security-opt "seccomp=$root/deploy/seccomp.json" \
  "${run_args[@]}" "$image" >/dev/null
wait_healthy "$name"
echo "deploy/seccomp.json: server up, health check healthy"
(
  cd tests/clients
  stamp=node_modules/.shardcast-lock.sha256
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
  node container_check.js "$port" "$name"
)

# compose.yaml's single profile, as `docker compose --profile single up`
# runs it, with the same checks. Changed for this machine only: the test's
# image, config and limits, and host networking (compose.yaml's `ports` cut,
# which host networking refuses; the host network as the project's, so no
# bridge is made).
awk '/^    ports:$/ {cut = 1; next} cut && /^      - / {next} {cut = 0; print}' deploy/compose.yaml \
  >"$work/compose.yaml"
cat >"$work/compose.test.yaml" <<EOF
services:
  shardcast:
    image: $image
    network_mode: host
    ulimits:
      nofile: {soft: $nofile, hard: $nofile}
      memlock: {soft: $memlock, hard: $memlock}
    environment:
      SHARDCAST_READY_PORT: "$port"
    volumes:
      - $work/shardcast.toml:/etc/shardcast/shardcast.toml:ro
    healthcheck:
      interval: 1s
networks:
  default:
    external: true
    name: host
EOF
compose=(docker-compose -p "shardcast-test-$$" --project-directory "$root/deploy"
  -f "$work/compose.yaml" -f "$work/compose.test.yaml" --profile single)
compose_up=1
(cd deploy && "${compose[@]}" up -d --no-build shardcast >"$work/compose.log" 2>&1) ||
  { cat "$work/compose.log"; exit 1; }
name=$(cd deploy && "${compose[@]}" ps -q shardcast)
wait_healthy "$name"
echo "compose.yaml, profile single: server up, health check healthy"
(cd tests/clients && node container_check.js "$port" "$name")

# With the Kubernetes (flattened) profile, as the manifest runs it (no
# capabilities, read-only root file system): the server starts.
name="shardcast-test-$$-k8s"
containers+=("$name")
docker run -d --name "$name" --health-interval 1s \
  --security-opt "seccomp=$root/deploy/kubernetes/seccomp-shardcast.json" --cap-drop ALL --read-only \
  "${run_args[@]}" "$image" >/dev/null
wait_healthy "$name"
docker stop --time 10 "$name" >/dev/null
code=$(docker inspect --format '{{.State.ExitCode}}' "$name")
[ "$code" = 0 ] || { echo "exit $code after docker stop:"; docker logs "$name" 2>&1 | tail -n 20; exit 1; }
echo "deploy/kubernetes/seccomp-shardcast.json (no capabilities, read-only): server up, stopped with exit 0"

# Refusals: each must exit 1 with its diagnosis.
expect_refusal() {
  local what=$1 want=$2 status out
  shift 2
  set +e
  out=$(docker run --rm "$@" 2>&1)
  status=$?
  set -e
  if [ "$status" -ne 1 ] || ! grep -q -- "$want" <<<"$out"; then
    echo "$what: expected exit 1 and \"$want\", got exit $status:"; echo "$out"
    return 1
  fi
  echo "$what: exit 1, $(grep -o -- "$want.*" <<<"$out" | head -n 1 | cut -c1-110)..."
}
deny=(--security-opt "seccomp=$work/deny-io-uring.json")
expect_refusal "server, io_uring denied" "io_uring_setup was refused (Operation not permitted.*seccomp profile" \
  "${deny[@]}" "${run_args[@]}" "$image"
expect_refusal "check-env, io_uring denied" "io_uring_setup.*io_uring_setup was refused (Operation not permitted).*seccomp profile" \
  "${deny[@]}" "${run_args[@]}" --entrypoint shardcast-check-env "$image"
expect_refusal "server, memlock 64 KiB" "locked-memory limit is 64 KiB" \
  --security-opt "seccomp=$root/deploy/seccomp.json" --network host --ulimit memlock=65536:65536 \
  -v "$work/shardcast.toml:/etc/shardcast/shardcast.toml:ro" "$image"
out=$(docker run --rm --security-opt "seccomp=$root/deploy/seccomp.json" "${run_args[@]}" \
  --entrypoint shardcast-check-env "$image") || { echo "$out"; exit 1; }
grep -q "^environment: ok" <<<"$out" || { echo "$out"; exit 1; }
echo "check-env in the image with deploy/seccomp.json: environment: ok"
echo "== container test passed"
