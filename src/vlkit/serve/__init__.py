"""vlkit serve: an OpenAI-compatible server for any vlkit model (FastAPI + uvicorn).

loading.py     MODEL → a generative model's BatchingEngine, or a ContrastiveModel; --index
kinds.py       per model kind: what serves it, the endpoints it answers (one table)
app.py         the app: routes, error handlers, middleware
chat.py        /v1/chat/completions (images, streaming)
tasks.py       /v1/embeddings, /v1/classify, /v1/search (contrastive models)
describe.py    /v1/caption, /v1/answer (generative models)
schemas.py     request bodies → validated inputs (pydantic models for the task endpoints); `Limits`
images.py      data-URL images within the limits; remote URLs refused unless hosts are allowed
requests.py    the body within its limit, parsed off the event loop; the served model
errors.py      OpenAI's error JSON
middleware.py  access log, API key, admission (429)
server.py      `vlkit serve`'s runner (and `vlkit demo`'s app) and `BackgroundServer` (tests, benchmarks)
ui.py          the web UI (Gradio): `vlkit demo MODEL`, and /ui with `vlkit serve MODEL --ui`
"""
