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


def caption(
    model: str,
    images: Sequence[str],
    *,
    prompt: str | None = None,
    strict: bool = False,
    decode: Decode = CAPTION,
) -> None:
    """Caption images with a generative model.

    Args:
        model: generative model or run folder
        images: image files
        prompt: condition the caption on this instruction
        strict: stop at the first unreadable image (default: skip it, go on, and list the skipped ones)
        decode: decoding options
    """
    from vlkit.data.images import ImageError

    captions = _generative(model).caption(list(images), prompt, decode.decoding(), strict=strict)
    for path, text in zip(images, captions):
        if not isinstance(text, ImageError):
            print(f"{path}\t{text}")
    report_failures([x for x in captions if isinstance(x, ImageError)], len(images))


def ask(model: str, image: str, question: Sequence[str], *, decode: Decode = ANSWER) -> None:
    """Answer a question about an image (short-answer VQA).

    Args:
        model: generative model or run folder
        image: image file
        question: question(s) about the image
        decode: decoding options
    """
    answers = _generative(model).answer([image] * len(question), list(question), decode.decoding())
    for text, answer in zip(question, answers):
        print(f"{text}\t{answer}")


def chat(model: str, *, image: str | None = None, decode: Decode = REPLY) -> None:
    """Talk about an image with a generative model (interactive, streamed).

    Reads user turns from stdin and streams the replies; `/image PATH` starts over on another
    image, `/reset` clears the conversation, Ctrl-D quits.

    Args:
        model: generative model or run folder
        image: image file the conversation is about
        decode: decoding options
    """
    loaded, decoding = _generative(model), decode.decoding()
    history: list[dict] = []
    print(
        "chat: type a message; /image PATH to switch images, /reset to clear, Ctrl-D to quit", file=sys.stderr
    )
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line.startswith("/image "):
            image, history = line.split(" ", 1)[1].strip(), []
            continue
        if line == "/reset":
            history = []
            continue
        content: list[dict] = [{"type": "text", "text": line}]
        if image and not history:
            content.insert(0, {"type": "image", "image": image})
        history.append({"role": "user", "content": content})
        reply = ""
        for piece in loaded.stream(history, decoding):
            print(piece, end="", flush=True)
            reply += piece
        print()
        history.append({"role": "assistant", "content": reply.strip()})


def _generative(path: str):
    import vlkit

    model = vlkit.load(path)
    if not hasattr(model, "chat"):
        raise ValueError(
            f"{path} is a {model.cfg.kind} model; captions, answers and chat need a generative one"
        )
    return model
