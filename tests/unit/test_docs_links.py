"""The README and docs/ stay navigable and self-contained.

Every relative link in README.md and docs/*.md points at a file or folder that exists, the README
stays short enough to read, and nothing points outside the repository at a contract its users
never see. Offline and fast: only markdown files are read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: The README is for users; everything longer belongs in docs/.
README_MAX_BYTES = 15_000
#: The files a user reads: the README first, then docs/ in name order.
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: Names of things outside this repository that users of it never see: the contract as first
#: written (upper case, beside the repository) and the folder it came from. A pattern, so that
#: this file does not itself cite the name it forbids.
FORBIDDEN = re.compile(r"CONTRACT\.md|\.\./shared")
#: Targets that are not files of this repository.
EXTERNAL_PREFIXES = ("http://", "https://", "mailto:")

#: An inline link or image, ``[text](target)`` or ``[text](target "title")``. The text may span
#: lines; the target may be wrapped in angle brackets.
LINK = re.compile(r"\[(?P<text>[^\]]*)\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: A line that opens or closes a fenced code block.
FENCE = re.compile(r"^\s*(```|~~~)")


class Link(NamedTuple):
    line: int
    text: str
    target: str


def name(path: Path) -> str:
    """The path as the repository spells it, for test ids and failure messages."""
    return path.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    """``text`` with fenced code blocks blanked out, keeping every line where it was."""
    kept: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            kept.append("")
        else:
            kept.append("" if in_fence else line)
    return "\n".join(kept)


def links(path: Path) -> list[Link]:
    """Every inline link of a markdown file outside code blocks, with the line it starts on."""
    text = prose(path.read_text(encoding="utf-8"))
    return [
        Link(
            line=text.count("\n", 0, match.start()) + 1,
            text=" ".join(match["text"].split()),  # a text that spans lines, on one line
            target=match["target"],
        )
        for match in LINK.finditer(text)
    ]


def local_target(target: str) -> str | None:
    """The file part of a link into this repository; None for external and same-page links."""
    if target.startswith(EXTERNAL_PREFIXES) or target.startswith("#"):
        return None
    return unquote(target.split("#", 1)[0])


def test_the_documents_are_found() -> None:
    assert README.is_file(), "README.md is missing"
    assert (ROOT / "docs" / "contract.md").is_file(), "docs/contract.md is missing"


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_relative_links_point_at_existing_files(document: Path) -> None:
    broken = []
    for link in links(document):
        path = local_target(link.target)
        if path is None:
            continue
        resolved = (document.parent / path).resolve()
        if not resolved.exists():
            broken.append(
                f"{name(document)}:{link.line}: [{link.text}]({link.target}) -> "
                f"{path} does not exist relative to {name(document.parent) or '.'}"
            )
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_stays_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, more than {README_MAX_BYTES}: move detail into docs/"
    )


@pytest.mark.parametrize("document", DOCUMENTS, ids=name)
def test_nothing_points_outside_the_repository(document: Path) -> None:
    found = [
        f"{name(document)}:{number}: mentions {match.group()!r}: {line.strip()}"
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1)
        if (match := FORBIDDEN.search(line))
    ]
    assert not found, (
        "link to docs/contract.md instead of anything outside the repository:\n" + "\n".join(found)
    )
