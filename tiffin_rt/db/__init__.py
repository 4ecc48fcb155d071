"""PostgreSQL: the embedded server, schema migrations, triggers and the LISTEN listener."""
