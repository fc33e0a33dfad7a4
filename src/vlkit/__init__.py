"""vlkit: build, train, evaluate and serve vision-language models, offline-first."""

__version__ = "0.1.0"


def load(path, **options):
    """Loads a trained vlkit model (model folder or run folder) or a transformers folder;
    `options` and the rest: see `vlkit.api.load`."""
    from vlkit.api import load as _load

    return _load(path, **options)
