"""Whether a model's llama-server can answer OpenAI's embeddings, and why not.

Owns llama-server's rule, read from its own checks: ``/v1/embeddings`` needs the server
started with ``--embeddings`` (or ``--reranking``) and a pooling other than ``none``; the
pooling is ``--pooling``'s, else the GGUF's ``<arch>.pooling_type``, else none. A generative
model run with ``--embeddings`` alone pools with none, and llama-server refuses every
request with "Pooling type 'none' is not OAI compatible". It does not build the command
line (``command``) or say what a client sees (``api``).
"""

from __future__ import annotations

from corral.generator.model_settings import ModelConfig
from corral.supervisor.runtime.memory import gguf_info

#: llama-server's flags that turn embeddings on (reranking implies them).
FLAGS = frozenset({"--embeddings", "--embedding", "--reranking", "--rerank"})
#: ``llama_pooling_type``'s values, as ``--pooling`` spells them.
POOLING = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


def pooling(model: ModelConfig, info: gguf_info.GGUFInfo | None) -> str:
    """The pooling llama-server runs ``model`` with: ``--pooling``'s, else the GGUF's."""
    args = model.args
    for i, arg in enumerate(args):
        if arg == "--pooling" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--pooling="):
            return arg.partition("=")[2]
    found = info.arch_value("pooling_type") if info is not None else None
    return POOLING.get(found, "none") if isinstance(found, int) else "none"


def can_embed(model: ModelConfig, info: gguf_info.GGUFInfo | None) -> bool:
    """Whether ``/v1/embeddings`` answers for ``model`` (its flags and its pooling)."""
    return bool(FLAGS & set(model.args)) and pooling(model, info) != "none"


def refusal(model: ModelConfig) -> str | None:
    """Why ``/v1/embeddings`` would fail for a model started with ``--embeddings``, in words
    that name the fix; None when it would not (or corral cannot know: a ``cmd`` model, a
    model without the flag, which llama-server refuses in its own clear words)."""
    if model.cmd is not None or model.path is None or not FLAGS & set(model.args):
        return None
    try:
        info = gguf_info.read(model.path)
    except (OSError, gguf_info.GGUFError):
        return None
    if pooling(model, info) != "none":
        return None
    return (
        f"model {model.name!r} cannot embed: llama-server pools its tokens with 'none' (its "
        "GGUF sets no pooling type and its args no --pooling), which OpenAI-style embeddings "
        "refuse; add `--pooling mean` to its args"
    )
