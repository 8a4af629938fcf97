"""Storage URLs to Optuna storages: SQLite/PostgreSQL with heartbeats, or a journal file.

* ``sqlite:///abs/path.db``, ``postgresql+psycopg2://user@host/db`` (any
  SQLAlchemy URL): :class:`optuna.storages.RDBStorage` with a heartbeat, so a
  worker that dies mid-trial (killed, machine lost) has that trial failed
  after ``grace_period`` seconds and retried (as a WAITING copy with the same
  parameters) up to ``max_retry`` times;
* ``journal:///path.log`` (or a plain path ending ``.log``/``.journal``; as
  for SQLite, three slashes start a relative path, four an absolute one):
  :class:`optuna.storages.JournalStorage` on a file, the no-server
  alternative for several processes on one machine or a shared filesystem
  (no heartbeat: a trial of a killed worker stays RUNNING).

Every failure to open a storage is a :class:`StorageError` (a ``ValueError``)
whose message names the URL (password hidden) and what to check.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fusionnas.errors import UserError

if TYPE_CHECKING:
    import optuna

__all__ = ["StorageError", "StorageOptions", "open_storage", "storage_file", "display_url"]

logger = logging.getLogger(__name__)

_JOURNAL_SUFFIXES = (".log", ".journal")
_SCHEMA_ATTEMPTS = 5


class StorageError(UserError):
    """A storage URL that cannot be opened (wrong scheme, missing file or folder, no server)."""


@dataclass(frozen=True)
class StorageOptions:
    """Heartbeat settings of RDB storages (``heartbeat_interval`` None: no heartbeat).

    A trial whose worker has not written a heartbeat for ``grace_period``
    seconds (default: twice the interval) is failed by the next worker that
    asks for a trial, and re-queued up to ``max_retry`` times.
    """

    heartbeat_interval: int | None = 60
    grace_period: int | None = None
    max_retry: int = 2

    def __post_init__(self) -> None:
        if self.heartbeat_interval is not None and self.heartbeat_interval < 1:
            raise UserError(f"heartbeat_interval must be >= 1 s or None, got {self.heartbeat_interval}")
        if self.grace_period is not None and self.grace_period < 1:
            raise UserError(f"grace_period must be >= 1 s or None, got {self.grace_period}")
        if self.max_retry < 0:
            raise UserError(f"max_retry must be >= 0, got {self.max_retry}")


def display_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (an unparsable URL: hide everything before the host)
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[-1]}"


def storage_file(url: str) -> Path | None:
    """The file behind a SQLite or journal URL (None for a server or ``:memory:``)."""
    for prefix in ("sqlite:///", "journal:///"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            return None if rest in ("", ":memory:") else Path(rest)
    if "://" not in url and url.endswith(_JOURNAL_SUFFIXES):
        return Path(url)
    return None


def _is_journal(url: str) -> bool:
    return url.startswith("journal:///") or ("://" not in url and url.endswith(_JOURNAL_SUFFIXES))


def open_storage(
    url: str, options: StorageOptions | None = None, *, must_exist: bool = False
) -> optuna.storages.BaseStorage:
    """The Optuna storage behind ``url`` (see the module docstring).

    With ``must_exist`` a SQLite or journal file that does not exist is an
    error instead of being created, so that reading commands leave no empty
    database behind.
    """
    options = options or StorageOptions()
    shown = display_url(url)
    path = storage_file(url)
    if path is not None:
        if must_exist and not path.is_file():
            raise StorageError(f"storage {shown}: no such file; run `fusionnas search` on the study first "
                               f"or pass the right `storage`")
        if not path.parent.is_dir():
            raise StorageError(f"storage {shown}: folder {path.parent} does not exist; create it or "
                               f"choose another storage path")
    if _is_journal(url):
        if path is None:
            raise StorageError(f"storage {shown}: a journal URL needs a file path, e.g. journal:///abs/study.log")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except (OSError, ValueError) as error:
            raise StorageError(f"storage {shown}: cannot open the journal file ({error})") from None
    if "://" not in url:
        raise StorageError(f"storage {shown!r} is not a URL; write sqlite:///path.db, journal:///path.log "
                           f"or postgresql+psycopg2://user@host/db")
    return _open_rdb(url, shown, options)


def _open_rdb(url: str, shown: str, options: StorageOptions) -> optuna.storages.RDBStorage:
    import optuna
    import sqlalchemy.exc

    try:
        with warnings.catch_warnings():  # the heartbeat is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            heartbeat = {}
            if options.heartbeat_interval is not None:
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=options.max_retry)
                heartbeat = dict(heartbeat_interval=options.heartbeat_interval,
                                 grace_period=options.grace_period or 2 * options.heartbeat_interval,
                                 heartbeat_stale_trial_callback=retry)
            for attempt in range(_SCHEMA_ATTEMPTS):
                try:
                    return optuna.storages.RDBStorage(url, **heartbeat)
                except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as error:
                    # Another worker created the tables just now (PostgreSQL: a duplicate key;
                    # SQLite: "table ... already exists"). Anything else is a real error.
                    if isinstance(error, sqlalchemy.exc.OperationalError) and "already exists" not in str(error):
                        raise
                    if attempt == _SCHEMA_ATTEMPTS - 1:
                        raise
                    time.sleep(0.2 * (attempt + 1))
    except ImportError as error:
        raise StorageError(f"storage {shown}: the database driver is not installed ({error}); for PostgreSQL "
                           f"run `pip install psycopg2-binary`") from None
    except sqlalchemy.exc.NoSuchModuleError:
        scheme = url.split("://", 1)[0]
        raise StorageError(f"storage {shown}: unknown database scheme {scheme!r}; use sqlite:///, "
                           f"postgresql+psycopg2://, mysql:// or journal:///") from None
    except (sqlalchemy.exc.ArgumentError, ValueError) as error:
        raise StorageError(f"storage {shown}: not a valid database URL ({error})") from None
    except sqlalchemy.exc.SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        reason = reason[0] if reason else type(error).__name__
        raise StorageError(f"storage {shown}: cannot connect ({reason}); check the host, port, user, "
                           f"password and that the database exists") from None
    except RuntimeError as error:  # Optuna: the tables were written by another Optuna version
        raise StorageError(f"storage {shown}: {str(error).splitlines()[0]}") from None
