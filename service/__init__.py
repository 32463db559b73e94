"""The REST API (FastAPI): validates, stores and serves jobs. Never imports torch or ray."""
