"""Sprout's denoiser: a small pre-norm transformer for block-wise masked diffusion.

One network, two uses:

* **Context ("clean") tokens** attend causally, exactly like a decoder-only LM. Their keys and
  values therefore depend only on earlier tokens, so a KV cache of the committed context is exact
  no matter how the context was chunked (prompt at once, then one block at a time).
* **Block ("noisy") tokens** — the block being denoised, partly `<|mask|>` — attend to all of the
  cached context and bidirectionally to each other.

Who may attend to whom is an input (`attention_mask`), so the same graph serves training
(clean and noisy copies of a sequence side by side, as in BD3-LM's vectorised x_t‖x_0 training),
prefill (causal over the prompt) and decoding (bidirectional inside a block), and batches of
requests with different cache lengths.

Layout of the KV cache: keys and values of all layers stacked, `[layers, batch, heads, length,
head_dim]`, rotary positions already applied to the keys.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ffn_hidden: int = 688
    max_positions: int = 1024
    rope_base: float = 10000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_tables(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [batch, 1, time, head_dim/2] for absolute positions [batch, time]."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)

    def forward(self, x, cos, sin, past_key, past_value, attention_mask):
        batch, time, _ = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        keys = torch.cat([past_key, k], dim=2)
        values = torch.cat([past_value, v], dim=2)
        y = attend(q, keys, values, attention_mask)
        return self.out(y.transpose(1, 2).reshape(batch, time, -1)), k, v


def attend(q, keys, values, attention_mask: torch.Tensor | BlockMask) -> torch.Tensor:
    """attention_mask: [batch, time, past+time] bool, True where attending is allowed; or, for
    training on a GPU, a flex-attention BlockMask of the same pattern (its empty tiles are skipped
    and no time×time matrix is stored)."""
    if isinstance(attention_mask, BlockMask):
        return flex_attention(q, keys, values, block_mask=attention_mask)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=attention_mask.unsqueeze(1))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config)
        self.ffn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.gate_up = nn.Linear(config.d_model, 2 * config.ffn_hidden, bias=False)
        self.down = nn.Linear(config.ffn_hidden, config.d_model, bias=False)

    def forward(self, x, cos, sin, past_key, past_value, attention_mask):
        h, k, v = self.attn(self.attn_norm(x), cos, sin, past_key, past_value, attention_mask)
        x = x + h
        gate, up = self.gate_up(self.ffn_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up), k, v


class Denoiser(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)
        self.apply(self._init_weights)
        for block in self.blocks:  # scaled residual projections (GPT-2)
            for proj in (block.attn.out, block.down):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def empty_cache(self, batch: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        shape = (c.n_layers, batch, c.n_heads, 0, c.head_dim)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, input_ids, positions, past_key, past_value, attention_mask, logit_rows=None):
        """The exported graph's forward. `logit_rows` ([batch, rows] int64, indices into time):
        the rows whose logits are computed (the final norm and the head run on those only, as in
        import_checkpoint.py's QwenBlockLM); absent, every row. Logits are [batch, rows, vocab]."""
        x, new_keys, new_values = self.trunk(input_ids, positions, past_key, past_value, attention_mask)
        if logit_rows is not None:
            x = torch.gather(x, 1, logit_rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return self.logits(self.final_norm(x)), new_keys, new_values

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.embed.weight)  # tied input/output embeddings

    def hidden_states(self, input_ids, positions, past_key, past_value, attention_mask):
        """input_ids, positions: [batch, time] int64; past_key/value: [layers, batch, heads, past,
        head_dim]; attention_mask: [batch, time, past+time] bool.
        Returns final hidden states [batch, time, d_model] (logits via `logits`) and the new tokens'
        keys/values [layers, batch, heads, time, head_dim] (the caller appends them to its cache when
        the tokens are committed)."""
        x, new_keys, new_values = self.trunk(input_ids, positions, past_key, past_value, attention_mask)
        return self.final_norm(x), new_keys, new_values

    def trunk(self, input_ids, positions, past_key, past_value, attention_mask):
        """`hidden_states` before the final norm (a per-row norm: rows may be picked first)."""
        cos, sin = rotary_tables(positions, self.config.head_dim, self.config.rope_base)
        x = self.embed(input_ids)
        new_keys, new_values = [], []
        for layer, block in enumerate(self.blocks):
            x, k, v = block(x, cos, sin, past_key[layer], past_value[layer], attention_mask)
            new_keys.append(k)
            new_values.append(v)
        return x, torch.stack(new_keys), torch.stack(new_values)


def causal_mask(batch: int, past: int, time: int, device=None) -> torch.Tensor:
    """New tokens see all `past` tokens and earlier-or-equal new tokens (prefill, AR steps)."""
    new = torch.ones(time, time, dtype=torch.bool, device=device).tril()
    full = torch.cat([torch.ones(time, past, dtype=torch.bool, device=device), new], dim=1)
    return full.expand(batch, time, past + time)


def block_mask(batch: int, past: int, time: int, device=None) -> torch.Tensor:
    """Block tokens see all `past` tokens and each other (one denoising step)."""
    return torch.ones(batch, time, past + time, dtype=torch.bool, device=device)


def training_mask(length: int, block_size: int, device=None) -> torch.Tensor:
    """Mask over [clean(length) ‖ noisy(length)] for vectorised block-diffusion training.

    clean i → clean j ≤ i (causal, as the cache will hold it);
    noisy i in block b → clean j < start(b), and noisy j in block b (bidirectional).
    """
    idx = torch.arange(length, device=device)
    block_of = idx // block_size
    clean_clean = idx[None, :] <= idx[:, None]
    noisy_clean = idx[None, :] < (block_of * block_size)[:, None]
    noisy_noisy = block_of[None, :] == block_of[:, None]
    top = torch.cat([clean_clean, torch.zeros(length, length, dtype=torch.bool, device=device)], dim=1)
    bottom = torch.cat([noisy_clean, noisy_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)


@lru_cache(maxsize=16)
def training_block_mask(length: int, block_size: int, device: str) -> BlockMask:
    """`training_mask` as a flex-attention BlockMask (GPU training)."""

    def allowed(batch, head, q, k):
        q_noisy, k_noisy = q >= length, k >= length
        qi, ki = q % length, k % length
        clean_clean = ~q_noisy & ~k_noisy & (ki <= qi)
        noisy_clean = q_noisy & ~k_noisy & (ki < qi // block_size * block_size)
        noisy_noisy = q_noisy & k_noisy & (qi // block_size == ki // block_size)
        return clean_clean | noisy_clean | noisy_noisy

    return create_block_mask(allowed, None, None, 2 * length, 2 * length, device=device)


@lru_cache(maxsize=4)
def causal_block_mask(length: int, device: str) -> BlockMask:
    """`causal_mask` with no past as a flex-attention BlockMask (the twin's GPU training)."""
    return create_block_mask(lambda batch, head, q, k: k <= q, None, None, length, length, device=device)
