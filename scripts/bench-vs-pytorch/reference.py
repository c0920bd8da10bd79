"""Times the authors' PyTorch modules and the release `s2v` side by side, alternating, on this machine's CPU.

Each row is one network at its published size with random weights: `s2v bench TARGET --batch B` (its
in-process median of steady-state calls) and the authors' module in eval mode under `torch.no_grad()` (the
median of as many calls after one warm-up), one after the other, for several rounds, so that a machine whose
speed drifts slows both. The reference code is imported from a checkout of kaist-ami/Sound2Scene (its
`models/resnet.py`, `test.py` and the IC-GAN `BigGAN_PyTorch` it bundles) and torchvision, as the release does.

    python reference.py --sound2scene DIR --s2v target/release/s2v [--rounds 3] [--runs 5] [--json OUT]
        [--markdown BENCHMARKS.md]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F

# (row name, s2v bench target, batch)
ROWS = [
    ("spectrogram (10 s clip)", "spectrogram", 1),
    ("audio encoder, batch 1", "audio-encoder", 1),
    ("audio encoder, batch 8", "audio-encoder", 8),
    ("generator, batch 1", "generator", 1),
    ("generator, batch 8", "generator", 8),
    ("image encoder, batch 1", "image-encoder", 1),
]

CLIP_SAMPLES = 160_000


def import_sound2scene(root):
    """The repository's modules, with what its `test.py` imports but the timed code does not use stubbed."""
    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(root, "BigGAN_PyTorch"))
    for unused in ["librosa", "pydub", "inference", "inference.generate_images"]:
        stub = types.ModuleType(unused)
        stub.AudioSegment = None
        stub.get_model = None
        sys.modules.setdefault(unused, stub)
    import model as s2s_model  # AVENet
    import test as s2s_test  # audio2spectrogra
    import BigGAN_PyTorch.BigGAN as BigGAN

    return s2s_model, s2s_test, BigGAN


def spectrogram_call(s2s_test, batch):
    # The same 10 s wave as `s2v bench spectrogram`, handed to the authors' function in place of a file read.
    wave = np.sin(np.arange(CLIP_SAMPLES) * 0.01) * 0.5
    s2s_test.sf = types.SimpleNamespace(read=lambda _path: (wave.copy(), 16_000))
    return lambda: [s2s_test.audio2spectrogra("clip.wav") for _ in range(batch)]


def audio_encoder_call(s2s_model, batch):
    args = types.SimpleNamespace(model_depth=18, n_classes=2048, pool="avgpool", resnet_type="")
    net = s2s_model.AVENet(args).eval()
    x = torch.randn(batch, 1, 257, 1004)
    return lambda: net(x)


def generator_call(BigGAN, batch):
    # IC-GAN's 128 x 128 generator as the released checkpoints configure it (G_ch=96, hierarchical z of 120,
    # instance features projected to 512, attention at 64).
    net = BigGAN.Generator(
        G_ch=96, dim_z=120, bottom_width=4, resolution=128, G_attn="64", n_classes=1, hier=True,
        G_shared=True, shared_dim=0, G_shared_feat=True, shared_dim_feat=512, class_cond=False,
        instance_cond=True, G_param="SN", SN_eps=1e-6, BN_eps=1e-5, G_init="ortho", no_optim=True,
    ).eval()
    z = torch.randn(batch, 120)
    feats = F.normalize(torch.randn(batch, 2048), dim=1)
    return lambda: net(z, feats=feats)


def image_encoder_call(batch):
    import torchvision

    net = torchvision.models.resnet50()
    net.fc = torch.nn.Identity()  # SwAV's trunk: pooled 2048-d features
    net.eval()
    x = torch.randn(batch, 3, 224, 224)
    return lambda: net(x)


def torch_median(call, runs):
    with torch.no_grad():
        call()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def s2v_median(binary, target, batch, runs):
    out = subprocess.run(
        [binary, "bench", target, "--batch", str(batch), "--runs", str(runs)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["median_s"]


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            model = next(l.split(":", 1)[1].strip() for l in info if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


BEGIN, END = "<!-- side-by-side: begin -->", "<!-- side-by-side: end -->"


def markdown(report):
    lines = [
        BEGIN,
        f"Measured {report['date']} on {report['machine']}; PyTorch {report['torch']} at "
        f"{report['torch_threads']} threads; the median of {report['rounds']} alternating rounds, each the "
        f"median of {report['runs']} calls after a warm-up. Command: `scripts/bench-vs-pytorch/run`.",
        "",
        "| network | PyTorch (s) | `s2v` (s) | `s2v` / PyTorch |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        verdict = "faster" if row["ratio"] < 1 else "slower"
        factor = 1 / row["ratio"] if row["ratio"] < 1 else row["ratio"]
        lines.append(f"| {row['row']} | {row['pytorch_s']:.4f} | {row['s2v_s']:.4f} | "
                     f"{row['ratio']:.2f} ({factor:.2f}x {verdict}) |")
    lines.append(END)
    return "\n".join(lines)


def write_section(path, section):
    """Replaces the section between the markers in `path`, or appends it under its own heading."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Side by side with PyTorch on the CPU\n\n" + section + "\n"
    with open(path, "w") as out:
        out.write(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sound2scene", required=True)
    parser.add_argument("--s2v", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", nargs="*", help="row targets to run (s2v bench names)")
    parser.add_argument("--json")
    parser.add_argument("--markdown", help="a Markdown file whose side-by-side section is replaced")
    args = parser.parse_args()

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    s2s_model, s2s_test, BigGAN = import_sound2scene(args.sound2scene)
    torch.manual_seed(0)
    rows = [r for r in ROWS if not args.only or r[1] in args.only]
    results = []
    for name, target, batch in rows:
        call = {
            "spectrogram": lambda: spectrogram_call(s2s_test, batch),
            "audio-encoder": lambda: audio_encoder_call(s2s_model, batch),
            "generator": lambda: generator_call(BigGAN, batch),
            "image-encoder": lambda: image_encoder_call(batch),
        }[target]()
        torch_times, s2v_times = [], []
        for _ in range(args.rounds):
            torch_times.append(torch_median(call, args.runs))
            s2v_times.append(s2v_median(args.s2v, target, batch, args.runs))
        row = {
            "row": name, "target": target, "batch": batch,
            "pytorch_s": statistics.median(torch_times), "s2v_s": statistics.median(s2v_times),
            "pytorch_rounds": torch_times, "s2v_rounds": s2v_times,
        }
        row["ratio"] = row["s2v_s"] / row["pytorch_s"]
        results.append(row)
        print(f"{name:28} PyTorch {row['pytorch_s']:8.4f} s   s2v {row['s2v_s']:8.4f} s   "
              f"s2v/PyTorch {row['ratio']:.2f}", flush=True)
    report = {
        "machine": machine(), "torch": torch.__version__, "torch_threads": threads,
        "rounds": args.rounds, "runs": args.runs, "rows": results,
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    if args.markdown:
        write_section(args.markdown, markdown(report))


if __name__ == "__main__":
    main()
