"""Scale out on Ray Data (`vlkit index | eval --ray [ADDRESS]`): the only package that imports ray.

The commands call it only when `--ray` is given, so without it nothing imports ray. Each job is a
Ray Data pipeline whose model work runs in `map_batches` on a pool of actors (`concurrency=`),
each loading the model once; the driver keeps what needs every result at once (the index merge,
the metrics), so results equal the one-process path's.

- `cluster.py`: connecting (`"local"`: a Ray started in-process; an address: a running cluster),
  the actor pool's size and its fault tolerance (a killed actor restarts, its batches are retried).
- `indexing.py`: files → decode (unreadable ones skipped and counted) → embed on actors → one
  `.npz` shard of embeddings + positions per batch → merged in file order into a `SearchIndex`.
- `evaluation.py`: `FannedModel`, a model whose batch methods (embed_images, answer, caption) run
  across the actors; `vlkit.eval.run.run_eval` scores it as it scores the model itself.
"""
