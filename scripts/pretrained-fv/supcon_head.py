"""A supervised-contrastive linear head on a frozen encoder's cached features (issue 21, item 4): does it
make held-out pictures' nearest labelled training picture share their label more often?

    python3 supcon_head.py DATA DATA/image-features/<digest>.safetensors

DATA is a fine-labelled build (s2v data build-default ... --with-labelled-sources); the features file is the
trainer's cache of the frozen encoder (`s2v train --image-encoder lite2.safetensors` writes it), one row per
picture keyed by the start of its SHA-256 (and `-mirrored` for the mirror image, which serves as the second
view). Choice by 5-fold cross-validation over groups of training pictures (a picture's name without its
trailing number), so the held-out pictures judge only the chosen head. Needs numpy, torch and safetensors.
"""

import csv, glob, hashlib, json, re, sys

import numpy as np
import torch
from safetensors import safe_open

data, features_file = sys.argv[1:3]
cache = safe_open(features_file, "np")
rows = {k: i for i, k in enumerate(json.loads(cache.metadata()["keys"]))}
table = cache.get_tensor("features")


def labelled(folder):
    for item in csv.DictReader(open(f"{data}/{folder}items.csv")):
        files = glob.glob(f"{data}/{folder}images/{item['name']}.*")
        if not item["label"] or not files:
            continue
        key = hashlib.sha256(open(files[0], "rb").read()).hexdigest()[:32]
        if key in rows:
            mirrored = rows.get(key + "-mirrored", rows[key])
            yield item["label"], item["split"], table[rows[key]], table[mirrored], item["name"]


items = list(labelled("")) + list(labelled("image_only/"))
train = [i for i in items if i[1] == "train"]
test = [i for i in items if i[1] == "test"]
A, M = np.stack([i[2] for i in train]), np.stack([i[3] for i in train])
T = np.stack([i[2] for i in test])
labels, test_labels = np.array([i[0] for i in train]), np.array([i[0] for i in test])


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def share(keys, key_labels, queries, query_labels):
    return float(np.mean(key_labels[(unit(queries) @ unit(keys).T).argmax(1)] == query_labels))


def supcon_head(x, mirrored, y, dim, steps, decay, temperature=0.1, seed=0):
    torch.manual_seed(seed)
    mean = x.mean(0)
    index = {l: k for k, l in enumerate(sorted(set(y)))}
    classes = torch.tensor([index[v] for v in y] * 2)
    inputs = torch.tensor(np.concatenate([x, mirrored]) - mean, dtype=torch.float32)
    head = torch.nn.Linear(x.shape[1], dim)
    optimiser = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=decay)
    for _ in range(steps):
        batch = torch.randperm(len(inputs))[:256]
        z = torch.nn.functional.normalize(head(inputs[batch]), dim=1)
        eye = torch.eye(len(batch), dtype=torch.bool)
        logits = (z @ z.T / temperature).masked_fill(eye, -1e9)
        positive = (classes[batch][:, None] == classes[batch][None]) & ~eye
        loss = -(logits.log_softmax(1) * positive).sum(1) / positive.sum(1).clamp(min=1)
        loss = loss[positive.sum(1) > 0].mean()
        optimiser.zero_grad(); loss.backward(); optimiser.step()
    return lambda f: head(torch.tensor(f - mean, dtype=torch.float32)).detach().numpy()


groups = sorted({re.sub(r"[_-]?\d+$", "", i[4]) for i in train})
np.random.default_rng(0).shuffle(groups)
fold_of = {g: k % 5 for k, g in enumerate(groups)}
fold = np.array([fold_of[re.sub(r"[_-]?\d+$", "", i[4])] for i in train])


def cross_validated(config):
    shares = []
    for k in range(5):
        fit, judged = fold != k, fold == k
        project = supcon_head(A[fit], M[fit], labels[fit], *config) if config else (lambda f: f)
        shares.append(share(project(A[fit]), labels[fit], project(A[judged]), labels[judged]))
    return float(np.mean(shares))


print(f"{len(train)} labelled training pictures, {len(test)} held out")
results = {None: cross_validated(None)}
print(f"frozen features: cross-validated {results[None]:.3f}, held out {share(A, labels, T, test_labels):.3f}")
for config in [(128, 300, 0.01), (128, 3000, 0.01), (512, 1000, 0.01), (512, 3000, 0.01), (512, 1000, 0.5)]:
    results[config] = cross_validated(config)
    print(f"head {config} (dim, steps, weight decay): cross-validated {results[config]:.3f}")
best = max((c for c in results if c), key=results.get)
project = supcon_head(A, M, labels, *best)
print(f"chosen {best}: held out {share(project(A), labels, project(T), test_labels):.3f}")
