"""Small real GGUF files for tests, written with llama.cpp's own ``gguf`` writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    chat_template: str | None = None,
    context_length: int = 8192,
    vocab: int = 1000,
    fim: bool = False,
    pooling: bool = False,
) -> Path:
    """A GGUF with llama.cpp's usual keys, a vocabulary of ``vocab`` strings, and two
    tensors of 6 and 24 elements (30 parameters)."""
    writer = GGUFWriter(path, arch)
    writer.add_name("Tiny Test")
    writer.add_context_length(context_length)
    writer.add_embedding_length(64)
    writer.add_block_count(2)
    writer.add_head_count(4)
    writer.add_file_type(LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i}" for i in range(vocab)])
    writer.add_token_scores([0.0] * vocab)
    writer.add_array("general.tags", ["a", "b"])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    if fim:
        writer.add_uint32("tokenizer.ggml.fim_pre_token_id", 1)
        writer.add_uint32("tokenizer.ggml.fim_suf_token_id", 2)
        writer.add_uint32("tokenizer.ggml.fim_mid_token_id", 3)
    if pooling:
        writer.add_uint32(f"{arch}.pooling_type", 1)
    writer.add_tensor("token_embd.weight", np.zeros((2, 3), dtype=np.float32))
    writer.add_tensor("blk.0.ffn.weight", np.zeros((4, 6), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
