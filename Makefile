# Quick start: `make demo` (build a demo index on the built-in model and query it), `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := .demo

.PHONY: demo test lint bench bench-eval system-deps clean

# torch is installed first and pinned: 2.13.0 is the CPU build this kind of machine provides; an
# unpinned torch would pull several GB of CUDA wheels.
# clip-benchmark is the reference the eval parity test runs against: its retrieval metrics need only
# torch and tqdm, and its declared requirements (torchvision, open_clip) do not work with this torch,
# hence --no-deps. embedding-reader (autofaiss's reader) reads back `itr export --to clip-retrieval`
# in the tests; it declares pandas<3, which its numpy/parquet readers do not need, hence --no-deps.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade "pip>=25.1"
	$(BIN)/python -m pip install -qq torch==2.13.0
	$(BIN)/python -m pip install -qq -e ".[all]" --group dev
	$(BIN)/python -m pip install -qq --no-deps "clip-benchmark==1.6.2" "embedding-reader==1.8.1"
	touch $(STAMP)

system-deps:
	@scripts/system-deps.sh

demo: $(STAMP) system-deps
	$(BIN)/itr make-dataset emoji --out $(DEMO)/emoji --lang en
	$(BIN)/itr index $(DEMO)/emoji/emoji-en.jsonl --out $(DEMO)/index --repr both
	$(BIN)/itr info $(DEMO)/index
	$(BIN)/itr search $(DEMO)/index "a bicycle" -k 5
	$(BIN)/itr search $(DEMO)/index "a cat" -k 5
	$(BIN)/itr search $(DEMO)/index "pizza" -k 5
	$(BIN)/itr search $(DEMO)/index "eine Katze" -k 5     # German: the trained text head (more languages: --model builtin:multi)
	$(BIN)/itr search $(DEMO)/index --image $(DEMO)/emoji/images/emoji_1f98b.png --target texts -k 5
	$(BIN)/itr search $(DEMO)/index --image $(DEMO)/emoji/images/emoji_1f3b8.png -k 5
	$(BIN)/itr search $(DEMO)/index "a jar of beans" -k 5 --mode sparse --explain   # learned-sparse terms
	$(BIN)/itr search $(DEMO)/index "a jar of beans" -k 5 --mode hybrid
	$(BIN)/itr make-dataset gcompris --out $(DEMO)/gcompris    # real photos and drawings no model trained on
	$(BIN)/itr index $(DEMO)/gcompris/gcompris-en.jsonl --out $(DEMO)/photos -q
	$(BIN)/itr search $(DEMO)/photos "a windmill" -k 5
	@echo "Search it from a browser: $(BIN)/itr serve $(DEMO)/index  (then open http://127.0.0.1:8000/)"

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP) system-deps
	$(BIN)/itr make-dataset emoji --out $(DEMO)/emoji --lang en
	$(BIN)/python benchmarks/encode_throughput.py --data $(DEMO)/emoji --n 512 --json bench-out/encode_throughput.json
	$(MAKE) bench-eval
	$(BIN)/python benchmarks/sparse_vs_dense.py --n 100000 --json bench-out/sparse_vs_dense_100k.json
	$(BIN)/python benchmarks/sparse_vs_dense.py --n 1000000 --json bench-out/sparse_vs_dense_1m.json
	$(BIN)/itr index $(DEMO)/emoji/emoji-en.jsonl --out $(DEMO)/index --repr both -q
	$(BIN)/python benchmarks/serve_load.py --index $(DEMO)/index --json bench-out/serve_load.json
	$(BIN)/python benchmarks/hostile_upload.py --index $(DEMO)/index --rounds 3 --requests 30 --with-legacy --json bench-out/hostile_upload.json
	$(BIN)/python benchmarks/vector_db.py --index $(DEMO)/index --json bench-out/vector_db.json
	$(BIN)/python benchmarks/ann.py --n 1000000 --json bench-out/ann_1m.json
	$(BIN)/python benchmarks/ray_encode.py --data $(DEMO)/emoji --repeat 4 --rounds 3 --configs local,ray-default --json bench-out/ray_encode.json

# Quality of the built-in model on the offline test splits (figures in BENCHMARKS.md).
bench-eval: $(STAMP) system-deps
	$(BIN)/itr eval emoji:en emoji:fr openclipart -m builtin -m builtin:conse --index exact --index faiss:HNSW32 \
	  --index faiss:SQ8 --json bench-out/eval-builtin.json --md bench-out/eval-builtin.md --plot bench-out/eval-builtin.png
	$(BIN)/itr eval emoji:en emoji:fr openclipart -m builtin --index exact --index sparse --index hybrid \
	  --index sparse@max_postings=2000 --json bench-out/eval-sparse.json --md bench-out/eval-sparse.md
	$(BIN)/itr eval emoji:en,fr,de,es -m builtin -m builtin:conse \
	  --json bench-out/eval-multilingual.json --md bench-out/eval-multilingual.md
	$(BIN)/itr eval gcompris-photos gcompris-drawings emoji:en openclipart -m builtin -m builtin:conse-v1 -m builtin:conse \
	  --json bench-out/eval-conse-v2.json --md bench-out/eval-conse-v2.md
	$(BIN)/itr eval gcompris:en,fr,de,es gcompris-photos:en,fr,de,es -m builtin -m builtin:conse \
	  --json bench-out/eval-gcompris-multi.json --md bench-out/eval-gcompris-multi.md

clean:
	rm -rf $(VENV) $(DEMO) bench-out .pytest_cache
