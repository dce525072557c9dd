"""Every colour the stylesheets give text, a status or a mark meets WCAG AA contrast.

Computed from static/css/app.css itself (its custom properties resolved), so a colour changed
there is checked here: text, badges, notices, message statuses and the plan timeline's marks
need 4.5:1 on what they sit on; lines and the focus ring, which are not text, 3:1 (WCAG
1.4.11). The time grids' pairs of text and background (static/css/grid.css) are checked in
tests/test_time_grid.py, what lies under the rest of the grids' text here.
"""

import re
from pathlib import Path

from tests.test_time_grid import _luminance, contrast

ROOT = Path(__file__).resolve().parent.parent
APP_CSS = (ROOT / "static" / "css" / "app.css").read_text()
GRID_CSS = (ROOT / "static" / "css" / "grid.css").read_text()
TEXT, NON_TEXT = 4.5, 3.0
# What a page is painted on: the page, the header bar, the timeline's lanes and windows,
# the score charts' bands.
SURFACES = {
    "body": "background",
    ".site-header": "background",
    ".tl-lane": "fill",
    ".tl-lane-alt": "fill",
    ".tl-window": "fill",
    # The score charts' severity bands (templates/desk/_score_chart.html).
    **{f".sc-band-{shade}": "fill" for shade in range(5)},
}
# Lines that only divide (the timeline's week lines, under labels that say the weeks).
DECORATION = {".tl-week"}


def _hex(value: str) -> str | None:
    """The first #rgb or #rrggbb colour in a declaration's value, as #rrggbb."""
    found = re.search(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b", value)
    if found is None:
        return None
    digits = found.group(1).lower()
    return "#" + (digits if len(digits) == 6 else "".join(c * 2 for c in digits))


def stylesheet_rules(
    css: str, variables: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Selector -> its declarations, comments dropped and var(--x) replaced by its value
    (``variables``, else the stylesheet's own :root).

    A selector list ("a, b") gives each selector the same declarations. Rules for print
    are left out: black on paper.
    """
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"@media print\s*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)
    blocks = re.findall(r"([^{}]+)\{([^{}]*)\}", css)
    declarations = [
        (selectors, dict(re.findall(r"([\w-]+)\s*:\s*([^;]+?)\s*(?:;|$)", body)))
        for selectors, body in blocks
    ]
    if variables is None:
        variables = next(found for selectors, found in declarations if selectors.strip() == ":root")
    rules: dict[str, dict[str, str]] = {}
    for selectors, found in declarations:
        resolved = {
            name: re.sub(r"var\((--[\w-]+)\)", lambda m: variables.get(m.group(1), ""), value)
            for name, value in found.items()
        }
        for selector in selectors.split(","):
            rules.setdefault(" ".join(selector.split()), {}).update(resolved)
    return rules


RULES = stylesheet_rules(APP_CSS)
VARIABLES = {name: value for name, value in RULES[":root"].items() if name.startswith("--")}


def background(declarations: dict[str, str]) -> str | None:
    return _hex(declarations.get("background-color", "") or declarations.get("background", ""))


def surfaces() -> dict[str, str]:
    return {selector: _hex(RULES[selector][prop]) for selector, prop in SURFACES.items()}


def light_backgrounds() -> dict[str, str]:
    """Every light background the stylesheet paints: the surfaces, and the badges', notices'
    and buttons' own (a link or a muted note may sit inside any of them)."""
    painted = {
        selector: colour
        for selector, declarations in RULES.items()
        if (colour := background(declarations)) and _luminance(colour) > 0.5
    }
    return surfaces() | painted


def own_pairs() -> dict[str, tuple[str, str]]:
    """Rules that set both a text colour and a background: (text, background).

    A variant that sets only the background (``button.danger``) keeps its element's
    text colour (``button``'s white).
    """
    pairs = {}
    for selector, declarations in RULES.items():
        fill = background(declarations)
        if fill is None:
            continue
        text = _hex(declarations.get("color", ""))
        if text is None and (element := re.match(r"^([a-z]+)[.\[:]", selector)):
            text = _hex(RULES.get(element.group(1), {}).get("color", ""))
        if text is not None:
            pairs[selector] = (text, fill)
    return pairs


def loose_colours() -> dict[str, tuple[str, float]]:
    """Colours without a background of their own: selector/property -> (colour, ratio needed).

    Text colours and SVG fills (the timeline's marks and labels) need 4.5:1; strokes
    (lines, a window's edge, a ring marking a visit outside its window) 3:1.
    """
    found = {}
    for selector, declarations in RULES.items():
        if background(declarations) or selector in DECORATION:
            continue
        for prop, needed in (("color", TEXT), ("fill", TEXT), ("stroke", NON_TEXT)):
            if prop == SURFACES.get(selector):
                continue  # the surface itself
            if colour := _hex(declarations.get(prop, "")):
                found[f"{selector} {prop}"] = (colour, needed)
    return found


def test_the_stylesheet_declares_the_colours_this_test_reads():
    assert set(SURFACES) <= set(RULES) and all(surfaces().values())
    colours = loose_colours()
    # The plan timeline's marks, one colour per status (templates/desk/_plan_timeline.html).
    for status in ("mark", "confirmed", "checked_in", "completed", "cancelled", "no_show"):
        assert f".tl-{status} color" in colours
    for badge in (".flag", ".flag.overdue", ".notice", ".error", ".closed-day", ".flag-box"):
        assert badge in own_pairs()
    assert ".messages-list color" in colours  # a message's status, unless it needs attention
    assert "button.danger" in own_pairs()


def test_every_text_badge_and_button_colour_has_4_5_to_1_on_its_own_background():
    low = {
        selector: round(contrast(text, fill), 2)
        for selector, (text, fill) in own_pairs().items()
        if contrast(text, fill) < TEXT
    }
    assert low == {}


def test_every_status_mark_and_text_colour_is_readable_on_every_light_background():
    backgrounds = light_backgrounds()
    low = {
        (name, where): round(contrast(colour, fill), 2)
        for name, (colour, needed) in loose_colours().items()
        for where, fill in backgrounds.items()
        if contrast(colour, fill) < needed
    }
    assert low == {}


def test_the_focus_ring_stands_out_three_to_one_from_every_background():
    """Keyboard users see where they are: the outline against whatever is behind it, the
    page's light backgrounds and, inside the time grids' blocks and free times, theirs
    (the grids' one dark colour, the now-line's red, holds nothing that takes focus)."""
    ring = _hex(RULES[":focus-visible"]["outline"])
    grid = {
        selector: colour
        for selector, declarations in stylesheet_rules(GRID_CSS, VARIABLES).items()
        if (colour := background(declarations)) and _luminance(colour) > 0.5
    }
    assert ".k-dosing" in grid and ".tg-free > a:focus-visible" in grid
    low = {
        where: round(contrast(ring, fill), 2)
        for where, fill in (light_backgrounds() | grid).items()
        if contrast(ring, fill) < NON_TEXT
    }
    assert low == {}


def _under(colour: str, alpha: float) -> str:
    """``colour`` under a layer of black at ``alpha`` (as the browser blends it)."""
    channels = (round(int(colour[i : i + 2], 16) * (1 - alpha)) for i in (1, 3, 5))
    return "#" + "".join(f"{channel:02x}" for channel in channels)


def test_the_grids_hour_labels_notes_and_shading_stay_readable_on_what_is_under_them():
    """The grids' pairs of text and background are checked in tests/test_time_grid.py; here
    the text with no background of its own (hours, notes, free times), on the grid's white
    and its heads, and each shading's words on the darker stripes of its hatching."""
    grid = stylesheet_rules(GRID_CSS, VARIABLES)
    under = {
        "a column": "#ffffff",
        ".tg-times": background(grid[".tg-times"]),
        ".tg-head": background(grid[".tg-head"]),
    }
    loose = {
        selector: colour
        for selector, declarations in grid.items()
        if not background(declarations) and (colour := _hex(declarations.get("color", "")))
    }
    assert {".tg-hour", ".tg-note", ".tg-free > a"} <= set(loose)
    low = {
        (selector, where): round(contrast(colour, fill), 2)
        for selector, colour in loose.items()
        for where, fill in under.items()
        if contrast(colour, fill) < TEXT
    }
    [alpha] = {
        float(a)
        for a in re.findall(r"rgba\(0, 0, 0, ([\d.]+)\)", grid[".tg-shade"]["background-image"])
    }
    for shade in (".tg-closed", ".tg-away", ".tg-off", ".tg-busy"):
        text, fill = _hex(grid[shade]["color"]), _under(background(grid[shade]), alpha)
        if contrast(text, fill) < TEXT:
            low[(shade, "stripe")] = round(contrast(text, fill), 2)
    assert low == {}
