"""The one-way house stays true: import-linter's contracts (pyproject.toml) and no cycle between packages."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("firelink", "console", "notify", "dispatch", "detectors", "ingest", "config")


def test_import_contracts_are_kept(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    enabled = [lg for lg in logging.Logger.manager.loggerDict.values()
               if isinstance(lg, logging.Logger) and not lg.disabled]
    try:
        assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0
    finally:  # import-linter configures logging (dictConfig), which disables every logger it does not name
        for lg in enabled:
            lg.disabled = False


def test_no_import_cycle_between_packages() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    both_ways = [(a, b) for a, b in itertools.combinations(PACKAGES, 2)
                 if graph.direct_import_exists(importer=a, imported=b, as_packages=True)
                 and graph.direct_import_exists(importer=b, imported=a, as_packages=True)]
    assert both_ways == []


def test_only_the_composition_root_sees_every_package() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    importers_of_console = {p for p in PACKAGES if p != "console"
                            and graph.direct_import_exists(importer=p, imported="console", as_packages=True)}
    assert importers_of_console == {"firelink"}
