"""What the command line prints stays copyable: a long path or error is one line, not wrapped at the terminal's width."""

from __future__ import annotations

import sys


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


def test_a_long_report_path_and_a_long_error_are_each_one_line(tmp_path, capsys):
    out = tmp_path / ("a-folder-name-long-enough-to-pass-any-terminal-width-" * 2) / "run"
    code, printed, err = _run(capsys, "explain", "--model", "testbed:stripes", "--steps", "2", "testbed:stripes:3", "--out", str(out))
    assert code == 0, err
    assert f"report: {out / 'report.html'}" in printed.splitlines(), printed
    missing = str(out / "no-such-image-with-a-long-name.png")
    code, _, err = _run(capsys, "explain", "--model", "testbed:stripes", missing)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and missing in lines[0], err
