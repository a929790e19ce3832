"""Call records: CDRs and call events, kept in SQLite or PostgreSQL.

cdr.py builds records as plain values, store.py writes them off the event loop,
models.py holds the tables and migrate.py brings a database to the current schema.
"""
