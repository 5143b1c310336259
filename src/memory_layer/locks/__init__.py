"""Named locks with leases and fencing numbers."""
