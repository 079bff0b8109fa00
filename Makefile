# One entry point for developers and CI. `make test` installs what it needs
# and runs every check; the finer targets run one part.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COLLECTION_ROOT := build/collections/ansible_collections/lowlatency/tuning
SYSTEM_PACKAGES := qemu-system-x86 qemu-utils debootstrap grub-pc-bin grub2-common \
	parted dosfstools e2fsprogs openssh-client rsync iproute2 procps util-linux \
	mmdebstrap
# The scenarios `make test` (and so CI) runs, two at a time: all of them,
# longest first (integration, then realtime) so that no long one starts last
# and leaves one lane idle (docs/testbed.md, "Two scenarios at a time";
# times in docs/ci-time.md).
CI_SCENARIOS ?= integration realtime hugepages kernel service_pinning irq smt fleet nic testbed cpu_layout

.PHONY: help setup system-deps lint sanity unit localhost molecule molecule-ci test demo compare proto proto-check lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps:  ## install the Debian/Ubuntu packages the VM test bed needs (root or sudo)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): requirements-dev.txt reference_service/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q -e 'reference_service[plot,codegen]'
	touch $@

setup: $(STAMP)  ## create .venv with the pinned tools and the reference service

lint: setup  ## ruff, yamllint, ansible-lint and the generated-code check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint
	$(MAKE) proto-check

sanity: setup  ## ansible-test sanity from an ansible_collections/ path
	rm -rf build/collections && mkdir -p $(COLLECTION_ROOT)
	git ls-files -co --exclude-standard | grep -v -E '^(reference_service|\.ansible)/' | rsync -a --files-from=- . $(COLLECTION_ROOT)/
	# ansible-test fetches its pip bootstrap script from a host outside the package
	# index; a stand-in in its cache installs the same pins from the index.
	pip_version=$$(grep -oP "pip='\K[0-9.]+" $$($(BIN)/python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py); \
	mkdir -p $(HOME)/.ansible/test/cache && \
	  cp tests/sanity/get_pip_from_index.py $(HOME)/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	cd $(COLLECTION_ROOT) && git init -q && git add -A && \
	  PATH=$(CURDIR)/$(BIN):$$PATH $(CURDIR)/$(BIN)/ansible-test sanity --venv --requirements --python 3.11

unit: setup  ## pytest: module and filter unit tests, reference service tests
	$(BIN)/pytest -q tests/unit reference_service/tests

localhost: setup  ## tune.yml, benchmark, verify and rollback against this machine (-c local; root, no systemd/GRUB, else skipped)
	$(BIN)/pytest -q -rs tests/localhost

molecule: setup system-deps  ## every molecule scenario on throwaway QEMU VMs (SCENARIOS="a b" for some, MOLECULE_JOBS=2 at a time)
	PATH="$(CURDIR)/$(BIN):$$PATH" tests/testbed/run-scenarios.sh $(SCENARIOS)

image: system-deps  ## build the test bed's Debian 12 VM image, or reuse the cached one
	tests/testbed/image/build-image.sh

molecule-ci: setup system-deps  ## the molecule scenarios CI runs (CI_SCENARIOS)
	PATH="$(CURDIR)/$(BIN):$$PATH" tests/testbed/run-scenarios.sh $(CI_SCENARIOS)

# localhost runs before the scenarios, not beside them: a third load on two
# cores saves little and slows the guests, whose reboots then come close to
# their timeouts (docs/testbed.md, "localhost runs before the scenarios").
test: lint sanity unit localhost molecule-ci  ## everything CI runs

demo: setup system-deps  ## boot a test-bed VM, run tune.yml on it with a baseline, print the verify report and before/after percentiles (DEMO_ARGS=--keep keeps the VM)
	$(BIN)/python tests/testbed/demo.py $(DEMO_ARGS)

compare: setup  ## quick local benchmark: default vs tuned vs raw TCP
	$(BIN)/lowlatency-service compare --json artifacts/compare.json --plot artifacts/compare.png

proto: setup  ## regenerate the committed protobuf/gRPC code
	$(BIN)/python reference_service/tools/gen_proto.py

proto-check: setup  ## fail when the committed generated code is stale
	$(BIN)/python reference_service/tools/gen_proto.py --check

lock:  ## re-pin requirements-dev.txt from a fresh resolution
	rm -rf build/lock && $(PYTHON) -m venv build/lock
	build/lock/bin/pip install -q ansible-core==2.19.* molecule pytest-testinfra ansible-lint \
	  grpcio grpcio-tools grpcio-health-checking grpcio-reflection protobuf hdrhistogram \
	  jinja2 prometheus-client matplotlib yamllint ruff pytest mitogen py-spy
	{ head -2 requirements-dev.txt; build/lock/bin/pip freeze | grep -v -E '^(pip|setuptools|wheel)=='; } > requirements-dev.txt.new
	mv requirements-dev.txt.new requirements-dev.txt

clean:  ## remove the venv, build output and artifacts
	rm -rf $(VENV) build artifacts .cache
