"""`spiderweb_claimed(id)`: the id of the row a claim inserted, or an error that aborts the transaction.

A new pod's allocation on PostgreSQL sends its claims and COMMIT in one round trip
(`allocation._allocate_in_two_trips`); a claim that inserted nothing must stop that COMMIT, and an error is the only
thing that does. PostgreSQL only: SQLite never takes that path.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION spiderweb_claimed(inserted bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    IF inserted IS NULL THEN
        RAISE EXCEPTION 'spiderweb: the claim inserted no allocation' USING ERRCODE = 'P0001';
    END IF;
    RETURN inserted;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS spiderweb_claimed(bigint)"


def _run(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("ipam", "0008_coordinator_mirror_of_the_crd")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
