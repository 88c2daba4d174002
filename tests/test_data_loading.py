import csv
import json
import os

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

import nlprompt_hf.data.loading as loading
from nlprompt_hf.data import DATASET_CATALOG, clean_class_names, get_class_names, load_noisy_dataset
from tests.tiny_clip import make_images

CLASSES = ["sea_lake", "forest", "AnnualCrop"]


def write_images(root, rel_paths, labels, seed=0):
    for rel, image in zip(rel_paths, make_images(labels, seed=seed)):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path)


def test_imagefolder(tmp_path):
    labels = [c for c in range(3) for _ in range(4)]
    for split in ("train", "test"):
        write_images(tmp_path, [f"{split}/{CLASSES[c]}/{i}.png" for i, c in enumerate(labels)], labels)
    data = load_noisy_dataset(str(tmp_path))
    assert set(data) == {"train", "test"}
    assert data["train"].column_names == ["image", "label"]
    assert isinstance(data["train"].features["image"], Image)
    # imagefolder sorts class folders; underscores become spaces
    assert get_class_names(data) == ["AnnualCrop", "forest", "sea lake"]
    assert data["train"].num_rows == 12 and np.bincount(data["test"]["label"]).tolist() == [4, 4, 4]
    assert data["train"][0]["image"].size == (32, 32)


def test_csv_relative_paths_string_labels_and_stratified_split(tmp_path):
    labels = [c for c in range(3) for _ in range(10)]
    rels = [f"imgs/{i}.png" for i in range(len(labels))]
    write_images(tmp_path / "data", rels, labels)
    csv_path = tmp_path / "data" / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "cls", "extra"])
        writer.writerows([rel, CLASSES[c], "x"] for rel, c in zip(rels, labels))
    os.chdir(tmp_path)  # paths must resolve relative to the file, not to the working directory
    data = load_noisy_dataset(
        str(csv_path),
        image_column="path",
        label_column="cls",
        class_renames={"AnnualCrop": "Annual Crop Land"},
        test_size=0.2,
        seed=0,
    )
    assert get_class_names(data) == ["Annual Crop Land", "forest", "sea lake"]
    assert data["train"].column_names == ["image", "label"]
    assert np.bincount(data["test"]["label"]).tolist() == [2, 2, 2]  # stratified
    assert np.bincount(data["train"]["label"]).tolist() == [8, 8, 8]
    assert data["test"][0]["image"].mode == "RGB"
    again = load_noisy_dataset(str(csv_path), image_column="path", label_column="cls", test_size=0.2, seed=0)
    other = load_noisy_dataset(str(csv_path), image_column="path", label_column="cls", test_size=0.2, seed=1)

    def paths(ds):
        return [cell["path"] for cell in ds.cast_column("image", Image(decode=False))["image"]]

    assert all(os.path.isabs(p) and p.startswith(str(tmp_path / "data")) for p in paths(again["test"]))
    assert paths(again["test"]) == paths(data["test"])  # same seed, same split
    assert paths(other["test"]) != paths(again["test"])  # another seed, another split


def test_jsonl_int_labels_with_class_names_json(tmp_path):
    labels = [0, 1, 0, 1, 0, 1]
    rels = [f"{i}.png" for i in range(6)]
    write_images(tmp_path, rels, labels)
    with open(tmp_path / "train.jsonl", "w") as f:
        for rel, y in zip(rels, labels):
            f.write(json.dumps({"file": rel, "y": y}) + "\n")
    with open(tmp_path / "test.jsonl", "w") as f:
        f.write(json.dumps({"file": rels[0], "y": 0}) + "\n")
    (tmp_path / "names.json").write_text(json.dumps({"0": "golden_retriever", "1": "tabby cat"}))
    data = load_noisy_dataset(
        {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")},
        image_column="file",
        label_column="y",
        class_names=str(tmp_path / "names.json"),
    )
    assert get_class_names(data) == ["golden retriever", "tabby cat"]
    assert data["train"]["label"] == labels and data["test"].num_rows == 1


def test_local_parquet_dir_through_load_dataset_with_column_mapping(tmp_path):
    features = Features({"img": Image(), "target": ClassLabel(names=CLASSES), "id": Value("int64")})
    for split, seed in (("train", 0), ("test", 1)):
        labels = [0, 1, 2] * 3
        ds = Dataset.from_dict(
            {"img": make_images(labels, seed=seed), "target": labels, "id": list(range(9))}, features=features
        )
        ds.to_parquet(str(tmp_path / f"{split}.parquet"))
    data = load_noisy_dataset(str(tmp_path), image_column="img", label_column="target")
    assert data["train"].column_names == ["image", "label"]
    assert get_class_names(data["test"]) == ["sea lake", "forest", "AnnualCrop"]
    assert data["test"]["label"] == [0, 1, 2] * 3


def test_save_to_disk_and_in_memory_sources(tmp_path, tiny_image_dataset):
    tiny_image_dataset.save_to_disk(str(tmp_path / "saved"))
    from_disk = load_noisy_dataset(str(tmp_path / "saved"))
    in_memory = load_noisy_dataset(tiny_image_dataset)
    assert (
        get_class_names(from_disk)
        == get_class_names(in_memory)
        == ["red square", "green circle", "blue bar", "yellow dot"]
    )
    assert from_disk["train"]["label"] == tiny_image_dataset["train"]["label"]


def test_catalog_entry_goes_through_load_dataset(monkeypatch):
    """The Hub path: `load_noisy_dataset("eurosat")` calls `load_dataset(<hub id>)` and applies the entry."""
    names = list(DATASET_CATALOG["eurosat"]["class_renames"])
    features = Features({"image": Image(), "labels": ClassLabel(names=names)})
    fake = DatasetDict(
        {
            s: Dataset.from_dict(
                {"image": make_images(range(10), 0), "labels": list(range(10))}, features=features
            )
            for s in ("train", "validation", "test")
        }
    )
    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name))
        return fake

    monkeypatch.setattr(loading, "load_dataset", fake_load_dataset)
    data = load_noisy_dataset("eurosat")
    assert calls == [("Honaker/eurosat_dataset", None)]
    assert get_class_names(data)[0] == "Annual Crop Land" and get_class_names(data)[-1] == "Sea or Lake"
    assert data["train"].column_names == ["image", "label"]


def test_catalog_exclusions_and_name_styles(monkeypatch):
    names = ["accordion", "faces", "faces_easy", "leopards"]
    features = Features({"image": Image(), "label": ClassLabel(names=names)})
    labels = [0, 1, 2, 3] * 3
    fake = DatasetDict(
        {"train": Dataset.from_dict({"image": make_images(labels, 0), "label": labels}, features=features)}
    )
    monkeypatch.setattr(loading, "load_dataset", lambda *a, **k: fake)
    data = load_noisy_dataset("caltech101", test_size=1 / 3)
    assert get_class_names(data) == ["accordion", "face", "leopard"]  # faces_easy dropped, CoOp's renames
    assert sorted(list(data["train"]["label"]) + list(data["test"]["label"])) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert clean_class_names(["ApplyEyeMakeup"], style="split_camel_case") == ["Apply Eye Makeup"]
    assert clean_class_names(["Tesla Model S Sedan 2012"], style="year_first") == ["2012 Tesla Model S Sedan"]
    assert clean_class_names(["Abyssinian", "american_bulldog"], style="lower") == [
        "abyssinian",
        "american bulldog",
    ]


def test_catalog_entries_are_complete():
    required = {
        "hub_id",
        "image_column",
        "label_column",
        "train_split",
        "test_split",
        "class_renames",
        "verified",
        "source",
    }
    for short in (
        "caltech101",
        "dtd",
        "eurosat",
        "flowers102",
        "oxford_pets",
        "stanford_cars",
        "ucf101",
        "food101",
        "food101n",
    ):
        assert required <= set(DATASET_CATALOG[short]), short
    with pytest.raises(ValueError, match="no Hub copy.*local path"):
        load_noisy_dataset("food101n")


# --- bad input --------------------------------------------------------------------------------------------------


def small(labels=(0, 1, 0, 1), features=None, **columns):
    features = features or Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    data = {"image": make_images(list(labels), 0), "label": list(labels)}
    data.update(columns)
    return Dataset.from_dict(data, features=features)


def test_missing_image_column():
    with pytest.raises(
        ValueError, match=r"image column named 'picture'.*\['image', 'label'\].*image_column="
    ):
        load_noisy_dataset(small(), image_column="picture")


def test_missing_label_column():
    with pytest.raises(
        ValueError, match=r"label column named 'fine_label'.*\['image', 'label'\].*label_column="
    ):
        load_noisy_dataset(small(), label_column="fine_label")


def test_class_name_count_mismatch():
    with pytest.raises(ValueError, match=r"label column has 2 classes but 3 class names"):
        load_noisy_dataset(small(), class_names=["a", "b", "c"])


def test_duplicate_class_names():
    with pytest.raises(ValueError, match=r"distinct class names.*'sea_lake'.*'sea lake'"):
        load_noisy_dataset(small(), class_names=["sea_lake", "sea lake"])


def test_int_label_outside_range():
    features = Features({"image": Image(), "label": Value("int64")})
    with pytest.raises(ValueError, match=r"labels in \[0, 2\).*label 2"):
        load_noisy_dataset(small(labels=(0, 1, 2, 1), features=features), class_names=["a", "b"])


def test_int_labels_need_names():
    features = Features({"image": Image(), "label": Value("int64")})
    with pytest.raises(ValueError, match="class_names="):
        load_noisy_dataset(small(features=features))


def test_unknown_string_label():
    features = Features({"image": Image(), "label": Value("string")})
    ds = Dataset.from_dict({"image": make_images([0, 1], 0), "label": ["cat", "bird"]}, features=features)
    with pytest.raises(ValueError, match=r"one of the class names.*found \['bird'\]"):
        load_noisy_dataset(ds, class_names=["cat", "dog"])


def test_missing_split():
    with pytest.raises(ValueError, match=r"split named 'training'.*\['train', 'test'\].*train_split="):
        load_noisy_dataset(DatasetDict({"train": small(), "test": small()}), train_split="training")
