"""`mathtune train RECIPE [key=value ...]`: SFT or continued pretraining from a YAML recipe.

    mathtune train recipes/smollm2-135m_lora_synth.yaml
    mathtune train recipes/smollm2-135m_lora_synth.yaml trainer.max_steps=50 method.r=8 run.output_dir=runs/x
    mathtune train runs/x/config.yaml            # re-run / resume a run from its resolved recipe

Re-running the same command after an interruption resumes from the last complete checkpoint.
Many GPUs: `accelerate launch --config_file configs/accelerate/ddp.yaml -m mathtune.cli train RECIPE`
(see docs/multi-gpu.md).
"""

from __future__ import annotations

import argparse

HELP = "fine-tune a model (sft | cpt) from a recipe"
DESCRIPTION = __doc__.split("\n\n")[0] if __doc__ else HELP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="train recipe YAML (see recipes/)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="recipe overrides, e.g. trainer.learning_rate=1e-4 method.r=8")
    parser.add_argument("--output-dir", help="run directory (same as run.output_dir=...)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    parser.add_argument("--check", action="store_true", help="validate the recipe (incl. trainer settings) and exit")


def run(args: argparse.Namespace) -> int:
    from mathtune.train.recipe import TrainRecipe

    recipe = TrainRecipe.load(args.recipe, list(args.overrides))
    flags = {"output_dir": args.output_dir} if args.output_dir else {}
    if args.no_resume:
        flags["resume"] = False
    if flags:  # set on the object: a path is never re-parsed as YAML ("runs/my run #2" keeps its "#2")
        recipe = recipe.model_copy(update={"run": recipe.run.model_copy(update=flags)})
    if args.check:
        from mathtune.train.run import check

        check(recipe)
        print(f"ok: {args.recipe} (stage {recipe.stage}, model {recipe.model.name}, method {recipe.method.kind})")
        return 0
    from mathtune.train import train

    result = train(recipe)
    m = result.metrics
    out = result.adapter_dir or result.model_dir
    print(f"done: {m.get('global_step')} steps, train loss {m.get('train_loss', float('nan')):.4f}"
          + (f", eval loss {m['eval_loss']:.4f}" if "eval_loss" in m else ""))
    print(f"  run dir: {result.run_dir}\n  weights: {out}" + (f"\n  merged:  {result.merged_dir}" if result.merged_dir else ""))
    return 0
