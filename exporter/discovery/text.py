"""Words as the search index sees them: one tokenizer for documents and queries, on both backends.

Text is case-folded, stripped of diacritics and split into runs of letters and digits; the
index stores these tokens, never the database's own parser's idea of them, so PostgreSQL
(a tsvector built here, positions included) and SQLite (FTS5 over the same tokens joined
by spaces) match exactly the same words and phrases. Identifiers (ORCID, ROR, handles) are
indexed without their scheme and host, so `0000-0002-1825-0097` and the full ORCID URL
find the same raid. Fields are kept apart (a gap in PostgreSQL's positions, a token no query
can contain in SQLite), so a phrase never spans two titles.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

SEPARATOR = "\ue000"  # a private-use character: a token to FTS5, never produced by tokens()
MAX_TOKEN = 100  # longer runs (base64 blobs, ...) are not words anyone searches for
MAX_FIELD_TOKENS = 2000
MAX_POSITION = 16383  # PostgreSQL's limit on a tsvector position

_WORD = re.compile(r"[^\W_]+")
_URL_PREFIX = re.compile(r"^[a-z][a-z0-9+.-]*://[^/]*/?", re.IGNORECASE)


def tokens(text: str) -> list[str]:
    """Case-folded runs of letters and digits, without diacritics."""
    if text.isascii():
        found = _WORD.findall(text.lower())
    else:
        folded = unicodedata.normalize("NFKD", text.casefold())
        found = _WORD.findall("".join(c for c in folded if not unicodedata.combining(c)))
    return [t for t in found if len(t) <= MAX_TOKEN]


def identifier_tokens(value: str) -> list[str]:
    """The tokens of an identifier without its URL scheme and host (https://orcid.org/0000-... -> 0000 ...)."""
    return tokens(_URL_PREFIX.sub("", value.strip()))


@dataclass
class Document:
    """The searchable fields of one public record: title fields and body fields, each a token list."""

    titles: list[list[str]] = field(default_factory=list)
    body: list[list[str]] = field(default_factory=list)

    def add_title(self, text: str | None) -> None:
        if isinstance(text, str) and (toks := tokens(text)[:MAX_FIELD_TOKENS]):
            self.titles.append(toks)

    def add_text(self, text: str | None) -> None:
        if isinstance(text, str) and (toks := tokens(text)[:MAX_FIELD_TOKENS]):
            self.body.append(toks)

    def add_identifier(self, value: str | None) -> None:
        if isinstance(value, str) and (toks := identifier_tokens(value)):
            self.body.append(toks)

    def fts_columns(self) -> tuple[str, str]:
        """(title_terms, body_terms) for FTS5: tokens joined by spaces, fields by SEPARATOR."""
        return _joined(self.titles), _joined(self.body)

    def tsvector(self) -> str:
        """A tsvector literal: every token with its positions, title tokens weighted A.

        Each pair of adjacent tokens is also a lexeme (`a_b`, at the first one's position;
        no token contains `_`), so a phrase is looked up in the GIN index as pairs instead
        of being checked row by row (see query.Query.tsquery).
        """
        lexemes: dict[str, list[str]] = {}
        position = 0
        for weight, fields in (("A", self.titles), ("", self.body)):
            for toks in fields:
                start = position + 2  # a gap between fields: phrases stay inside one
                for at, tok in enumerate(toks, start):
                    lexemes.setdefault(tok, []).append(f"{min(at, MAX_POSITION)}{weight}")
                for at, pair in enumerate(zip(toks, toks[1:], strict=False), start):
                    lexemes.setdefault(f"{pair[0]}_{pair[1]}", []).append(f"{min(at, MAX_POSITION)}{weight}")
                position = start + len(toks) - 1
        # PostgreSQL keeps at most 256 positions per lexeme, and each once
        return " ".join(f"'{tok}':{','.join(dict.fromkeys(pos[:256]))}" for tok, pos in lexemes.items())


def _joined(fields: Iterable[list[str]]) -> str:
    return f" {SEPARATOR} ".join(" ".join(toks) for toks in fields)
