"""Small GGUF files with known shapes, written with the ``gguf`` package's GGUFWriter.

Every tensor is f32, so a tensor's size is 4 bytes times its element count, and a test can
say what the header must add up to without trusting the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Shape:
    arch: str = "llama"
    layers: int = 4
    embd: int = 64
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    ff: int = 128
    vocab: int = 256
    window: int = 0
    pattern: int | Sequence[bool] | None = None
    experts: int = 0
    experts_used: int = 0
    tied: bool = True

    def tensors(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's numpy shape (rows, columns), by GGUF name."""
        out: dict[str, tuple[int, ...]] = {
            "token_embd.weight": (self.vocab, self.embd),
            "output_norm.weight": (self.embd,),
        }
        if not self.tied:
            out["output.weight"] = (self.vocab, self.embd)
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        for il in range(self.layers):
            blk = f"blk.{il}"
            out[f"{blk}.attn_norm.weight"] = (self.embd,)
            out[f"{blk}.attn_q.weight"] = (q, self.embd)
            out[f"{blk}.attn_k.weight"] = (kv, self.embd)
            out[f"{blk}.attn_v.weight"] = (kv, self.embd)
            out[f"{blk}.attn_output.weight"] = (self.embd, q)
            out[f"{blk}.ffn_norm.weight"] = (self.embd,)
            if self.experts:
                out[f"{blk}.ffn_gate_inp.weight"] = (self.experts, self.embd)
                for part in ("gate", "up"):
                    out[f"{blk}.ffn_{part}_exps.weight"] = (self.experts, self.ff, self.embd)
                out[f"{blk}.ffn_down_exps.weight"] = (self.experts, self.embd, self.ff)
            else:
                out[f"{blk}.ffn_gate.weight"] = (self.ff, self.embd)
                out[f"{blk}.ffn_up.weight"] = (self.ff, self.embd)
                out[f"{blk}.ffn_down.weight"] = (self.embd, self.ff)
        return out

    def tensor_bytes(self) -> int:
        return sum(4 * int(np.prod(shape)) for shape in self.tensors().values())


def write(path: Path, shape: Shape) -> Path:
    """Write ``shape`` as a GGUF file at ``path``; returns the path."""
    from gguf import GGUFWriter

    writer = GGUFWriter(path, shape.arch)
    writer.add_block_count(shape.layers)
    writer.add_context_length(8192)
    writer.add_embedding_length(shape.embd)
    writer.add_feed_forward_length(shape.ff)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    if shape.window:
        writer.add_sliding_window(shape.window)
    if shape.pattern is not None:
        writer.add_sliding_window_pattern(shape.pattern)
    if shape.experts:
        writer.add_expert_count(shape.experts)
        writer.add_expert_used_count(shape.experts_used)
        writer.add_expert_feed_forward_length(shape.ff)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"t{i}" for i in range(shape.vocab)])
    for name, dims in shape.tensors().items():
        writer.add_tensor(name, np.zeros(dims, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
