.DEFAULT_GOAL := help
.PHONY: help run cluster test lint bench screenshots

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: ## serve the app at http://127.0.0.1:8000 (memory mode, one process)
	./scripts/run

cluster: ## 3 replicas behind nginx sharing Redis at http://127.0.0.1:8080 (STORAGE=memory: the bypass; PORT=N)
	./scripts/cluster --storage $(or $(STORAGE),redis) --port $(or $(PORT),8080)

test: ## run the whole test suite (installs what it needs)
	./scripts/test

lint: ## ruff and mypy
	.venv/bin/ruff check backend tests && .venv/bin/mypy

bench: ## measure what rate limiting costs; writes docs/benchmarks.{md,json} and charts (~25 min)
	./scripts/bench

screenshots: ## retake the README's screenshots (docs/images) with the browser tests
	CHATLIMIT_SCREENSHOTS=docs ./scripts/test -m browser
