"""Compile the message catalogues (locale/<lang>/LC_MESSAGES/django.po -> .mo) in pure Python.

Django's ``compilemessages`` runs GNU gettext's ``msgfmt``, which a fresh
machine (the README's ``python3 dev.py demo``) often lacks, and Babel would
be a dependency for what is a few dozen lines: the .mo format is a header,
two tables of (length, offset) pairs and the strings (GNU gettext manual,
"The Format of MO Files"). This reads what our catalogues use: msgctxt,
msgid, msgid_plural, msgstr[n], comments and the fuzzy flag (fuzzy entries
are left out, as msgfmt does). The .mo files are generated: never committed.
"""

import ast
import os
import struct
from pathlib import Path

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def read_po(text: str) -> dict[bytes, bytes]:
    """The catalogue's translated entries: keys and values as a .mo file holds them."""
    entries: dict[bytes, bytes] = {}
    entry: dict[str, str] = {}
    field = ""
    fuzzy = False

    def finish() -> None:
        nonlocal entry, fuzzy
        if "msgid" in entry and not fuzzy:
            key = entry["msgid"]
            if "msgid_plural" in entry:
                key += "\0" + entry["msgid_plural"]
                forms = sorted(k for k in entry if k.startswith("msgstr["))
                value = "\0".join(entry[k] for k in forms)
            else:
                value = entry.get("msgstr", "")
            if "msgctxt" in entry:
                key = entry["msgctxt"] + "\x04" + key
            # Untranslated entries stay out: gettext then falls back to the msgid.
            if value.replace("\0", ""):
                entries[key.encode()] = value.encode()
        entry, fuzzy = {}, False

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("#,") and "fuzzy" in line:
                if "msgid" in entry:
                    finish()
                fuzzy = True
            continue
        if line.startswith('"'):
            if not field:
                raise ValueError(f"line {number}: a string outside an entry")
            entry[field] += ast.literal_eval(line)
            continue
        keyword, _, rest = line.partition(" ")
        # A new entry starts at its msgctxt, or at its msgid when it has none.
        if keyword == "msgctxt" or (keyword == "msgid" and "msgid" in entry):
            finish()
        if not (
            keyword in ("msgctxt", "msgid", "msgid_plural", "msgstr")
            or keyword.startswith("msgstr[")
        ):
            raise ValueError(f"line {number}: unknown keyword {keyword!r}")
        field = keyword
        entry[field] = ast.literal_eval(rest)
    finish()
    return entries


def mo_bytes(entries: dict[bytes, bytes]) -> bytes:
    """A little-endian .mo file of ``entries``, keys sorted (gettext looks them up by bisection)."""
    keys = sorted(entries)
    header_size, count = 28, len(keys)
    ids_table, strs_table = header_size, header_size + 8 * count
    data_start = strs_table + 8 * count
    ids, strs = b"", b""
    id_offsets, str_offsets = [], []
    for key in keys:
        id_offsets.append((len(key), data_start + len(ids)))
        ids += key + b"\0"
    strs_start = data_start + len(ids)
    for key in keys:
        value = entries[key]
        str_offsets.append((len(value), strs_start + len(strs)))
        strs += value + b"\0"
    header = struct.pack("<7I", 0x950412DE, 0, count, ids_table, strs_table, 0, 0)
    tables = b"".join(struct.pack("<2I", *pair) for pair in id_offsets + str_offsets)
    return header + tables + ids + strs


def compile_catalogues(locale_dir: Path = LOCALE_DIR, *, only_missing: bool = False) -> list[Path]:
    """Write each catalogue's .mo beside its .po; the ones written.

    ``only_missing``: leave a .mo newer than its .po alone (what the tests do).
    """
    written = []
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if only_missing and mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        # Written aside and renamed: test workers starting together may compile at once.
        partial = mo.with_name(f"{mo.name}.{os.getpid()}")
        partial.write_bytes(mo_bytes(read_po(po.read_text(encoding="utf-8"))))
        os.replace(partial, mo)
        written.append(mo)
    return written
