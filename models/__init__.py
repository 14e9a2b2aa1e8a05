"""The SQLModel store: tables, engine factory and the queries that read and write them."""
