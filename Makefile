# Entry points for people and CI. Run as root on Debian 12: `make demo`, `make test`.
.PHONY: deps demo test unit sanity lint bench changelog build

deps:
	tools/deps

demo: deps
	tools/demo

test: deps
	tools/test

unit: deps
	tools/test unit

sanity: deps
	tools/test sanity

lint: deps
	tools/test lint

bench: deps
	tools/bench

changelog:
	tools/changelog lint

build:
	ansible-galaxy collection build --force --output-path .cache/dist .
