"""`vlkit classify`, `vlkit index` and `vlkit search`: what a dual encoder's embeddings do."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from vlkit.commands import Arg, RayAddress, report_failures
from vlkit.config import DEFAULT_TEMPLATES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def classify(
    model: str,
    images: Sequence[str],
    *,
    labels: str,
    template: Sequence[str] = (),
    top: int = 3,
    strict: bool = False,
) -> None:
    """Zero-shot classify images against labels.

    Args:
        model: model or run folder, or a transformers folder (CLIP, SigLIP, BLIP retrieval, CLIPSeg)
        images: image files
        labels: comma-separated labels
        template: prompt template with {} (repeat to ensemble; default: "a photo of a {}.")
        top: labels to print per image
        strict: stop at the first unreadable image (default: skip it, go on, and list the skipped ones)
    """
    names = [x.strip() for x in labels.split(",") if x.strip()]
    templates = list(template) or list(DEFAULT_TEMPLATES)
    result = _contrastive(model, "classify", "classify").classify(
        list(images), names, templates, strict=strict
    )
    for row, probs in zip(result.rows, result.probs):
        best = probs.argsort()[::-1][:top]
        print(images[row] + "\t" + "\t".join(f"{names[i]}={probs[i]:.3f}" for i in best))
    report_failures(result.failures, len(images))


IndexParams = Annotated[Sequence[str], Arg(("--param",), metavar="NAME=INT")]


def index(
    model: str,
    folder: str,
    *,
    out: str,
    kind: Literal["auto", "exact", "ivf-pq", "hnsw"] = "auto",
    param: IndexParams = (),
    strict: bool = False,
    batch_size: int = 32,
    ray: RayAddress = None,
    ray_workers: int | None = None,
) -> None:
    """Embed a folder of images into a search index.

    Args:
        model: model or run folder, or a transformers folder (CLIP, SigLIP, BLIP retrieval, CLIPSeg)
        folder: folder of images (searched recursively)
        out: index folder to write (with failures.jsonl listing the images skipped)
        kind: exact search, or an approximate faiss index (auto: exact below 200,000 images, ivf-pq from there)
        param: an index parameter, repeatable (ivf-pq: nlist, m, nbits, nprobe, refine; hnsw: M, ef_construction, ef_search)
        strict: stop at the first unreadable image (default: skip it, go on, and list the skipped ones)
        batch_size: images per model call
        ray: embed on Ray actors: alone, a Ray started here; with ADDRESS, that cluster's (the
            same index as without)
        ray_workers: actors embedding at once with --ray (default: one per CPU of the cluster)
    """
    from vlkit.index.settings import parse
    from vlkit.models.predictions import FAILURES_FILE

    params = parse(param)
    files = image_files(folder)
    loaded = _contrastive(model, "index", "index_files")
    if ray:
        from vlkit.scale import cluster, indexing

        with cluster.connected(ray):
            built, failures = indexing.index_files(
                loaded, files, out, batch_size, strict, kind, params, workers=ray_workers
            )
    else:
        built, failures = loaded.index_files(files, out, batch_size, strict, kind, params)
    kind_used, params_used = built.resolved()
    settings = ", ".join(f"{name}={value}" for name, value in params_used.items())
    print(f"indexed {len(built)} images into {out} ({kind_used}{': ' + settings if settings else ''})")
    report_failures(failures, len(files), Path(out) / FAILURES_FILE)


def search(
    index: str,
    query: Sequence[str],
    *,
    k: Annotated[int, Arg(("-k",))] = 5,
    model: str | None = None,
    backend: Literal["auto", "numpy", "faiss"] = "auto",
    param: IndexParams = (),
    rerank: str | None = None,
    shortlist: int = 20,
    rerank_by: Literal["itm", "itm+logit"] = "itm+logit",
) -> None:
    """Text → top-k images of an index.

    Args:
        index: index folder written by `vlkit index`
        query: query text(s)
        k: results per query
        model: model folder (default: the one the index was built with)
        backend: an exact index's search: numpy, or faiss (auto: faiss from 50k images up)
        param: a search-time parameter of an approximate index, repeatable (nprobe, refine, ef_search)
        rerank: a fusion model or run folder (ViLT, FLAVA), or a transformers BLIP retrieval
            folder, whose image-text matching re-orders the index's best `shortlist` images per
            query (ALBEF / BLIP)
        shortlist: images per query the index hands to --rerank
        rerank_by: itm+logit: ITM logit + the index model's logit (cosine x its scale; on held-out
            scenes it re-ranks better than ITM alone, benchmarks/README.md "fusion.py"), itm: the
            ITM logit alone; the scores printed are these
    """
    from vlkit.index import SearchIndex
    from vlkit.index.settings import parse

    loaded = SearchIndex.load(index, backend=backend, params=parse(param))
    model_path = model or loaded.metadata.get("model")
    if not model_path:
        raise ValueError(f"{index}: the index names no model; pass --model")
    dual = _contrastive(model_path, "search", "search")
    hits = dual.search(loaded, list(query), max(k, shortlist) if rerank else k)
    if rerank:
        from vlkit.api import load

        fused = load(rerank, command="search --rerank", needs="rerank")
        weight = dual.scale() if rerank_by == "itm+logit" else 0.0
        hits = [fused.rerank(text, found, k, weight) for text, found in zip(query, hits)]
    for text, results in zip(query, hits):
        print(f"# {text}")
        for key, score in results:
            print(f"{score:.4f}\t{key}")


def image_files(folder: str) -> list[Path]:
    """The images under `folder` (recursively, by suffix), sorted; an error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    return files


def _contrastive(path: str, command: str, needs: str):
    """A vlkit or transformers model (`vlkit.load`), refused with what to do when it is a
    generative model (no embeddings) or lacks the method `needs`."""
    from vlkit.api import load

    return load(path, kind="contrastive", command=command, needs=needs)
