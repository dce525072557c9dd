"""A page's forms read as a browser would submit them, for tests that post what a page offers."""

from html.parser import HTMLParser


class FormReader(HTMLParser):
    """The forms of a page as a browser would submit them: {form id or action: [(name, value)]}.

    ``names`` keeps every field name seen (unchecked boxes too), per form.
    """

    def __init__(self):
        super().__init__()
        self.forms: dict[str, list[tuple[str, str]]] = {}
        self.names: dict[str, list[str]] = {}
        self.form = self.select = self.textarea = None
        self.options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.form = attrs.get("id") or attrs.get("action") or ""
            self.forms.setdefault(self.form, [])
            self.names.setdefault(self.form, [])
            return
        if self.form is None:
            return
        name = attrs.get("name")
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            self.names[self.form].append(name)
            if kind not in ("checkbox", "radio") or "checked" in attrs:
                self.forms[self.form].append(
                    (name, attrs.get("value", "on" if kind in ("checkbox", "radio") else ""))
                )
        elif tag == "select" and name:
            self.select, self.options = (name, "multiple" in attrs), []
            self.names[self.form].append(name)
        elif tag == "option" and self.select:
            self.options.append((attrs.get("value", ""), "selected" in attrs))
        elif tag == "textarea" and name:
            self.textarea = name
            self.names[self.form].append(name)
            self.forms[self.form].append((name, ""))

    def handle_data(self, data):
        if self.textarea and self.form is not None:
            name, text = self.forms[self.form][-1]
            self.forms[self.form][-1] = (name, text + data)

    def handle_endtag(self, tag):
        if tag == "form":
            self.form = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select" and self.select:
            (name, multiple), options = self.select, self.options
            chosen = [value for value, selected in options if selected]
            if not chosen and options and not multiple:
                chosen = [options[0][0]]
            self.forms[self.form].extend((name, value) for value in chosen)
            self.select = None


def page_forms(html: str) -> FormReader:
    reader = FormReader()
    reader.feed(html)
    return reader


def as_post(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    data: dict[str, list[str]] = {}
    for name, value in pairs:
        data.setdefault(name, []).append(value)
    return data
