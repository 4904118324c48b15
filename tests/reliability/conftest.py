"""The end-to-end fixtures (the real llama-server and the demo model), shared with tests/e2e."""

from tests.e2e.conftest import llama_server, models_dir

__all__ = ["llama_server", "models_dir"]
