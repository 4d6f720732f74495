# messenger: build, run, test. `make run` and `make test` work on a fresh
# machine with Rust and Python; they install what they need themselves.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    := .venv
BIN     := target/release
SERVER_PORT ?= 51075

.PHONY: build run test test-rust test-course lint fmt clean certs

build:
	$(CARGO) build --release --workspace --bins

## Server on :$(SERVER_PORT), client1 on :8080, client2 on :8081. Ctrl-C stops all three.
run: build
	@echo "server :$(SERVER_PORT)  client1 http://localhost:8080  client2 http://localhost:8081  (Ctrl-C stops all)"
	@trap 'kill -INT $$s $$c1 $$c2 2>/dev/null; wait' INT TERM; \
	MESSENGER_SERVER_PORT=$(SERVER_PORT) $(BIN)/messenger-server & s=$$!; \
	MESSENGER_SERVER_ADDR=localhost:$(SERVER_PORT) MESSENGER_HTTP_PORT=8080 $(BIN)/messenger-client & c1=$$!; \
	MESSENGER_SERVER_ADDR=localhost:$(SERVER_PORT) MESSENGER_HTTP_PORT=8081 $(BIN)/messenger-client & c2=$$!; \
	wait

## Dev CA, server/client certificates and tokens for the secure setup, in
## ops/secure/ (gitignored). Keeps an existing set unless FORCE=1;
## SHARED_KEYS=1 makes keys readable by all (containers running as another uid).
CERTS_DIR ?= ops/secure
certs:
	$(CARGO) build --release -p messenger-tests --bin gen-certs
	$(BIN)/gen-certs $(CERTS_DIR) $(if $(FORCE),--force) $(if $(SHARED_KEYS),--shared-keys)

test: test-rust test-course

## Unit, property and end-to-end tests (release profile: shares the build with the binaries).
## The observability tests run the release binaries, so they are built first.
test-rust: build
	$(CARGO) test --release --workspace

## Course-compatible suite: real release binaries, real grpcurl.
test-course: build $(VENV)/.installed
	$(VENV)/bin/python -m pytest tests/course -q

$(VENV)/.installed: tests/course/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/course/requirements.txt
	touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV)

## Benchmark suite against fresh release binaries: JSON, chart.svg and a
## markdown table of every figure against its target, in target/bench/.
.PHONY: bench bench-smoke
bench: build
	$(BIN)/messenger-bench suite --bin-dir $(BIN) --out target/bench

## The bench's CI smoke test only (about 10 s).
bench-smoke: build
	$(CARGO) test --release -p messenger-bench
