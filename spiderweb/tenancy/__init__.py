"""Tenants: who owns which subnets, pools and reservations, and which users act for them."""
