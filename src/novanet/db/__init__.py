"""Database adapter: tables, engine, migrations and the queries of the service layer."""
