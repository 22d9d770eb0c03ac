"""HTTP policy server (FastAPI on uvicorn) and its Python client."""
