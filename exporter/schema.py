"""Imports every module that defines tables, so Base.metadata knows the whole schema."""

import importlib

MODEL_MODULES = [
    "exporter.models",
    "exporter.parts",
    "exporter.archiver.models",
    "exporter.webhooks",
    "exporter.raids.models",
    "exporter.access",
    "exporter.ratelimit",
    "exporter.admission",
    "exporter.tiles.layers",
    "exporter.publish.models",
    "exporter.discovery.models",
    "exporter.dumps.models",
    "exporter.collections.models",
]


def load_models() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)
