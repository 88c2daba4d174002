"""Nothing nlprompt-hf loads can execute code: adapters, checkpoints and caches are safetensors / JSON / Arrow only,
and `trust_remote_code` is off unless the user opts in (issue 6, item 5; the audit is in docs/security.md)."""

import ast
import os
import pathlib
import pickle

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, CLIPModel

import nlprompt_hf
from nlprompt_hf.data import compute_image_features
from nlprompt_hf.prompt_adapter import NLPromptModel

PACKAGE = pathlib.Path(nlprompt_hf.__file__).parent
NAMES = ["red square", "green circle", "blue bar", "yellow dot"]


class _Payload:
    """Unpickling this touches `marker`: proof that a pickle was loaded (and that it could have run anything)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _plant(path, marker):
    with open(path, "wb") as f:
        pickle.dump(_Payload(marker), f)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling during the test fails it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


# ---------------------------------------------------------------------------------------------- feature cache


def test_pickle_planted_in_the_feature_cache_is_never_loaded(tiny_clip_dir, tiny_image_dataset, tmp_path, monkeypatch):
    clip = CLIPModel.from_pretrained(tiny_clip_dir)
    processor = AutoImageProcessor.from_pretrained(tiny_clip_dir, backend="pil")
    train = tiny_image_dataset["train"]
    cache = tmp_path / "cache"
    reference, info = compute_image_features(clip, processor, train, cache_dir=cache, progress=False, return_info=True)
    marker = tmp_path / "pwned"
    # next to the entry, under every name a loader might try, and *as* the entry itself
    stem = pathlib.Path(info.path).with_suffix("")
    for suffix in (".pt", ".pth", ".bin", ".pkl", ".npy"):
        _plant(str(stem) + suffix, marker)
    _plant(info.path, marker)

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    again, info2 = compute_image_features(clip, processor, train, cache_dir=cache, progress=False, return_info=True)
    assert not marker.exists()
    # the planted file was treated as a miss: recomputed, identical, and the entry rewritten as safetensors
    assert not info2.hit and info2.path == info.path
    assert torch.equal(again, reference)
    assert torch.equal(load_file(info.path)["features"], reference)
    _, info3 = compute_image_features(clip, processor, train, cache_dir=cache, progress=False, return_info=True)
    assert info3.hit


# ---------------------------------------------------------------------------------------------- adapters


def _saved_adapter(clip_dir, folder):
    model = NLPromptModel.from_base(clip_dir, NAMES, n_ctx=4)
    with torch.no_grad():
        model.context_parameter.normal_()
    model.save_pretrained(folder)
    return model


def test_local_adapter_with_only_pickle_weights_is_refused(tiny_clip_dir, tmp_path, no_unpickling):
    # (the same with a torch.save file is `test_prompt_adapter.py::test_pickle_adapter_is_refused`)
    _saved_adapter(tiny_clip_dir, tmp_path)
    os.remove(tmp_path / "adapter_model.safetensors")
    marker = tmp_path / "pwned"
    _plant(tmp_path / "adapter_model.bin", marker)
    with pytest.raises(ValueError, match=r"Refusing to load 'adapter_model.bin'.*Expected 'adapter_model.safetensors'"):
        NLPromptModel.from_pretrained(tmp_path)
    assert not marker.exists()


def test_local_adapter_without_weights_is_a_clear_error(tiny_clip_dir, tmp_path):
    _saved_adapter(tiny_clip_dir, tmp_path)
    os.remove(tmp_path / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=r"has no adapter_model.safetensors.*save_pretrained"):
        NLPromptModel.from_pretrained(tmp_path)


def _fake_hub(monkeypatch, repo_dir):
    """`hf_hub_download` served from a local folder (no network): a missing file is an EntryNotFoundError."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    asked = []

    def download(repo_id, filename, **kwargs):
        asked.append(filename)
        path = repo_dir / filename
        if not path.exists():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return asked


def test_hub_adapter_is_loaded_from_safetensors(tiny_clip_dir, tmp_path, monkeypatch, no_unpickling):
    repo = tmp_path / "hub" / "me--prompts"
    model = _saved_adapter(tiny_clip_dir, repo)
    _plant(repo / "adapter_model.bin", tmp_path / "pwned")  # a pickle next to it is ignored
    asked = _fake_hub(monkeypatch, repo)
    reloaded = NLPromptModel.from_pretrained("me/prompts")
    assert "adapter_model.bin" not in asked
    assert torch.equal(reloaded.context_parameter, model.context_parameter)
    assert not (tmp_path / "pwned").exists()


def test_hub_adapter_with_only_pickle_weights_is_refused(tiny_clip_dir, tmp_path, monkeypatch, no_unpickling):
    repo = tmp_path / "hub" / "me--prompts"
    _saved_adapter(tiny_clip_dir, repo)
    os.remove(repo / "adapter_model.safetensors")
    _plant(repo / "adapter_model.bin", tmp_path / "pwned")
    _fake_hub(monkeypatch, repo)
    with pytest.raises(ValueError, match=r"'me/prompts' has no 'adapter_model.safetensors' \(pickle-based"):
        NLPromptModel.from_pretrained("me/prompts")
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------------------------- checkpoints


def test_resume_from_a_checkpoint_with_only_pytorch_model_bin_is_refused(tiny_clip_dir, tmp_path, no_unpickling):
    from nlprompt_hf import NLPromptConfig, NLPromptTrainer
    from tests.tiny_clip import make_image_dataset

    train = make_image_dataset(n_per_class=2, num_classes=4)["train"]
    args = NLPromptConfig(output_dir=str(tmp_path / "out"), num_train_epochs=1, n_ctx=4, use_cpu=True,
                          disable_tqdm=True, feature_cache_dir=str(tmp_path / "cache"), seed=0)
    model = NLPromptModel.from_base(tiny_clip_dir, NAMES, **args.prompt_kwargs())
    checkpoint = tmp_path / "out" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    marker = tmp_path / "pwned"
    _plant(checkpoint / "pytorch_model.bin", marker)
    trainer = NLPromptTrainer(model=model, args=args, train_dataset=train)
    with pytest.raises(ValueError, match=r"Refusing to load 'pytorch_model.bin'.*adapter_model.safetensors"):
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- trust_remote_code


def test_trust_remote_code_is_off_by_default_and_an_explicit_flag(tiny_clip_dir, tmp_path, monkeypatch):
    import inspect

    from nlprompt_hf import arguments
    from nlprompt_hf.cli import make_parser

    for fn in (NLPromptModel.from_base, NLPromptModel.from_pretrained):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False
    for cls in (arguments.ModelArguments, arguments.AdapterArguments, arguments.AuditModelArguments):
        assert cls.__dataclass_fields__["trust_remote_code"].default is False
    parser = make_parser().commands["zero-shot"]
    model_args, *_ = parser.parse_args_and_config(["--model_name_or_path", "m", "--dataset_name_or_path", "d"])
    assert model_args.trust_remote_code is False
    model_args, *_ = parser.parse_args_and_config(
        ["--model_name_or_path", "m", "--dataset_name_or_path", "d", "--trust_remote_code", "true"]
    )
    assert model_args.trust_remote_code is True
    # what reaches transformers when the user says nothing
    seen = []
    original = CLIPModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(CLIPModel, "from_pretrained", classmethod(spy))
    _saved_adapter(tiny_clip_dir, tmp_path)
    NLPromptModel.from_pretrained(tmp_path)
    assert seen and all(value is False for value in seen)


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            yield node, owner, name


def test_package_source_has_no_unsafe_loader():
    """The grep audit of docs/security.md, kept true: no pickle, no unsafe torch.load / yaml.load, no eval/exec,
    and `trust_remote_code` is only ever forwarded, never set to True."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal", "shelve") for n in names):
                    problems.append(f"{where}:{node.lineno} imports a pickle-like module")
        for node, owner, name in _calls(tree):
            keywords = {k.arg: k.value for k in node.keywords}
            if owner == "torch" and name == "load":
                wo = keywords.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    problems.append(f"{where}:{node.lineno} torch.load without weights_only=True")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                problems.append(f"{where}:{node.lineno} yaml.{name} (use yaml.safe_load)")
            if owner == "" and name in ("eval", "exec"):
                problems.append(f"{where}:{node.lineno} {name}()")
            if owner in ("np", "numpy") and name == "load":
                ap = keywords.get("allow_pickle")
                if not (isinstance(ap, ast.Constant) and ap.value is False):
                    problems.append(f"{where}:{node.lineno} np.load without allow_pickle=False")
            trc = keywords.get("trust_remote_code")
            if isinstance(trc, ast.Constant) and trc.value is True:
                problems.append(f"{where}:{node.lineno} trust_remote_code=True")
    assert problems == []
