"""vlkit serve: an OpenAI-compatible server for vlkit language models (app: HTTP API, engine: batched generation)."""
