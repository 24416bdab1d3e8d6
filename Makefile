# Spiderweb. `make run` starts the embedded demo; `make test` installs and starts what the tests need and runs them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-deps lint bench-alloc bench-scale bench-cni bench-autoscale bench-chaos bench-portal bench-storm clean cni-package image wheel

include tests/lab/lab.mk

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	SPIDERWEB_DEBUG=$${SPIDERWEB_DEBUG:-true} $(PY) manage.py run_embedded

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## test-deps: everything the suite runs against, built or started once per machine
test-deps: $(STAMP)
	bash tests/infra/services.sh >/dev/null
	bash tests/lab/build.sh
	bash tests/helm/build_helm.sh
	$(MAKE) --no-print-directory image
	@command -v prometheus >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	  apt-get install -y -qq --no-install-recommends prometheus; }  # runs the dashboard's queries in tests/helm
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver; }  # tests/browser

## image: the OCI image (image/build.sh; rebuilt only when the packaged sources change) and containerd + runc to
## run it (tests/image). Prints the archive's path, its size and the build time.
image: $(STAMP)
	@command -v containerd >/dev/null && command -v runc >/dev/null || { export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends containerd runc; }
	@set -o pipefail; PYTHON=$(abspath $(PY)) bash image/build.sh | tail -1 | xargs ls -lh | awk '{print "image:", $$9, $$5}'
	@tail -1 $${SPIDERWEB_IMAGE_CACHE:-/var/cache/spiderweb-image}/build-times.log

## wheel: the project's wheel in dist/ (the image installs the same one)
wheel: $(STAMP)
	$(PY) -m pip wheel --no-deps -w dist .
	rm -rf build *.egg-info

test: test-deps
	@set -euo pipefail; \
	eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	export SPIDERWEB_SECRET_KEY=test-only-secret SPIDERWEB_REQUIRE_LAB=1 SPIDERWEB_REQUIRE_IMAGE=1 SPIDERWEB_REQUIRE_BROWSER=1; \
	$(MAKE) --no-print-directory lint; \
	$(PY) manage.py makemigrations --check --dry-run; \
	echo "== allocator and pool rules on the embedded default (SQLite)"; \
	DATABASE_URL=sqlite:///$$(mktemp -d)/sqlite3 $(PY) -m pytest -q -p no:cacheprovider tests/ipam/test_allocation.py tests/ipam/test_validation.py; \
	echo "== the whole suite on PostgreSQL"; \
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

cni-package: $(STAMP)
	$(PY) -m cni.package $${OUT:-dist/cni}

bench-alloc: $(STAMP)
	@set -euo pipefail; eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.alloc

bench-scale: $(STAMP)
	@set -euo pipefail; eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.scale

## bench-portal: how long the admin opens a pool of 60,000 allocations; last line `portal_pool_page_s=...`
bench-portal: $(STAMP)
	@set -euo pipefail; eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.portal

bench-cni: test-deps
	@set -euo pipefail; eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.cni

bench-autoscale: test-deps
	@set -euo pipefail; eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.autoscale

## bench-chaos: 1,000 pods of churn under SIGKILLs and service restarts (root); last line `chaos pods=... reclaim_s=...`
bench-chaos: test-deps
	@set -euo pipefail; eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.chaos

## bench-storm: 1,000 pods up and down with Spiderweb, Whereabouts and host-local (root); last line `storm pods=...`
bench-storm: test-deps
	@set -euo pipefail; bash tests/lab/build-whereabouts.sh >&2; \
	eval "$$(bash tests/infra/services.sh | sed 's/^/export /')"; \
	SPIDERWEB_SECRET_KEY=bench $(PY) -m tests.bench.storm

clean:
	rm -rf $(VENV) .state
