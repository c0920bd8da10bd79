"""The labelled pictures of a fine-labelled build, and the trainer's neighbour measure over features of them.

`pictures.py export BUILD SIZE PREFIX` writes PREFIX.bin (float32, N x SIZE x SIZE x 3, RGB in [0, 1], alpha
composited onto white) and PREFIX.json (name, label, split per row): the training and held-out pictures that
have a fine label, the keys and queries of `s2v`'s image-encoder neighbour measure.

`pictures.py measure PREFIX.json FEATURES` (.npy, or raw float32) prints that measure: the share of held-out pictures whose
nearest labelled training picture (largest cosine) has their label; on raw features and mean-centred.
`pictures.py pixels PREFIX` writes the 16 x 16 mean-centred pixel baseline the trainer compares against.
"""
import csv
import json
import os
import sys

import numpy as np
from PIL import Image


def labelled_items(build):
    for folder in (build, os.path.join(build, "image_only")):
        images = os.path.join(folder, "images")
        files = {os.path.splitext(f)[0]: os.path.join(images, f) for f in os.listdir(images)}
        for row in csv.DictReader(open(os.path.join(folder, "items.csv"))):
            if row.get("label") and row["name"] in files:
                yield files[row["name"]], row


def export(build, size, prefix):
    pixels, meta = [], []
    for path, row in labelled_items(build):
        picture = Image.open(path).convert("RGBA")
        white = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        white.alpha_composite(picture)
        rgb = white.convert("RGB").resize((size, size), Image.BILINEAR)
        pixels.append(np.asarray(rgb, dtype=np.float32) / 255.0)
        meta.append({k: row[k] for k in ("name", "label", "split")})
    np.stack(pixels).tofile(prefix + ".bin")
    json.dump({"size": size, "items": meta}, open(prefix + ".json", "w"))
    print(f"{len(meta)} labelled pictures, {sum(m['split'] == 'test' for m in meta)} held out")


def load(prefix):
    meta = json.load(open(prefix + ".json"))
    n, size = len(meta["items"]), meta["size"]
    return meta["items"], np.fromfile(prefix + ".bin", dtype=np.float32).reshape(n, size, size, 3)


def same_label_share(items, features):
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    keys = [i for i, m in enumerate(items) if m["split"] == "train"]
    queries = [i for i, m in enumerate(items) if m["split"] == "test"]
    nearest = np.array(keys)[(unit[queries] @ unit[keys].T).argmax(1)]
    return float(np.mean([items[q]["label"] == items[k]["label"] for q, k in zip(queries, nearest)]))


def measure(meta_path, features_path):
    items = json.load(open(meta_path))["items"]
    if features_path.endswith(".npy"):
        features = np.load(features_path)
    else:
        features = np.fromfile(features_path, dtype=np.float32)
    features = features.reshape(len(items), -1)
    raw = same_label_share(items, features)
    centred = same_label_share(items, features - features.mean(0))
    print(f"{os.path.basename(features_path)}: {raw:.3f} (centred {centred:.3f})")


def pixels(prefix):
    items, x = load(prefix)
    n, size = x.shape[:2]
    cell = size // 16
    pooled = x.transpose(0, 3, 1, 2).reshape(n, 3, 16, cell, 16, cell).mean((3, 5)).reshape(n, -1)
    np.save(prefix + "_pixels.npy", pooled - pooled.mean(0))


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "export":
        export(args[0], int(args[1]), args[2])
    elif command == "measure":
        measure(*args)
    elif command == "pixels":
        pixels(*args)
    else:
        sys.exit(f"unknown command {command}")
