"""README points only at files that are there, and shows the screenshots the browser tests take.

The screenshots are written by tests/test_accessibility.py (into docs/screenshots/ with
UPDATE_SCREENSHOTS=1); this module needs no browser, so it runs wherever the suite does.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TAKEN_BY = ROOT / "tests" / "test_accessibility.py"
PNG = b"\x89PNG\r\n\x1a\n"


def images() -> list[tuple[str, str]]:
    """(alt text, path) of every image README shows, in Markdown or as an <img> tag."""
    shown = re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", README)
    for tag in re.findall(r"<img\b[^>]*>", README):
        src = re.search(r'\bsrc="([^"]+)"', tag)
        alt = re.search(r'\balt="([^"]*)"', tag)
        shown.append((alt.group(1) if alt else "", src.group(1) if src else ""))
    return shown


def screenshots() -> list[tuple[str, str]]:
    return [(alt, path) for alt, path in images() if path.startswith("docs/screenshots/")]


def test_every_file_readme_links_or_shows_is_in_the_repository():
    linked = re.findall(r"\]\((?!https?:|mailto:|#)([^)\s#]+)", README)
    shown = [path for _, path in images()]
    assert len(shown) >= 5
    missing = sorted({path for path in linked + shown if not (ROOT / path).is_file()})
    assert missing == []


def test_readme_shows_at_least_five_screenshots_each_described_and_each_a_small_png():
    shots = screenshots()
    assert len(shots) >= 5
    undescribed = [path for alt, path in shots if len(alt.split()) < 5]
    assert undescribed == []  # alt text that says what the picture shows
    for _, path in shots:
        data = (ROOT / path).read_bytes()
        assert data.startswith(PNG), path
        assert len(data) < 300_000, f"{path}: {len(data)} bytes"


def test_every_screenshot_readme_shows_is_taken_by_the_browser_tests():
    source = TAKEN_BY.read_text()
    assert [path for _, path in screenshots() if f'"{Path(path).name}"' not in source] == []
