# The quickstart: `make tour` (the main job on embedded defaults) and `make test` (the whole suite).
.PHONY: setup tour test test-fast lint bench-smoke
PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

tour: setup
	$(PY) -m vlkit tour

test: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	.venv/bin/lint-imports
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

bench-smoke: setup
	HF_HUB_OFFLINE=1 $(PY) benchmarks/zero_shot_throughput.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/train_throughput.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/time_to_accuracy.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/time_to_accuracy.py --smoke --threads 1 --seeds 0 --recipe recipes/llava-scenes.yaml
	HF_HUB_OFFLINE=1 $(PY) benchmarks/shape_probe.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/patch_probe.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/relation_control.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/vlm_plateau.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/unseen_tokens.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/question_reading.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/instruct_template_speed.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/instruct_throughput.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/serve_load.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/vlm_train_throughput.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/length_groups.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/matmul_shapes.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/question_reader_speed.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/code_ab.py --smoke --threads 1 --before src
	HF_HUB_OFFLINE=1 $(PY) benchmarks/vlm_generation.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/cold_start.py --smoke
	HF_HUB_OFFLINE=1 $(PY) benchmarks/training_free.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/detection.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/segmentation.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/index_scale.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/fusion.py --smoke --threads 1
	HF_HUB_OFFLINE=1 $(PY) benchmarks/magic.py --smoke --threads 1
