"""IPAM: subnets, pools, reservations, endpoints and the allocations that bind addresses to pods."""
