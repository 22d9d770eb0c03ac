# Two commands: `make demo` (set up .venv, train + evaluate the embedded tiny default) and
# `make test`. Set-up is re-run only when its inputs change.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
UPSTREAM_COMMIT := $(shell tr -d '[:space:]' < UPSTREAM_VERSION)
UPSTREAM_URL := https://github.com/Robot-VLAs/RoboVLMs
UPSTREAM_DIR ?= .cache/RoboVLMs
STAMP := $(VENV)/.setup-$(UPSTREAM_COMMIT)
PYTEST_ARGS ?=
# Every process that starts a ROS 2 node keeps DDS discovery on this machine (the bridge also sets it itself).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
# pytest-xdist workers: one per core, at most 4 (each holds a tiny model, a server, ...);
# whole files go to one worker (--dist loadfile) so module fixtures are built once.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

.PHONY: setup demo test test-all bench upstream-checkout clean

setup: $(STAMP) upstream-checkout

$(STAMP): requirements-pinned.txt requirements-ros.txt pyproject.toml UPSTREAM_VERSION
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -r requirements-pinned.txt
	$(PIP) install -r requirements-ros.txt
	$(PIP) install --no-deps "robovlms @ git+$(UPSTREAM_URL)@$(UPSTREAM_COMMIT)"
	$(PIP) install --no-deps -e .
	rm -f $(VENV)/.setup-* && touch $@

# Upstream's main.py and configs are not part of its package: the contract tests run them
# from a checkout at the pinned commit.
upstream-checkout:
	@if [ "$$(git -C $(UPSTREAM_DIR) rev-parse HEAD 2>/dev/null)" != "$(UPSTREAM_COMMIT)" ]; then \
	  rm -rf $(UPSTREAM_DIR) && mkdir -p $(UPSTREAM_DIR) && \
	  git -C $(UPSTREAM_DIR) init -q && \
	  git -C $(UPSTREAM_DIR) fetch -q --depth 1 $(UPSTREAM_URL) $(UPSTREAM_COMMIT) && \
	  git -C $(UPSTREAM_DIR) checkout -q FETCH_HEAD; \
	fi

demo: setup
	$(VENV)/bin/robovlms-mobile demo

# pytest exits 5 when it collected no test: that is a failure, not a pass.
RUN_PYTEST = ROBOVLMS_UPSTREAM_DIR=$(UPSTREAM_DIR) $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test: setup
	@$(RUN_PYTEST)

test-all: PYTEST_ARGS += --run-slow
test-all: setup
	@$(RUN_PYTEST)

bench: setup
	for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache runs
