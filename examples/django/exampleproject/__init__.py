"""A small Django site whose logins and signups usermon tracks with no code of its own."""
