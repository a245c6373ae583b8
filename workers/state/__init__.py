"""State in Redis: job records that make repeated deliveries harmless, and leases."""
