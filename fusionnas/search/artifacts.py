"""Where a study's files live: ``<study>-artifacts``, one folder per study and storage.

Weights, latency tables and the latency reference of a study's trials are
kept in its artifacts folder; :data:`OWNER_FILE` in it records the study and
the storage whose trials point to those files, so that a run of the same
study file on another storage never replaces them (:func:`artifacts_dir`).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fusionnas.errors import UserError
from fusionnas.search.storage import display_url, storage_file

if TYPE_CHECKING:
    from fusionnas.search.config import StudyConfig

__all__ = ["OWNER_FILE", "artifacts_dir", "claim_artifacts"]

OWNER_FILE = "owner.json"  # in an artifacts folder: the study and storage its files belong to


def artifacts_dir(config: StudyConfig, storage: str | None = None) -> Path:
    """The artifacts folder of ``config``'s study in ``storage`` (default: the config's); nothing is written.

    It lies beside the SQLite/journal file, else beside the study file.
    ``<study name>-artifacts`` belongs to the storage and study its
    :data:`OWNER_FILE` records; one without that file (new, or written before
    owners were recorded) to the study file's own storage. The same study in
    any other storage gets ``<study name>-artifacts-<storage>``, so that no run
    replaces the weights another storage's trials point to.

    Raises:
        UserError: that folder belongs to another study or storage (storage files that differ by suffix only).
    """
    url = storage or config.storage
    base, owner = _artifacts_base(config, url), _owner(config.name, url)
    default = base / f"{config.name}-artifacts"
    recorded = _read_owner(default)
    if recorded == owner or (recorded is None and owner == _owner(config.name, config.storage)):
        return default
    path = storage_file(url)
    tag = path.stem if path is not None else hashlib.sha256(owner["storage"].encode()).hexdigest()[:8]
    folder = base / f"{config.name}-artifacts-{tag}"
    _check_owner(folder, owner)
    return folder


def claim_artifacts(config: StudyConfig, storage: str) -> Path:
    """:func:`artifacts_dir`, created and recorded as this study's; the first writer of an owner file wins."""
    folder = artifacts_dir(config, storage)
    owner = _owner(config.name, storage)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OWNER_FILE
    if not marker.exists():
        tmp = folder / f".{OWNER_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(owner, indent=2) + "\n", encoding="utf-8")
        try:
            os.link(tmp, marker)  # fails if another process wrote it first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    if _read_owner(folder) != owner and folder.name == f"{config.name}-artifacts":
        return claim_artifacts(config, storage)  # another study file of this name claimed it just now
    _check_owner(folder, owner)
    return folder


def _check_owner(folder: Path, owner: dict[str, str]) -> None:
    recorded = _read_owner(folder)
    if recorded is None or recorded == owner:
        return
    if not recorded:
        raise UserError(f"artifacts folder {folder}: its {OWNER_FILE} is unreadable; delete that file if the "
                        f"folder holds study {owner['study']!r} of storage {owner['storage']}")
    raise UserError(f"artifacts folder {folder} belongs to study {recorded.get('study')!r} in storage "
                    f"{recorded.get('storage')} (its {OWNER_FILE}), not to {owner['study']!r} in "
                    f"{owner['storage']}; rename one of the two storage files")


def _artifacts_base(config: StudyConfig, url: str) -> Path:
    path = storage_file(url)
    return path.parent if path is not None else (config.path.parent if config.path else Path.cwd())


def _owner(study: str, url: str) -> dict[str, str]:
    """What :data:`OWNER_FILE` records: the study and its storage, a file by its name (the folder lies
    beside it, so a moved project keeps its artifacts), a server by its URL without the password."""
    path = storage_file(url)
    return {"study": study, "storage": path.name if path is not None else display_url(url)}


def _read_owner(folder: Path) -> dict[str, str] | None:
    """The owner recorded in ``folder``; None where none is; {} where the file is unreadable."""
    try:
        recorded = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}
