"""The published Stable unCLIP 2.1 sizes as diffusers builds them (`stabilityai/stable-diffusion-2-1-unclip`'s
UNet and VAE), written as `config.json` files, with their parameter counts; built on PyTorch's meta device,
so no weights are made. Needs torch and diffusers (PyPI):

    python tests/data/unclip/published/make_configs.py tests/data/unclip/published
"""
import json
import pathlib
import sys

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

out = pathlib.Path(sys.argv[1])
with torch.device("meta"):
    unet = UNet2DConditionModel(
        act_fn="silu", attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
        class_embed_type="projection", projection_class_embeddings_input_dim=2048, cross_attention_dim=1024,
        down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, in_channels=4, out_channels=4,
        layers_per_block=2, norm_num_groups=32, norm_eps=1e-5, sample_size=96, upcast_attention=True,
        use_linear_projection=True, flip_sin_to_cos=True, freq_shift=0,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
        latent_channels=4, norm_num_groups=32, sample_size=768,
    )
counts = {
    "unet": sum(p.numel() for p in unet.parameters()),
    "vae_decoder": sum(p.numel() for p in vae.decoder.parameters()) + sum(p.numel() for p in vae.post_quant_conv.parameters()),
}
(out / "unet_config.json").write_text(json.dumps(dict(unet.config), indent=1, default=str) + "\n")
(out / "vae_config.json").write_text(json.dumps(dict(vae.config), indent=1, default=str) + "\n")
(out / "parameter_counts.json").write_text(json.dumps(counts, indent=1) + "\n")
print(counts)
