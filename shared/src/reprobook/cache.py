"""Content-addressed cache of executed notebooks.

The cache key of a run is the SHA-256 of, in this order:

1. the notebook's code cells: source and tags of each, in order (markdown and outputs excluded,
   so editing prose never re-executes a chapter);
2. the resolved parameters, as sorted JSON;
3. every other file in the paper's folder (``paper.yaml``, helper modules, data files), by
   relative path and content, except the notebook itself, ``__pycache__`` and checkpoints;
4. every file of the ``reprobook`` package's source;
5. the dependency list ``environment.yml`` at the project root;
6. the versions of Python, NumPy and torch.

An entry is a folder ``<key>/`` holding ``executed.ipynb``, ``claims.json`` and ``meta.json``.
It is written under a temporary name and renamed into place, so a reader never sees half an
entry; an entry whose files are missing or unreadable is treated as a miss and removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
_ENTRY_FILES = ("executed.ipynb", "claims.json", "meta.json")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def package_source_dir() -> Path:
    """Return the folder of the installed ``reprobook`` package."""
    return Path(__file__).resolve().parent


def _hash_tree(digest: Any, folder: Path, skip: Path | None = None) -> None:
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or _SKIP_PARTS.intersection(path.parts) or path == skip:
            continue
        if path.suffix in (".pyc", ".pyo"):
            continue
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())


def _json_default(value: Any) -> str:
    return repr(value)


def cache_key(nb: Any, parameters: dict[str, Any], paper_folder: Path, notebook_path: Path, root: Path) -> str:
    """Return the cache key of running ``nb`` with ``parameters`` (see the module docstring)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            tags = sorted(cell.get("metadata", {}).get("tags", []))
            digest.update(json.dumps([cell.source, tags]).encode())
    digest.update(b"\1" + json.dumps(parameters, sort_keys=True, default=_json_default).encode())
    digest.update(b"\2")
    _hash_tree(digest, paper_folder, skip=notebook_path)
    digest.update(b"\3")
    _hash_tree(digest, package_source_dir())
    environment = root / "environment.yml"
    digest.update(b"\4" + (environment.read_bytes() if environment.is_file() else b""))
    versions = [platform.python_version(), _version("numpy"), _version("torch")]
    digest.update(b"\5" + json.dumps(versions).encode())
    return digest.hexdigest()


class Cache:
    """A folder of cache entries keyed by :func:`cache_key`.

    Parameters
    ----------
    folder : path
        Where entries live, normally ``<root>/.reprobook/cache``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def entry(self, key: str) -> Path:
        """Return the folder of entry ``key`` (which may not exist)."""
        return self.folder / key

    def get(self, key: str) -> dict[str, Any] | None:
        """Return ``{"notebook": Path, "claims": list, "meta": dict}`` for a valid entry, else None."""
        entry = self.entry(key)
        if not entry.is_dir():
            return None
        try:
            meta = json.loads((entry / "meta.json").read_text())
            claims = json.loads((entry / "claims.json").read_text())
            notebook = entry / "executed.ipynb"
            json.loads(notebook.read_text())
            if meta.get("key") != key or not isinstance(claims, list):
                raise ValueError("entry does not match its key")
        except (OSError, ValueError) as exc:
            logger.warning("cache entry %s is corrupt (%s); removing it and re-running", key[:12], exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return {"notebook": notebook, "claims": claims, "meta": meta}

    def put(self, key: str, notebook_json: str, claims: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
        """Store an entry atomically and return its folder; an existing entry is kept."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.entry(key)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.folder))
        try:
            (staging / "executed.ipynb").write_text(notebook_json)
            (staging / "claims.json").write_text(json.dumps(claims, indent=1))
            (staging / "meta.json").write_text(json.dumps({**meta, "key": key}, indent=1))
            for name in _ENTRY_FILES:
                with open(staging / name, "rb") as handle:
                    os.fsync(handle.fileno())
            try:
                os.rename(staging, final)
            except OSError:
                if self.get(key) is None:
                    raise
                logger.debug("cache entry %s was written concurrently; keeping the existing one", key[:12])
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return final
