"""The diffusion schedulers' parity fixtures: for each case, diffusers' scheduler configuration as its
`scheduler_config.json` spells it, the timesteps it sets, seeded random model outputs (one per call: PNDM's
Runge-Kutta warm-up calls the model four times per step), and every sample the scheduler steps to. The
outputs are random rather than a model's, because a scheduler's arithmetic does not depend on where its
inputs come from. Needs torch, numpy and diffusers (PyPI):

    python tests/data/unclip/make_scheduler_fixtures.py tests/data/unclip/schedulers
"""
import json
import pathlib
import sys

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler

SHAPE = (1, 4, 4, 4)
# Stable unCLIP 2.1's noise schedule: scaled-linear betas, v-prediction, timesteps offset by one.
UNCLIP = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction")
CASES = {
    "pndm_plms": (PNDMScheduler, dict(UNCLIP, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False), 6),
    "pndm_prk": (PNDMScheduler, dict(), 5),
    "ddim": (DDIMScheduler, dict(UNCLIP, steps_offset=1, clip_sample=False, set_alpha_to_one=False), 6),
    "ddim_trailing_clipped": (
        DDIMScheduler,
        dict(timestep_spacing="trailing", clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True),
        5,
    ),
    "dpm": (DPMSolverMultistepScheduler, dict(UNCLIP), 6),
    "dpm_epsilon_16": (DPMSolverMultistepScheduler, dict(beta_schedule="linear", timestep_spacing="leading", steps_offset=1), 16),
}


def run(case, scheduler_class, config, steps, rng):
    scheduler = scheduler_class(**config)
    scheduler.set_timesteps(steps)
    sample = torch.from_numpy(rng.standard_normal(SHAPE).astype(np.float32))
    samples, outputs, originals = [sample.numpy()], [], []
    for t in scheduler.timesteps:
        output = torch.from_numpy((0.5 * rng.standard_normal(SHAPE)).astype(np.float32))
        stepped = scheduler.step(output, t, sample)
        sample = stepped.prev_sample
        outputs.append(output.numpy())
        samples.append(sample.numpy())
        if hasattr(stepped, "pred_original_sample"):
            originals.append(stepped.pred_original_sample.numpy())
    out = OUT / case
    out.mkdir(parents=True, exist_ok=True)
    config = dict(scheduler.config)
    config["_class_name"] = scheduler_class.__name__
    (out / "scheduler_config.json").write_text(json.dumps(config, indent=1, default=str) + "\n")
    np.save(out / "timesteps.npy", scheduler.timesteps.numpy().astype(np.float32))
    np.save(out / "model_outputs.npy", np.stack(outputs))
    np.save(out / "samples.npy", np.stack(samples))
    if originals:
        np.save(out / "pred_original_samples.npy", np.stack(originals))
    print(case, len(scheduler.timesteps), "calls")


OUT = pathlib.Path(sys.argv[1])
for seed, (case, (scheduler_class, config, steps)) in enumerate(CASES.items()):
    run(case, scheduler_class, config, steps, np.random.default_rng(seed))
