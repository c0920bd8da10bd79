"""The text encoder's parity fixture: a tiny `CLIPTextModel` (transformers) with random weights, saved as a
diffusers model folder keeps it (`text_encoder/`), a `tokenizer/` holding only what the empty prompt needs
(the start, end and padding tokens; Stable Diffusion 2 pads with `!`), and the model's states for the empty
prompt as the pipeline tokenises it: start, end, then padding to the model's length. Needs torch and
transformers (PyPI):

    python tests/data/unclip/make_text_encoder_fixture.py tests/data/unclip
"""
import json
import pathlib
import sys

import numpy as np
import torch
from transformers import CLIPTextConfig, CLIPTextModel

root = pathlib.Path(sys.argv[1])
torch.manual_seed(3)
config = CLIPTextConfig(
    vocab_size=40, hidden_size=6, intermediate_size=12, num_hidden_layers=2, num_attention_heads=2,
    max_position_embeddings=8, hidden_act="gelu", bos_token_id=38, eos_token_id=39, pad_token_id=1,
)
model = CLIPTextModel(config).eval()
with torch.no_grad():
    for name, parameter in model.named_parameters():
        offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
        parameter.copy_(offset + 0.5 * torch.randn_like(parameter))
model.save_pretrained(root / "text_encoder", safe_serialization=True)
tokenizer = root / "tokenizer"
tokenizer.mkdir(parents=True, exist_ok=True)
(tokenizer / "vocab.json").write_text(json.dumps({"!": 0, "a</w>": 1, "<|startoftext|>": 38, "<|endoftext|>": 39}))
(tokenizer / "special_tokens_map.json").write_text(json.dumps({
    "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>",
}))
(tokenizer / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8}))
ids = torch.tensor([[38, 39] + [0] * 6])
with torch.no_grad():
    states = model(ids).last_hidden_state
np.save(root / "text_encoder" / "empty_prompt_states.npy", states.numpy())
print(states.shape)
