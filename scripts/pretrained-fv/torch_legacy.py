"""Read a PyTorch checkpoint in the pre-1.6 (non-zip) format into numpy arrays, without PyTorch.

The format: three pickles (magic number, protocol, system info), the pickled state dict whose tensors refer to
storages by key, the list of storage keys, then each storage's element count (little-endian int64) and bytes.
"""
import collections
import pickle
import struct

import numpy as np

STORAGE_TYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file):
        super().__init__(file)
        self.storage_types = {}

    def find_class(self, module, name):
        if name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *_: (storage, offset, tuple(size), tuple(stride))
        if name == "OrderedDict":
            return collections.OrderedDict
        if name in STORAGE_TYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a state dict")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _size, _view = pid
        self.storage_types[key] = storage_type
        return key


def load_state_dict(path):
    with open(path, "rb") as file:
        for _ in range(3):
            pickle.load(file)
        unpickler = _StateDictUnpickler(file)
        tensors = unpickler.load()
        storages = {}
        for key in pickle.load(file):
            dtype = np.dtype(STORAGE_TYPES[unpickler.storage_types[key]])
            (count,) = struct.unpack("<q", file.read(8))
            storages[key] = np.frombuffer(file.read(count * dtype.itemsize), dtype=dtype)
    state = collections.OrderedDict()
    for name, (key, offset, size, stride) in tensors.items():
        flat = storages[key][offset:]
        strides = [s * flat.itemsize for s in stride]
        state[name] = np.array(np.lib.stride_tricks.as_strided(flat, shape=size, strides=strides))
    return state
