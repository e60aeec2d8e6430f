"""Every relative link and image in README.md and docs/*.md points at a file (and heading) that exists.

The README is a user's page and the long material lives under docs/, so the two link to each
other a lot; a moved section or a renamed page must fail here rather than leave a dead link.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans (their brackets are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text: lower case, punctuation dropped, spaces to hyphens."""
    out: set[str] = set()
    for title in _HEADING.findall(_FENCE.sub("", text)):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in out:  # repeated headings get -1, -2, ...
            slug, n = f"{base}-{n}", n + 1
        out.add(slug)
    return out


def broken_links(page: Path) -> list[str]:
    """Relative links and images of ``page`` whose file, or whose #anchor in a Markdown file, is missing."""
    text = page.read_text(encoding="utf-8")
    bad = []
    for target in _LINK.findall(_prose(text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            bad.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            bad.append(f"{target}: no heading #{anchor} in {file.name}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_checker_finds_a_broken_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading, here\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-heading-here) [gone](missing.md) ![img](nope.png) [bad](there.md#nowhere)\n"
        "`[code](ignored.md)` [web](https://example.org/x.md)\n```\n[fenced](ignored.md)\n```\n",
        encoding="utf-8",
    )
    bad = broken_links(page)
    assert [b.split(":")[0] for b in bad] == ["missing.md", "nope.png", "there.md#nowhere"]


def test_readme_keeps_the_two_commands_and_stays_short() -> None:
    text = PAGES[0].read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text  # CI (.ci/run) calls `make test`
    assert len(text.splitlines()) <= 320, "the README is a user's page: long material goes under docs/"
