"""The web UI (Gradio): `vlkit demo MODEL`, and `vlkit serve MODEL --ui` at /ui.

    generative models   Chat: questions about an uploaded image, the reply streamed as generated
                        Caption: a caption, streamed the same way
    contrastive models  Classify: an image and a box of labels → a bar of probability per label
                        Search: a text → the best images, as a gallery (over the example images,
                        or over an index written by `vlkit index`)

Both kinds share a header naming the loaded model (kind, folder, parameters) and its card's
metrics (the model-index in README.md, which `vlkit eval --card` writes). Replies come from the
server's own `BatchingEngine` (`submit` with `on_text`): one generation engine, the same streaming
as `/v1/chat/completions`. Example images (embedded scenes and photos) make it work with no files.
Offline by construction: analytics off, no share link, system fonts (no font CDN), no SSR.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home

import contextlib  # noqa: E402
import queue  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from PIL import Image  # noqa: E402

from vlkit.api import ContrastiveModel  # noqa: E402
from vlkit.data.conversations import CAPTION_PROMPT  # noqa: E402
from vlkit.data.images import as_array  # noqa: E402
from vlkit.data.photos import Photos  # noqa: E402
from vlkit.data.scenes import Scenes, ScenesConfig  # noqa: E402
from vlkit.decoding import Decoding  # noqa: E402
from vlkit.generation import BatchingEngine, Busy, RequestError  # noqa: E402
from vlkit.index import SearchIndex  # noqa: E402
from vlkit.models.folders import resolve_model_dir  # noqa: E402
from vlkit.serve.kinds import DUAL_ENCODERS, served_kind  # noqa: E402
from vlkit.serve.tasks import MODEL_LOCK  # noqa: E402

FONTS = ("ui-sans-serif", "system-ui", "sans-serif")  # local fonts: nothing fetched to render
EXAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
DEFAULT_LABELS = "red circle, blue square, green triangle, yellow star"
_DONE = object()


def example_images(count: int = 6) -> list[tuple[str, np.ndarray]]:
    """(name, uint8[H, W, 3]) of embedded scenes and photos: examples on a fresh machine."""
    scenes = Scenes(ScenesConfig(image_size=128, seed=1))
    out = [(f"scene-{i}", scenes[i]["image"]) for i in range(count)]
    photos = Photos(EXAMPLE_PHOTOS, split="all")
    for name in EXAMPLE_PHOTOS:
        small = Image.fromarray(photos.image(name)).resize((192, 192), Image.Resampling.BICUBIC)
        out.append((f"photo-{name}", np.asarray(small)))
    return out


def write_examples(images: Sequence[tuple[str, np.ndarray]], folder: Path) -> list[str]:
    """The images as PNG files in `folder` (Gradio's examples are files) → their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in images:
        path = folder / f"{name}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def stream_text(engine: BatchingEngine, messages: list[dict], decoding: Decoding) -> Iterator[str]:
    """The reply so far after each piece the engine streams; a failed generation raises at the end."""
    pieces: queue.Queue = queue.Queue()
    future = engine.submit(messages, decoding, pieces.put, fit=True)
    future.add_done_callback(lambda _: pieces.put(_DONE))
    text = ""
    while (piece := pieces.get()) is not _DONE:
        text += piece
        yield text
    future.result()


def _user_turns(history: list[dict], image: np.ndarray) -> list[dict]:
    """Text chat history → chat messages with the image before the first question."""
    messages = [dict(m) for m in history]
    first = messages[0]
    first["content"] = [{"type": "image", "image": image}, {"type": "text", "text": first["content"]}]
    return messages


def _friendly(stream: Iterator[str]) -> Iterator[str]:
    """Bad input or a full engine → a message in the page (gr.Error), not a traceback."""
    try:
        yield from stream
    except (RequestError, Busy, ValueError) as e:
        raise gr.Error(str(e)) from e


def model_card(folder: str | Path | None) -> str:
    """Markdown: the metrics of the model-index in the folder's README.md ('' without one)."""
    if folder is None or not Path(folder).is_dir():
        return ""
    candidates = [Path(folder) / "README.md"]
    with contextlib.suppress(FileNotFoundError):  # a folder without weights can still have a card
        candidates.append(resolve_model_dir(folder) / "README.md")
    card = next((p for p in candidates if p.is_file()), None)
    text = card.read_text() if card else ""
    end = text.find("\n---", 4)
    if not text.startswith("---\n") or end < 0:
        return ""
    try:
        front = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError:
        return f"(model card {card}: front matter is not valid YAML)"
    rows = []
    for entry in front.get("model-index") or [] if isinstance(front, dict) else []:
        for result in entry.get("results") or []:
            task, data = result.get("task", {}), result.get("dataset", {})
            for metric in result.get("metrics") or []:
                where = f"{data.get('name', '?')} ({data.get('split', '?')})"
                rows.append(
                    f"| {task.get('name', '?')} | {where} | {metric.get('name')} | {metric.get('value')} |"
                )
    if not rows:
        return ""
    return "\n".join(
        [f"Model card ({card}):", "", "| task | data | metric | value |", "| --- | --- | --- | --- |", *rows]
    )


def describe(name: str, model: BatchingEngine | ContrastiveModel, folder: str | None) -> str:
    """Markdown header: which model is loaded, its kind, folder and size, and its card."""
    kind = served_kind(model)
    weights = model.model if isinstance(model, DUAL_ENCODERS) else model.engine.model
    params = sum(p.numel() for p in weights.parameters())
    where = f" · folder `{Path(folder).resolve()}`" if folder and Path(folder).exists() else ""
    head = f"## vlkit · `{name}`\n\n**{kind}** model · {params / 1e6:.2f} M parameters{where}"
    card = model_card(folder)
    return head + ("\n\n" + card if card else "\n\n(no model card: `vlkit eval MODEL --card` writes one)")


def _chat_tab(engine: BatchingEngine, examples: list[str]) -> None:
    """A conversation about one image (a text-only LM: no image), each reply streamed."""
    vision = engine.engine.vlm
    with gr.Tab("Chat"), gr.Row():
        with gr.Column(scale=1, visible=vision):
            image = gr.Image(
                type="numpy", label="Image", elem_id="chat-image", sources=["upload", "clipboard"]
            )
            gr.Examples([[p] for p in examples], inputs=[image], label="Example images")
        with gr.Column(scale=2):
            chatbot = gr.Chatbot(
                label="Conversation",
                elem_id="chat-log",
                height=360,
                render_markdown=False,
                buttons=["copy", "copy_all"],
            )
            question = gr.Textbox(
                label="Question", placeholder="What color is the circle?", elem_id="chat-question"
            )
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="chat-ask")
                clear = gr.Button("New conversation", elem_id="chat-clear")
            max_tokens = gr.Slider(1, 256, value=64, step=1, label="Max new tokens")
            history = gr.State([])  # inside the tab: a bare child of gr.Tabs shows as a stray tab

    def respond(img, text: str, turns: list[dict], n: float):
        if vision and img is None:
            raise gr.Error("Upload an image (or pick an example) first.")
        if not text.strip():
            raise gr.Error("Type a question about the image.")
        turns = [*turns, {"role": "user", "content": text.strip()}]
        messages = _user_turns(turns, img) if vision else turns
        reply = ""
        for reply in _friendly(stream_text(engine, messages, Decoding(max_new_tokens=int(n)))):
            shown = [*turns, {"role": "assistant", "content": reply}]
            yield shown, shown, ""
        done = [*turns, {"role": "assistant", "content": reply.strip() or "(an empty reply)"}]
        yield done, done, ""

    inputs, outputs = [image, question, history, max_tokens], [chatbot, history, question]
    ask.click(respond, inputs, outputs)
    question.submit(respond, inputs, outputs)
    for reset in (clear.click, image.change):  # a new image starts a new conversation
        reset(lambda: ([], []), None, [chatbot, history])


def _caption_tab(engine: BatchingEngine, examples: list[str]) -> None:
    with gr.Tab("Caption"), gr.Row():
        with gr.Column():
            image = gr.Image(type="numpy", label="Image", elem_id="caption-image")
            gr.Examples([[p] for p in examples], inputs=[image], label="Example images")
            button = gr.Button("Caption", variant="primary", elem_id="caption-run")
        caption = gr.Textbox(label="Caption", elem_id="caption-text", lines=3)

    def run(img):
        if img is None:
            raise gr.Error("Upload an image (or pick an example) first.")
        content = [{"type": "image", "image": img}, {"type": "text", "text": CAPTION_PROMPT}]
        reply = ""
        for reply in _friendly(stream_text(engine, [{"role": "user", "content": content}], Decoding())):
            yield reply
        yield reply.strip()

    button.click(run, [image], [caption])


def _classify_tab(model: ContrastiveModel, examples: list[str]) -> None:
    with gr.Tab("Classify"), gr.Row():
        with gr.Column():
            image = gr.Image(type="numpy", label="Image", elem_id="classify-image")
            gr.Examples([[p] for p in examples], inputs=[image], label="Example images")
        with gr.Column():
            labels = gr.Textbox(
                DEFAULT_LABELS, label="Labels (comma-separated)", elem_id="classify-labels", lines=2
            )
            button = gr.Button("Classify", variant="primary", elem_id="classify-run")
            probs = gr.Label(label="Probabilities", elem_id="classify-probs")

    def run(img, text: str) -> dict[str, float]:
        names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        if img is None:
            raise gr.Error("Upload an image (or pick an example) first.")
        if len(names) < 2:
            raise gr.Error("Give at least two different labels, separated by commas.")
        with MODEL_LOCK:
            result = model.classify([img], names)
        return {label: float(p) for label, p in zip(result.labels, result.probs[0])}

    button.click(run, [image, labels], [probs])


def _search_tab(model: ContrastiveModel, index: SearchIndex, pictures: dict[str, np.ndarray]) -> None:
    where = "the example images" if pictures else f"an index of {len(index)} images"
    with gr.Tab("Search"):
        with gr.Row():
            query = gr.Textbox("a red circle", label=f"Text query (searches {where})", elem_id="search-query")
            k = gr.Slider(1, min(len(index), 24), value=min(len(index), 6), step=1, label="Results")
        button = gr.Button("Search", variant="primary", elem_id="search-run")
        gallery = gr.Gallery(label="Best matches", elem_id="search-gallery", columns=6)

    def run(text: str, n: float):
        if not text.strip():
            raise gr.Error("Type what to look for.")
        return search_gallery(model, index, pictures, text.strip(), int(n))

    button.click(run, [query, k], [gallery])
    query.submit(run, [query, k], [gallery])


def search_gallery(
    model: ContrastiveModel, index: SearchIndex, pictures: dict[str, np.ndarray], text: str, k: int
) -> list[tuple[np.ndarray, str]]:
    """The k best images for `text`, each with its score and key; an index's keys are image paths
    (read now), the examples' are names in `pictures`."""
    with MODEL_LOCK:
        hits = model.search(index, [text], k=k)[0]
    return [
        (pictures[key] if key in pictures else as_array(key), f"{score:.3f} {key}") for key, score in hits
    ]


def _search_index(
    model: ContrastiveModel, examples: list[tuple[str, np.ndarray]], index: str | None
) -> tuple[SearchIndex, dict[str, np.ndarray]]:
    """The index to search: one written by `vlkit index` (keys: image paths), or the examples."""
    if index:
        return SearchIndex.load(index), {}
    with MODEL_LOCK:
        built = model.build_index([image for _, image in examples], [name for name, _ in examples])
    return built, dict(examples)


def build_ui(
    model: BatchingEngine | ContrastiveModel, name: str, folder: str | None = None, index: str | None = None
) -> tuple[gr.Blocks, Path]:
    """The Blocks for `model` (tabs by its kind) → (blocks, the folder of its example images)."""
    examples = example_images()
    example_dir = Path(tempfile.mkdtemp(prefix="vlkit-ui-"))
    paths = write_examples(examples, example_dir)
    contrastive = isinstance(model, DUAL_ENCODERS)  # training-free and transformers ones too
    searched = _search_index(model, examples, index) if contrastive else None
    with gr.Blocks(title=f"vlkit · {name}", analytics_enabled=False) as blocks:
        gr.Markdown(describe(name, model, folder), elem_id="model-info")
        with gr.Tabs():
            if contrastive:
                _classify_tab(model, paths)
                _search_tab(model, *searched)
            else:
                _chat_tab(model, paths)
                if model.engine.vlm:
                    _caption_tab(model, paths)
    return blocks, example_dir


def mount_ui(
    app: FastAPI,
    model: BatchingEngine | ContrastiveModel,
    name: str,
    path: str = "/ui",
    folder: str | None = None,
    index: str | None = None,
) -> FastAPI:
    """Mounts the UI for `model` on `app` at `path` (offline: system fonts, no SSR, no share link)."""
    blocks, example_dir = build_ui(model, name, folder, index)
    theme = gr.themes.Default(font=FONTS, font_mono=("ui-monospace", "monospace"))
    return gr.mount_gradio_app(
        app, blocks, path=path, ssr_mode=False, theme=theme, allowed_paths=[str(example_dir)]
    )
