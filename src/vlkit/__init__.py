"""vlkit: build, train, evaluate and serve vision-language models, offline-first."""

__version__ = "0.1.0"
