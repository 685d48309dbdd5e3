"""Add a family's trained heads to models_onnx/manifest.json: listed beside today's, or active.

`models_onnx.training.heads` writes ``<family folder>/manifest_entries.json``; this merges those
entries into the manifest through `stream.models.manifest.upsert_entry`, each with its
``applies_to`` and ``label_applies_to`` (`catalogue.APPLIES_TO`, `LABEL_APPLIES_TO`) and, for a
multilingual family, its ``reliable_languages`` (`catalogue.Family`), right after
the task's current entry. Without ``--activate`` they are listed only (challengers, replay, eval);
with it the encoder they read and the heads become the active versions; the old ones stay
listed.

    python -m models_onnx.training.publish --encoder e5-small-v2-int8-v1 [--activate]
    python -m models_onnx.training.publish --encoder e5-static-v1 --profile fast
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from models_onnx.training.catalogue import APPLIES_TO, FAMILIES, LABEL_APPLIES_TO
from models_onnx.training.common import MODELS_DIR
from stream.models.manifest import ManifestEntry, load_manifest, set_profile, upsert_entry

MANIFEST = MODELS_DIR / "manifest.json"


def place(task: str, version: str) -> str | None:
    """The version `version`'s entry goes after: where it already is, else after the task's
    active entry (None: last)."""
    manifest = load_manifest(MANIFEST)
    versions = [spec.version for spec in manifest.models]
    if version in versions:
        at = versions.index(version)
        return versions[at - 1] if at else None
    return manifest.active.get(task)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--encoder", choices=sorted(FAMILIES), required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--activate", action="store_true",
                      help="make the encoder and these heads the active versions")
    mode.add_argument("--profile", help="make profile PROFILE run this encoder (and so these "
                                        "heads): SIGNALS_PROFILE=PROFILE")
    args = parser.parse_args(argv)
    path = MODELS_DIR / FAMILIES[args.encoder].folder / "manifest_entries.json"
    entries = [ManifestEntry.from_json(raw) for raw in json.loads(path.read_text())]
    manifest = load_manifest(MANIFEST)
    manifest.resolve("embedding", args.encoder)  # listed, or a one-line error
    languages = FAMILIES[args.encoder].reliable_languages
    for entry in entries:
        fields = {**entry.fields, "applies_to": list(APPLIES_TO[entry.task])}
        if languages is not None:
            fields["reliable_languages"] = list(languages)
        if entry.task in LABEL_APPLIES_TO:
            fields["label_applies_to"] = {label: list(types) for label, types
                                          in LABEL_APPLIES_TO[entry.task].items()}
        upsert_entry(MANIFEST, dataclasses.replace(entry, fields=fields), activate=args.activate,
                     after=place(entry.task, entry.version))
    if args.activate:
        encoder = manifest.resolve("embedding", args.encoder)
        upsert_entry(MANIFEST, ManifestEntry.from_json(encoder.raw), activate=True,
                     after=place("embedding", args.encoder))
    if args.profile:
        set_profile(MANIFEST, args.profile, {"embedding": args.encoder})
    done = "activated" if args.activate else f"profile {args.profile}" if args.profile else "listed"
    print(f"{len(entries)} heads of {args.encoder}: {done}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
