# The moved tables take the controllers app's own names (a rename: no data moves).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("controllers", "0001_watchcursor_lease_from_mirror"),
        ("mirror", "0002_watchcursor_lease_to_controllers"),
    ]

    operations = [
        migrations.AlterModelTable(name="watchcursor", table=None),
        migrations.AlterModelTable(name="lease", table=None),
    ]
