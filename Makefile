# Docent: `make run` serves the bundled app offline; `make test` runs the whole suite.
# Both install what they need into .venv first. Slow builds are cached in $(DOCENT_CACHE).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DOCENT_CACHE ?= $(HOME)/.cache/docent
export PIP_DISABLE_PIP_VERSION_CHECK := 1
ENCODINGS := layers/common/docent/encodings/.complete
PYTEST_ARGS ?=

.PHONY: install run test test-soak lint format bench eval encodings llama tools sam-build clean docusaurus widget

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(PY) requirements-dev.txt requirements-serve.txt layers/common/requirements.txt pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(ENCODINGS): $(VENV)/.installed scripts/bundle_encodings.py
	$(PY) scripts/bundle_encodings.py

install: $(VENV)/.installed $(ENCODINGS)

encodings: $(ENCODINGS)

# Hybrid retrieval offline: the local MiniLM model (installed by `install`) unless a model server
# is configured or EMBEDDING_PROVIDER says otherwise; `make eval` measured the gain.
RUN_EMBEDDINGS := $(if $(OPENAI_API_KEY)$(OPENAI_BASE_URL),openai,local)

# Asks for the sample corpus (Docent's own docs) unless SAMPLE_CORPUS is set, even to "".
run: install
	SAMPLE_CORPUS=$${SAMPLE_CORPUS-docent} EMBEDDING_PROVIDER=$${EMBEDDING_PROVIDER:-$(RUN_EMBEDDINGS)} \
		$(VENV)/bin/docent serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

# The tests' real model server: llama.cpp (wheel compiled once, cached) with SmolLM2-135M.
llama: $(VENV)/.installed
	PYTHON=$(PYTHON) scripts/setup_llama.sh

# The real Docusaurus (npm) the deep-link tests build their fixture with, cached in $(DOCENT_CACHE).
docusaurus:
	scripts/setup_docusaurus.sh

# The widget's npm dependencies from widget/package-lock.json (esbuild, marked, DOMPurify, and
# axe-core for the browser tests), cached in $(DOCENT_CACHE). `scripts/build_widget.sh` rebuilds
# the committed functions/web/static/widget.js from widget/src.
widget:
	scripts/build_widget.sh --deps

# SAM CLI, cfn-lint, hadolint and moto's S3 server, in their own venv.
TOOLS := .venv-tools
$(TOOLS)/.installed: requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet -r requirements-tools.txt
	touch $@

tools: $(TOOLS)/.installed

# The template's Architecture parameter and the layers' wheels: arm64 (the default) or x86_64.
ARCH ?= arm64
sam-build: install tools
	SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint
	LAMBDA_ARCH=$(if $(filter arm64,$(ARCH)),aarch64,$(ARCH)) SAM_CLI_TELEMETRY=0 \
		$(TOOLS)/bin/sam build --parameter-overrides Architecture=$(ARCH)

test: install llama tools widget
	$(PY) -m pytest $(PYTEST_ARGS)

# The benchmark suite (a few minutes): figures to bench/results/, table in bench/results/summary.md.
bench: install
	$(PY) -m bench.run $(BENCH_ARGS)

# Answer quality on real docs (Debian doc packages, cached in $(DOCENT_CACHE)/eval), beside
# LlamaIndex's BM25 pipeline in its own cached venv: bench/results/eval.json and eval.md.
eval: install
	$(PY) -m bench.eval $(EVAL_ARGS)

test-soak: install
	$(PY) -m pytest -m soak -p no:cacheprovider $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check layers functions tests scripts bench
	$(VENV)/bin/ruff format --check layers functions tests scripts bench
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix layers functions tests scripts bench
	$(VENV)/bin/ruff format layers functions tests scripts bench

clean:
	rm -rf $(VENV) .venv-llama $(TOOLS) .aws-sam .data .pytest_cache .mypy_cache .ruff_cache layers/common/docent/encodings
