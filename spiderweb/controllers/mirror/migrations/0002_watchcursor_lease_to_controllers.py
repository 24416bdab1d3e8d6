# State-only: WatchCursor and Lease now belong to the controllers' kit (spiderweb.controllers); their tables stay.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("mirror", "0001_mirror_state"),
        ("controllers", "0001_watchcursor_lease_from_mirror"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="WatchCursor"), migrations.DeleteModel(name="Lease")],
            database_operations=[],
        ),
    ]
