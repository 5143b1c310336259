"""Database plumbing: engine, session dependency, embedded PostgreSQL, migrations, vectors."""
