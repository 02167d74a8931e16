"""The readings COPY path names its columns in the order it builds rows; they must be exactly the table's columns,
each with the binary COPY type of its SQL type."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String

from cloud_sync.register import db, partitions


def test_the_copy_columns_are_the_readings_table_columns_with_their_types() -> None:
    assert sorted(partitions.COLUMNS) == sorted(c.name for c in db.readings.c)
    expected = {String: "text", Integer: "int8", Float: "float8"}
    for name, copy_type in zip(partitions.COLUMNS, partitions._COPY_TYPES, strict=True):
        sql_type = db.readings.c[name].type
        assert next(t for cls, t in expected.items() if isinstance(sql_type, cls)) == copy_type, name
