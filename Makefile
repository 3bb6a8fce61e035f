# Vigil: the commands a developer and CI use. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
MLSERVER_VENV := .venv-mlserver
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MLSTAMP := $(MLSERVER_VENV)/.installed
# The unit suite keeps its bytecode and pytest's rewritten test modules in __pycache__
# even where PYTHONDONTWRITEBYTECODE is set: recompiling them costs each worker ~3 s a run.
# The bytecode is compiled once, on every core, before the workers start (each would
# compile every module it imports itself: 2-3 s more on a fresh clone; 0.1 s when cached),
# and so are pytest's rewritten test modules (hack/rewrite_tests.py: ~5 s of each worker's
# collection on a fresh clone; 6 s of CPU once, over the cores; 0.2 s when cached).
PRECOMPILE := PYTHONDONTWRITEBYTECODE= $(PY) -m compileall -q -j 0 operator bench tests > /dev/null \
	&& $(PY) hack/rewrite_tests.py tests/unit
UNIT := $(PRECOMPILE) && PYTHONDONTWRITEBYTECODE= $(PY) -m pytest
# pytest-xdist on every core; on a single core one process (a lone worker adds a second
# interpreter's imports and collection for nothing).
UNIT_WORKERS := $(if $(filter 1,$(shell nproc 2>/dev/null || echo 1)),-p no:xdist,-n auto)
# MLServer runs as its own process (as in a pod), from its own environment, on a Python
# both it (1.7.1: <3.13) and Vigil (>=3.11) run on.
MLSERVER_PKGS := mlserver==1.7.1 mlserver-sklearn==1.7.1
MLSERVER_PYTHONS := 3.11 3.12
# scikit-learn pickles the models: .venv trains them (the demo, the tests) and the image's
# MLServer loads them, refusing a newer scikit-learn's. Both environments take the image's.
IMAGE_LOCK := hack/images/mlserver-sklearn/requirements.txt
MODEL_PINS := $(shell grep -E '^scikit-learn==' $(IMAGE_LOCK))
CONSTRAINTS = -c <(printf '%s\n' $(or $(MODEL_PINS),$(error no scikit-learn pin in $(IMAGE_LOCK))))

.PHONY: help install cluster-build seaweedfs helm flux argocd images builds demo-builds cluster-up cluster-down test test-unit test-unit-all test-e2e lint demo demo-down clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(STAMP) $(MLSTAMP) ## virtual environments and dependencies (.venv, .venv-mlserver)

# venv <folder>: made unless whole (pip in it). Debian's python3 without python3-venv leaves
# bin/python and no pip, which later runs took for a made environment: removed instead.
define venv
	@test -x $(1)/bin/pip || { rm -rf $(1) && $(PYTHON) -m venv $(1); } || { rm -rf $(1); \
	  echo "make: $(PYTHON) -m venv $(1) failed (above): install Python's venv module" \
	    "(on Debian: apt-get install python3-venv) and run make again" >&2; exit 1; }
endef

# mlserver_python: $(PYTHON) is one MLServer runs on; an environment made by another goes
# (one already made by a Python it runs on stays, whatever $(PYTHON) is now).
define mlserver_python
	@version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])') || exit 1; \
	made=$$($(MLSERVER_VENV)/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
	  2>/dev/null) || true; \
	case " $(MLSERVER_PYTHONS) " in *" $$version "*) ;; *) \
	  case " $(MLSERVER_PYTHONS) " in *" $$made "*) [ -n "$$made" ] && exit 0;; esac; \
	  echo "make: MLServer 1.7.1 runs on Python 3.11 or 3.12, and $(PYTHON) is $$version:" \
	    "make PYTHON=python3.12 install (or PYTHON=python3.11)" >&2; exit 1;; esac; \
	if [ -n "$$made" ] && [ "$$made" != "$$version" ]; then \
	  echo "make: $(MLSERVER_VENV) runs Python $$made, $(PYTHON) is $$version: making it again"; \
	  rm -rf $(MLSERVER_VENV); fi
endef

$(STAMP): pyproject.toml $(IMAGE_LOCK)
	$(call venv,$(VENV))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[dev]'
	@touch $@

$(MLSTAMP): Makefile $(IMAGE_LOCK)
	$(call mlserver_python)
	$(call venv,$(MLSERVER_VENV))
	$(MLSERVER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MLSERVER_VENV)/bin/python -m pip install --quiet $(CONSTRAINTS) $(MLSERVER_PKGS)
	@touch $@

cluster-build: ## build (once) and cache the control-plane binaries
	bash hack/build-cluster.sh

seaweedfs: ## build (once) and cache SeaweedFS, the S3-compatible store of the artifact tests
	bash hack/build-seaweedfs.sh >/dev/null

helm: ## build (once) and cache helm from its Go module (the chart's tests)
	bash hack/build-helm.sh >/dev/null

flux: ## build (once) and cache Flux's source- and kustomize-controller and their CRDs (the GitOps tests)
	bash hack/build-flux.sh >/dev/null

argocd: ## build (once) and cache Argo CD (its one binary, Go 1.27.3 fetched for it) and its CRDs (the GitOps tests)
	bash hack/build-argocd.sh >/dev/null

images: $(STAMP) ## build (once) and cache the local container images (vigil.local/*); IMAGES="pause ..."
	bash hack/build-images.sh $(IMAGES)

# What the tests and the demo need, built side by side and all started at once: each build
# leaves a core idle while it downloads or links, and with empty caches the builds are half of
# the first run, bound by their total work on two cores (bench/README.md, CI timing).
BUILD_JOBS ?= 7
builds: ## build (once) and cache everything make test needs: environments, binaries, images
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) install cluster-build argocd seaweedfs helm flux images

# The demo runs MLServer from its image: .venv-mlserver (the integration tests') is not built.
demo-builds: ## build (once) and cache what make demo needs
	@$(MAKE) --no-print-directory -j$(BUILD_JOBS) $(STAMP) cluster-build seaweedfs images

cluster-up: $(STAMP) cluster-build ## start (or reuse) the local Kubernetes cluster
	$(VENV)/bin/vigil-devcluster up

cluster-down: $(STAMP) ## stop the local cluster, remove its processes and data
	$(VENV)/bin/vigil-devcluster down

# The integration and e2e tests run on E2E_WORKERS pytest-xdist workers, then the tests marked
# `serial` alone (pyproject.toml says which, tests/e2e/kit/workers.py how workers share the
# cluster); both phases run, the target fails if either did. They keep both cores about 84 %
# busy, so three workers give about 1.5x, not 3x (bench/README.md, CI timing). 0: one process.
E2E_WORKERS ?= 3
define e2e_run
	@if [ "$(E2E_WORKERS)" = 0 ]; then \
	  echo "$(PY) -m pytest $(1) --durations=30"; \
	  $(PY) -m pytest $(1) --durations=30; \
	else \
	  status=0; \
	  echo "$(PY) -m pytest $(1) -m 'not serial' -n $(E2E_WORKERS) --dist loadgroup --durations=30"; \
	  $(PY) -m pytest $(1) -m 'not serial' -n $(E2E_WORKERS) --dist loadgroup --durations=30 || status=$$?; \
	  echo "$(PY) -m pytest $(1) -m serial --durations=30"; \
	  $(PY) -m pytest $(1) -m serial --durations=30 || status=$$?; \
	  exit $$status; \
	fi
endef

test: builds ## unit (slow ones too), integration and e2e tests (starts or reuses the local cluster); E2E_WORKERS=0: one process
	$(UNIT) tests/unit $(UNIT_WORKERS)
	$(call e2e_run,tests/integration tests/e2e)

test-unit: $(STAMP) ## unit tests but those marked slow: no cluster, on every core
	$(UNIT) tests/unit $(UNIT_WORKERS) -m 'not slow'

test-unit-all: $(STAMP) ## every unit test, the slow ones too (as make test runs them)
	$(UNIT) tests/unit $(UNIT_WORKERS)

test-e2e: builds ## e2e tests only (E2E_WORKERS as for make test)
	$(call e2e_run,tests/e2e)

# ruff without its cache: a file's cached verdict outlives a move of a module it imports
# (first- or third-party), and the whole check takes a tenth of a second anyway.
lint: $(STAMP) ## ruff and the import-linter layering contracts
	$(VENV)/bin/ruff check --no-cache operator tests bench
	$(VENV)/bin/ruff format --no-cache --check operator tests bench
	$(VENV)/bin/lint-imports

demo: demo-builds ## set up everything and play the scenarios; leaves it running
	$(VENV)/bin/vigil-devcluster demo up

demo-down: $(STAMP) ## stop the demo's processes and the local cluster, remove their data
	$(VENV)/bin/vigil-devcluster demo down

clean: ## remove virtual environments (the binary cache stays)
	rm -rf $(VENV) $(MLSERVER_VENV)

.PHONY: bench-sidecar
bench-sidecar: $(STAMP) $(MLSTAMP) ## sidecar overhead (latency, throughput, CPU, RSS; payload width x shadow); BENCH_ARGS=--only-matrix
	$(PY) bench/sidecar/run.py $(BENCH_ARGS)

.PHONY: bench-gates
bench-gates: $(STAMP) ## rollout gates' false-rollback/promotion rates, simulated (no cluster); BENCH_ARGS="--aa-rollouts 2000 --rollouts 500 --cases A/A,error --jobs 2"
	$(PY) bench/gates/run.py $(BENCH_ARGS)

.PHONY: bench-detection
bench-detection: $(STAMP) cluster-build ## drift and bad-candidate detection latency on the local cluster's real node (in windows and intervals)
	$(PY) bench/detection/run.py $(BENCH_ARGS)

.PHONY: bench-health
bench-health: $(STAMP) cluster-build ## health-evaluation cycle for 10/100/500 ModelDeployments (direct and prometheus)
	$(PY) bench/health/run.py

.PHONY: bench-scale
bench-scale: $(STAMP) cluster-build ## 100/500/1000 ModelDeployments to Ready vs plain Deployments, operator RSS/CPU/API calls (own cluster, ports 26800+)
	$(PY) bench/scale/run.py $(BENCH_ARGS)

.PHONY: bench-soak
bench-soak: $(STAMP) cluster-build ## 30-minute soak: 100 ModelDeployments, traffic on 3 on the real node; RSS/fds/connections/tasks (own cluster, ports 26900+, root)
	$(PY) bench/soak/run.py $(BENCH_ARGS)

IMAGE ?= ghcr.io/vigil-dev/vigil:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
KIND_CLUSTER ?= vigil

.PHONY: image kind-up kind-e2e kind-down
image: ## build the one image (operator, sidecar, CLI); needs a Docker engine
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine reachable (docker info failed); install Docker or use the Docker-free local cluster (make cluster-up)" >&2; exit 1; }
	docker build -t $(IMAGE) .

kind-up: ## a kind cluster with the image loaded, Prometheus and the operator (needs Docker and kind)
	IMAGE=$(IMAGE) KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/up.sh

kind-e2e: kind-up ## the e2e suite against the kind cluster's real pods
	IMAGE=$(IMAGE) KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/e2e.sh

kind-down: ## delete the kind cluster (and, on a machine with no Docker, the private engine: hack/kind/local.sh)
	@if docker info >/dev/null 2>&1; then kind delete cluster --name $(KIND_CLUSTER); \
	else KIND_CLUSTER=$(KIND_CLUSTER) bash hack/kind/local.sh down; fi

AUDIT_VENV := .venv-audit
.PHONY: audit
audit: $(STAMP) ## dependency audit (pip-audit): the image's locked requirements and the installed .venv; see docs/security.md
	@test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install --quiet pip-audit==2.10.1; }
	$(AUDIT_VENV)/bin/pip-audit --progress-spinner off -r hack/image/requirements.txt --no-deps --disable-pip
	$(AUDIT_VENV)/bin/pip-audit --progress-spinner off --path "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

.PHONY: bench-fetch
bench-fetch: $(STAMP) seaweedfs ## 1 GB artifact: vigil-fetch vs curl over http and from SeaweedFS's S3 (time, peak RSS); BENCH_ARGS="--size-mib 1024 --rounds 5"
	$(PY) bench/fetch/run.py $(BENCH_ARGS)
