"""IP garbage collection: addresses held by pods that are gone come back, and nothing a live pod holds is touched."""
