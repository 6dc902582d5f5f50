"""The fixed cost before the first row is scored: what is NOT imported (never timings; those are in
benchmarks/startup.py), and the fast weight loader (audit.fastload) that gives the model from_pretrained gives."""

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "pandas", "scipy", "sklearn", "shap", "evidently", "fairlearn", "numba",
         "matplotlib", "jinja2", "pyarrow", "tokenizers", "safetensors")

_SPY = """
import json, sys
from pathlib import Path
HEAVY = {heavy!r}
import audit.runner as R

def spy(*args, **kwargs):
    print("MODULES " + json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(HEAVY))), flush=True)
    raise SystemExit(0)

R.score_all = spy
R.run_audit(sys.argv[1], "fin", progress=False, report_root=Path(sys.argv[2]))
"""


def _modules(code: str, *args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    line = next(x for x in r.stdout.splitlines() if x.startswith("MODULES "))
    return json.loads(line[len("MODULES "):])


def test_listing_the_checks_imports_no_heavy_library():
    code = ("import atexit, json, sys\n"
            f"HEAVY = {HEAVY!r}\n"
            "atexit.register(lambda: print('MODULES ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
            "& set(HEAVY))), flush=True))\n"
            "from audit.cli import cli\n"
            "cli(['checks'])\n")
    assert _modules(code) == []


def test_before_the_first_row_is_scored_only_the_model_and_the_data_are_imported(tiny_model, tmp_path):
    """The fin policy rules every family; none of their libraries (shap, evidently, fairlearn, scikit-learn,
    numba, matplotlib) is imported before scoring starts: each family imports its own when its checks run."""
    got = set(_modules(_SPY.format(heavy=HEAVY), str(tiny_model), str(tmp_path / "reports")))
    assert {"torch", "transformers", "pandas"} <= got  # the model and the data: what scoring needs
    for lib in ("shap", "evidently", "fairlearn", "sklearn", "numba", "matplotlib"):
        assert lib not in got, lib
    # (jinja2 and scipy are imported by transformers itself: its chat templates and its detection losses)


def test_fast_load_gives_the_model_from_pretrained_gives(tiny_model):
    import torch
    from transformers import AutoModelForSequenceClassification

    from audit.fastload import load_classifier
    from audit.model import open_bundle

    b = open_bundle(tiny_model)
    fast = load_classifier(b.path, b.weights)
    assert fast is not None
    ref = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), local_files_only=True,
                                                            use_safetensors=True)
    sa, sb = fast.state_dict(), ref.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k
    buffers = dict(ref.named_buffers())
    for k, v in fast.named_buffers():  # non-persistent buffers (BERT's position ids) are built, not left empty
        assert v.device.type == "cpu" and torch.equal(v, buffers[k]), k
    assert all(p.device.type == "cpu" for p in fast.parameters())
    fast.eval()
    ref.eval()
    ids = torch.randint(5, 40, (4, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.inference_mode():
        assert torch.equal(fast(input_ids=ids, attention_mask=mask).logits, ref(input_ids=ids, attention_mask=mask).logits)
    assert fast.config._attn_implementation == ref.config._attn_implementation
    loaded = b.load()
    assert type(loaded.model) is type(fast)
    with torch.inference_mode():
        assert torch.equal(loaded.model(input_ids=ids, attention_mask=mask).logits,
                           ref(input_ids=ids, attention_mask=mask).logits)


@pytest.mark.parametrize("change", ["extra tensor", "missing tensor", "wrong shape", "fp16"])
def test_fast_load_falls_back_and_the_safety_checks_still_refuse(tiny_model, tmp_path, change):
    """Whatever the fast loader is unsure of goes to from_pretrained, and audit.model's checks refuse as before
    (a half-loaded model is never audited); a dtype other than fp32 is loaded by from_pretrained's rules."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from audit.errors import ModelError
    from audit.fastload import load_classifier
    from audit.model import open_bundle

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    state = load_file(str(folder / "model.safetensors"))
    name = "classifier.weight"
    if change == "extra tensor":
        state["classifier.extra"] = torch.zeros(3)
    elif change == "missing tensor":
        del state[name]
    elif change == "wrong shape":
        state[name] = torch.zeros(state[name].shape[0], state[name].shape[1] + 1)
    else:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    b = open_bundle(folder)
    assert load_classifier(b.path, b.weights) is None
    if change == "fp16":
        assert b.load().model is not None  # from_pretrained loads it, as it did before the fast loader
        return
    with pytest.raises(ModelError, match="refusing to audit|cannot load model"):
        b.load()
