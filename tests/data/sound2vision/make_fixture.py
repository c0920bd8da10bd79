"""The fc2 audio encoder's parity fixture: the authors' `ResNet_` (Sound2Vision's `resnet18_`, `models/resnet.py`
of kaist-ami/Sound2Scene) at an eighth of its widths, with seeded random weights rounded to fp16 (to keep the
file small), saved as `AVENet_` saves it (under `audnet.`), and the encoder's output for the reference
fixtures' spectrogram of `tone_chirp_10s`. Needs torch, numpy and a checkout of the authors' repository:

    python tests/data/sound2vision/make_fixture.py SOUND2SCENE_CHECKOUT ../shared/fixtures/reference tests/data/sound2vision
"""
import pathlib
import sys

import numpy as np
import torch
from torch import nn

checkout, reference, out = (pathlib.Path(p) for p in sys.argv[1:4])
sys.path.insert(0, str(checkout / "models"))
import resnet  # the authors' module

EMBEDDING = 32
NARROWING = 8


class NarrowResNet_(resnet.ResNet_):
    """The authors' `ResNet_` with each stage an eighth as wide; `fc` then reads the narrower last stage."""

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        return super()._make_layer(block, planes // NARROWING, blocks, stride, dilate)


torch.manual_seed(20261206)
model = NarrowResNet_(resnet.BasicBlock, [2, 2, 2, 2], num_classes=EMBEDDING)
model.fc = nn.Linear(512 // NARROWING, EMBEDDING)
with torch.no_grad():
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.uniform_(-0.1, 0.1)
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
model.eval()
state = {f"audnet.{k}": v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
out.mkdir(parents=True, exist_ok=True)
torch.save(state, out / "audio_encoder_fc2.pth")
spectrogram = torch.from_numpy(np.load(reference / "tone_chirp_10s.spectrogram.npy")).float()
with torch.no_grad():
    embedding, pooled, _ = model(spectrogram.reshape(1, 1, 257, 1004))
np.save(out / "embedding.npy", embedding.numpy())
print(sum(p.numel() for p in model.parameters()), "parameters; embedding", embedding.shape)
