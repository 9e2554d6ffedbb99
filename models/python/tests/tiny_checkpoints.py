"""Tiny random checkpoints of the three imported families, laid out as published: transformers' own
Qwen2/Qwen3 classes saved with save_pretrained, the config then given each family's fields, and a
tiny WordLevel tokenizer ("t5 t9 t3" -> [5, 9, 3]) with the families' special tokens.

Used by test_import_checkpoint.py (graph equals transformers) and test_runtime_matches_reference.py
(the runtime decodes as each family's reference sampler)."""

import json

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

VOCAB = 300
ENDOFTEXT, IM_END, MASK, IM_START = 296, 297, 298, 299
SPECIAL = {"<|endoftext|>": ENDOFTEXT, "<|im_end|>": IM_END, "<|MASK|>": MASK, "<|im_start|>": IM_START}
EOS_IDS = [IM_END, ENDOFTEXT]  # generation_config.json's eos_token_id, as SDAR publishes it
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
SHAPE = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rope_theta=1e6,
)
# What each family's published config.json adds (see shared/research/open-checkpoints.md).
FAMILIES = {
    "sdar": (
        Qwen3Config,
        Qwen3ForCausalLM,
        {"head_dim": 16, "tie_word_embeddings": False},
        {"block_size": 4, "mask_token_id": MASK},
    ),
    "Fast_dLLM_Qwen": (Qwen2Config, Qwen2ForCausalLM, {"tie_word_embeddings": True}, {"bd_size": 8}),
    "a2d-qwen3": (Qwen3Config, Qwen3ForCausalLM, {"head_dim": 16, "tie_word_embeddings": True}, {"block_size": 4}),
}


def tiny_tokenizer(path):
    vocab = {f"t{i}": i for i in range(VOCAB - len(SPECIAL))} | SPECIAL
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(SPECIAL))
    tokenizer.save(str(path))


def make_decodable(model, sharpness, eos_like=None):
    """Shapes a random model for decoding tests, in place, so that what it writes depends on the
    context and its confidences spread across the thresholds.

    - The layers' outputs (o_proj, down_proj) are scaled up against the embeddings, and attention is
      sharpened (Qwen3's q/k norms, Qwen2's q/k weights; Qwen2's biases scaled down), so a random
      model neither copies its input token nor writes one token everywhere.
    - The direction every final hidden state shares is projected out of the head, and the final norm
      is scaled so the logits' spread is `sharpness` (their standard deviation over a random batch):
      peaked enough that a confidence threshold lets several tokens through in one step while others
      stay below it.
    - The head rows of the mask and eos ids are shrunk to 2%, so their logits stay near 0, far below
      the argmax: the model never writes a mask (trained models never do either) and never stops by
      chance, so decoding runs its full length.
    - `eos_like=t` then gives <|im_end|> the row of token t scaled by 1.05: wherever t would win, eos
      wins instead, which makes the stop rule fire at a point the random weights choose.
    For tied models the head rows are the embeddings too; eos ids never occur in the tests' prompts."""
    qwen2 = model.model.layers[0].self_attn.q_proj.bias is not None  # Qwen2: q/k/v biases, no q/k norms
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.model.layers:
            attention = layer.self_attn
            attention.o_proj.weight.mul_(12)
            layer.mlp.down_proj.weight.mul_(12)
            if qwen2:
                attention.q_proj.weight.mul_(3)
                attention.k_proj.weight.mul_(3)
                for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
                    proj.bias.mul_(0.2)
            else:
                attention.q_norm.weight.mul_(3)
                attention.k_norm.weight.mul_(3)
        ids = torch.randint(0, VOCAB - len(SPECIAL), (8, 24), generator=g)
        ids[:, 12:] = torch.where(torch.rand(8, 12, generator=g) < 0.6, MASK, ids[:, 12:])
        hidden = model.model(ids).last_hidden_state.reshape(-1, model.config.hidden_size)
        common = torch.nn.functional.normalize(hidden, dim=-1).mean(0)
        common = common / common.norm()
        head = model.lm_head.weight
        head -= (head @ common)[:, None] * common[None, :]
        for token in (MASK, *EOS_IDS):
            head[token] *= 0.02
        model.model.norm.weight.mul_(sharpness / float(model(ids).logits.std()))
        if eos_like is not None:
            head[IM_END] = 1.05 * head[eos_like]
    return model


def make_checkpoint(root, model_type, max_shard_size=None, seed=0, sharpness=None, eos_like=None):
    """A random checkpoint of the family's shape, laid out as published; `sharpness`/`eos_like`
    shape it for decoding (see make_decodable)."""
    config_class, model_class, extra, fields = FAMILIES[model_type]
    torch.manual_seed(seed)
    config = config_class(**SHAPE, **extra)
    model = model_class(config).eval()
    if model_type == "Fast_dLLM_Qwen":  # Qwen2 initialises biases to zero: make them count
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
    with torch.no_grad():  # norms start at one: make the q/k and layer norms' weights count too
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.uniform_(0.5, 1.5)
    if sharpness is not None:
        make_decodable(model, sharpness, eos_like)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(root, **kwargs)
    config_json = json.loads((root / "config.json").read_text())
    config_json.update(model_type=model_type, **fields)
    (root / "config.json").write_text(json.dumps(config_json))
    tiny_tokenizer(root / "tokenizer.json")
    tokenizer_config = {"chat_template": TEMPLATE, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
    if model_type == "a2d-qwen3":
        tokenizer_config["mask_token"] = "<|MASK|>"
    (root / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    (root / "generation_config.json").write_text(json.dumps({"eos_token_id": EOS_IDS, "pad_token_id": ENDOFTEXT}))
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    return model
