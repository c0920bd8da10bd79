"""The unCLIP pipeline's parity fixture: diffusers' `StableUnCLIPImg2ImgPipeline` run end to end, three PNDM
steps to pixels, on the tiny UNet and VAE of the neighbouring fixtures, with the path Sound2Vision takes: a
given image embedding (the sound's) in place of the image encoder's, given text states in place of the empty
prompt's (for both halves of classifier-free guidance), noise level 0, guidance 10. The image embedding's
noise is the first draw of a generator seeded 0, as the pipeline draws it. Writes the image normaliser, both
schedulers' configurations, the inputs and the pixels. Needs torch, diffusers and transformers (PyPI):

    python tests/data/unclip/make_pipeline_fixture.py tests/data/unclip
"""
import json
import pathlib
import sys

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, PNDMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

root = pathlib.Path(sys.argv[1])
out = root / "pipeline"
EMBEDDING = 6
STEPS = 3
GUIDANCE = 10.0

torch.manual_seed(2)
unet = UNet2DConditionModel.from_pretrained(root / "unet").eval()
vae = AutoencoderKL.from_pretrained(root / "vae").eval()
normalizer = StableUnCLIPImageNormalizer(embedding_dim=EMBEDDING)
with torch.no_grad():
    normalizer.mean.copy_(0.3 * torch.randn(1, EMBEDDING))
    normalizer.std.copy_(0.5 + torch.rand(1, EMBEDDING))
noising = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
scheduler = PNDMScheduler(
    beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
    skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False,
)
# The image encoder is never run (the embedding is given); the pipeline reads only its dtype.
image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
    hidden_size=8, projection_dim=EMBEDDING, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
    image_size=16, patch_size=8,
))
pipe = StableUnCLIPImg2ImgPipeline(
    feature_extractor=CLIPImageProcessor(), image_encoder=image_encoder, image_normalizer=normalizer, image_noising_scheduler=noising,
    tokenizer=None, text_encoder=None, unet=unet, scheduler=scheduler, vae=vae,
)
embedding = torch.randn(1, EMBEDDING)
text_states = torch.randn(1, 5, 6)
latents = torch.randn(1, 4, 8, 8)
noise = torch.randn(1, EMBEDDING, generator=torch.Generator().manual_seed(0))


def run(output_type):
    with torch.no_grad():
        return pipe(
            image_embeds=embedding, prompt_embeds=text_states, negative_prompt_embeds=text_states,
            latents=latents.clone(), num_inference_steps=STEPS, guidance_scale=GUIDANCE, noise_level=0, height=16,
            width=16, generator=torch.Generator().manual_seed(0), output_type=output_type,
        ).images


pixels, final_latents = run("np"), run("latent")
out.mkdir(parents=True, exist_ok=True)
normalizer.save_pretrained(out / "image_normalizer", safe_serialization=True)
noising.save_config(out / "image_noising_scheduler")
scheduler.save_config(out / "scheduler")
for name, array in [("embedding", embedding), ("text_states", text_states), ("latents", latents),
                    ("image_noise", noise)]:
    np.save(out / f"{name}.npy", array.numpy())
np.save(out / "pixels.npy", pixels.astype(np.float32))  # [1, 16, 16, 3] in [0, 1]
np.save(out / "final_latents.npy", final_latents.numpy())  # before the VAE
(out / "run.json").write_text(json.dumps({"steps": STEPS, "guidance": GUIDANCE, "noise_level": 0}) + "\n")
inside = float(((pixels > 0) & (pixels < 1)).mean())
print("pixels", pixels.shape, f"{inside:.0%} inside (0, 1)", "latents", float(final_latents.abs().max()))
