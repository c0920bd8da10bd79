"""Sound2Vision's loss fixture: the authors' `InfoNCE_with_L2_sound2vision` (`loss.py` of kaist-ami/Sound2Scene:
symmetric cross-entropy over minus the Euclidean distances of the unnormalised features, temperature 1) on
seeded random features the size of CLIP's image embeddings. Needs torch, numpy and a checkout:

    python tests/data/sound2vision/make_loss_fixture.py SOUND2SCENE_CHECKOUT tests/data/sound2vision
"""
import pathlib
import sys

import numpy as np
import torch

checkout, out = (pathlib.Path(p) for p in sys.argv[1:3])
sys.path.insert(0, str(checkout))
from loss import InfoNCE_with_L2_sound2vision  # the authors' module

torch.manual_seed(5)
audio = torch.randn(6, 1024) * 0.05
image = audio + torch.randn(6, 1024) * 0.05  # distances of a few units: neither saturated nor at chance
loss = InfoNCE_with_L2_sound2vision("cpu").loss_fn(audio, image)
np.save(out / "loss_audio.npy", audio.numpy())
np.save(out / "loss_image.npy", image.numpy())
np.save(out / "loss_value.npy", np.array([loss.item()], dtype=np.float32))
print(loss.item())
