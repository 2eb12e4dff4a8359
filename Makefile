# CANDLE/Supervisor-style hyperparameter search. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

# Empty means the default (PILOT=bench, ALGO=random, PROCS=4, MODE=resident; `emews workflow
# --help`), so that RESUME=ID can tell what was given: a resume keeps what the experiment started
# with and refuses PILOT, ALGO, EXP, BUDGET, SPACE and SETTINGS.
PILOT ?=
ALGO ?=
PROCS ?=
BUDGET ?=
SPACE ?=
DB ?=
EXP ?=
MODE ?=
TIMEOUT ?=
OPT_TIMEOUT ?=
SETTINGS ?=
# Early stopping (docs/stopping.md): STOPPER=asha or median, with settings: asha:eta=3,grace=1
STOPPER ?=
RESUME ?=
# Across hosts without a batch system (docs/sites.md): HOSTS=node1:4,node2:4 or a host file.
HOSTS ?=
# Batch submission (docs/sites.md): SITE=slurm|pbs|lsf|local (workflows/sites/SITE.toml).
SITE ?=
NODES ?=
PPN ?=
WALLTIME ?=
QUEUE ?=
ACCOUNT ?=
DRYRUN ?=
# GPUs on each node: each worker rank gets one by its rank on the node (docs/sites.md).
GPUS_PER_NODE ?=

.PHONY: setup apt venv test workflow status clean

setup: apt venv

# Installs only what is missing, so a second `make setup` is quick and changes nothing.
apt:
	@missing=$$(for p in $$(grep -v '^#' deps/apt.txt); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  $$(command -v sudo >/dev/null && [ $$(id -u) -ne 0 ] && echo sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$(command -v sudo >/dev/null && [ $$(id -u) -ne 0 ] && echo sudo) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi

$(VENV)/.installed: deps/requirements.txt setup.cfg setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r deps/requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The tests run in TEST_JOBS processes (pytest-xdist), each taking whole test files (--dist
# loadfile: a file's module fixtures, a PostgreSQL server or Chromium, start once). Most of a
# test's time is spent waiting on sleeps, subprocesses and sockets, which 2 processes on 2 cores
# overlap. TEST_JOBS=0: everything in one process, in order.
TEST_JOBS ?= 2

test: venv
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

# The variables reach the command through the environment, never re-parsed by the shell, so
# SETTINGS="mode = 'batch'" and paths with spaces arrive as written.
workflow: export PILOT := $(PILOT)
workflow: export ALGO := $(ALGO)
workflow: export PROCS := $(PROCS)
workflow: export BUDGET := $(BUDGET)
workflow: export SPACE := $(SPACE)
workflow: export DB := $(DB)
workflow: export EXP := $(EXP)
workflow: export MODE := $(MODE)
workflow: export TIMEOUT := $(TIMEOUT)
workflow: export SETTINGS := $(SETTINGS)
workflow: export STOPPER := $(STOPPER)
workflow: export OPT_TIMEOUT := $(OPT_TIMEOUT)
workflow: export RESUME := $(RESUME)
workflow: export HOSTS := $(HOSTS)
workflow: export SITE := $(SITE)
workflow: export NODES := $(NODES)
workflow: export PPN := $(PPN)
workflow: export WALLTIME := $(WALLTIME)
workflow: export QUEUE := $(QUEUE)
workflow: export ACCOUNT := $(ACCOUNT)
workflow: export DRYRUN := $(DRYRUN)
workflow: export GPUS_PER_NODE := $(GPUS_PER_NODE)
workflow: venv
	@$(VENV)/bin/emews workflow --pilot "$$PILOT" --algo "$$ALGO" --procs "$$PROCS" \
	  --budget "$$BUDGET" --space "$$SPACE" --db "$$DB" --exp "$$EXP" --mode "$$MODE" \
	  --timeout "$$TIMEOUT" --opt-timeout "$$OPT_TIMEOUT" --settings "$$SETTINGS" --stopper "$$STOPPER" \
	  --resume "$$RESUME" --hosts "$$HOSTS" --site "$$SITE" --nodes "$$NODES" --ppn "$$PPN" \
	  --walltime "$$WALLTIME" --queue "$$QUEUE" --account "$$ACCOUNT" --dryrun "$$DRYRUN" \
	  --gpus-per-node "$$GPUS_PER_NODE"

# `make status` lists the experiments in the store; `make status ID=3` shows one.
status: export DB := $(DB)
status: export ID := $(ID)
status: venv
	@$(VENV)/bin/emews status $${ID:+"$$ID"} --db "$$DB"

clean:
	rm -rf runs .pytest_cache
