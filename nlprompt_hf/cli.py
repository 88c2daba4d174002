"""`nlprompt-hf`: the command line. It parses and calls `nlprompt_hf.pipeline`, nothing more.

```
nlprompt-hf train [--config recipe.yaml] [--option value ...]   # no arguments at all: the offline demo
nlprompt-hf evaluate --adapter_name_or_path DIR --dataset_name_or_path DATA
nlprompt-hf zero-shot --model_name_or_path CLIP --dataset_name_or_path DATA
nlprompt-hf predict --adapter_name_or_path DIR --images a.png folder/ --output_file preds.csv
nlprompt-hf audit --adapter_name_or_path DIR --dataset_name_or_path DATA --output_dir audit
```

Every option comes from a dataclass field (`nlprompt_hf.arguments`, `NLPromptConfig`); `--config recipe.yaml`
supplies defaults whose keys are those field names, and flags override it. `nlprompt-hf <command> --help` lists
every option with its default.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main", "make_parser"]

# command -> one-line help
COMMANDS = {
    "train": "Train prompts on (noisy) labels; no arguments at all runs the offline demo.",
    "evaluate": "Top-1 and per-class accuracy of a trained adapter on a dataset split.",
    "zero-shot": "Top-1 and per-class accuracy of CLIP with a hand-written template (the baseline).",
    "predict": "Labels and probabilities of image files or folders, written as CSV or JSON.",
    "audit": "Rank the samples whose given label PromptOT rejects (CSV + datasets columns).",
}


def _dataclasses(command: str) -> tuple:
    from . import arguments as a
    from .config import NLPromptConfig

    return {
        "train": (a.ModelArguments, a.DataArguments, a.NoiseArguments, a.TrainRunArguments, NLPromptConfig),
        "evaluate": (a.AdapterArguments, a.DataArguments, a.EvaluateArguments),
        "zero-shot": (a.ModelArguments, a.DataArguments, a.ZeroShotArguments),
        "predict": (a.AdapterArguments, a.PredictArguments),
        "audit": (a.AuditModelArguments, a.DataArguments, a.AuditDataArguments, a.AuditArguments),
    }[command]


def make_parser() -> argparse.ArgumentParser:
    """The `nlprompt-hf` parser: one `NLPromptParser` sub-command per job, generated from its dataclasses.

    Returns:
        `argparse.ArgumentParser`: the top-level parser; `parser.commands[name]` is the parser of each command.

    Example:

    ```python
    >>> parser = make_parser()
    >>> model_args, data_args, eval_args = parser.commands["zero-shot"].parse_args_and_config(
    ...     ["--model_name_or_path", "demo", "--dataset_name_or_path", "demo"]
    ... )
    ```
    """
    from .arguments import NLPromptParser

    parser = argparse.ArgumentParser(
        prog="nlprompt-hf",
        description="Noisy-label prompt learning (NLPrompt, CVPR 2025) for Hugging Face CLIP models. "
        "`nlprompt-hf train` with no arguments runs the offline demo.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=NLPromptParser)
    parser.commands = {
        name: subparsers.add_parser(name, help=text, description=text, dataclass_types=_dataclasses(name))
        for name, text in COMMANDS.items()
    }
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nlprompt-hf` console script.

    Args:
        argv (`Sequence[str]`, *optional*): the arguments after the program name (default `sys.argv[1:]`).

    Returns:
        `int`: the exit status (0 on success).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["train"]:
        return _run_demo()
    parser = make_parser()
    if not argv or argv[0] not in parser.commands:
        parser.parse_args(argv)  # prints help / the error for an unknown command
        parser.print_help()
        return 2
    command, rest = argv[0], argv[1:]
    from . import pipeline

    runner = {
        "train": pipeline.run_train,
        "evaluate": pipeline.run_evaluate,
        "zero-shot": pipeline.run_zero_shot,
        "predict": pipeline.run_predict,
        "audit": pipeline.run_audit,
    }[command]
    try:
        runner(*parser.commands[command].parse_args_and_config(rest))
    except ValueError as err:
        # input errors are written for the user (what was expected, what was found, how to fix): no traceback
        print(f"nlprompt-hf {command}: error: {err}", file=sys.stderr)
        return 1
    return 0


def _run_demo() -> int:
    """`nlprompt-hf train` with no arguments: the offline demo recipe shipped with the package."""
    from .arguments import load_recipe

    output_dir = load_recipe("demo")["output_dir"]
    print(
        "No arguments: running the offline demo (nlprompt_hf/recipes/demo.yaml): the shipped small CLIP on the "
        "generated shapes task, 16 shots per class, 50% symmetric label noise; NLPrompt vs CoOp (CE) vs zero-shot.\n"
        f"Same as `nlprompt-hf train --config demo`; the results go to ./{output_dir}/.\n"
    )
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        print(
            f"./{output_dir}/ already exists. Rerun with `nlprompt-hf train --config demo --overwrite_output_dir`, or "
            f"`--output_dir elsewhere`.",
            file=sys.stderr,
        )
        return 1
    return main(["train", "--config", "demo"])


if __name__ == "__main__":
    sys.exit(main())
