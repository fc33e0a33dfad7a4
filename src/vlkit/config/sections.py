"""The config's sections: typed dataclasses, one per part of a run (the model's towers, a VLM,
a detector, a segmenter, a training-free or fusion model, data sources, training, evaluation,
stages), with their defaults."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """A recipe or override that does not fit the config dataclasses."""


@dataclass
class VisionConfig:
    """The image tower, which both kinds have: a generative model's `model` section is this."""

    image_encoder: str = "vit-tiny"  # registry name, transformers hub id or local path
    image_size: int = 64  # input resolution of from-scratch image towers
    patch_size: int = 8
    # vit-tiny's first layer: conv (a 3x3 conv stack, models/conv_stem.py) | patch (CLIP's own, exportable)
    vision_stem: str = "conv"
    vision_width: int = 128
    vision_layers: int = 4
    vision_heads: int = 4


@dataclass
class ModelConfig(VisionConfig):
    """A dual encoder (a contrastive model's `model` section): the image tower + a text tower +
    projections into a shared space, and the contrastive loss."""

    text_encoder: str = "text-tiny"
    embed_dim: int = 128  # shared embedding size after the projection heads
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    vocab_size: int = 512  # tokenizer trained on the data for from-scratch text towers
    max_text_length: int = 32
    loss: str = "clip"  # clip (symmetric InfoNCE) | siglip (pairwise sigmoid)
    hard_negatives: bool = True  # NegCLIP: also contrast each image with its sample's negative_captions
    init_temperature: float = 0.07  # CLIP: logit scale starts at 1/0.07; SigLIP paper uses 0.1
    max_logit_scale: float = 100.0  # CLIP clamps exp(logit_scale) at 100
    init_logit_bias: float = -10.0  # SigLIP only
    lock_image: bool = False  # LiT: image tower frozen ...
    unlock_image_blocks: int = 0  # ... except its last N blocks
    lock_text: bool = False
    # A contrastive run/model folder whose weights (tokenizer included) this model starts from,
    # with a fresh optimizer and schedule: a curriculum's later stage. Contrastive models only.
    init_from: str = ""


@dataclass
class SourceConfig:
    """One data source; several are mixed by weight."""

    # scenes | scenes-instruct | photos | fashion-mnist | folder | webdataset | hf | conversations | coco
    # | hateful-memes (`split`: its <split>.jsonl)
    kind: str = "scenes"
    path: str = ""  # folder / shard pattern / saved dataset (user data only)
    weight: float = 1.0
    split: str = "train"
    # scenes only (0 = the data section's value): a mix can hold single-object and crowded scenes
    min_objects: int = 0
    max_objects: int = 0
    caption_styles: int = 0  # scenes: keep the first N of its 5 caption styles (1 = canonical); 0 = all
    # scenes: "varied" = many wordings per question form; "balanced" = varied, with relation
    # wordings naming either object first equally often; "" = templates
    question_wordings: str = ""
    position_questions: bool = False  # scenes: also ask "Where is the red circle?" → "top left"
    # scenes: keep only these question types (color, shape, count, existence, relation, position),
    # e.g. [position, relation] for a curriculum stage that teaches where things are; [] = all
    question_types: list[str] = field(default_factory=list)


def default_sources() -> list[SourceConfig]:
    """The default CLIP data mix (benchmarks/README.md says why): half single objects with their
    canonical caption ("a red circle"), where shape is what tells two same-coloured images apart
    and no size or position word outbids it; half the 1-3 object world with every caption style."""
    return [SourceConfig(kind="scenes", max_objects=1, caption_styles=1), SourceConfig(kind="scenes")]


def default_stages() -> list[dict]:
    """The default contrastive curriculum, as a recipe's `stages:` (benchmarks/README.md, "Binding
    colour to shape"): 450 steps of the default mix learn colour × shape; then, from those weights
    with a fresh schedule, 330 steps of 2-3 object scenes with canonical captions ("a red circle and
    a blue square", its colour swap the hard negative) beside the whole world learn which colour
    goes with which shape. 780 steps of 128: 99,840 images. The tour trains it."""
    crowded = "{kind: scenes, min_objects: 2, caption_styles: 1}"
    return [
        {"name": "shapes", "set": ["train.steps=450"]},
        {"name": "binding", "set": ["train.steps=330", f"data.sources=[{crowded}, {{kind: scenes}}]"]},
    ]


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=default_sources)
    image_size: int = 64  # scenes render size
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0  # scenes world seed; held-out eval scenes use a different seed
    # Sources whose texts a from-scratch tokenizer also learns, never trained on. A staged
    # generative recipe's first stage gets every later stage's sources here (`stage_configs`):
    # the later stages keep its tokenizer, and a word it never saw would be split into bytes.
    tokenizer_sources: list[SourceConfig] = field(default_factory=list)


@dataclass
class TrainConfig:
    out_dir: str = "runs/clip-scenes"
    steps: int = 600  # 77k images, ~4-6 minutes on 2 CPU cores for the default model
    batch_size: int = 128
    grad_accum: int = 1
    lr: float = 2e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0  # 0 = off
    # bf16 autocast: true, false, or "auto": where the device multiplies faster in bf16 (a CUDA GPU;
    # a CPU with AMX, measured: vlkit/train/precision.py). Without AMX a CPU trains slower in it.
    bf16: bool | str = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 200  # 0 = only at the end
    save_every: int = 200
    keep_last: int = 2
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    # How several processes (torchrun / accelerate launch) share the model: ddp = a full copy
    # each; fsdp = each holds 1/N of the weights, gradients and AdamW state (generative models;
    # see vlkit/train/sharding.py). One process trains the same either way.
    distributed: str = "ddp"


# The one default prompt template for zero-shot labels that are bare nouns ("cat" → "a photo of
# a cat."): `vlkit.load(...).classify`, `vlkit classify`, `vlkit eval` on non-scenes data, the
# harness and the transformers wrappers all default to it.
DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass
class EvalConfig:
    data: str = "scenes"  # scenes (held-out world) | photos | fashion-mnist (held-out splits) | a data path
    num_images: int = 512  # held-out samples per evaluation
    seed: int = 1_000_003  # a scenes seed never used for training
    # Prompt templates for zero-shot labels (averaged). Scenes labels come with their article
    # ("an orange star"), so its templates take the label as is.
    templates: list[str] = field(default_factory=lambda: ["{}.", "a picture of {}."])


PEFT_KINDS = ("none", "lora", "prompt", "prefix")  # vlm.peft: checked by build_vlm, built by peft_adapters


@dataclass
class VLMConfig:
    """A generative VLM: vision encoder (`model.image_encoder` and its `model.*` sizes) →
    connector → causal language model. Training strategies are which parts are frozen:
    PrefixLM = nothing frozen; frozen PrefixLM (Frozen, ClipCap) = `freeze_lm`; connector-only
    alignment (LLaVA stage 1, MiniGPT-4) = `freeze_vision` + `freeze_lm`; PEFT = `freeze_lm` +
    `peft`."""

    # registry name (gpt-tiny, gpt-tiny-words, gpt-tiny-reader, smollm2-135m), transformers id or
    # path. gpt-tiny-words reads through MiniLM's vocabulary and frozen word table
    # (models/word_vectors.py); gpt-tiny-reader reads user turns through the whole frozen MiniLM
    # (models/question_reader.py)
    language_model: str = "gpt-tiny"
    lm_width: int = 128  # gpt-tiny sizes (from-scratch Llama)
    lm_layers: int = 4
    lm_heads: int = 4
    lm_vocab_size: int = 1024  # byte-level BPE trained on the data's texts
    # gpt-tiny: the standard deviation its weights start from (transformers' initializer_range). At
    # 0.02, a 128-wide model's attention starts ~10x flatter than torch's layers and learns lookups late
    # (benchmarks/README.md, "Why the VLM learns the lookup slowly")
    lm_init_std: float = 0.02
    max_length: int = 128  # tokens per training sequence, image tokens included
    # Training: each batch runs as this many forward/backward passes (at most one per row) over rows
    # of similar length, each cut to its longest row (the same gradient, less padding;
    # train/generative.py); batches with grounding targets stay whole
    length_groups: int = 2
    # Training: pad each pass to a multiple of 16 tokens and split a batch into groups of equal row
    # counts (not the least padding), so that the step's matrix shapes repeat from step to step:
    # oneDNN, which runs the CPU's bf16 matmuls, builds a kernel for each new shape (milliseconds
    # each, more than the matmul), so varied shapes cost bf16 more than it gains (train/generative.py,
    # benchmarks/README.md "Fixed shapes for bf16 on the CPU"). true, false, or "auto": where the
    # step runs in bf16 on a CPU
    fixed_shapes: bool | str = "auto"
    # Training: the LM head runs only where the next token is an answer token (the same loss, less
    # work where the vocabulary is large: gpt-tiny-words' 30k words, SmolLM2's 49k)
    logits_at_answers: bool = False
    # The LM head scores only the tokens of the training data's texts (with logits_at_answers:
    # training's softmax runs over those, a few hundred instead of a pretrained tokenizer's tens of
    # thousands); generation picks among them too. Kept with the model (models/vocabulary_head.py)
    data_vocabulary: bool = False
    connector: str = "mlp2x_gelu"  # linear | mlp2x_gelu | merge2x2_mlp | qformer | resampler | gated_xattn
    connector_positions: bool = False  # linear / mlp2x_gelu / merge2x2_mlp: a learned embedding per token
    # linear / mlp2x_gelu / merge2x2_mlp: each grid feature gets its fixed 2-D sin-cos coordinates
    # appended before the connector (models/connectors.py `CoordinateConnector`)
    connector_coordinates: bool = False
    connector_tokens: int = 16  # qformer / resampler (and gated_xattn's resampler) output tokens
    connector_layers: int = 2  # qformer / resampler depth
    xattn_every: int = 1  # gated_xattn: a gated cross-attention block before every k-th LM layer
    # which of the vision tower's hidden states the connector reads (transformers' `hidden_states`
    # index: -1 the last layer's output, -2 the one before, as LLaVA reads CLIP). A contrastive loss
    # reads only the pooled token after the last layer, so that layer's patch outputs are trained for
    # nothing; the layer before is what the last layer reads (benchmarks/README.md, "The VLM trains
    # its tower in the mix stage")
    vision_feature_layer: int = -1
    vision_init: str = ""  # a contrastive run/model folder whose image tower starts the vision encoder
    init_from: str = ""  # a generative run/model folder to start from (LLaVA stage 2 from stage 1)
    freeze_vision: bool = False
    freeze_lm: bool = False
    peft: str = "none"  # none | lora | prompt (soft prompt tokens) | prefix (per-layer prefixes)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    virtual_tokens: int = 8  # prompt / prefix tuning
    # What a sample without "conversations" trains on: its captions and/or its QA pairs (scenes).
    tasks: list[str] = field(default_factory=lambda: ["caption", "vqa"])
    # Training questions only: the chance, before each word, that a made-up word (3-8 random
    # letters) is put there, so the LM learns to read a question past words it does not know. At 0.15
    # in the staged recipe's stage 2: reworded questions +6.1 points, templates -4.2 (two seeds), so
    # no recipe uses it (benchmarks/README.md, "Made-up words in the training questions"). 0: as written.
    question_noise: float = 0.0
    # Training conversations of several questions (scenes' QA): the short-answer instruction
    # ("Answer with a single word or number.": 8 tokens in each question turn) after the first
    # question only, not after every one (the default, as LLaVA-1.5's short-answer data has it);
    # evaluation and `vlkit ask` send it with each question, as a first turn
    short_answer_once: bool = False
    feature_cache: str = ""  # frozen vision: cache features here (memory-mapped); "" = off
    # > 0: an auxiliary loss (this weight x cross-entropy) on an LM hidden state (`grounding_layer`)
    # at each word that names an object of the scene ("red circle"): a linear head names the 3 x 3 cell
    # it lies in. Samples with "object_regions" (scenes) give the targets; others add nothing.
    grounding_weight: float = 0.0
    # which of the LM's hidden states the head reads: transformers' `hidden_states` index (0: the
    # embeddings, k: after layer k, -1: the last, after the final norm, which also predicts the next
    # token); a middle layer leaves the layers above it free to use what it found
    grounding_layer: int = -1


@dataclass
class DetectorConfig:
    """An open-vocabulary detector (OWL-ViT): the dual encoder's image tower without pooling, a
    box head and a class-embedding head on every patch token, compared with text-query
    embeddings from the text tower; trained with Hungarian matching (class + L1 + GIoU costs)."""

    clip_init: str = ""  # a contrastive run/model folder whose towers start the detector ("" = scratch)
    negatives: int = 6  # negative phrases per image (names of objects the scene does not hold)
    box_weight: float = 5.0  # DETR / OWL-ViT loss and matching-cost weights
    giou_weight: float = 2.0
    class_weight: float = 2.0
    focal_alpha: float = 0.25  # sigmoid focal loss; alpha < 0 = plain BCE
    focal_gamma: float = 2.0
    score_threshold: float = 0.1  # `detect` keeps boxes scoring above this


@dataclass
class SegmenterConfig:
    """A text-prompted segmenter (CLIPSeg): a small transformer decoder over the image tower's
    activations at `extract_layers`, FiLM-conditioned on the prompt's text embedding, and a
    transposed convolution to a mask logit per pixel; trained with BCE + dice on scenes' masks."""

    clip_init: str = ""  # a contrastive run/model folder whose towers the segmenter reads ("" = scratch)
    freeze_clip: bool = True  # CLIPSeg: only the decoder trains; False also trains both towers
    extract_layers: list[int] = field(default_factory=lambda: [1, 2, 3])  # 0-based tower layers read
    reduce_dim: int = 64  # the decoder's width (CLIPSeg's rd64)
    decoder_heads: int = 4
    decoder_intermediate: int = 256
    conditional_layer: int = 0  # FiLM after this many decoder layers' inputs (CLIPSeg: 0)
    dice_weight: float = 1.0  # loss = BCE + dice_weight * dice
    absent_prompts: float = 0.1  # share of training prompts naming an object the scene lacks (empty mask)
    mask_threshold: float = 0.5  # `segment` keeps pixels whose probability passes this
    # "pixels": a few small convolutions over the image's own pixels and the decoder's mask logits
    # redraw the mask at full resolution (edges the 8-px token grid cannot place); "none": CLIPSeg's
    # decoder alone, the only one `vlkit export --format clipseg` takes
    refine: str = "none"
    refine_width: int = 16  # channels of the refinement's convolutions


@dataclass
class StageConfig:
    """One stage of a multi-stage recipe (LLaVA: align the connector, then instruction-tune).

    A stage is the recipe with `set` overrides applied; it trains into `<train.out_dir>/<name>`,
    and every stage after the first starts from the previous one (`vlm.init_from` for a generative
    recipe, `model.init_from` for a contrastive or fusion one; a fusion recipe can pre-train, then
    fine-tune a classifier with `model.objective=classify`). Detector, segmenter and training-free
    recipes have no stages."""

    name: str = ""
    set: list[str] = field(default_factory=list)  # overrides, as on the command line: "vlm.peft=lora"


@dataclass
class TrainingFreeConfig:
    """A training-free VLM (a `training-free` model's `model` section): two frozen pretrained
    unimodal encoders joined without training (`vlkit.models.training_free`).
    asif: image and text each become their similarities to anchor image-caption pairs (Norelli
    et al. 2023); conse: the image classifier's top classes' name embeddings (Norouzi et al. 2014)."""

    method: str = "asif"  # asif | conse
    image_encoder: str = "efficientnet-lite0"  # a pretrained one (conse: an ImageNet classifier)
    text_encoder: str = "minilm-l6"
    max_text_length: int = 64
    anchors: int = 4000  # asif: anchor image-caption pairs (what `vlkit asif` built it from)
    anchor_data: str = ""  # asif: the data name the anchors came from (a record, `vlkit asif --data`)
    k: int = 1000  # asif: similarities kept per relative representation (the rest are 0)
    p: float = 8.0  # asif: the kept similarities are raised to this power
    center: bool = True  # asif: subtract the anchors' mean feature before the cosines
    top: int = 5  # conse: the classifier's top-T classes in the convex combination
    scale: float = 100.0  # logit scale of classify's softmax (top-1 does not depend on it)


@dataclass
class FusionConfig:
    """A fusion encoder (a `fusion` model's `model` section): one transformer over word tokens and
    image patches together (ViLT, Kim et al. 2021: transformers' `ViltModel`), with an image-text
    matching head (ITM) and a masked-language-modelling head (MLM). `contrastive_weight` > 0 adds
    FLAVA's contrastive loss on unimodal encodings: the same encoder run on the image alone and on
    the text alone (shared weights, as in VLMo), each projected into a shared space."""

    image_size: int = 64
    patch_size: int = 8
    width: int = 128
    layers: int = 4
    heads: int = 4
    vocab_size: int = 512  # BPE trained on the data's captions (`<mask>` is one of its tokens)
    max_text_length: int = 32
    mlm_probability: float = 0.15  # share of a caption's word tokens masked for MLM (at least one)
    # word groups masked whole (e.g. [[red, green, ...], [circle, square, ...]]): with probability
    # `mlm_group_probability` a caption's MLM row masks every word of one group it contains instead
    # of a random share, so "a <mask> circle and a <mask> square" asks each object's colour of the
    # image; with one colour masked, the text alone gives it away ("the colour not named")
    mlm_word_groups: list[list[str]] = field(default_factory=list)
    mlm_group_probability: float = 0.0
    mlm_weight: float = 1.0
    itm_weight: float = 1.0
    # ITM negatives per image, drawn in these shares: its caption with colours swapped between
    # objects (or a colour changed), with a shape changed, another image's caption
    negative_shares: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    contrastive_weight: float = 0.0  # FLAVA: > 0 adds the unimodal contrastive (CLIP) loss
    # > 0 adds word-level matching: a logit per word token, trained on the words a colour or shape
    # negative changed (false in the negative, true at the same place in the caption), so the check
    # of each "colour shape" phrase against the image is taught where the phrase is, not only
    # through the one pooled ITM logit (`vlkit.train.fusion`)
    token_itm_weight: float = 0.0
    # > 0: an auxiliary loss (this weight x cross-entropy) at each word of a true caption that names
    # an object of the scene ("red circle"): a linear head names the 3 x 3 cell it lies in
    # (`vlkit.models.grounding`), so the lookup "find the named object" is taught directly
    grounding_weight: float = 0.0
    embed_dim: int = 128  # the unimodal projections' size (contrastive only)
    init_temperature: float = 0.07
    # what turns the image into the transformer's patch tokens: patch (ViLT's own: one linear map
    # of each P×P patch; the only one that exports) | conv (a 3×3 conv stem, the CLIP's
    # `vision_stem: conv`) | clip (a trained CLIP's image tower, `vision_init`: its per-patch
    # output tokens, layer-normed and projected into `width`)
    image_embedder: str = "patch"
    vision_init: str = ""  # image_embedder clip: the contrastive run or model folder it starts from
    freeze_vision: bool = False  # image_embedder clip: keep that tower as trained
    # image_embedder clip: append each patch's column and row (fixed sin-cos features, the VLM's
    # `vlm.connector_coordinates`) to its token before the projection; the tower's last layer keeps
    # a patch's place only roughly (benchmarks/patch_probe.py)
    patch_coordinates: bool = False
    # "pretrain": the ITM + MLM (+ contrastive) objective on captioned images; "classify": fine-tuning
    # a binary classifier over the fused [CLS] (Hateful Memes, SNLI-VE style) on labelled pairs
    # (samples' "label" 0 / 1: a `hateful-memes` data source), binary cross-entropy
    objective: str = "pretrain"
    init_from: str = ""  # a fusion run/model folder to start from (its tokenizer, encoder and heads)
