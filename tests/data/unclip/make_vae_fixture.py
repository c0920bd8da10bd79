"""The VAE decoder's parity fixture: a tiny `AutoencoderKL` (two blocks of 8 and 16 channels, groups of 4,
the attention of the middle block) with every parameter drawn at random, saved as diffusers saves it (a
`config.json` and `diffusion_pytorch_model.safetensors`, and an fp16 variant), latents, and diffusers' decoding
of them (`post_quant_conv` and the decoder; the fp16 expectation from the same weights rounded to fp16).
Needs torch and diffusers (PyPI):

    python tests/data/unclip/make_vae_fixture.py tests/data/unclip/vae
"""
import pathlib
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL

out = pathlib.Path(sys.argv[1])
torch.manual_seed(0)
vae = AutoencoderKL(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
    block_out_channels=[8, 16],
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=16,
).eval()
with torch.no_grad():
    for name, parameter in vae.named_parameters():
        scale = 0.3 if name.endswith("weight") and parameter.dim() > 1 else 0.2
        offset = 1.0 if "norm" in name and name.endswith("weight") else 0.0
        parameter.copy_(offset + scale * torch.randn_like(parameter))
vae.save_pretrained(out, safe_serialization=True)
latents = torch.randn(2, 4, 6, 6)
with torch.no_grad():
    np.save(out / "latents.npy", latents.numpy())
    np.save(out / "decoded.npy", vae.decode(latents).sample.numpy())
    vae.half().save_pretrained(out, safe_serialization=True, variant="fp16")
    np.save(out / "decoded_fp16_weights.npy", vae.float().decode(latents).sample.numpy())
print(sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.post_quant_conv.parameters()), "decoder parameters")
