"""Whether a wheel is clearly permissively licensed, from its METADATA: an SPDX expression
(`License-Expression:`) when there is one, else the votes of the `License:` field and the
`License ::` classifiers. The rules and the permissive set: models/python/README.md, "Corpus"."""

from __future__ import annotations

import email.parser
import re
from dataclasses import dataclass

PERMISSIVE_LICENSES = frozenset(
    {
        "MIT",
        "MIT-0",
        "MIT-CMU",
        "X11",
        "0BSD",
        "BSD",
        "BSD-1-Clause",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "BSD-4-Clause",
        "BSD-2-Clause-Patent",
        "BSD-3-Clause-Clear",
        "BSD-3-Clause-LBNL",
        "Apache",
        "Apache-1.1",
        "Apache-2.0",
        "PSF-2.0",
        "Python-2.0",
        "CNRI-Python",
        "ISC",
        "Unlicense",
        "CC0-1.0",
        "Zlib",
        "BSL-1.0",
        "NCSA",
        "HPND",
        "ZPL-2.1",
    }
)
_PERMISSIVE_BY_LOWER = {name.lower(): name for name in PERMISSIVE_LICENSES}

# Free-text spellings seen in METADATA, after _normalise_license_text.
_LICENSE_ALIASES: tuple[tuple[str, str], ...] = (
    (r"mit|expat|mit expat", "MIT"),
    (r"mit-?0|mit no attribution", "MIT-0"),
    (r"mit-cmu|cmu", "MIT-CMU"),
    (r"0bsd|zero-clause bsd|bsd zero-clause", "0BSD"),
    (r"bsd[- ]?([1-4])[- ]?clause|([1-4])[- ]?clause bsd", "BSD-{n}-Clause"),
    (r"(new|modified|revised) bsd|bsd new", "BSD-3-Clause"),
    (r"simplified bsd|free ?bsd", "BSD-2-Clause"),
    (r"bsd", "BSD"),
    (r"apache[- ]?2(\.0)?|apache[- ]?v2(\.0)?|apache-2", "Apache-2.0"),
    (r"apache", "Apache"),
    (r"psf(-?2(\.0)?)?|psfl|python( software)? foundation|python-2\.0", "PSF-2.0"),
    (r"isc|iscl", "ISC"),
    (r"unlicense", "Unlicense"),
    (r"cc0(-?1\.0)?( universal)?", "CC0-1.0"),
    (r"zlib|zlib libpng|zlib-libpng", "Zlib"),
    (r"bsl-?1\.0|boost( 1\.0)?", "BSL-1.0"),
    (r"ncsa|university of illinois ncsa", "NCSA"),
)
_RESTRICTIVE_MARKER = re.compile(
    r"\b(a?gpl|lgpl|gnu|mpl|mozilla|epl|eclipse|cddl|eupl|osl|sspl|busl|artistic|proprietary|"
    r"commercial|non-?commercial|licenseref|all rights reserved|terms of service|cc-by-nc|"
    r"cc-by-sa|elastic)",
    re.IGNORECASE,
)
_NEUTRAL_CLASSIFIERS = frozenset({"osi approved", "dfsg approved", "public domain"})
_LICENSE_TEXT_OPENINGS = (
    ("permission is hereby granted, free of charge", "MIT"),
    ("redistribution and use in source and binary forms", "BSD"),
    ("this license agreement is between the python software foundation", "PSF-2.0"),
)

PERMISSIVE, RESTRICTIVE, UNKNOWN = "permissive", "restrictive", "unknown"


@dataclass(frozen=True)
class LicenseVerdict:
    keep: bool
    license: str  # SPDX-ish name of what was kept, or a short form of what was rejected
    detail: str = ""


def _normalise_license_text(text: str) -> str:
    text = text.strip().lower()
    text = re.sub(r"\([^)]*\)", " ", text)  # "The MIT License (MIT)", "ISC License (ISCL)"
    text = re.sub(r"\b(the|licen[cs]es?|software|version|open source|osi approved)\b", " ", text)
    text = re.sub(r"[\s,/_:;]+", " ", text)
    return text.strip(" .")


def canonical_license_id(text: str) -> str | None:
    """The SPDX-ish id of a permissive license spelled `text`, or None if not recognised."""
    stripped = text.strip()
    if stripped.lower() in _PERMISSIVE_BY_LOWER:
        return _PERMISSIVE_BY_LOWER[stripped.lower()]
    normalised = _normalise_license_text(stripped)
    for pattern, spdx in _LICENSE_ALIASES:
        match = re.fullmatch(pattern, normalised)
        if match:
            clauses = next((group for group in match.groups() if group and group.isdigit()), "")
            return spdx.replace("{n}", clauses)
    return None


def classify_license_atom(text: str) -> tuple[str, str]:
    """(PERMISSIVE|RESTRICTIVE|UNKNOWN, display name) for one license name, without operators."""
    base = re.split(r"\s+with\s+", text.strip(), flags=re.IGNORECASE)[0]
    if _RESTRICTIVE_MARKER.search(base):
        return RESTRICTIVE, base.strip()
    canonical = canonical_license_id(base)
    if canonical is not None:
        return PERMISSIVE, canonical + text.strip()[len(base.strip()) :]
    return UNKNOWN, text.strip()


# AND / OR as whole words only: "GPL-2.0-or-later" is one name.
_EXPRESSION_OPERATOR = re.compile(r"(\(|\)|(?<![\w.+-])(?:AND|OR)(?![\w.+-]))", re.IGNORECASE)


def evaluate_license_expression(expression: str) -> tuple[str, str]:
    """Evaluates an SPDX(-like) expression with AND / OR / WITH and parentheses.

    OR is permissive if any alternative is; AND only if every part is. A part that is neither
    recognised as permissive nor as restrictive is UNKNOWN, which never keeps a wheel.
    Returns (verdict, the expression with recognised names canonicalised)."""
    tokens = [token.strip() for token in _EXPRESSION_OPERATOR.split(expression) if token.strip()]
    position = 0

    def parse_chain(operator: str, parse_part, any_permissive: bool) -> tuple[str, str]:
        """Parts joined by `operator`: OR is permissive if any part is, AND only if all are."""
        nonlocal position
        verdicts, names = [], []
        while True:
            verdict, name = parse_part()
            verdicts.append(verdict)
            names.append(name)
            if position < len(tokens) and tokens[position].upper() == operator:
                position += 1
                continue
            break
        permissive = any if any_permissive else all
        if permissive(verdict == PERMISSIVE for verdict in verdicts):
            combined = PERMISSIVE
        elif RESTRICTIVE in verdicts:
            combined = RESTRICTIVE
        else:
            combined = UNKNOWN
        return combined, f" {operator} ".join(names)

    def parse_or() -> tuple[str, str]:
        return parse_chain("OR", parse_and, any_permissive=True)

    def parse_and() -> tuple[str, str]:
        return parse_chain("AND", parse_factor, any_permissive=False)

    def parse_factor() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            return UNKNOWN, ""
        token = tokens[position]
        position += 1
        if token == "(":
            verdict, name = parse_or()
            if position < len(tokens) and tokens[position] == ")":
                position += 1
            return verdict, f"({name})"
        if token == ")" or token.upper() in {"AND", "OR"}:
            return UNKNOWN, token
        return classify_license_atom(token)

    if not tokens:
        return UNKNOWN, ""
    verdict, name = parse_or()
    if position != len(tokens):  # trailing garbage: do not trust the expression
        return (RESTRICTIVE if verdict == RESTRICTIVE else UNKNOWN), expression.strip()
    return verdict, name


def classify_license_field(value: str) -> tuple[str, str]:
    """Vote of a free-text ``License:`` field: an expression, a name or a whole license text."""
    value = value.strip()
    if not value or value.upper() in {"UNKNOWN", "NONE"}:
        return UNKNOWN, ""
    head = " ".join(value.split()).lower()[:500]  # a title and copyright lines may come first
    for opening, spdx in _LICENSE_TEXT_OPENINGS:
        if opening in head:
            return PERMISSIVE, spdx
    first_line = value.splitlines()[0].strip()
    if len(value.splitlines()) > 1 or len(first_line) > 100:
        # An unrecognised license text: vote only if it names a restrictive license up front.
        return (RESTRICTIVE, first_line[:60]) if _RESTRICTIVE_MARKER.search(first_line) else (UNKNOWN, first_line[:60])
    canonical = canonical_license_id(first_line)  # "The MIT License (MIT)": parentheses, not an expression
    if canonical is not None:
        return PERMISSIVE, canonical
    return evaluate_license_expression(first_line)


def classify_license_classifier(classifier: str) -> tuple[str, str]:
    """Vote of one ``License :: ...`` trove classifier."""
    last = classifier.split("::")[-1].strip()
    if last.lower() in _NEUTRAL_CLASSIFIERS or last.lower() == "license":
        return UNKNOWN, last
    canonical = canonical_license_id(last)
    if canonical is not None:
        return PERMISSIVE, canonical
    return RESTRICTIVE, last


def classify_license(metadata: str) -> LicenseVerdict:
    """Decides whether a wheel whose METADATA is `metadata` is clearly permissively licensed."""
    message = email.parser.Parser().parsestr(metadata, headersonly=True)
    expression = (message.get("License-Expression") or "").strip()
    if expression:
        verdict, name = evaluate_license_expression(expression)
        return LicenseVerdict(
            verdict == PERMISSIVE, name if verdict == PERMISSIVE else expression, f"License-Expression: {verdict}"
        )

    votes: list[tuple[str, str, str]] = []
    license_field = message.get("License") or ""
    if license_field.strip():
        votes.append(("License", *classify_license_field(license_field)))
    for classifier in message.get_all("Classifier") or []:
        if classifier.strip().startswith("License ::"):
            votes.append(("Classifier", *classify_license_classifier(classifier)))

    restrictive = [name for _, verdict, name in votes if verdict == RESTRICTIVE]
    permissive = [name for _, verdict, name in votes if verdict == PERMISSIVE]
    if restrictive:
        return LicenseVerdict(False, restrictive[0], "a restrictive license is named")
    if not permissive:
        shown = " ".join(license_field.split())[:60] or "(none)"
        return LicenseVerdict(False, shown, "no recognisable permissive license")
    field_votes = [name for source, verdict, name in votes if source == "License" and verdict == PERMISSIVE]
    if field_votes:
        return LicenseVerdict(True, field_votes[0], "License field")
    unique = sorted(set(permissive))
    return LicenseVerdict(True, " OR ".join(unique), "classifiers")
