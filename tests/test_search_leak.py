"""No word of a closed raid's private fields ever makes it match a search, or reaches the index.

Hypothesis makes random raids (the export leak test's builder: every private value carries
a token unique to its raid, fields the exporter never heard of included) and draws random
words from the private fields of the raids that must stay closed. Searching any of them
never returns that raid, and no column of the index (PostgreSQL's tsvector included) holds
them. Words of the open raids find their raid, so the test would see an index that finds
nothing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from exporter.discovery import index
from exporter.discovery.search import search
from exporter.discovery.text import identifier_tokens, tokens
from exporter.raids.registry import save_raid
from tests.conftest import _truncate
from tests.test_raids_leak import PUBLIC_IN_FULL, build, raid_specs


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def private_words(rec: dict) -> list[str]:
    """Every token of the record except those of its public fields (handle, access block)."""
    public = set(identifier_tokens(rec["identifier"]["id"])) | set(tokens(rec["identifier"]["id"]))
    public |= {t for s in _strings(rec["access"]) for t in tokens(s)}
    words = {t for s in _strings(rec) for t in tokens(s)} - public
    return sorted(words)


def index_dump(ctx) -> str:
    tsv = ", tsv::text" if ctx.db.backend == "postgresql" else ""
    with ctx.db.engine.connect() as conn:
        return "\n".join(str(tuple(r)) for r in conn.execute(text(f"SELECT *{tsv} FROM raid_search")))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(specs=raid_specs(), data=st.data())
def test_no_private_word_of_a_closed_raid_matches_or_reaches_the_index(ctx, specs, data):
    _truncate(ctx.settings.database_url)
    records = [build(i, spec) for i, spec in enumerate(specs)]
    with ctx.db.session() as s:
        for rec in records:
            save_raid(s, rec)
    index.refresh(ctx)
    dump = index_dump(ctx).casefold()
    for spec, rec in zip(specs, records, strict=True):
        handle = rec["identifier"]["id"]
        words = private_words(rec)
        if spec["access"] in PUBLIC_IN_FULL:
            assert handle in {h.handle for h in search(ctx, f"{spec['token'].lower()} description").hits}
            continue
        assert spec["token"].casefold() not in dump
        for word in data.draw(st.lists(st.sampled_from(words), min_size=1, max_size=4, unique=True), label=f"words of {handle}"):
            phrase = f'"{word}"' if len(tokens(word)) > 1 else word
            assert handle not in {h.handle for h in search(ctx, phrase, per_page=100).hits}, f"{spec['access']} raid matched {word!r}"
        title = rec["title"][0]["text"]
        if tokens(title):
            assert handle not in {h.handle for h in search(ctx, f'"{title}"', per_page=100).hits}
    assert {h.handle for h in search(ctx, "", per_page=100).hits} == {r["identifier"]["id"] for r in records}
