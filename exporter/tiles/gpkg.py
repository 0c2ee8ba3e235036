"""Writing an OGC GeoPackage 1.2 tile pyramid with sqlite3, a tile at a time.

The file is a work file while tiles arrive (WAL journal, so a killed process loses at most
the last uncommitted batch and the file stays consistent); `finish` sets the contents'
bounds, drops the work tables, checkpoints and switches back to a rollback journal so the
file is one self-contained database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from . import grid

APPLICATION_ID = 0x47504B47  # 'GPKG'
USER_VERSION = 10200  # GeoPackage 1.2
MISSING = "exporter_missing_tiles"  # work table, dropped by finish()

WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],'
    'UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],'
    'AUTHORITY["EPSG","4326"]]'
)

SCHEMA = """
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_tile_matrix_set (
  table_name TEXT NOT NULL PRIMARY KEY, srs_id INTEGER NOT NULL,
  min_x DOUBLE NOT NULL, min_y DOUBLE NOT NULL, max_x DOUBLE NOT NULL, max_y DOUBLE NOT NULL,
  CONSTRAINT fk_gtms_table_name FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gtms_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
CREATE TABLE gpkg_tile_matrix (
  table_name TEXT NOT NULL, zoom_level INTEGER NOT NULL, matrix_width INTEGER NOT NULL, matrix_height INTEGER NOT NULL,
  tile_width INTEGER NOT NULL, tile_height INTEGER NOT NULL, pixel_x_size DOUBLE NOT NULL, pixel_y_size DOUBLE NOT NULL,
  CONSTRAINT pk_ttm PRIMARY KEY (table_name, zoom_level),
  CONSTRAINT fk_tmm_table_name FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name));
"""


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class GeoPackageWriter:
    """One tile table in a GeoPackage file; creates the file or reopens a partial one."""

    def __init__(self, path: Path, table: str, min_zoom: int, max_zoom: int, identifier: str, description: str = ""):
        self.path = Path(path)
        self.table = table
        fresh = not self.path.exists()
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        if fresh or not self._has_schema():
            self._create(min_zoom, max_zoom, identifier, description)
        self._insert_sql = f"INSERT OR IGNORE INTO {quote(table)} (zoom_level, tile_column, tile_row, tile_data) VALUES (?, ?, ?, ?)"
        self.db.execute("BEGIN")

    def _has_schema(self) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (MISSING,)).fetchone() is not None

    def _create(self, min_zoom: int, max_zoom: int, identifier: str, description: str) -> None:
        t = quote(self.table)
        db = self.db
        db.execute("BEGIN")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {USER_VERSION}")
        for statement in filter(str.strip, SCHEMA.split(";")):
            db.execute(statement)
        db.executemany(
            "INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
                ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
                ("WGS 84 geodetic", 4326, "EPSG", 4326, WGS84_WKT, "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid"),
            ],
        )
        db.execute(
            f"CREATE TABLE {t} (id INTEGER PRIMARY KEY AUTOINCREMENT, zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL,"
            " tile_row INTEGER NOT NULL, tile_data BLOB NOT NULL, UNIQUE (zoom_level, tile_column, tile_row))"
        )
        west, south, east, north = grid.WORLD
        db.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, min_x, min_y, max_x, max_y, srs_id) VALUES (?, 'tiles', ?, ?, ?, ?, ?, ?, 4326)",
                   (self.table, identifier, description, west, south, east, north))
        db.execute("INSERT INTO gpkg_tile_matrix_set VALUES (?, 4326, ?, ?, ?, ?)", (self.table, west, south, east, north))
        db.executemany(
            "INSERT INTO gpkg_tile_matrix VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(self.table, z, *grid.matrix_size(z), grid.TILE_SIZE, grid.TILE_SIZE, grid.resolution(z), grid.resolution(z)) for z in range(min_zoom, max_zoom + 1)],
        )
        db.execute(f"CREATE TABLE {MISSING} (zoom_level INTEGER NOT NULL, tile_column INTEGER NOT NULL, tile_row INTEGER NOT NULL, reason TEXT, PRIMARY KEY (zoom_level, tile_column, tile_row))")
        db.execute("COMMIT")

    def done_rows(self, zoom: int, column: int) -> set[int]:
        """Rows of one column already written or recorded missing (what a resumed run skips)."""
        rows = {r for (r,) in self.db.execute(f"SELECT tile_row FROM {quote(self.table)} WHERE zoom_level = ? AND tile_column = ?", (zoom, column))}
        rows.update(r for (r,) in self.db.execute(f"SELECT tile_row FROM {MISSING} WHERE zoom_level = ? AND tile_column = ?", (zoom, column)))
        return rows

    def counts(self) -> tuple[int, int, int]:
        """(tiles written, their bytes, tiles recorded missing)."""
        n, size = self.db.execute(f"SELECT count(*), coalesce(sum(length(tile_data)), 0) FROM {quote(self.table)}").fetchone()
        missing = self.db.execute(f"SELECT count(*) FROM {MISSING}").fetchone()[0]
        return int(n), int(size), int(missing)

    def add(self, zoom: int, column: int, row: int, data: bytes) -> None:
        self.db.execute(self._insert_sql, (zoom, column, row, data))

    def add_many(self, tiles: Iterable[tuple[int, int, int, bytes]]) -> None:
        self.db.executemany(self._insert_sql, tiles)

    def missing(self, zoom: int, column: int, row: int, reason: str) -> None:
        self.db.execute(f"INSERT OR IGNORE INTO {MISSING} VALUES (?, ?, ?, ?)", (zoom, column, row, reason[:500]))

    def commit(self) -> None:
        """Make everything added so far durable, and start the next batch."""
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def missing_tiles(self, limit: int) -> list[list]:
        return [list(r) for r in self.db.execute(f"SELECT zoom_level, tile_column, tile_row, reason FROM {MISSING} ORDER BY 1, 2, 3 LIMIT ?", (limit,))]

    def finish(self, bounds: tuple[float, float, float, float]) -> None:
        """Set the contents' bounds, drop the work table, and leave one self-contained file."""
        self.db.execute("UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name = ?", (*bounds, self.table))
        self.db.execute(f"DROP TABLE {MISSING}")
        self.db.execute("COMMIT")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.execute("PRAGMA journal_mode=DELETE")
        self.close()

    def close(self) -> None:
        try:
            if self.db.in_transaction:
                self.db.execute("COMMIT")
        finally:
            self.db.close()
