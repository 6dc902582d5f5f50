"""Shared fixtures: a tiny random BERT (seconds to build and train) and a synthetic credit-like data set."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

WORDS = ("applicant has a stable job and pays on time owns home rents often late missed payments "
         "savings none small large loan for car education business furniture years old "
         "male female foreign local worker yes no he she his her mr ms").split()


def make_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    good = rng.random(n) < 0.65
    rows = []
    for i in range(n):
        signal = "pays on time" if (good[i] ^ (rng.random() < 0.15)) else "often late"
        rows.append({
            "id": f"app-{i:04d}",
            "text": f"applicant {signal} has a {rng.choice(['stable', 'small'])} job loan for "
                    f"{rng.choice(['car', 'education', 'business'])}",
            "job": str(rng.choice(["stable job", "small business"])),
            "age": str(int(rng.integers(19, 70))),
            "sex": str(rng.choice(["male", "female"])),
            "label": "good" if good[i] else "bad",
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A random BERT (hidden 32, 2 layers) with a small word-level vocabulary, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS)), *[str(d) for d in range(10)],
             *list("abcdefghijklmnopqrstuvwxyz"), ".", ",", ":", "-", "'"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 names the argument `vocab` (4.x: `vocab_file`) and ignores the other one silently, which
    # left a 5-token vocabulary that read every word as [UNK]; pass both and check.
    tok = BertTokenizerFast(vocab=str(folder / "vocab.txt"), vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    assert tok.tokenize("he pays") == ["he", "pays"], "the tiny tokenizer lost its vocabulary"
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def credit_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "credit.csv"
    make_frame().to_csv(path, index=False)
    return path


def train_tiny(base: Path, data: Path, out: Path, positive_label: str) -> Path:
    """`audit train` of the tiny BERT on `data` (text, label, id, age binned at 25, sex): a few seconds."""
    from audit.manifest import ProtectedAttribute, TextRecipe
    from audit.train import TrainConfig, train

    cfg = TrainConfig(text=TextRecipe(column="text"), label_column="label", positive_label=positive_label,
                      protected_attributes={"age": ProtectedAttribute(column="age", bins=[25]),
                                            "sex": ProtectedAttribute(column="sex")},
                      id_column="id", base_model=str(base), epochs=6, batch_size=16, learning_rate=2e-3,
                      max_length=32, seed=0)
    train(data, out, cfg, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_base, credit_csv, tmp_path_factory) -> Path:
    """The tiny BERT fine-tuned on the synthetic data by `audit train` (a few seconds)."""
    return train_tiny(tiny_base, credit_csv, tmp_path_factory.mktemp("models") / "tiny", "good")


@pytest.fixture
def policy_file(tmp_path):
    """Write a policy from text and return its path."""

    def write(text: str, name: str = "policy.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write


MIN_POLICY = """\
policy: test
version: "1"
checks:
  performance.roc_auc: {min: 0.6, basis: point, refs: ["SR 11-7"]}
  performance.accuracy: {min: 0.5, severity: warn}
budget: {bootstrap: 200, seed: 0}
"""


CLASSES = ("approve", "refer", "decline")


def make_multiclass_frame(n: int = 450, seed: int = 1) -> pd.DataFrame:
    """Three outcomes (approve, refer, decline) that the words of each text signal, with 15% label noise."""
    rng = np.random.default_rng(seed)
    signal = {"approve": "pays on time owns home", "refer": "small savings rents",
              "decline": "often late missed payments"}
    rows = []
    for i in range(n):
        truth = str(rng.choice(CLASSES, p=[0.5, 0.3, 0.2]))
        shown = truth if rng.random() > 0.15 else str(rng.choice(CLASSES))
        rows.append({
            "id": f"mc-{i:04d}",
            "text": f"applicant {signal[shown]} loan for {rng.choice(['car', 'education', 'business'])}",
            "age": str(int(rng.integers(19, 70))),
            "sex": str(rng.choice(["male", "female"])),
            "label": truth,
        })
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def multiclass_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mcdata") / "outcomes.csv"
    make_multiclass_frame().to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_multiclass_model(tiny_base, multiclass_csv, tmp_path_factory) -> Path:
    """The tiny BERT fine-tuned by `audit train` on three outcomes; `approve` is the favourable label."""
    return train_tiny(tiny_base, multiclass_csv, tmp_path_factory.mktemp("models") / "tiny-3", "approve")
