"""The studies command: list the studies of the storages here, or delete one once confirmed."""
from __future__ import annotations

import argparse
import sys

from fusionnas.cli._common import quiet_optuna
from fusionnas.errors import UserError


def cmd_studies(args: argparse.Namespace) -> int:
    """List the studies of the storages with their trials per state, or delete one once confirmed."""
    from fusionnas.search import default_storages, list_studies
    from fusionnas.search.storage import display_url
    from fusionnas.search.studies import STATES

    quiet_optuna()
    if args.yes is not None and args.delete is None:
        raise UserError(f"--yes {args.yes} confirms a deletion; add --delete {args.yes}")
    urls = [args.storage] if args.storage else default_storages()
    if args.delete is not None:
        return _delete_study(args, urls)
    if not urls:
        print("no study storage here: no study file in . or studies/ has its storage yet; pass --storage URL")
        return 0
    failed = 0
    for url in urls:
        try:
            studies = list_studies(url)
        except UserError as error:
            if args.storage:
                raise
            print(f"fusionnas: error: {error}", file=sys.stderr)  # a study file's storage; the others still list
            failed = 2
            continue
        print(f"{display_url(url)}: {len(studies)} {'study' if len(studies) == 1 else 'studies'}")
        width = max([5, *(len(s.name) for s in studies)])
        labels = [_state_label(state) for state in STATES]
        if studies:
            print(f"  {'study':<{width}}  {'trials':>6}  " + "  ".join(labels) + "  started")
        for s in studies:
            counts = "  ".join(f"{n:>{len(label)}}" for n, label in zip(s.states.values(), labels))
            started = s.started.strftime("%Y-%m-%d %H:%M") if s.started else "-"
            print(f"  {s.name:<{width}}  {s.n_trials:>6}  {counts}  {started}")
    return failed


def _state_label(state: str) -> str:
    """A trial state as the study tables name it: ``FAIL`` -> ``failed``, ``COMPLETE`` -> ``complete``."""
    return "failed" if state == "FAIL" else state.lower()


def _delete_study(args: argparse.Namespace, urls: list[str]) -> int:
    """``studies --delete NAME``: find the one storage holding it, ask for its name again, delete it."""
    from fusionnas.search import delete_study, find_study, list_studies
    from fusionnas.search.storage import display_url

    name = args.delete
    if not args.storage:
        urls = [url for url in urls if any(s.name == name for s in list_studies(url))]
        shown = ", ".join(display_url(url) for url in urls)
        if not urls:
            raise UserError(f"no study {name!r} in the storages of the study files in . and studies/; "
                            f"`fusionnas studies` lists them, or pass --storage URL")
        if len(urls) > 1:
            raise UserError(f"study {name!r} is in {len(urls)} storages ({shown}); pass --storage URL to choose one")
    url = urls[0]
    study = find_study(url, name)
    counts = ", ".join(f"{n} {_state_label(state)}" for state, n in study.states.items() if n)
    if args.yes is None:
        print(f"study {name} in {display_url(url)} holds {study.n_trials} trials ({counts or 'none'}); "
              f"deleting it cannot be undone")
        try:
            typed = input(f"type {name} to delete it: ").strip()
        except EOFError:
            raise UserError(f"nothing deleted: no answer at the prompt; type the name, or pass --yes {name}") from None
        if typed != name:
            raise UserError(f"nothing deleted: typed {typed!r}, not {name!r}")
    elif args.yes != name:
        raise UserError(f"nothing deleted: --yes {args.yes!r} does not match --delete {name!r}")
    delete_study(url, name)
    print(f"deleted study {name} ({study.n_trials} trials) from {display_url(url)}; "
          f"files beside the storage (weights, tables) are kept")
    return 0
