#!/usr/bin/env bash
# Runs the full test suite from a fresh checkout: formatting, lints, and
# every test (unit, property, HTTP contract, real binary, Redis standalone
# and cluster, Prometheus, schemathesis, checkov). The Redis tests start
# their own redis-server processes on free loopback ports; this script only
# makes sure the program is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run for real: redis-server (standalone and
# cluster tests), redis-sentinel (the Sentinel tests), prometheus
# (promtool, and a server that scrapes a replica), nginx (the auth_request
# gateway configuration, and the load balancer of scripts/cluster-demo.sh),
# wrk (the second load generator of scripts/bench.sh, which the benchmark's
# smoke test runs) and python3-venv (for the virtualenv below).
missing=()
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
SCHEMATHESIS_VERSION=4.32.5
JSONSCHEMA_VERSION=4.26.0
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
have_schemathesis() {
  target/venv/bin/schemathesis --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION" &&
    target/venv/bin/python -c "import importlib.metadata as m; assert m.version('jsonschema') == '$JSONSCHEMA_VERSION'; assert m.version('kubernetes-validate') == '$KUBERNETES_VALIDATE_VERSION'; assert m.version('checkov') == '$CHECKOV_VERSION'" 2>/dev/null
}
if ! have_schemathesis; then
  probe="$(mktemp -d)"
  python3 -m venv "$probe/venv" >/dev/null 2>&1 || missing+=(python3-venv)
  rm -rf "$probe"
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
redis-server --version
promtool --version | head -1

# schemathesis (PyPI) in a virtualenv under target/, for
# tests/api/schemathesis.rs, which looks for it there; jsonschema, with
# which tests/deploy/schema.rs validates configuration files against the
# published JSON Schema; and kubernetes-validate (it carries the
# Kubernetes schemas, so it works offline), with which
# tests/deploy/kubernetes.rs validates the manifests; and checkov, the
# static security checks that tests/deploy/checkov.rs runs on the
# Kubernetes manifests, the Terraform module and the Dockerfile (its
# policies ship in the package; the test runs it with --skip-download,
# BC_SKIP_MAPPING and CKV_SKIP_PACKAGE_UPDATE_CHECK, so it asks no server).
# The four resolve together in one environment.
if ! have_schemathesis; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION, jsonschema $JSONSCHEMA_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION and checkov $CHECKOV_VERSION into target/venv (PyPI)"
  mkdir -p target
  python3 -m venv --clear target/venv
  target/venv/bin/pip install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "jsonschema==$JSONSCHEMA_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "checkov==$CHECKOV_VERSION"
fi
target/venv/bin/schemathesis --version

# A whole-workspace build from a clean checkout gains nothing from
# incremental artefacts, which would more than double the disk it takes.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | tail -1 | awk '{print "== disk: " $4 " free of " $2}'

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test --workspace (the service, loadtests/ loadgen and client/ ratelimiter-client)"
cargo test --workspace --all-targets --locked
echo "== doc tests (the examples in the client crate's documentation and README)"
cargo test --workspace --doc --locked
echo "== ratelimiter-client with its opentelemetry feature (clippy, and the trace propagation test)"
cargo clippy -p ratelimiter-client --all-targets --features opentelemetry --locked -- -D warnings
cargo test -p ratelimiter-client --features opentelemetry --locked --test trace
