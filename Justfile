# trt's everyday commands. `just --list` shows them.

venv := ".venv/bin"

# List the recipes.
default:
    @just --list

# Run the main job: 100 real sleeps at concurrency 5.
run file="tasks/one-hundred-delays.json" concurrency="5":
    {{venv}}/trt run {{file}} --concurrency {{concurrency}}

# The whole test suite.
test *args:
    {{venv}}/pytest {{args}}

# Lint, format check and strict typing: what CI enforces.
lint:
    {{venv}}/ruff check src tests tasks bench
    {{venv}}/ruff format --check src tests tasks bench
    {{venv}}/mypy --strict src

# Measure start-up, the delays workload and the spawn workload.
bench *args:
    {{venv}}/python bench/foundation.py {{args}}
