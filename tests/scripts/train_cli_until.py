"""`nlprompt-hf train`, exactly as the console script runs it, with an optional point where it stops and waits.

Usage: `python train_cli_until.py [--hang-at step:N | save:N] -- <nlprompt-hf train arguments>`.

With `--hang-at step:N` the run writes `<output_dir>.hang` and then blocks at the start of optimisation step N (after
the checkpoints before it were written); with `--hang-at save:N` it blocks while writing `checkpoint-N`, after the
adapter, optimizer and RNG files but before `trainer_state.json`. The interruption test SIGKILLs it there: a
deterministic place to be killed, without depending on how fast the machine trains. Without `--hang-at` it is
`nlprompt-hf train`.
"""

import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))


def _hang(marker: str) -> None:
    with open(marker, "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    while True:  # until SIGKILL
        time.sleep(1)


def main(argv: list[str]) -> int:
    hang_at = None
    if argv and argv[0] == "--hang-at":
        hang_at, argv = argv[1], argv[2:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    from nlprompt_hf.cli import main as cli_main

    if hang_at is not None:
        from transformers import TrainerCallback
        from transformers.trainer_callback import TrainerState

        from nlprompt_hf.trainer import NLPromptTrainer

        where, step = hang_at.split(":")
        step = int(step)
        output_dir = argv[argv.index("--output_dir") + 1]
        marker = os.path.normpath(output_dir) + ".hang"

        if where == "step":

            class HangAtStep(TrainerCallback):
                def on_step_begin(self, args, state, control, **kwargs):
                    if state.global_step == step - 1:  # global_step counts finished steps
                        _hang(marker)

            original_init = NLPromptTrainer.__init__

            def init(self, *args, **kwargs):
                original_init(self, *args, **kwargs)
                self.add_callback(HangAtStep())

            NLPromptTrainer.__init__ = init
        else:
            original_save = TrainerState.save_to_json

            def save_to_json(self, json_path):
                if os.path.basename(os.path.dirname(json_path)) == f"checkpoint-{step}":
                    _hang(marker)
                return original_save(self, json_path)

            TrainerState.save_to_json = save_to_json
    return cli_main(["train", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
