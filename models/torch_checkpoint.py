"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format, without PyTorch.

The pretrained EfficientNet-Lite0 weights ship in this format, and PyTorch is no requirement here.
The file holds five things one after another: three small pickles (a magic number, the protocol
version 1001, a dict of system information), the pickle of the state dict, whose tensors refer to
storages by key (pickle persistent ids) instead of holding data, a pickled list of those storage keys,
and then, for each key in that order, an int64 element count followed by the storage's raw
little-endian data.

Only a whitelist of globals is resolved (OrderedDict, the tensor rebuild functions, the storage
types), each to a local stand-in, so reading a file never imports or runs anything it names.
"""

import collections
import pickle
import struct
from typing import NamedTuple

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType(NamedTuple):
    """Stand-in for a class such as torch.FloatStorage: only its element type matters."""

    dtype: str


class _StorageRef(NamedTuple):
    """A storage named by key, starting `offset` elements in (a legacy storage view; 0 otherwise)."""

    key: str
    offset: int


class _TensorRef(NamedTuple):
    """A tensor before the storages are read: where its elements are and how they are laid out."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """Stand-in for torch._utils._rebuild_tensor(_v2); requires_grad, hooks and metadata do not matter here."""
    return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: the header pickles and the key list name no class."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"the file names {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unexpected storage reference")


class _StateDictUnpickler(_PlainUnpickler):
    """Resolves only the whitelisted globals and records every storage a tensor refers to."""

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}  # key -> (dtype, element count)

    def find_class(self, module, name):
        if (module, name) not in GLOBALS:
            super().find_class(module, name)
        return GLOBALS[module, name]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, count, view = pid
        if self.storages.setdefault(key, (storage_type.dtype, count)) != (storage_type.dtype, count):
            raise pickle.UnpicklingError(f"storage {key} is declared twice differently")
        if view is None:
            return _StorageRef(key, 0)
        _view_key, offset, view_count = view
        if not 0 <= offset <= offset + view_count <= count:
            raise pickle.UnpicklingError(f"a view of storage {key} lies outside it")
        return _StorageRef(key, offset)


def _read_storage(file, dtype, count):
    (stored,) = struct.unpack("<q", file.read(8))
    if stored != count:
        raise ValueError(f"a storage holds {stored} elements where {count} were declared")
    data = file.read(count * np.dtype(dtype).itemsize)
    if len(data) != count * np.dtype(dtype).itemsize:
        raise ValueError("the file ends inside a storage")
    return np.frombuffer(data, dtype)


def _tensor(ref, storages):
    """The tensor's elements as a C-contiguous array, honouring offset, size and strides (kernels are often stored transposed)."""
    data = storages[ref.storage.key]
    start = ref.storage.offset + ref.offset
    if len(ref.size) != len(ref.stride) or min(ref.size + ref.stride, default=0) < 0:
        raise ValueError("a tensor has a malformed size or stride")
    if 0 not in ref.size:
        last = start + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if not 0 <= start <= last < len(data):
            raise ValueError("a tensor reaches outside its storage")
    if not ref.size:  # a scalar (as_strided reads shape () as "keep the input's shape")
        return np.array(data[start])
    strides = tuple(s * data.itemsize for s in ref.stride)
    return np.ascontiguousarray(np.lib.stride_tricks.as_strided(data[start:], ref.size, strides, writeable=False))


def load_legacy_state_dict(path):
    """{name: numpy array} from a legacy-format PyTorch state dict; ValueError with one sentence for anything else."""
    try:
        with open(path, "rb") as file:
            magic, protocol, system = (_PlainUnpickler(file).load() for _ in range(3))
            if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION or not isinstance(system, dict):
                raise ValueError("the header is not torch.save's")
            if not system.get("little_endian", False):
                raise ValueError("the file was written big-endian")
            unpickler = _StateDictUnpickler(file)
            state = unpickler.load()
            keys = _PlainUnpickler(file).load()
            if not isinstance(state, dict) or not all(isinstance(v, _TensorRef) for v in state.values()):
                raise ValueError("the pickled object is not a state dict of tensors")
            if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
                raise ValueError("the storage key list does not match the tensors")
            storages = {key: _read_storage(file, *unpickler.storages[key]) for key in keys}
            return {str(name): _tensor(ref, storages) for name, ref in state.items()}
    except OSError:
        raise
    except Exception as error:  # any parse failure of an untrusted file is the same one-sentence refusal
        raise ValueError(f"{path} is not a legacy (pre-1.6, non-zip) PyTorch state-dict file ({error}).") from error
