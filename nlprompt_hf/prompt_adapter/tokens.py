"""Token-level plumbing of the prompt: which vocabulary ids carry the context, and the prompt's token ids.

The learned context lives in the embedding rows of *existing* vocabulary ids (placeholders) rather than in new
tokens: the openai CLIP checkpoints pool the text at the argmax of the input ids (their config carries
`eos_token_id: 2`), so an id added past the end-of-text token would be pooled instead of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .config import PromptAdapterConfig


def _byte_symbols() -> dict[str, int]:
    """Unicode symbol -> byte, in the layout of byte-level BPE vocabularies (GPT-2, CLIP)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {chr(b): b for b in printable}
    shifted = [b for b in range(256) if b not in table.values()]
    table.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return table


_SYMBOL_TO_BYTE = _byte_symbols()
# Bytes that never survive CLIP's text cleaning (control characters, whitespace, soft hyphen): their byte
# symbols are never produced when ordinary text is tokenized, so their embedding rows are free to reuse.
_UNPRINTABLE = {b for b in range(256) if b < 33 or 127 <= b < 161 or b == 173}


def _is_unprintable_symbol(token: str) -> bool:
    core = token[: -len("</w>")] if token.endswith("</w>") else token
    return bool(core) and all(_SYMBOL_TO_BYTE.get(ch, -1) in _UNPRINTABLE for ch in core)


def text_token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` without start/end tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def reserved_token_ids(tokenizer, config: PromptAdapterConfig) -> dict[int, str]:
    """Ids that must keep their pretrained embedding, mapped to where they occur (for error messages)."""
    reserved: dict[int, str] = {}
    for name in config.class_names:
        for tid in text_token_ids(tokenizer, name):
            reserved.setdefault(tid, f"class name {name!r}")
    pieces = [p for p in config.zero_shot_template.split("{}") if p.strip()] + ["."]
    for piece in pieces:
        for tid in text_token_ids(tokenizer, piece):
            reserved.setdefault(tid, f"zero-shot template {config.zero_shot_template!r}")
    if config.ctx_init != "random":
        for tid in text_token_ids(tokenizer, config.ctx_init):
            reserved.setdefault(tid, f"ctx_init {config.ctx_init!r}")
    for tid in tokenizer.all_special_ids:
        reserved.setdefault(tid, "the special tokens")
    return reserved


def select_placeholder_ids(
    tokenizer, count: int, reserved: Iterable[int], max_id: int | None = None
) -> list[int]:
    """Pick `count` vocabulary ids to carry learned context.

    Unprintable byte symbols come first (ordinary text never produces them), then the rarest merges, i.e. the
    highest ids of the BPE table. `max_id` (exclusive) keeps every placeholder below the end-of-text id when
    the checkpoint pools at the argmax of the ids.
    """
    reserved = set(reserved)
    vocab = tokenizer.get_vocab()
    limit = max_id if max_id is not None else max(vocab.values()) + 1
    first = sorted(i for t, i in vocab.items() if _is_unprintable_symbol(t) and i < limit and i not in reserved)
    chosen = first[:count]
    if len(chosen) < count:
        taken = set(chosen) | reserved
        rest = sorted((i for i in vocab.values() if i < limit and i not in taken), reverse=True)
        chosen += rest[: count - len(chosen)]
    if len(chosen) < count:
        raise ValueError(
            f"Need {count} placeholder token ids for the learned context but the vocabulary only has {len(chosen)} "
            "free ids. Use shared context (class_specific=False) or a smaller n_ctx."
        )
    return chosen


def check_placeholder_ids(
    tokenizer, placeholder_ids: Sequence[int], reserved: dict[int, str], max_id: int | None
) -> None:
    """Raise if a placeholder id would also be used by a class name, the template, a special token."""
    vocab_size = len(tokenizer)
    if len(set(placeholder_ids)) != len(placeholder_ids):
        raise ValueError(f"placeholder_token_ids contains duplicates: {list(placeholder_ids)}. Give distinct ids.")
    for tid in placeholder_ids:
        if not 0 <= tid < vocab_size:
            raise ValueError(f"Placeholder token id {tid} is outside the vocabulary [0, {vocab_size}).")
        if tid in reserved:
            token = tokenizer.convert_ids_to_tokens(tid)
            raise ValueError(
                f"Placeholder token id {tid} ({token!r}) collides with a token of {reserved[tid]}: its embedding "
                "would be overwritten by the learned context. Leave placeholder_token_ids unset to let the library "
                "choose free ids, or pick ids that occur in no class name."
            )
        if max_id is not None and tid >= max_id:
            raise ValueError(
                f"Placeholder token id {tid} is not below the end-of-text id {max_id}: this checkpoint pools the text "
                "at the argmax of the input ids (`eos_token_id: 2` in its config), so the placeholder would be "
                "pooled instead of end-of-text. Choose ids smaller than the end-of-text id."
            )


def build_prompt_ids(
    tokenizer, config: PromptAdapterConfig, max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids (C, L) and attention mask of every class prompt.

    Layout (CoOp): `end` -> `[SOS] ctx name . [EOS]`, `middle` -> `[SOS] ctx[:M/2] name ctx[M/2:] . [EOS]`,
    `front` -> `[SOS] name ctx . [EOS]`. Padded with the pad id after end-of-text.
    """
    ids = config.placeholder_token_ids
    n = config.n_ctx
    period = text_token_ids(tokenizer, ".")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows = []
    for c, name in enumerate(config.class_names):
        ctx = ids[c * n : (c + 1) * n] if config.class_specific else ids[:n]
        name_ids = text_token_ids(tokenizer, name)
        if config.class_position == "end":
            body = ctx + name_ids
        elif config.class_position == "front":
            body = name_ids + ctx
        else:
            half = n // 2
            body = ctx[:half] + name_ids + ctx[half:]
        row = [bos] + body + period + [eos]
        if len(row) > max_length:
            raise ValueError(
                f"The prompt for class {name!r} is {len(row)} tokens long but the text encoder takes at most "
                f"{max_length}. Use a smaller n_ctx or a shorter class name."
            )
        rows.append(row)
    length = max(len(r) for r in rows)
    input_ids = [r + [pad] * (length - len(r)) for r in rows]
    attention_mask = [[1] * len(r) + [0] * (length - len(r)) for r in rows]
    return input_ids, attention_mask
