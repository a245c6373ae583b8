# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REDIS_PORT ?= 6379
# The demo's S3 server: rclone, or seaweedfs (which checks every checksum the worker sends).
S3_SERVER ?= rclone

.PHONY: install test lint unit integration demo bench redis clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# uv installs what pip would from the same pins, in 11 s where pip took 41 s here.
	$(PY) -m pip install --quiet 'uv>=0.5,<1'
	$(PY) -m uv pip install --quiet --python $(PY) -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Start a throwaway Redis on loopback unless one already answers.
redis:
	@redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 || \
	  redis-server --daemonize yes --bind 127.0.0.1 --port $(REDIS_PORT) --save "" --appendonly no

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: install redis lint
	# Three processes on two cores: most tests wait on workers, stores and the sandbox, not the
	# CPU, and a third process took the suite from 3:57-4:25 to 2:42-3:44 here.
	$(PY) -m pytest -p no:cacheprovider -n 3 --dist loadfile

unit: install
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration: install redis
	$(PY) -m pytest -p no:cacheprovider tests/integration

demo: install redis
	$(PY) -m devstack.demo --s3 $(S3_SERVER)

# The benchmarks also compare with awscli (the `bench` extra), which the tests do not need.
bench: install redis
	$(PY) -m uv pip install --quiet --python $(PY) -e '.[dev,bench]'
	$(PY) bench/stream.py

clean:
	rm -rf .demo .pytest_cache .mypy_cache .ruff_cache
