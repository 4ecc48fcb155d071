# tiffin_rt: `make run` starts the server on an embedded PostgreSQL; `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The page's Socket.IO client, from the npm registry (git-ignored; no CDN at run time).
SOCKETIO_CLIENT := 4.8.1
VENDOR_JS := tiffin_rt/web/static/vendor/socket.io.min.js
# The browser test drives Debian's chromium; installed where missing (CI runs as root).
CHROMIUM := /usr/bin/chromium
# The load-balancer tests run Debian's nginx as their own child process (never the service).
NGINX := /usr/sbin/nginx
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test lint bench clean

install: $(STAMP) $(VENDOR_JS)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(VENDOR_JS):
	npm install --prefix build/npm --no-audit --no-fund --silent socket.io-client@$(SOCKETIO_CLIENT)
	mkdir -p $(@D)
	cp build/npm/node_modules/socket.io-client/dist/socket.io.min.js* $(@D)/

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium

$(NGINX):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 nginx

run: install
	$(BIN)/tiffin-rt serve --config config.yaml

test: install $(CHROMIUM) $(NGINX)
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy --strict tiffin_rt

# `make bench` runs every scenario against tiffin_rt and both peers, then tiffin_rt on 2 and 3
# nodes behind nginx (about 5 minutes);
# `make bench BENCH_ARGS="--scenario fanout --servers tiffin,node"` runs a part of it.
BENCH_ARGS ?=
bench: install bench/node_modules/.installed $(NGINX)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench/node_modules/.installed: bench/package.json
	cd bench && npm install --no-audit --no-fund --silent
	touch $@

clean:
	rm -rf $(VENV) .tiffin build *.egg-info tiffin_rt/web/static/vendor
