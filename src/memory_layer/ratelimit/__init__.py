"""Rate limits per client address and per tenant, counted in Redis or in the process."""
