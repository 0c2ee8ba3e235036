"""The XML schemas Exporter ships (OAI-PMH 2.0, oai_dc, simple DC, xml.xsd, DataCite kernel-4) and validation against them.

The files are unmodified copies of the published schemas (see README.md beside them); a
resolver maps the one absolute schemaLocation among them (xml.xsd) to the local copy, so
validation never touches the network.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from lxml import etree

HERE = Path(__file__).resolve().parent
LOCAL = {"http://www.w3.org/2001/03/xml.xsd": HERE / "xml.xsd", "http://www.w3.org/2001/xml.xsd": HERE / "xml.xsd"}

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry (control characters, lone surrogates)."""
    return _NOT_XML.sub("", text)


class _Local(etree.Resolver):
    def resolve(self, url, pubid, context):
        if url in LOCAL:
            return self.resolve_filename(str(LOCAL[url]), context)
        return None


def _schema(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_Local())
    return etree.XMLSchema(etree.parse(str(path), parser))


@cache
def oai_pmh() -> etree.XMLSchema:
    """OAI-PMH 2.0 responses, with the oai_dc and DataCite kernel-4 metadata inside them checked too."""
    return _schema(HERE / "oai-pmh-responses.xsd")


@cache
def datacite() -> etree.XMLSchema:
    """DataCite Metadata Schema kernel-4 (4.7)."""
    return _schema(HERE / "datacite-kernel-4" / "metadata.xsd")


def errors(schema: etree.XMLSchema, document) -> list[str]:
    """What is invalid in `document` (bytes or an element) by `schema`; empty when it is valid."""
    doc = etree.fromstring(document) if isinstance(document, bytes) else document
    if schema.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in schema.error_log]
