# pocketvqe: `make build` runs the main job, `make test` runs the test suite.
# Both do all the set-up on a fresh machine: system packages, .venv, the package itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the project uses (audio decoding, ARM emulation, report checks; gcc builds webrtcvad for
# resemblyzer; cmake, g++ and g++-aarch64-linux-gnu build the native runner for the host and for aarch64).
APT_PACKAGES ?= ffmpeg sox espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	libspeexdsp1 pocketsphinx-testdata qemu-user chromium fonts-dejavu-core gcc libc6-dev \
	cmake g++ g++-aarch64-linux-gnu
STAMP := $(VENV)/.installed

.PHONY: build test setup sysdeps bench runner clean

setup: sysdeps $(STAMP)

sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else echo "warning: missing system packages:$$missing (run as root or install them)"; fi; \
	fi

# pip's own notes (index locations, the editable-install notice) go to .venv/install.log; shown on failure.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "installing pocketvqe and its Python packages into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -c constraints.txt -e '.[all]'; } \
	  > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

build: setup
	@$(BIN)/pocketvqe build

# Two workers (CI's two cores; each test runs torch on one thread); a file's tests stay on one worker, so
# its module fixtures (exported programs) are made once. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests
	$(BIN)/python -m pytest -q device_tests/suite --target qemu-arm64 --benchmark-skip

# The native runner for the host and aarch64: build/runner-host/, build/runner-aarch64/ (cached builds).
runner: setup
	@$(BIN)/pocketvqe runner build --out build

bench: setup
	$(BIN)/python -m pytest -q --benchmark-only device_tests/suite/bench_step.py

clean:
	rm -rf build .pytest_cache
