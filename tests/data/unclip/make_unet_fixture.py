"""The UNet's parity fixture: a tiny `UNet2DConditionModel` laid out as diffusers' own Stable unCLIP tests lay it
out (a cross-attention down block and a plain one, their mirrors going up, the projection class embedding,
linear projections in the transformers, upcast attention), at widths 8 and 16 with groups of 4, every
parameter drawn at random; saved as diffusers saves it, with latents, timesteps, text states and class inputs,
and diffusers' output for them. Needs torch and diffusers (PyPI):

    python tests/data/unclip/make_unet_fixture.py tests/data/unclip/unet
"""
import pathlib
import sys

import numpy as np
import torch
from diffusers import UNet2DConditionModel

out = pathlib.Path(sys.argv[1])
torch.manual_seed(1)
unet = UNet2DConditionModel(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(8, 16),
    attention_head_dim=(2, 4),
    norm_num_groups=4,
    class_embed_type="projection",
    projection_class_embeddings_input_dim=12,
    cross_attention_dim=6,
    layers_per_block=1,
    upcast_attention=True,
    use_linear_projection=True,
).eval()
with torch.no_grad():
    for name, parameter in unet.named_parameters():
        scale = 0.3 if parameter.dim() > 1 else 0.2
        offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
        parameter.copy_(offset + scale * torch.randn_like(parameter))
unet.save_pretrained(out, safe_serialization=True)
latents = torch.randn(2, 4, 8, 8)
timesteps = torch.tensor([999.0, 37.0])
text_states = torch.randn(2, 5, 6)
class_labels = torch.randn(2, 12)
with torch.no_grad():
    output = unet(latents, timesteps, encoder_hidden_states=text_states, class_labels=class_labels).sample
for name, array in [("latents", latents), ("timesteps", timesteps), ("text_states", text_states),
                    ("class_labels", class_labels), ("output", output)]:
    np.save(out / f"{name}.npy", array.numpy())
print(sum(p.numel() for p in unet.parameters()), "parameters")
