"""The rules of Conduit. No FastAPI or SMTP protocol here: services take the DB session first,
keyword-only options after, return models, and never commit (the caller's boundary does)."""
