# The two commands of the README, and the pieces they are made of.
.PHONY: demo test plugins servers

## Local demo: control plane, CRDs, operator (Ctrl-C stops it).
demo:
	bash scripts/demo.sh

## Every check and test, against real servers (what CI runs).
test:
	bash scripts/test.sh

## Build the plugin crates to wasm32-wasip2 components (target/plugins).
plugins:
	bash scripts/build-plugins.sh

## Install (build once, cached) the real servers the tests use.
servers:
	bash tests/scripts/install-servers.sh
