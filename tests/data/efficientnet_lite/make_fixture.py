"""The EfficientNet-Lite parity fixture: a narrow EfficientNet-Lite with seeded random weights, saved as
`torch.save` saves a state dict (the zip format, under `efficientnet_lite_pytorch`'s names, with the classifier
and batch counters that published checkpoints carry), pictures, and the features the numpy reference
(`scripts/pretrained-fv/efficientnet_lite.py`, checked against ImageNet classes with the published weights)
computes from them. Needs numpy only:

    PYTHONPATH=scripts/pretrained-fv python3 tests/data/efficientnet_lite/make_fixture.py tests/data/efficientnet_lite

The layout keeps every feature of the published ones that the port must get right: seven stages with
EfficientNet-B0's strides, a first block without expansion, repeated blocks with residuals, 3 x 3 and 5 x 5
depthwise kernels, and a 40 px input, at which TensorFlow's "same" padding is asymmetric in three layers.
"""
import sys

import numpy as np

from efficientnet_lite import EfficientNetLite
from torch_zip import torch_save

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 40
STEM = 8
# (output width, kernel, expansion ratio, repeats) per stage; strides are B0's [1, 2, 2, 2, 1, 2, 1].
STAGES = [(8, 3, 1, 1), (12, 3, 2, 2), (16, 5, 2, 1), (20, 3, 2, 2), (24, 5, 2, 1), (28, 5, 2, 2), (32, 3, 2, 1)]
HEAD = 40
CLASSES = 5


def random_state(rng):
    state = {}

    def conv(name, shape):
        fan_in = np.prod(shape[1:])
        state[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def batch_norm(name, width):
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, width).astype(np.float32)
        state[f"{name}.bias"] = rng.uniform(-1.0, 4.0, width).astype(np.float32)
        state[f"{name}.running_mean"] = rng.uniform(-0.2, 0.2, width).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, width).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(1000, np.int64)

    conv("_conv_stem.weight", (STEM, 3, 3, 3))
    batch_norm("_bn0", STEM)
    width, index = STEM, 0
    for out, kernel, ratio, repeats in STAGES:
        for _ in range(repeats):
            prefix, expanded = f"_blocks.{index}.", width * ratio
            if ratio != 1:
                conv(prefix + "_expand_conv.weight", (expanded, width, 1, 1))
                batch_norm(prefix + "_bn0", expanded)
            conv(prefix + "_depthwise_conv.weight", (expanded, 1, kernel, kernel))
            batch_norm(prefix + "_bn1", expanded)
            conv(prefix + "_project_conv.weight", (out, expanded, 1, 1))
            batch_norm(prefix + "_bn2", out)
            width, index = out, index + 1
    conv("_conv_head.weight", (HEAD, width, 1, 1))
    batch_norm("_bn1", HEAD)
    state["_fc.weight"] = rng.standard_normal((CLASSES, HEAD)).astype(np.float32)
    state["_fc.bias"] = np.zeros(CLASSES, np.float32)
    return state


def main(out):
    rng = np.random.default_rng(21)
    state = random_state(rng)
    torch_save(state, f"{out}/efficientnet_lite.pth")
    unit = rng.uniform(0.0, 1.0, (2, SIZE, SIZE, 3)).astype(np.float32)
    # What the encoder reads (ImageNet-normalised, NCHW), and what the reference reads ((v - 127) / 128, NHWC).
    np.save(f"{out}/input.npy", ((unit - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2))
    reference = {k: v.astype(np.float64) for k, v in state.items() if v.dtype == np.float32}
    features = EfficientNetLite(reference).features((unit.astype(np.float64) * 255.0 - 127.0) / 128.0)
    np.save(f"{out}/features.npy", features.astype(np.float32))
    clipped = int((features == 6.0).sum())
    print(f"features {features.shape}, mean {features.mean():.3f}, max {features.max():.3f}, at the clip {clipped}")


if __name__ == "__main__":
    main(sys.argv[1])
