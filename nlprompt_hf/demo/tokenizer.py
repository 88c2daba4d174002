"""An in-memory CLIP tokenizer for the demo corpus, in OpenAI's byte-level vocabulary layout.

No installed package ships CLIP's 49,408-token BPE table, so the demo builds its own: the 256 byte
symbols, the same 256 with the end-of-word marker `</w>`, merges learned on the caption words until
every caption word is one token, then `<|startoftext|>` and `<|endoftext|>` as the two last ids.
End-of-text is therefore the largest id, as in OpenAI's CLIP, so transformers' pooling at the argmax
of the input ids also finds it. Arbitrary text still tokenizes, byte by byte.
"""

from __future__ import annotations

from collections import Counter

from .shapes import caption_vocabulary

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 24


def bytes_to_unicode() -> dict[int, str]:
    """OpenAI's reversible byte → printable character map (printable bytes map to themselves).

    The 188 printable Latin-1 bytes come first in id order; the 68 others (controls, space,
    no-break space, soft hyphen) are shifted to `chr(256 + k)` and come last (byte ids 188–255).
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = {b: chr(b) for b in printable}
    k = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + k)
            k += 1
    return chars


def control_byte_token_ids() -> dict[int, int]:
    """Token ids of the byte symbols for non-printable bytes (C0 controls, DEL, C1 controls).

    Caption text never produces these ids, which makes them safe placeholder ids for learned
    prompt context.

    Returns:
        `dict[int, int]`: byte value → token id of its (word-internal) byte symbol.
    """
    order = list(bytes_to_unicode())
    controls = list(range(0, 32)) + list(range(127, 160))
    return {b: order.index(b) for b in controls}


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Learn byte-pair merges until each word (with `</w>` on its last symbol) is a single token.

    Args:
        words (`list[str]`): lower-case words.

    Returns:
        `list[tuple[str, str]]`: merges in rank order.
    """
    byte_map = bytes_to_unicode()
    segmented = {}
    for word in dict.fromkeys(words):
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += "</w>"
        segmented[word] = symbols
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter()
        for symbols in segmented.values():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += 1
        if not pairs:
            return merges
        # Most frequent pair; ties broken by the pair itself so the merge order is deterministic.
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        joined = best[0] + best[1]
        for word, symbols in segmented.items():
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(joined)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            segmented[word] = out


def build_demo_tokenizer(words: list[str] | None = None, model_max_length: int = MODEL_MAX_LENGTH):
    """Build the demo `CLIPTokenizer` in memory.

    Args:
        words (`list[str]`, *optional*):
            Words that must each be one token. Defaults to every word of the demo captions and the
            zero-shot prompt (`shapes.caption_vocabulary()`).
        model_max_length (`int`, *optional*, defaults to `24`):
            Maximum sequence length, start and end tokens included.

    Returns:
        `transformers.CLIPTokenizer`: set the text config's `bos_token_id`, `eos_token_id` and
        `pad_token_id` to this tokenizer's ids.

    Example:

    ```python
    >>> tokenizer = build_demo_tokenizer()
    >>> tokenizer.convert_ids_to_tokens(tokenizer("a red star.")["input_ids"])
    ['<|startoftext|>', 'a</w>', 'red</w>', 'star</w>', '.</w>', '<|endoftext|>']
    ```
    """
    from transformers import CLIPTokenizer

    words = caption_vocabulary() if words is None else list(words)
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    merges = learn_merges(words)
    vocab_list += [a + b for a, b in merges]
    vocab_list += [BOS_TOKEN, EOS_TOKEN]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    if len(vocab) != len(vocab_list):
        raise ValueError("Duplicate tokens in the demo vocabulary: a merge produced an existing symbol.")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    # BPE applies merges by rank, which can differ from the learning order on rare overlaps: check.
    for word in words:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(
                f"Word {word!r} tokenizes to {len(ids)} tokens, expected 1: the learned merges do not "
                "reproduce it; report this with the word list."
            )
    return tokenizer
