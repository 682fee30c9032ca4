"""`mathtune export`: a model (catalogue name, Hub id, local dir or adapter dir) as HF safetensors
or as a GGUF for llama.cpp / Ollama, reloaded and compared with the source unless --no-verify.

    mathtune export runs/train/x/adapter -o out/x                      # merged HF model
    mathtune export smollm2-135m-instruct -o out/smol --format gguf --quant q8_0
    mathtune export out/x -o out/x-gguf --format gguf --quant f32 --no-verify
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "export a model or adapter: merged safetensors (hf) or GGUF with an Ollama Modelfile, verified"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="catalogue name, Hub id, local model dir or LoRA adapter dir (merged into its base)")
    p.add_argument("-o", "--output", required=True, help="output directory (replaced atomically if it exists)")
    p.add_argument("--format", choices=["hf", "gguf"], default="hf", help="hf: safetensors + tokenizer; gguf: llama.cpp")
    p.add_argument("--quant", default="f32", help="GGUF tensor type: f32, f16, bf16, q8_0 (K-quants: see the error's hint)")
    p.add_argument("--name", help="model name written into the GGUF and the card (default: the output dir name)")
    p.add_argument("--no-verify", action="store_true", help="skip reloading the export and comparing it with the source")
    p.add_argument("--verify-tokens", type=int, default=32, help="greedy tokens per verification prompt")
    p.add_argument("--heldout", type=int, default=100, metavar="N",
                   help="held-out problems solved by source and export, compared with McNemar (0: skip; default 100)")
    p.add_argument("--heldout-benchmark", default="synth",
                   help="synth (mathtune's synthetic held-out set, default), a registered benchmark or a .jsonl")
    p.add_argument("--heldout-fields", help="field mapping for a .jsonl --heldout-benchmark: problem=question,answer=answer")
    p.add_argument("--data-dir", help="local benchmark dir for --heldout-benchmark (or $MATHTUNE_DATA)")
    p.add_argument("--heldout-tokens", type=int, default=128, help="max new tokens per held-out problem")


def run(args: argparse.Namespace) -> int:
    import tempfile

    from ..eval.heldout import heldout_check
    from ..export import export_model, passed

    with tempfile.TemporaryDirectory(prefix="mathtune-export-") as work:
        check = None
        if args.heldout:
            bench, fields, label = args.heldout_benchmark, args.heldout_fields, None
            if bench == "synth":
                bench, fields, label = synthetic_heldout(args.heldout, Path(work))
            check = heldout_check(bench, n=args.heldout, fields=fields, data_dir=args.data_dir,
                                  max_new_tokens=args.heldout_tokens, label=label)
        result = export_model(args.model, args.output, fmt=args.format, quant=args.quant, verify=not args.no_verify,
                              name=args.name, max_new_tokens=args.verify_tokens, heldout=check,
                              log=lambda msg: print(f"mathtune: {msg}", file=sys.stderr, flush=True))
    info = result.info
    print(f"wrote {result.out_dir} ({', '.join(info['files'])})")
    if passed(info) is False:
        print("mathtune: verification FAILED: the export does not reproduce the source model "
              "(see export.json 'verification')", file=sys.stderr)
        return 1
    return 0


def synthetic_heldout(n: int, work: Path) -> tuple[str, str, str]:
    """(file, fields, label): the first `n` problems of mathtune's synthetic held-out set
    (`synth.train_test(0, n, seed=0)`, levels 1-2: the demo's held-out set, disjoint from its
    training set), written to `work`."""
    from ..data import synth
    from ..files import atomic_write_jsonl
    from .demo import TEST_FIELDS

    _, test = synth.train_test(0, n, levels=[1, 2], seed=0)
    path = atomic_write_jsonl(work / "heldout.jsonl", [e.to_row() for e in test])
    return str(path), TEST_FIELDS, "synthetic held-out set (levels 1-2, seed 0)"
