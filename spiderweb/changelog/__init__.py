"""Change log: who changed which object, when, with before/after snapshots (NetBox's ObjectChange)."""
