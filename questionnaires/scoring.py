"""Reading an instrument's definition and scoring answers to it, on the server only.

An instrument is data (``Instrument.questionnaire``, a FHIR R4 Questionnaire;
``Instrument.scoring``), so everything here works from that data: the items a
patient answers, the points each answer option scores (its ``ordinalValue``
extension), the total, its band, and the answers that raise a safety alert.
"""

from dataclasses import dataclass, field

ORDINAL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
# FHIR's translation extension on a string (its "_text", "_display", "_title"): the
# published Spanish wording of an instrument sits beside the English.
TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"


def in_language(element: dict, name: str, language: str) -> str:
    """``element[name]`` in ``language`` ("es", "es-us": its first part counts) where the
    instrument gives that translation, else as written (English)."""
    wanted = language.split("-")[0].lower()
    for extension in element.get(f"_{name}", {}).get("extension", []):
        if extension.get("url") != TRANSLATION:
            continue
        parts = {
            part["url"]: part.get("valueCode") or part.get("valueString", "")
            for part in extension.get("extension", [])
        }
        if str(parts.get("lang", "")).split("-")[0].lower() == wanted and parts.get("content"):
            return parts["content"]
    return element.get(name, "")


@dataclass(frozen=True)
class Option:
    code: str
    display: str
    points: int | None


@dataclass(frozen=True)
class Item:
    link_id: str
    text: str
    required: bool
    options: tuple[Option, ...]

    def option(self, code: str) -> Option | None:
        return next((option for option in self.options if option.code == code), None)


@dataclass(frozen=True)
class Score:
    total: int | None  # None until every scored item is answered
    band: str
    safety_reasons: tuple[str, ...] = field(default=())
    missing: tuple[str, ...] = field(default=())  # linkIds of required items not answered

    @property
    def complete(self) -> bool:
        return not self.missing


def title(questionnaire: dict, language: str = "en") -> str:
    return in_language(questionnaire, "title", language)


def stem(questionnaire: dict, language: str = "en") -> str:
    """The instruction above the items ("Over the last 2 weeks...")."""
    return next(
        (
            in_language(item, "text", language)
            for item in questionnaire.get("item", [])
            if item.get("type") == "display"
        ),
        "",
    )


def items(questionnaire: dict, language: str = "en") -> list[Item]:
    """The items a patient answers, in order (display and calculated items left out), worded
    in ``language`` where the instrument is translated (answers are codes, in no language)."""
    found = []
    for item in questionnaire.get("item", []):
        if item.get("type") != "choice" or item.get("readOnly"):
            continue
        options = []
        for option in item.get("answerOption", []):
            coding = option["valueCoding"]
            points = next(
                (
                    ext["valueDecimal"]
                    for ext in option.get("extension", [])
                    if ext["url"] == ORDINAL
                ),
                None,
            )
            display = in_language(coding, "display", language)
            options.append(Option(coding["code"], display, None if points is None else int(points)))
        text = in_language(item, "text", language)
        found.append(Item(item["linkId"], text, bool(item.get("required")), tuple(options)))
    return found


def band_for(scoring: dict, total: int) -> str:
    return next(
        (band["label"] for band in scoring["bands"] if band["min"] <= total <= band["max"]), ""
    )


def score(questionnaire: dict, scoring: dict, answers: dict[str, str]) -> Score:
    """Total, band and safety reasons of ``answers`` (linkId -> option code).

    Unknown items and codes are not counted (the answering form refuses them
    first); the total stays None until every scored item has an answer.
    """
    by_id = {item.link_id: item for item in items(questionnaire)}
    missing = tuple(
        link_id for link_id, item in by_id.items() if item.required and link_id not in answers
    )
    points = {}
    for link_id, code in answers.items():
        option = by_id[link_id].option(code) if link_id in by_id else None
        if option is not None and option.points is not None:
            points[link_id] = option.points
    scored = scoring["total"]["items"]
    total = sum(points[link_id] for link_id in scored) if all(i in points for i in scored) else None
    reasons = tuple(
        rule["reason"]
        for rule in scoring.get("safety", [])
        if points.get(rule["linkId"], 0) > rule["above"]
    )
    return Score(total, band_for(scoring, total) if total is not None else "", reasons, missing)


def is_response(scoring: dict, baseline: int | None, latest: int | None) -> bool:
    """A drop of at least ``response_drop`` (50 %) from the baseline total."""
    if baseline is None or latest is None or baseline == 0:
        return False
    return (baseline - latest) >= scoring.get("response_drop", 0.5) * baseline


def is_remission(scoring: dict, latest: int | None) -> bool:
    below = scoring.get("remission_below")
    return below is not None and latest is not None and latest < below


def definition_problems(questionnaire: dict, scoring: dict) -> list[str]:
    """What makes an instrument's definition unusable, in words (empty: none)."""
    if not isinstance(questionnaire, dict) or questionnaire.get("resourceType") != "Questionnaire":
        return ['The definition must be a FHIR Questionnaire ("resourceType": "Questionnaire").']
    try:
        by_id = {item.link_id: item for item in items(questionnaire)}
    except (KeyError, TypeError, ValueError) as error:
        return [f"An item or answer option is incomplete: {error}."]
    problems = []
    if not by_id:
        problems.append("The questionnaire has no choice items to answer.")
    try:
        scored = scoring["total"]["items"]
        bands = sorted(scoring["bands"], key=lambda band: band["min"])
        top = scoring["total"]["max"]
    except (KeyError, TypeError):
        return [*problems, 'Scoring needs "total" (with "items" and "max") and "bands".']
    possible = 0
    for link_id in scored:
        item = by_id.get(link_id)
        if item is None:
            problems.append(f"Scored item {link_id} is not a choice item of the questionnaire.")
        elif any(option.points is None for option in item.options):
            problems.append(f"Every answer option of {link_id} needs points (ordinalValue).")
        else:
            possible += max(option.points for option in item.options)
    if not problems and possible != top:
        problems.append(f"The scored items add up to {possible}, not the stated maximum {top}.")
    expected = 0
    for band in bands:
        if band["min"] != expected or band["max"] < band["min"]:
            problems.append(f"The bands must cover 0 to {top} without gaps or overlaps.")
            break
        expected = band["max"] + 1
    else:
        if expected != top + 1:
            problems.append(f"The bands must cover 0 to {top} without gaps or overlaps.")
    for rule in scoring.get("safety", []):
        if rule.get("linkId") not in by_id or "above" not in rule or not rule.get("reason"):
            problems.append('Each safety rule needs an item\'s "linkId", "above" and a "reason".')
    return problems
