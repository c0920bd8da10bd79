"""Writes the training-parity fixtures of `tests/training_parity.rs` with IC-GAN's own networks.

One training pass of IC-GAN's `BigGAN_PyTorch.BigGAN` generator and discriminator, in training mode, at small
widths: the weights and `u` vectors before the pass, the inputs, the outputs, the loss, every parameter's gradient,
and the `u` vectors and stored batch statistics the pass leaves behind. The Rust test loads the same state into
`TrainableGenerator` and `Discriminator` and must reproduce all of it.

    pip install torch numpy
    git clone https://github.com/facebookresearch/ic_gan   # the fixtures were made at 8eff2f7
    python tests/data/icgan_training/make_fixture.py --icgan ic_gan --out tests/data/icgan_training

Each `.pth` holds one flat dictionary: `state.<IC-GAN name>` (before the pass), `input.*`, `output.*`,
`grad.<IC-GAN name>` and `after.<IC-GAN name>` (u0, stored_mean, stored_var after the pass).
"""

import argparse
import sys

import torch
import torch.nn.functional as F

# Small enough to commit, large enough that every layer kind is present (attention in G at 32 pixels).
SEED = 20261127
BATCH = 4
FEATURE_DIM_D = 16
# IC-GAN's generator hard-codes 2048-d instance features (`shared_feat = which_linear(2048, ...)`).
FEATURE_DIM_G = 2048
GENERATOR = dict(
    G_ch=2,
    dim_z=25,  # hierarchical: 5 chunks of 5 (one for the first linear layer, one per block)
    bottom_width=4,
    resolution=64,
    G_attn="32",
    n_classes=1,  # the unused class embedding IC-GAN's checkpoints carry
    hier=True,
    G_shared=True,
    shared_dim=0,
    G_shared_feat=True,
    shared_dim_feat=8,
    class_cond=False,
    instance_cond=True,
    G_param="SN",
    SN_eps=1e-6,
    BN_eps=1e-5,
    G_init="ortho",
    no_optim=True,
)
DISCRIMINATOR = dict(
    D_ch=2,
    resolution=64,
    D_attn="0",
    class_cond=False,
    instance_cond=True,
    instance_sz=FEATURE_DIM_D,
    D_param="SN",
    SN_eps=1e-8,
    D_init="ortho",
    embedded_optimizer=False,
)


def state(module):
    return {f"state.{k}": v.detach().clone() for k, v in module.state_dict().items()}


def grads(module):
    # The unused class embedding gets none.
    return {
        f"grad.{k}": p.grad.detach().clone()
        for k, p in module.named_parameters()
        if p.grad is not None
    }


def after(module):
    keep = (".u0", ".stored_mean", ".stored_var")
    return {
        f"after.{k}": v.detach().clone()
        for k, v in module.state_dict().items()
        if k.endswith(keep)
    }


def generator_fixture(BigGAN):
    G = BigGAN.Generator(**GENERATOR)
    with torch.no_grad():
        # Away from the initial values that would hide a mistake: attention on, the output batch norm's
        # gain and bias, and the stored statistics (which a training pass only updates).
        for name, p in G.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
            if name.startswith("output_layer.0."):
                p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("gain") else 0.0))
        for name, b in G.named_buffers():
            if name.endswith("stored_mean"):
                b.copy_(torch.randn_like(b) * 0.1)
            if name.endswith("stored_var"):
                b.copy_(torch.rand_like(b) + 0.5)
    G.train()
    before = state(G)
    z = torch.randn(BATCH, G.dim_z)
    features = F.normalize(torch.randn(BATCH, FEATURE_DIM_G), dim=1)
    weights = torch.randn(BATCH, 3, 64, 64)
    images = G(z, feats=features)
    loss = (images * weights).sum()
    loss.backward()
    return {
        **before,
        "input.z": z,
        "input.features": features,
        "input.loss_weights": weights,
        "output.images": images.detach(),
        "output.loss": loss.detach().reshape(1),
        **grads(G),
        **after(G),
    }


def discriminator_fixture(BigGAN):
    D = BigGAN.Discriminator(**DISCRIMINATOR)
    D.train()
    before = state(D)
    images = torch.rand(BATCH, 3, 64, 64) * 2 - 1
    features = F.normalize(torch.randn(BATCH, FEATURE_DIM_D), dim=1)
    # One pass over real and generated images together, as IC-GAN's `G_D` concatenates them; the first half
    # plays the real images in BigGAN's hinge loss (`loss_hinge_dis`).
    scores = D(images, feat=features).reshape(-1)
    half = BATCH // 2
    loss = F.relu(1.0 - scores[:half]).mean() + F.relu(1.0 + scores[half:]).mean()
    loss.backward()
    return {
        **before,
        "input.images": images,
        "input.features": features,
        "output.scores": scores.detach(),
        "output.loss": loss.detach().reshape(1),
        **grads(D),
        **after(D),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--icgan", required=True, help="a checkout of facebookresearch/ic_gan")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    sys.path.insert(0, args.icgan)
    from BigGAN_PyTorch import BigGAN

    torch.manual_seed(SEED)
    torch.save(generator_fixture(BigGAN), f"{args.out}/generator.pth")
    torch.save(discriminator_fixture(BigGAN), f"{args.out}/discriminator.pth")


if __name__ == "__main__":
    main()
