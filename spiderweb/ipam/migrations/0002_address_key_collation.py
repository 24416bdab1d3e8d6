"""Give address_key the byte-order "C" collation on PostgreSQL.

The allocator walks addresses with `address_key >= …` index range scans and relies on string order being numeric
order. Fixed-width lowercase hex has that property under "C"; a locale collation may not. SQLite already
compares bytes.
"""

from django.db import migrations

COLUMNS = [("ipam_allocation", "address_key"), ("ipam_releasedaddress", "address_key")]


def to_c_collation(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column in COLUMNS:
        schema_editor.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(32) COLLATE "C"')


def to_default_collation(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column in COLUMNS:
        schema_editor.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar(32) COLLATE "default"')


class Migration(migrations.Migration):
    dependencies = [("ipam", "0001_ipam_model")]
    operations = [migrations.RunPython(to_c_collation, to_default_collation)]
