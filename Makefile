# The one command surface: README, CI and people all use these targets.
VENV      ?= .venv
PY        := $(VENV)/bin/python
# CPU wheel by default (on this project's machines it is already on disk). GPU users:
#   make install TORCH_SPEC=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
# Test processes: the Ray tests (marked xdist_group("ray"), run on one process by the
# `--dist loadgroup` of pyproject's addopts) run beside the rest; TEST_WORKERS=0 runs the
# suite in one process. With several processes torch runs one thread each
# (OMP_NUM_THREADS=1): on 2 cores, 2 processes x 2 OpenMP threads only spin.
# One level of tests (markers by folder, tests/conftest.py): PYTEST_ARGS='-m unit', or
# -m integration, -m e2e, -m "not e2e".
TEST_WORKERS ?= 2
export RECU_DATA_DIR ?= $(CURDIR)/var/data
export RECU_CACHE_DIR ?= $(CURDIR)/var/cache
SHARED_CIFAR := $(CURDIR)/../shared/data/cifar10-jpeg.tar.gz

.PHONY: install lint format typecheck test bench bench-service demo demo-local data clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: install
	$(if $(filter 0,$(TEST_WORKERS)),,OMP_NUM_THREADS=1) $(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Real CIFAR-10 (JPEG, imagefolder layout) from the shared archive into the ignored cache.
data: $(RECU_DATA_DIR)/cifar10-jpeg/test

$(RECU_DATA_DIR)/cifar10-jpeg/test:
	@test -f $(SHARED_CIFAR) || { echo "missing $(SHARED_CIFAR) (see docs/benchmarks.md)"; exit 1; }
	mkdir -p $(RECU_DATA_DIR)
	tar xzf $(SHARED_CIFAR) -C $(RECU_DATA_DIR)

bench: install data
	$(PY) -m bench.binarize_overhead
	$(PY) -m bench.data_pipeline
	$(PY) -m bench.accuracy_cifar
	$(PY) -m bench.export_size
	$(PY) -m bench.engine_speed
	$(PY) -m bench.engine_agreement

# The service, sweep, load and dashboard figures (minutes each; not in CI).
bench-service: install
	$(PY) -m bench.service_overhead
	$(PY) -m bench.sweep_tau
	$(PY) -m bench.load
	$(PY) -m bench.queue_throughput
	$(PY) -m bench.cluster_sim
	$(PY) -m bench.dashboard_payload

# The whole service on this machine: API + worker (local Ray) on a SQLite file, a job
# submitted over HTTP, its checkpoint downloaded and evaluated locally.
demo: install
	$(PY) -m recu_cli.demo

# The same training without the service, in one process.
demo-local: install
	$(VENV)/bin/recu train --model resnet20 --dataset digits --epochs 30 --batch-size 32 \
		--lr 0.1 -o var/runs/demo-resnet20-digits.safetensors
	$(VENV)/bin/recu evaluate var/runs/demo-resnet20-digits.safetensors

clean:
	rm -rf $(VENV) var/cache var/runs .pytest_cache .mypy_cache .ruff_cache
