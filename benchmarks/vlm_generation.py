"""Generation throughput: vlkit's `GenerativeModel.generate` vs transformers'
`LlavaForConditionalGeneration.generate` on the same exported model, prompts and images.

    python benchmarks/vlm_generation.py                        # untrained llava-scenes model
    python benchmarks/vlm_generation.py --model runs/llava-scenes --new-tokens 32 --repeats 7
    python benchmarks/vlm_generation.py --smoke                # tiny model, < 1 min (CI)

Without `--model` the recipe's model (`recipes/llava-scenes.yaml`) is built untrained (throughput
does not depend on the weights; seeded noise is added so that greedy decoding does not repeat one
token, which would make the identity check weak), saved and exported with `vlkit.export.export_llava`. Both sides
go from the same uint8 scenes images and chat prompts (short-answer VQA and caption requests) to
text, greedy, with exactly `--new-tokens` new tokens per prompt (`min_new_tokens =
max_new_tokens`, so the end-of-turn token cannot stop either side early):

- vlkit: `GenerativeModel.generate(conversations, images, decoding)` (its own batched preprocessing,
  left-padded prompts, image embeddings scattered once, then the LM's `generate` on embeddings);
- reference: `LlavaProcessor(images=..., text=chat-templated prompts)` →
  `LlavaForConditionalGeneration.generate(**inputs)` → `batch_decode`.

Each batch size (`--batches`) is warmed up once per side, then the sides alternate for
`--repeats` rounds; tokens/s = batch x new tokens / median seconds. Correctness: the new-token ids
of both sides must be identical for every batch (and the decoded replies equal): a mismatch exits 1.
Goal: vlkit >= the reference at every batch size (PASS/MISS, never the exit code).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from common import SMOKE_VLM
from PIL import Image
from train_throughput import quiet_transformers
from transformers import AutoProcessor, LlavaForConditionalGeneration

from vlkit.api import resolve_model_dir
from vlkit.config import load_config
from vlkit.data import build_dataset
from vlkit.data.conversations import CAPTION_PROMPT, vqa_prompt
from vlkit.export import export_llava
from vlkit.generation import Decoding, GenerativeModel
from vlkit.models.build import build_model, load_model, save_model
from vlkit.train.loop import tokenizer_texts

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "llava-scenes.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a vlkit generative model or run folder (default: untrained recipe model)")
    p.add_argument("--new-tokens", type=int, default=32, help="new tokens per prompt, forced")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="prompts per generate call")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per batch size, alternating")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--smoke", action="store_true", help="tiny model, 8 new tokens, 2 repeats: for CI")
    args = p.parse_args(argv)
    if args.smoke:
        args.new_tokens, args.repeats = 8, 2
        args.overrides = SMOKE_VLM + args.overrides
    return args


def prompts(cfg, n: int) -> tuple[list[list[dict]], list]:
    """n scenes images with one user turn each: short-answer questions, every third a caption request."""
    dataset = build_dataset(cfg.data)
    conversations, images = [], []
    for k in range(n):
        sample = dataset[10_000 + k]
        ask = (
            CAPTION_PROMPT if k % 3 == 2 or not sample.get("qa") else vqa_prompt(sample["qa"][0]["question"])
        )
        conversations.append([{"role": "user", "content": f"<image>\n{ask}"}])
        images.append(sample["image"])
    return conversations, images


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_transformers()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="vlkit-vlm-gen-bench-") as tmp:
        if args.model:
            folder = resolve_model_dir(args.model)
            model, cfg = load_model(folder)
        else:
            cfg = load_config(RECIPE, args.overrides)
            model = build_model(cfg, texts=tokenizer_texts(cfg, build_dataset(cfg.data))).eval()
            with torch.no_grad():  # untrained weights repeat one token: seeded noise makes the check sharper
                gen = torch.Generator().manual_seed(0)
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=gen), alpha=0.3)
            folder = Path(tmp) / "vlkit"
            save_model(model, cfg, folder)
        hf_dir = export_llava(folder, Path(tmp) / "llava")
        hf = LlavaForConditionalGeneration.from_pretrained(hf_dir).eval()
        processor = AutoProcessor.from_pretrained(hf_dir)
    vlkit_model = GenerativeModel(model, cfg)
    decoding = Decoding(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)  # fixed length
    conversations, images = prompts(cfg, max(args.batches))

    def reference(convs, pics) -> tuple[torch.Tensor, list[str]]:
        texts = [processor.apply_chat_template(c, add_generation_prompt=True) for c in convs]
        inputs = processor(
            images=[Image.fromarray(p) for p in pics], text=texts, padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            out = hf.generate(**inputs, **decoding.generate_kwargs())[:, inputs["input_ids"].shape[1] :]
        return out, [t.strip() for t in processor.batch_decode(out, skip_special_tokens=True)]

    rows, identical = [], True
    for b in args.batches:
        convs, pics = conversations[:b], images[:b]
        # correctness, outside the timings: the new-token ids and the replies of both sides
        want = vlkit_model.model.generate(
            **vlkit_model.encode_prompts(convs),
            pixel_values=vlkit_model.model.vision.preprocess(pics),
            **decoding.generate_kwargs(),
        )
        got, ref_texts = reference(convs, pics)
        same = torch.equal(want, got) and ref_texts == vlkit_model.generate(convs, pics, decoding)
        identical &= same
        times: dict[str, list[float]] = {"vlkit": [], "reference": []}
        for r in range(args.repeats):
            for side in ("vlkit", "reference") if r % 2 == 0 else ("reference", "vlkit"):
                clock = time.perf_counter()
                if side == "vlkit":
                    vlkit_model.generate(convs, pics, decoding)
                else:
                    reference(convs, pics)
                times[side].append(time.perf_counter() - clock)
        rows.append((b, {side: statistics.median(s) for side, s in times.items()}, same, want[0]))
    report(args, cfg, rows, identical, (load_before, os.getloadavg()[0]), vlkit_model)
    return 0 if identical else 1


def report(args, cfg, rows, identical: bool, loads, vlkit_model: GenerativeModel) -> None:
    m, v, n = cfg.model, cfg.vlm, args.new_tokens
    print(
        f"\nGeneration throughput: greedy, exactly {n} new tokens per prompt, {args.repeats} rounds alternating"
    )
    print(
        f"model: vision {m.vision_layers}x{m.vision_width} @ {m.image_size}px/{m.patch_size} → {v.connector} → "
        f"LM {v.lm_layers}x{v.lm_width}; {vlkit_model.model.image_tokens} image tokens per prompt; "
        f"{args.model or 'untrained'}"
    )
    print(
        f"torch threads: {torch.get_num_threads()}; load average before/after: {loads[0]:.1f}/{loads[1]:.1f}"
    )
    if max(loads) > (os.cpu_count() or 1):
        print("WARNING: other processes are busy: wall-clock figures are unreliable")
    print(
        f"\n{'batch':>5}{'vlkit tokens/s':>16}{'LLaVA tokens/s':>16}{'vlkit / LLaVA':>15}{'identical':>11}  goal >= 1x"
    )
    for b, med, same, _ in rows:
        ratio = med["reference"] / med["vlkit"]
        print(
            f"{b:>5}{b * n / med['vlkit']:>16.1f}{b * n / med['reference']:>16.1f}{ratio:>14.2f}x"
            f"{'yes' if same else 'NO':>11}  {'PASS' if ratio >= 1 else 'MISS'}"
        )
    print(f"first reply: {vlkit_model.tokenizer.decode(rows[0][3], skip_special_tokens=True)!r}")
    print(f"identical greedy outputs (token ids and replies): {'PASS' if identical else 'FAIL'}")


if __name__ == "__main__":
    sys.exit(main())
