"""Sequence classifiers other than BERT: DistilBERT, RoBERTa, DeBERTa-v2, ELECTRA and XLM-RoBERTa folders load,
score (the [CLS]-only fast path proven against the plain forward pass where it applies, the plain pass elsewhere),
explain and audit; the safety refusals hold for a non-BERT folder.

Each tiny model is random (hidden 32, 2 layers) with a tokenizer of its own family built offline: WordPiece for
BERT, DistilBERT and ELECTRA, byte-level BPE trained on a few sentences for RoBERTa, a hand-made Unigram
(sentencepiece-style) vocabulary for XLM-RoBERTa and DeBERTa-v2. Nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import WORDS, make_frame

ARCHS = ("bert", "distilbert", "electra", "roberta", "xlm-roberta", "deberta-v2")
FAST = {"bert", "electra", "roberta", "xlm-roberta"}  # the head reads position 0 of BERT-style layers
CLASSES = {"bert": "BertForSequenceClassification", "distilbert": "DistilBertForSequenceClassification",
           "electra": "ElectraForSequenceClassification", "roberta": "RobertaForSequenceClassification",
           "xlm-roberta": "XLMRobertaForSequenceClassification", "deberta-v2": "DebertaV2ForSequenceClassification"}
LABELS = {0: "bad", 1: "good"}
CHARS = [str(d) for d in range(10)] + list("abcdefghijklmnopqrstuvwxyz") + list(".,:-'")


def _wordpiece(cls, folder: Path):
    words = sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *CHARS]) + "\n")
    # transformers 5 names the argument `vocab`, 4.x `vocab_file` (see conftest.tiny_base)
    return cls(vocab=str(folder / "vocab.txt"), vocab_file=str(folder / "vocab.txt"), do_lower_case=True)


def _unigram(cls, specials):
    words = sorted(set(WORDS))
    vocab = ([(s, 0.0) for s in specials] + [("▁" + w, -2.0) for w in words] + [("▁", -3.0)]
             + [(c, -5.0) for c in CHARS] + [("▁" + c, -5.5) for c in CHARS])
    return cls(vocab=vocab)


def _bpe():
    import transformers as T
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" ".join(WORDS)] * 3 + [" ".join(make_frame(20)["text"])], trainer)
    model = json.loads(tok.to_str())["model"]
    return T.RobertaTokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]])


def build(arch: str, folder: Path) -> Path:
    """A random tiny `arch` classifier with its tokenizer and an audit-model.yaml, saved as safetensors."""
    import torch
    import transformers as T

    from audit.manifest import Manifest, ProtectedAttribute, TextRecipe

    folder.mkdir(parents=True, exist_ok=True)
    kw = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              max_position_embeddings=128, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
              initializer_range=0.2)  # wider than the default 0.02: scores that differ between texts
    if arch == "bert":
        tok, cfg, cls = _wordpiece(T.BertTokenizer, folder), T.BertConfig(**kw), T.BertForSequenceClassification
    elif arch == "distilbert":
        tok = _wordpiece(T.DistilBertTokenizer, folder)
        cfg = T.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128,
                                 num_labels=2, id2label=LABELS, label2id=kw["label2id"], initializer_range=0.2)
        cls = T.DistilBertForSequenceClassification
    elif arch == "electra":
        tok, cfg = _wordpiece(T.BertTokenizer, folder), T.ElectraConfig(embedding_size=16, **kw)
        cls = T.ElectraForSequenceClassification
    elif arch == "roberta":
        tok, cfg, cls = _bpe(), T.RobertaConfig(**kw), T.RobertaForSequenceClassification
    elif arch == "xlm-roberta":
        tok = _unigram(T.XLMRobertaTokenizer, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        cfg, cls = T.XLMRobertaConfig(**kw), T.XLMRobertaForSequenceClassification
    elif arch == "deberta-v2":
        tok = _unigram(T.DebertaV2Tokenizer, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
        cfg, cls = T.DebertaV2Config(**kw), T.DebertaV2ForSequenceClassification
    else:
        raise ValueError(arch)
    assert len(tok.tokenize("applicant pays on time")) <= 6, f"the tiny {arch} tokenizer lost its vocabulary"
    cfg.vocab_size = len(tok)
    cfg.pad_token_id = tok.pad_token_id
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cls(cfg).save_pretrained(str(folder), safe_serialization=True)
    for pickle in folder.glob("*.bin"):
        pickle.unlink()
    m = Manifest(name=f"tiny-{arch}", labels=["bad", "good"], positive_label="good", label_column="label",
                 text=TextRecipe(column="text"), id_column="id", max_length=64,
                 protected_attributes={"sex": ProtectedAttribute(column="sex")})
    (folder / "audit-model.yaml").write_text(m.to_yaml())
    return folder


@pytest.fixture(scope="session")
def arch_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archs")
    return {arch: build(arch, root / arch) for arch in ARCHS}


@pytest.fixture(scope="session")
def arch_eval(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arch-data") / "eval.csv"
    make_frame(60, seed=3).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("arch", ARCHS)
def test_loads_and_scores_as_the_plain_forward_pass(arch, arch_models, arch_eval):
    """Every architecture loads through the safe path and scores as transformers' own forward pass, one text at a
    time (no padding). Where the [CLS]-only last layer applies, the encoder's output has one position (the fast path
    ran) and scores equal the full pass within 1e-6; elsewhere the plain pass runs."""
    import pandas as pd
    import torch

    from audit.model import open_bundle
    from audit.scoring import cls_only_last_layer, score_texts

    b = open_bundle(arch_models[arch]).load()
    assert type(b.model).__name__ == CLASSES[arch]
    texts = pd.read_csv(arch_eval)["text"].tolist()[:24]
    texts = texts + [" ".join(t.split()[: 2 + i % 5]) for i, t in enumerate(texts)]  # short rows beside long
    fast_path = cls_only_last_layer(b.model)
    assert (fast_path is not None) == (arch in FAST)
    base = getattr(b.model, b.model.base_model_prefix)
    encoder = getattr(base, "encoder", None) or base.transformer
    widths = []
    hook = encoder.register_forward_hook(lambda mod, args, out: widths.append(out[0].shape[1]))
    got = score_texts(b.model, b.tokenizer, texts, max_length=64, positive_index=1, batch_size=16, progress=False)
    hook.remove()
    assert (set(widths) == {1}) == (arch in FAST), widths
    assert got.probs.shape == (len(texts), 2)
    with torch.inference_mode():
        ref = np.array([torch.softmax(b.model(**b.tokenizer(t, return_tensors="pt", truncation=True,
                                                                max_length=64)).logits, -1)[0].numpy()
                        for t in texts])
    assert np.abs(got.probs - ref).max() < 1e-6
    assert np.ptp(got.score) > 1e-2  # a random model still tells texts apart: the comparison is not of constants


@pytest.mark.parametrize("arch", ARCHS)
def test_audit_run_explains_each_architecture(arch, arch_models, arch_eval, tmp_path):
    """`audit run` on each architecture: performance and SHAP findings, explanations that add up to the model's
    log-odds, and word rankings made of the texts' words (no BPE 'Ġ' or sentencepiece '▁' marks, no special
    tokens)."""
    from audit.cli import cli

    pol = tmp_path / "p.yaml"
    pol.write_text("""\
policy: arch-test
version: "1"
checks:
  performance.roc_auc: {min: 0.0, basis: point}
  explainability.additivity_error: {max: 0.001, rows: 10, max_evals: 30, examples: 0}
  explainability.prohibited_terms_in_top_k: {max: 0, terms: [zebra], top_k: 5, min_stability: -1, rows: 10,
                                             max_evals: 30, examples: 0}
budget: {bootstrap: 50, seed: 0}
""")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(arch_models[arch]), "--policy", str(pol), "--data", str(arch_eval),
                                      "--out", str(out), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    r = json.loads((out / "result.json").read_text())
    assert {f["check_id"]: f["status"] for f in r["findings"]} == {
        "performance.roc_auc": "PASS", "explainability.additivity_error": "PASS",
        "explainability.prohibited_terms_in_top_k": "PASS"}
    add = r["measurements"]["explainability.additivity_error"]
    assert add["value"] < 1e-3 and add["details"]["rows_explained"] == 10
    vocabulary = {w for t in make_frame(60, seed=3)["text"] for w in t.split()}
    ranked = [w for w in r["measurements"]["explainability.prohibited_terms_in_top_k"]["details"]["top_k_words"]]
    assert ranked and set(ranked) <= vocabulary, ranked


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("arch", ["roberta", "deberta-v2"])
def test_safety_refusals_hold_for_other_architectures(arch, arch_models, arch_eval, tmp_path):
    """Pickle-only weights, auto_map in config.json or tokenizer_config.json, a corrupt safetensors header and
    weights that do not fit the architecture: each refused with one line, exit 2, on a non-BERT folder."""
    from audit.cli import cli

    pol = tmp_path / "p.yaml"
    pol.write_text("policy: t\nversion: '1'\nchecks:\n  performance.accuracy: {min: 0.0}\n")

    def refused(model: Path) -> str:
        out = tmp_path / "out"
        r = CliRunner().invoke(cli, ["run", str(model), "--policy", str(pol), "--data", str(arch_eval), "--out", str(out),
                                     "--no-progress"],
                               catch_exceptions=False)
        assert r.exit_code == 2 and not out.exists(), r.output
        lines = [s for s in r.output.splitlines() if s.strip()]
        assert len(lines) == 1 and "Traceback" not in r.output
        return lines[0]

    src = arch_models[arch]
    pickled = _copy(src, tmp_path / "pickled")
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    assert refused(pickled) == (f"error: {pickled}: weights only as pickle (pytorch_model.bin): refused, pickle files "
                                "can run code; convert them to safetensors")
    remote = _copy(src, tmp_path / "remote")
    cfg = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**cfg, "auto_map": {"AutoModel": "x.Model"}}))
    assert refused(remote) == (f"error: {remote / 'config.json'}: the model asks to run its own code (auto_map); "
                               "refused, remote code is never trusted")
    remote_tok = _copy(src, tmp_path / "remote-tok")
    tcfg = json.loads((remote_tok / "tokenizer_config.json").read_text())
    (remote_tok / "tokenizer_config.json").write_text(json.dumps({**tcfg, "auto_map": {"AutoTokenizer": ["x.T", None]}}))
    assert refused(remote_tok) == (f"error: {remote_tok / 'tokenizer_config.json'}: the tokenizer asks to run its own "
                                   "code (auto_map); refused, remote code is never trusted")
    corrupt = _copy(src, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes((10**9).to_bytes(8, "little") + b"{}")
    assert refused(corrupt).startswith(f"error: {corrupt / 'model.safetensors'}: corrupt safetensors file")
    other = _copy(src, tmp_path / "other-weights")  # weights of another architecture under this config
    shutil.copy(arch_models["bert" if arch != "bert" else "distilbert"] / "model.safetensors", other)
    line = refused(other)
    assert line.startswith(f"error: {other}: ") and "refusing to audit a model with randomly initialised" in line


def test_audit_train_on_a_roberta_base_then_audit(arch_models, tmp_path):
    """`audit train --base-model` with a RoBERTa folder (BPE tokenizer): the model folder keeps the architecture, the
    manifest records the base and its sha256, and `audit run` audits the held-out split."""
    import yaml

    from audit.cli import cli
    from audit.data import sha256_file

    base = tmp_path / "base"
    shutil.copytree(arch_models["roberta"], base)
    (base / "audit-model.yaml").unlink()
    data = tmp_path / "d.csv"
    make_frame(100, seed=4).to_csv(data, index=False)
    out = tmp_path / "model"
    r = CliRunner().invoke(cli, ["train", str(data), "--out", str(out), "--base-model", str(base), "--text-column",
                                 "text", "--label-column", "label", "--positive-label", "good", "--epochs", "1",
                                 "--max-length", "32", "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["model_type"] == "roberta"
    m = yaml.safe_load((out / "audit-model.yaml").read_text())
    assert m["base_model"]["sha256"] == sha256_file(base / "model.safetensors")
    pol = tmp_path / "p.yaml"
    pol.write_text("policy: t\nversion: '1'\nchecks:\n  performance.roc_auc: {min: 0.0}\nbudget: {bootstrap: 50}\n")
    r = CliRunner().invoke(cli, ["run", str(out), "--policy", str(pol), "--out", str(tmp_path / "run"),
                                 "--no-progress"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "run" / "result.json").read_text())
    assert doc["measurements"]["performance.roc_auc"]["n"] == m["data"]["split"]["eval_rows"]
