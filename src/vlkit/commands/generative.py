"""`vlkit caption`, `vlkit ask` and `vlkit chat`: a generative VLM's text about images."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from vlkit.commands import report_failures


@dataclass(frozen=True)
class Decode:
    """How to decode (the same options for caption, ask and chat).

    Args:
        max_new_tokens: longest reply, in tokens
        beams: beam search with N beams (default: greedy)
        sample: sample instead of greedy decoding
        temperature: sampling temperature
        top_p: nucleus sampling threshold
        stop: stop string (repeatable)
        seed: sampling seed
    """

    max_new_tokens: int = 48
    beams: int = 1
    sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None

    def decoding(self):
        """As `vlkit.decoding.Decoding`."""
        from vlkit.decoding import Decoding

        return Decoding(
            max_new_tokens=self.max_new_tokens,
            num_beams=self.beams,
            do_sample=self.sample,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=tuple(self.stop),
            seed=self.seed,
        )


# Each command's defaults: a caption, a short answer, a chat reply.
CAPTION, ANSWER, REPLY = Decode(), replace(Decode(), max_new_tokens=8), replace(Decode(), max_new_tokens=128)


@dataclass(frozen=True)
class Guidance:
    """MaGiC search (with --guided-by): how the contrastive model steers the language model.

    Args:
        top_k: candidate tokens per step (the language model's top k)
        alpha: weight of the degeneration penalty (repeating what was said)
        beta: weight of the image-text similarity (0: the language model alone, unguided)
    """

    top_k: int = 8
    alpha: float = 0.1
    beta: float = 2.0


def caption(
    model: str,
    images: Sequence[str] = (),
    *,
    prompt: str | None = None,
    strict: bool = False,
    guided_by: str | None = None,
    lm: str | None = None,
    decode: Decode = CAPTION,
    guidance: Guidance = Guidance(),
) -> None:
    """Caption images with a generative model, or zero-shot with a language model steered by a contrastive one.

    `--guided-by CLIP_RUN --lm LM` captions with MaGiC search: LM (a text-only language model: a
    registry name such as smollm2-135m, or a transformers folder such as the caption LM
    benchmarks/magic.py trains) proposes its top-k next tokens and CLIP_RUN (any contrastive or
    training-free model) scores each continuation against the image; no image-text training.
    Every word after the options is then an image.

    Args:
        model: generative model or run folder, or a transformers folder (GIT, BLIP-2, LLaVA); with
            --lm: the first image
        images: image files
        prompt: condition the caption on this instruction
        strict: stop at the first unreadable image (default: skip it, go on, and list the skipped ones)
        guided_by: contrastive model or run folder that steers --lm's decoding (MaGiC search)
        lm: the language model --guided-by steers (a registry name, hub id or transformers folder)
        decode: decoding options (with --guided-by: only max-new-tokens applies)
        guidance: MaGiC search options (with --guided-by)

    Examples:
        vlkit caption runs/llava-scenes a.png b.png
        vlkit caption --guided-by runs/clip-scenes --lm runs/gpt-captions a.png b.png
    """
    from vlkit.data.images import ImageError

    if (guided_by is None) != (lm is None):
        raise ValueError(
            "vlkit caption: --guided-by and --lm go together (a contrastive model steers a language model)"
        )
    if lm is not None:
        return _guided_caption(guided_by, lm, [model, *images], prompt, strict, decode, guidance)
    if not images:
        raise ValueError("vlkit caption: give MODEL and at least one image")
    captions = _generative(model, "caption", "caption").caption(
        list(images), prompt, decode.decoding(), strict=strict
    )
    for path, text in zip(images, captions):
        if not isinstance(text, ImageError):
            print(f"{path}\t{text}")
    report_failures([x for x in captions if isinstance(x, ImageError)], len(images))


def _guided_caption(
    guide: str,
    lm: str,
    images: list[str],
    prompt: str | None,
    strict: bool,
    decode: Decode,
    guidance: Guidance,
) -> None:
    from vlkit.api import load
    from vlkit.data.images import read_images, require_readable
    from vlkit.generation.magic import MagicCaptioner, MagicSearch
    from vlkit.serve.loading import load_language_model

    if decode.beams > 1 or decode.sample:
        raise ValueError(
            "vlkit caption --guided-by decodes by MaGiC search: --beams and --sample do not apply"
        )
    search = MagicSearch(guidance.top_k, guidance.alpha, guidance.beta, decode.max_new_tokens)
    captioner = MagicCaptioner(
        *load_language_model(lm), load(guide, kind="contrastive", command="caption"), search
    )
    arrays, kept, failures = read_images(images, strict)
    require_readable(len(images), failures)
    for position, text in zip(kept, captioner.caption(arrays, prompt) if arrays else []):
        print(f"{images[position]}\t{text}")
    report_failures(failures, len(images))


def ask(
    model: str, image: str, question: Sequence[str], *, short: bool = True, decode: Decode = ANSWER
) -> None:
    """Answer a question about an image (short-answer VQA).

    Each question gets "Answer with a single word or number." appended, the short-answer
    instruction the models were trained with (VQA benchmarks ask the same way); `--no-short`
    sends the question as typed, which is what `vlkit chat` and an exported model get.

    Args:
        model: generative model or run folder, or a transformers folder (ViLT, BLIP VQA, GIT, BLIP-2, LLaVA)
        image: image file
        question: question(s) about the image
        short: append the short-answer instruction to each question
        decode: decoding options
    """
    loaded = _generative(model, "ask", "answer")
    answers = loaded.answer([image] * len(question), list(question), decode.decoding(), short=short)
    for text, answer in zip(question, answers):
        print(f"{text}\t{answer}")


def chat(model: str, *, image: str | None = None, decode: Decode = REPLY) -> None:
    """Talk about an image with a generative model (interactive, streamed).

    Reads user turns from stdin and streams the replies; `/image PATH` starts over on another
    image, `/reset` clears the conversation, Ctrl-D or Ctrl-C quits. Your messages go to the model
    as typed (`vlkit ask` appends a short-answer instruction). An unreadable image is an error
    line, and the chat goes on.

    Args:
        model: generative model or run folder
        image: image file the conversation is about
        decode: decoding options
    """
    from vlkit.data.images import load_image

    if image:
        load_image(image)  # a missing or unreadable --image stops here, before the model loads
    loaded, decoding = _generative(model, "chat", "stream"), decode.decoding()
    try:  # Ctrl-C from the moment the prompt is shown ends the chat quietly
        print(
            "chat: type a message; /image PATH to switch images, /reset to clear, Ctrl-D to quit",
            file=sys.stderr,
        )
        _chat_loop(loaded, image, decoding)
    except KeyboardInterrupt:
        print(file=sys.stderr)


def _chat_loop(loaded, image: str | None, decoding) -> None:
    from vlkit.data.images import load_image

    history: list[dict] = []
    for line in sys.stdin:
        line = line.strip()
        if line.startswith("/image "):
            path = line.split(" ", 1)[1].strip()
            try:
                load_image(path)
            except ValueError as e:  # ImageError: missing, truncated, not an image
                print(f"error: {e} (still talking about {image or 'no image'})", file=sys.stderr)
                continue
            image, history = path, []
        elif line == "/reset":
            history = []
        elif line:
            content: list[dict] = [{"type": "text", "text": line}]
            if image and not history:
                content.insert(0, {"type": "image", "image": image})
            reply = _stream_reply(loaded, [*history, {"role": "user", "content": content}], decoding)
            if reply is not None:
                history += [{"role": "user", "content": content}, {"role": "assistant", "content": reply}]


def _stream_reply(loaded, messages: list[dict], decoding) -> str | None:
    """Prints the reply as it is generated; an error is one line on stderr (None: no reply)."""
    reply = ""
    try:
        for piece in loaded.stream(messages, decoding):
            print(piece, end="", flush=True)
            reply += piece
    except ValueError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return None
    print()
    return reply.strip()


def _generative(path: str, command: str, needs: str):
    """A vlkit or transformers model (`vlkit.load`), refused with what to do when it is a
    contrastive model (no text out) or lacks the method `needs`."""
    from vlkit.api import load

    return load(path, kind="generative", command=command, needs=needs)
