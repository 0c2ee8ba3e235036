"""Tiles: map tiles inside a GeoJSON region of interest into an OGC GeoPackage and a metadata
sidecar, with MapColonies' cache, admission and response shapes (issue 13)."""
