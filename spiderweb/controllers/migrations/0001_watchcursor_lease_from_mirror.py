# WatchCursor and Lease move from the mirror app to the controllers' kit. The state is created here on the tables
# the mirror made (no data moves); 0002 gives the tables the kit's own names.

import django.db.models.deletion  # noqa: F401
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("mirror", "0001_mirror_state"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="WatchCursor",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("kind", models.CharField(max_length=32, unique=True)),
                        ("resource_version", models.CharField(blank=True, max_length=64)),
                        ("relisted_at", models.DateTimeField(blank=True, null=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={"ordering": ["kind"], "db_table": "mirror_watchcursor"},
                ),
                migrations.CreateModel(
                    name="Lease",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("name", models.CharField(max_length=63, unique=True)),
                        ("holder", models.CharField(blank=True, max_length=200)),
                        ("expires_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                    ],
                    options={
                        "ordering": ["name"],
                        "db_table": "mirror_lease",
                        "constraints": [models.CheckConstraint(condition=models.Q(("name", ""), _negated=True),
                                                               name="lease_name_not_empty")],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
