"""The Recommender protocol and the on-disk model format shared by every model.

A model directory holds `model.npz` (arrays only, loadable with
`allow_pickle=False`: a model file must never be able to run code) and
`meta.json` (model name + constructor params), so any model can be reloaded by
name without pickle.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import Dataset
from app.recsys.data.idmap import IdMap

MODEL_FILE = "model.npz"
META_FILE = "meta.json"


@runtime_checkable
class Recommender(Protocol):
    """What the trainer, the evaluator and the benchmark rely on."""

    name: str
    users: IdMap
    items: IdMap

    def fit(self, dataset: Dataset) -> Self: ...

    def recommend(
        self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]: ...

    def save(self, directory: Path) -> None: ...

    @classmethod
    def load(cls, directory: Path) -> Self: ...

    def params(self) -> dict[str, Any]: ...


def write_model(directory: Path, model: Recommender, arrays: dict[str, np.ndarray]) -> None:
    """Write `model.npz` (arrays + the id maps) and `meta.json`; meta last, so a directory with meta is complete."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = dict(arrays)
    model.users.save(arrays, "user")
    model.items.save(arrays, "item")
    np.savez(directory / MODEL_FILE, **arrays)
    meta = {"name": model.name, "params": model.params()}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(directory: Path) -> dict[str, Any]:
    """`{"name": ..., "params": ...}` of a saved model."""
    meta_path = Path(directory) / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"no {META_FILE} in {directory}: not a saved model (or an unfinished save)")
    return json.loads(meta_path.read_text())


@dataclass(frozen=True)
class SavedModel:
    """What `read_model` found: constructor params, id maps and the model's own arrays."""

    params: dict[str, Any]
    users: IdMap
    items: IdMap
    arrays: dict[str, np.ndarray]


def read_model(directory: Path, expected_name: str) -> SavedModel:
    """A saved model of the expected kind; raises if it is another model or incomplete."""
    directory = Path(directory)
    meta = read_meta(directory)
    if meta["name"] != expected_name:
        raise ValueError(f"{directory} holds a {meta['name']!r} model, not {expected_name!r}")
    with np.load(directory / MODEL_FILE, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return SavedModel(meta["params"], IdMap.load(arrays, "user"), IdMap.load(arrays, "item"), arrays)


def check_indices(indices: np.ndarray, size: int, what: str) -> np.ndarray:
    """int64 indices, all within 0..size-1, else a clear error."""
    indices = np.asarray(indices, dtype=np.int64).ravel()
    if indices.size and (indices.min() < 0 or indices.max() >= size):
        raise IndexError(f"{what} index out of range 0..{size - 1}")
    return indices


def check_fitted(model: Recommender) -> None:
    if not len(model.items):
        raise RuntimeError(f"{model.name} model is not fitted (or was fitted on no items)")


def put_csr(arrays: dict[str, np.ndarray], prefix: str, matrix: sp.csr_matrix) -> None:
    """Store a CSR matrix as plain arrays `{prefix}_data/_indices/_indptr/_shape` (npz, no pickle)."""
    matrix = sp.csr_matrix(matrix)
    arrays[f"{prefix}_data"] = matrix.data
    arrays[f"{prefix}_indices"] = matrix.indices
    arrays[f"{prefix}_indptr"] = matrix.indptr
    arrays[f"{prefix}_shape"] = np.asarray(matrix.shape, dtype=np.int64)


def get_csr(arrays: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """Inverse of `put_csr`."""
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape=shape
    )


def binary(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """The same pattern with every stored entry 1 (float32): who has met which item."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data[:] = 1.0
    return out
