"""One module per revision, oldest first (docs/register.md, "Migrations", says how to write one)."""
