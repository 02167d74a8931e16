"""The register's record of the categories a household restricted (see :mod:`cloud_sync.register.restrictions`),
on the register's metadata: created with the schema and joined to the household's tables, so erasure and the
export cover it wherever the registry is used (app, CLI, retention)."""

from __future__ import annotations

from sqlalchemy import Column, Double, ForeignKey, PrimaryKeyConstraint, String, Table

from cloud_sync.register import db

restrictions = Table(
    "restrictions",
    db.metadata,
    Column("household_id", String(64), ForeignKey("households.id"), nullable=False),
    Column("category", String(32), nullable=False),
    Column("since", Double, nullable=False),
    Column("actor", String(128), nullable=False),
    PrimaryKeyConstraint("household_id", "category", name="restrictions_pk"),
)

db.join_household_tables({restrictions: ()})
