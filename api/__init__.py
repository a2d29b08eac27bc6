"""HTTP API of the job service (FastAPI). Never imports torch: it must start fast."""
