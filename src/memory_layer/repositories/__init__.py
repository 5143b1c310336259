"""SQL lives here and only here. Repositories flush; the caller's transaction commits."""
