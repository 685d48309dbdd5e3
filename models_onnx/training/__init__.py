"""The training code of the models in models_onnx/ (not part of the installed package).

Run from the repository root, each with ``--help``::

    python -m models_onnx.training.embed             # embed the corpora once (cache in /tmp)
    python -m models_onnx.training.heads             # the five heads on the embedding
    python -m models_onnx.training.challenger        # the sentiment challenger
    python -m models_onnx.training.language          # the character n-gram language model
    python -m models_onnx.training.compare_language  # it against py3langid and pycld2
    python -m models_onnx.training.export_encoder    # the int8 encoder (separate environment)

Shared rules live once: the heads' split in `splits`, the manifest entry format in
`stream.models.manifest`, the drift reference in `stream.models.shadow`, the metrics in
`stream.evaluation.metrics`.
"""
