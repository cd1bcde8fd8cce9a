"""The job store: tables, database sessions, the job row and the schema migrations."""
