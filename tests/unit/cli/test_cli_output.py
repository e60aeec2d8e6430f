"""What the command line prints stays copyable: a long path is one line, not wrapped at the terminal's width."""

from __future__ import annotations

import sys

from simplebits_audit.cli import options


def _run(capsys, *args: str) -> tuple[int, str, str]:
    from simplebits_audit.cli.main import main

    argv, sys.argv = sys.argv, ["simplebits", *args]
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_long_report_path_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(options.console, "width", 80)  # a narrow terminal, whatever COLUMNS said at import
    out = tmp_path / ("a-folder-name-long-enough-to-pass-any-terminal-width-" * 2) / "run"
    code, printed, err = _run(capsys, "explain", "--model", "testbed:stripes", "--steps", "2", "testbed:stripes:3", "--out", str(out))
    assert code == 0, err
    assert len(str(out)) > 80 and f"report: {out / 'report.html'}" in printed.splitlines(), printed
