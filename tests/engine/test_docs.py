"""The README stays a front page and the pages behind it stay reachable: every relative link of README.md and
docs/*.md names a file that exists, and every #anchor a heading of that file."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FRONT_PAGE_LINES = 200


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to dashes, and
    -1, -2 ... for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in strip_code(text).splitlines():
        heading = re.match(r"#{1,6} +(.*)", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def strip_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def relative_links(page: Path) -> list[str]:
    links = LINK.findall(strip_code(page.read_text(encoding="utf-8")))
    return [link for link in links if not re.match(r"[a-z]+:", link)]


def test_the_readme_is_a_front_page():
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= FRONT_PAGE_LINES, f"README.md has {lines} lines: move details into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        file = (page.parent / target).resolve() if target else page
        if not file.exists():
            broken.append(link)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(link)
    assert broken == []


def test_the_checks_see_links_and_anchors():
    readme = ROOT / "README.md"
    assert len(relative_links(readme)) > 10 and "quick-start" in anchors(readme.read_text(encoding="utf-8"))
    assert anchors("# A b c\n## A (b) c\n```\n# not a heading\n```\n") == {"a-b-c", "a-b-c-1"}
