"""The search query language, compiled to PostgreSQL tsquery and to SQLite FTS5 MATCH.

    coastal erosion          both words (AND)
    "coastal erosion"        the phrase
    reef OR wetland          either word (OR binds tighter than AND: a b OR c = a AND (b OR c))
    -bushfire                without the word (also -"a phrase")
    0000-0002-1825-0097      a word made of several tokens is a phrase of them

Matching is on whole words after case-folding and diacritic removal (see text.tokens).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InvalidRequest
from .text import identifier_tokens, tokens

MAX_QUERY_CHARS = 500
MAX_TERMS = 32

_ITEM = re.compile(r'-?"[^"]*(?:"|$)|\S+')

Phrase = tuple[str, ...]


@dataclass(frozen=True)
class Query:
    """AND of groups, each an OR of phrases, minus the excluded phrases."""

    groups: tuple[tuple[Phrase, ...], ...] = ()
    excluded: tuple[Phrase, ...] = ()
    text: str = field(default="", compare=False)

    @property
    def empty(self) -> bool:
        return not self.groups

    def fts5(self) -> str:
        """An FTS5 MATCH expression."""
        def phrase(p: Phrase) -> str:
            return '"' + " ".join(p) + '"'

        out = " AND ".join("(" + " OR ".join(phrase(p) for p in group) + ")" for group in self.groups)
        if self.excluded:
            out += " NOT (" + " OR ".join(phrase(p) for p in self.excluded) + ")"
        return out

    def tsquery(self) -> str:
        """A tsquery literal (to cast with ::tsquery; the lexemes are already normalised).

        A phrase of n words is n - 1 adjacent pair lexemes (`'a_b' <-> 'b_c'`), which the
        document's tsvector carries (text.Document.tsvector): the same matches as
        `'a' <-> 'b' <-> 'c'`, found in the GIN index rather than by rechecking rows.
        """
        wanted, unwanted = self.tsquery_parts()
        return wanted + (f" & !({unwanted})" if unwanted else "")

    def tsquery_parts(self) -> tuple[str, str | None]:
        """(what must match, what must not or None) as two tsquery literals.

        `tsv @@ wanted AND NOT tsv @@ unwanted` matches what `tsv @@ tsquery()` does; apart,
        the GIN index finds the rows of `wanted` and the excluded words only filter those
        rows, instead of the index reading every row that holds an excluded word too.
        """
        def phrase(p: Phrase) -> str:
            if len(p) == 1:
                return f"'{p[0]}'"
            return " <-> ".join(f"'{a}_{b}'" for a, b in zip(p, p[1:], strict=False))

        wanted = " & ".join("(" + " | ".join(f"({phrase(p)})" for p in group) + ")" for group in self.groups)
        unwanted = " | ".join(f"({phrase(p)})" for p in self.excluded) if self.excluded else None
        return wanted, unwanted


def _phrase(item: str) -> Phrase:
    if item.startswith('"'):
        return tuple(tokens(item.strip('"')))
    return tuple(identifier_tokens(item) if "://" in item else tokens(item))


def parse(text: str | None) -> Query:
    """Parse a query; InvalidRequest (field "q") says what is wrong with it."""
    text = (text or "").strip()
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"the query is longer than {MAX_QUERY_CHARS} characters", field="q")
    items = _ITEM.findall(text)
    if len(items) > MAX_TERMS * 2:
        raise InvalidRequest(f"the query has more than {MAX_TERMS} terms", field="q")
    groups: list[list[Phrase]] = []
    excluded: list[Phrase] = []
    previous = None  # "term", "excluded" or "or"
    for n, item in enumerate(items):
        if item == "OR":
            if previous == "excluded":
                raise InvalidRequest("an excluded term cannot be one side of OR", field="q")
            if previous != "term" or n == len(items) - 1 or items[n + 1] == "OR":
                raise InvalidRequest("OR needs a term on each side (write a lowercase or to search for the word)", field="q")
            previous = "or"
            continue
        if item == "AND":
            continue
        negated = item.startswith("-") and len(item) > 1
        phrase = _phrase(item[1:] if negated else item)
        if negated:
            if previous == "or":
                raise InvalidRequest("an excluded term cannot be one side of OR", field="q")
            if phrase:
                excluded.append(phrase)
            previous = "excluded"
            continue
        if previous == "or":
            groups[-1].extend([phrase] if phrase else [])
        else:
            groups.append([phrase] if phrase else [])
        previous = "term"
    groups = [g for g in groups if g]
    if len(groups) + len(excluded) > MAX_TERMS:
        raise InvalidRequest(f"the query has more than {MAX_TERMS} terms", field="q")
    if excluded and not groups:
        raise InvalidRequest("the query only excludes words; add a word to search for", field="q")
    return Query(tuple(tuple(dict.fromkeys(g)) for g in groups), tuple(dict.fromkeys(excluded)), text)
