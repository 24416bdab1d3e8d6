"""Change log: who changed which object, when, with before/after snapshots (NetBox's ObjectChange). Read-only."""

import json

from django.apps import apps
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from spiderweb.changelog.models import ObjectChange


class ReadOnlyAdminMixin:
    """Rows only the services write (the change log, allocations and their history, ...): the admin shows them and
    never adds, edits or deletes one. Put it first among the bases, so that it wins over a scoping mixin's rights."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ObjectChange)
class ObjectChangeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("time", "user_name", "action", "object_type", "object_repr", "request_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "user_name", "request_id", "message")
    date_hierarchy = "time"
    readonly_fields = [f.name for f in ObjectChange._meta.fields] + ["object_link", "changes"]

    @admin.display(description="diff")
    def changes(self, obj):
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            ((k, json.dumps(v[0]), json.dumps(v[1])) for k, v in obj.diff.items()),
        )
        if not rows:
            return "-"
        return format_html("<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>", rows)

    @admin.display(description="object")
    def object_link(self, obj):
        """A link to the object's admin page while it exists, and to its whole change history."""
        history = reverse("admin:changelog_objectchange_changelist")
        history_link = format_html(
            '<a href="{}?object_type={}&amp;object_id={}">all changes</a>', history, obj.object_type, obj.object_id
        )
        try:
            model = apps.get_model(obj.object_type)
            if not model.objects.filter(pk=obj.object_id).exists():
                return format_html("{} (deleted) · {}", obj.object_repr, history_link)
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.object_id])
        except (LookupError, ValueError, NoReverseMatch):
            return format_html("{} · {}", obj.object_repr, history_link)
        return format_html('<a href="{}">{}</a> · {}', url, obj.object_repr, history_link)
