"""Evaluation: benchmarks (`loaders`, `embedded`), task runners (`contrastive`, `generative`),
the harness that joins them (`harness`), outputs (`report`,
`cards`) and `vlkit eval` (`run`). Every score comes from `vlkit.metrics`."""
