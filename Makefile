# stackops — see README.md. `make test` is what CI runs; `make demo` shows the operator on the embedded lab.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: deps system-deps venv crds docs check-generated lab-prepare lab-prepare-node test unit integration e2e demo demo-down lab-up lab-down image clean

deps: system-deps venv

system-deps:
	bash scripts/install-system-deps.sh

venv: $(BIN)/stackops

# The operator (stackops, with the test dependencies) and the lab (stackops-lab, lab/: its own distribution, not in
# the image), both editable.
$(BIN)/stackops: pyproject.toml lab/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]' -e lab/
	touch $@

crds: venv
	$(BIN)/stackops crds

docs: venv
	$(BIN)/stackops docs

check-generated: venv
	$(BIN)/stackops crds --check
	$(BIN)/stackops docs --check

# Build (once, cached) the local control plane before pytest, so no test's time limit includes the build; with the
# lab node's binaries (kubelet, kube-proxy, kube-controller-manager, kube-scheduler, pause) for the e2e tests.
lab-prepare: venv
	@if [ -z "$$KUBECONFIG" ]; then $(BIN)/stackops lab prepare; fi

lab-prepare-node: venv
	@if [ -z "$$KUBECONFIG" ]; then $(BIN)/stackops lab prepare --node; fi

# pytest exits 5 when it collected no test: make treats that as a failure, as it should. Like `make demo`, it
# installs what it needs first (Debian packages only when missing: as root, or it says which to install).
test: deps check-generated lab-prepare-node
	$(BIN)/pytest $(PYTEST_ARGS)

# One tier each (the folders of tests/; conftest.py marks every test with its folder's tier): unit needs nothing
# running; integration starts a kube-apiserver, simulators and local processes; e2e needs the lab (root).
unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: deps lab-prepare
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: deps lab-prepare-node
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

demo: deps lab-prepare-node
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

demo-down: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh down

# The operator image from the Dockerfile, with buildah (root; no Docker, no registry: the base is made from Debian's
# packages). Cached by the hash of the build context: an unchanged tree builds nothing. Prints the OCI archive's path.
image: deps
	$(BIN)/stackops lab image

lab-up: venv
	$(BIN)/stackops lab up

lab-down: venv
	$(BIN)/stackops lab down

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info operator/*.egg-info lab/build lab/*.egg-info
