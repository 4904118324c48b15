"""The benchmark harness: corral against llama-server and llama.cpp's router mode.

Run it with ``.venv/bin/python -m bench.run`` (see bench/README.md).
"""
