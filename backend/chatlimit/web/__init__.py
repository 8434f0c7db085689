"""The HTTP edge: what Starlette and uvicorn see. Routes, schemas, the one error builder,
middleware and the uvicorn protocol."""
