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

# The benchmark: scenarios against their baselines (--quick: under 30 s).
bench *args:
    {{venv}}/trt bench {{args}}

# Start-up and import checks, the delays and the spawn workloads.
bench-foundation *args:
    {{venv}}/python bench/foundation.py {{args}}

# Persistence cost and crash consistency of the run state.
bench-state:
    {{venv}}/python bench/persistence.py
    {{venv}}/python bench/crash_consistency.py
