"""Language: a decoder-only Transformer."""

from __future__ import annotations

import torch
from torch import nn


class TransformerLM(nn.Module):
    """Token and learned position embeddings, pre-norm causal self-attention layers, a final
    LayerNorm and a linear head to the vocabulary: [B, T] token ids -> [B, T, vocabulary]."""

    def __init__(self, context: int, vocabulary: int, width: int, depth: int, heads: int):
        super().__init__()
        self.tokens = nn.Embedding(vocabulary, width)
        self.positions = nn.Embedding(context, width)
        # Built one by one: nn.TransformerEncoder deep-copies one layer, so every layer would
        # start from the same weights.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocabulary)
        # GPT-2's N(0, 0.02) rather than PyTorch's N(0, 1): the residual stream starts at the
        # scale the layers write into it.
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        hidden = self.tokens(tokens) + self.positions(positions)
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        for layer in self.layers:
            hidden = layer(hidden, src_mask=mask, is_causal=True)
        return self.head(self.norm(hidden))


def transformer(
    input_shape: tuple[int, ...], num_classes: int, width: int, depth: int, heads: int
) -> nn.Module:
    """Decoder-only Transformer language model (Vaswani et al. 2017, as in GPT-2: Radford et al.
    2019, pre-norm). `width` is d_model (feed-forward 4*width), `depth` the number of layers,
    `heads` the attention heads; the context is the task's input length, the vocabulary its
    number of classes."""
    if width % heads:
        raise ValueError(
            f"transformer: run key width ({width}) must be divisible by heads ({heads})"
        )
    return TransformerLM(input_shape[0], num_classes, width, depth, heads)
