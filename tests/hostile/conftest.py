"""Fixtures shared by the hostile-input tests."""
from __future__ import annotations

import pytest

from kubik_core import cli


@pytest.fixture
def kubik(monkeypatch, capsys):
    """Run ``kubik ARGS...`` in-process with the 3d commands; returns (exit status, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("recon3d.cli",))

    def run(*argv):
        rc = cli.main([str(a) for a in argv])
        return rc, capsys.readouterr().err.strip()

    return run
