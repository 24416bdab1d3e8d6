import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from spiderweb.changelog.models import ObjectChange


@admin.register(ObjectChange)
class ObjectChangeAdmin(admin.ModelAdmin):
    list_display = ("time", "user_name", "action", "object_type", "object_repr", "request_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_repr", "user_name", "request_id")
    date_hierarchy = "time"
    readonly_fields = [f.name for f in ObjectChange._meta.fields] + ["changes"]

    @admin.display(description="diff")
    def changes(self, obj):
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((k, json.dumps(v[0]), json.dumps(v[1])) for k, v in obj.diff.items()),
        )
        return format_html("<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>", rows) if rows else "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
