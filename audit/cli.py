"""The command line: the edge of the program.

Maps the verdict to the exit code (PASS 0, FAIL 1, INCONCLUSIVE 3) and every `AuditError` to one line on
stderr with exit code 2. Heavy libraries are imported inside the commands, so `audit --help` is fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from audit import __version__
from audit.errors import AuditError
from audit.trainsetup import build_train_config, parse_protected  # noqa: F401 (parse_protected: the CLI's name)

EXIT_USAGE = 2
EXIT_META = "audit.exit_code"  # ctx.meta key: the exit code a command will end with, once it is known
FORMATS = click.Choice(["text", "json", "md"])


def _stdout_to_devnull() -> None:
    """After a BrokenPipeError: point stdout at /dev/null, so the flush at interpreter exit has somewhere to go
    (Python's documentation, "Note on SIGPIPE", recommends exactly this)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout has no file descriptor (a test runner's capture): nothing will be flushed to a pipe


def _will_exit(code: int) -> None:
    """Record the exit code the running command ends with, before it prints (see the BrokenPipeError case)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().meta[EXIT_META] = code


def _echo_json(doc) -> None:
    import json

    click.echo(json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False, default=str))


class Finite(click.FloatRange):
    """A FloatRange that also refuses nan and inf (which every range comparison lets through)."""

    def convert(self, value, param, ctx):
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


# the ranges of the numeric options: a bad value is exit 2 naming the option, before anything loads
BATCH = click.IntRange(1, 4096)
MAX_LENGTH = click.IntRange(1, 8192)
EPOCHS = click.IntRange(1, 1000)
SEED = click.IntRange(0, 2**32 - 1)
POSITIVE = Finite(0, min_open=True)


class AuditGroup(click.Group):
    """Turns library errors into one line and exit 2; a traceback only with AUDIT_DEBUG=1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AuditError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo(_interrupted(), err=True)
            sys.exit(130)
        except BrokenPipeError:
            # the reader went away (`audit diff A B | head -1`): a normal end, not an error. The exit code is the
            # one the command had settled on (a run's verdict), so a gate behind `set -o pipefail` still sees it.
            _stdout_to_devnull()
            sys.exit(ctx.meta.get(EXIT_META, 0))
        except click.UsageError as exc:  # a bad flag or value: one line naming it, exit 2 (click prints three)
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if os.environ.get("AUDIT_DEBUG"):
                raise
            click.echo(f"error: internal error: {type(exc).__name__}: {exc} "
                       "(set AUDIT_DEBUG=1 for the traceback, and please report it)", err=True)
            sys.exit(EXIT_USAGE)


def _interrupted() -> str:
    """The truth about an interrupted command: whether it had published and recorded a run folder."""
    publish = sys.modules.get("audit.publish")
    done = list(getattr(publish, "PUBLISHED", []))
    if done:
        return f"interrupted after the run folder {done[-1]} was written and recorded in the ledger"
    return "interrupted: no run folder was published and no ledger entry written; earlier run folders are untouched"


@click.group(cls=AuditGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audit")
def cli() -> None:
    """Audit a text classifier against a policy: performance (and further check families), a verdict,
    an HTML report, JSON and JUnit for CI.

    \b
    Exit codes: 0 PASS, 1 FAIL, 2 could not run, 3 INCONCLUSIVE.
    """


def _quiet_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _manifest_from_flags(label_column, positive_label, text_column, template, labels, name, max_length):
    """A manifest for a model that `audit train` did not make, from flags (audit.api.manifest_from_flags)."""
    from audit.api import manifest_from_flags

    return manifest_from_flags(label_column, positive_label, text_column, template, labels, name, max_length)


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", required=True, help="Policy YAML file, or a bundled pack name (fin).")
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="Eval data (default: the manifest's held-out split).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder (default: reports/<model>-<time>/).")
@click.option("--current", "current_path", type=click.Path(path_type=Path),
              help="Current data (e.g. recent production inputs; labels optional) for the drift checks.")
@click.option("--strict", is_flag=True, help="Warnings fail the gate (exit 1).")
@click.option("--manifest", "manifest_path", type=click.Path(path_type=Path), help="A manifest for a model without audit-model.yaml.")
@click.option("--label-column", help="The label column (beside a manifest: replaces only this key).")
@click.option("--positive-label", help="The favourable label (beside a manifest: replaces only this key).")
@click.option("--labels", help="The labels in the model's output order, comma-separated.")
@click.option("--text-column", help="The text column.")
@click.option("--template", help="A jinja2 template over columns, instead of --text-column.")
@click.option("--max-length", type=MAX_LENGTH, help="Tokens per text [default: the manifest's; 128 without one].")
@click.option("--protected", multiple=True, metavar="NAME=COLUMN[:EDGES|:VALUE=GROUP,…]",
              help="A protected attribute (repeatable), merged into the manifest's by name: sex=gender, "
                   "age=age_years:25,65, sex=code:1=male,2=female. 'audit init' writes them into audit-model.yaml.")
@click.option("--templates", "template_dir", type=click.Path(path_type=Path, file_okay=False),
              help="A folder of report templates that override the shipped ones by name.")
@click.option("--batch-size", type=BATCH, help="Scoring batch size (default: the policy's budget).")
@click.option("--sign", "sign_key", type=click.Path(path_type=Path, dir_okay=False),
              help="Sign the run's evidence digest with this Ed25519 key (make one with 'audit keygen').")
@click.option("--baseline", "baseline_dir", type=click.Path(path_type=Path),
              help="A baseline run folder (the released model) for rules with a 'baseline' part.")
@click.option("--no-progress", is_flag=True, help="No progress lines (they show only in a terminal anyway, never in a CI log or a pipe).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the scoring passes run: this process, or Ray workers (pip install 'audit[ray]').")
@click.option("--address", help="With --engine ray: the address of a running Ray cluster (default: start a local Ray).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: every gated number in fp32, the SHAP explanations' masked evaluations in bf16 where the CPU "
                   "has native bf16 (AMX/AVX-512-BF16), with their agreement with fp32 measured on a sample; fp32: "
                   "fp32 everywhere; bf16 (opt-in): scoring in bf16 too, with the largest score difference against "
                   "fp32 on a sample stated.")
@click.option("--predictions", "predictions_path", type=click.Path(path_type=Path),
              help="Audit a prediction log (.parquet/.csv: row id, score, label, protected attributes) in chunks, "
                   "instead of scoring --data.")
@click.option("--score-column", default="score", show_default=True, help="With --predictions: the score column.")
@click.option("--id-column", help="With --predictions: the row id column (default: row_id, or the manifest's).")
@click.option("--reference-stats", "reference_stats", multiple=True, type=click.Path(path_type=Path),
              help="With --predictions: stats file(s) of a reference period ('audit stats') for score drift.")
@click.option("--all-checks", "all_checks", is_flag=True,
              help="Also measure the checks no rule asks for in the families the policy uses (shown, not judged).")
@click.option("--report-url", "report_url", metavar="URL",
              help="The http(s) address where the run folder will be published (CI artifacts, Pages): summary.md's "
                   "links to report.html, result.json and junit.xml point there, for a pull-request comment.")
@click.option("--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]",
              help="Log the audit (params, every measurement, statuses, the run folder) to MLflow at this tracking "
                   "URI (sqlite:///mlflow.db, file:./mlruns, a server; without a URI: $MLFLOW_TRACKING_URI). "
                   "Needs pip install 'audit[mlflow]'.")
@click.option("--adverse-action", "adverse_action", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the declined rows' adverse-action reasons (one line per principal reason) to this CSV, "
                   "for a servicing system; the policy must rule an explainability.adverse_action_* check.")
def run(model_dir, policy_path, data_path, out_dir, current_path, strict, manifest_path, label_column, positive_label,
        labels, text_column, template, max_length, template_dir, batch_size, sign_key, baseline_dir, no_progress,
        engine, address, predictions_path=None, score_column="score", id_column=None, reference_stats=(),
        precision="auto", all_checks=False, report_url=None, mlflow_uri=None, adverse_action=None,
        protected=()):
    """Audit MODEL_DIR against a policy; exit 0 PASS, 1 FAIL, 2 could not run, 3 INCONCLUSIVE."""
    _quiet_env()
    from audit.api import run as run_api  # the Python API (audit.run) does the work; this is its edge

    outcome = run_api(model_dir, policy_path, data=data_path, out=out_dir, current=current_path, strict=strict,
                      manifest=manifest_path, label_column=label_column, positive_label=positive_label, labels=labels,
                      text_column=text_column, template=template, max_length=max_length, templates=template_dir,
                      batch_size=batch_size, sign=sign_key, baseline=baseline_dir, engine=engine, address=address,
                      precision=precision, all_checks=all_checks, report_url=report_url,
                      predictions=predictions_path, score_column=score_column, id_column=id_column,
                      reference_stats=reference_stats, progress=not no_progress, command=["audit", *sys.argv[1:]],
                      mlflow=mlflow_uri, adverse_action=adverse_action, protected=list(protected) or None)
    _print_outcome(outcome)
    if outcome.mlflow_run_id:
        click.echo(f"mlflow: run {outcome.mlflow_run_id}")
    sys.exit(outcome.exit_code)


def _print_outcome(outcome) -> None:
    _will_exit(outcome.exit_code)
    r = outcome.result
    v = r["verdict"]
    counts = ", ".join(f"{n} {s}" for s, n in v["counts"].items())
    click.echo(f"verdict: {v['status']} ({counts}) — exit code {v['exit_code']}")
    for f in r["findings"]:
        if f["status"] != "PASS":
            click.echo(f"  {f['status']:<12} {f['check_id']}: {f['message']}")
    click.echo(f"report: {outcome.out_dir / 'report.html'}")


@cli.command("train")
@click.argument("data_path", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Model folder to write.")
@click.option("--recipe", "recipe_path", type=click.Path(path_type=Path),
              help="YAML: text, label_column, positive_label, protected_attributes (flags override).")
@click.option("--text-column", help="Column holding the text.")
@click.option("--template", help="jinja2 template over columns, e.g. 'Age {{ age }}, {{ job }}'.")
@click.option("--template-file", type=click.Path(path_type=Path, dir_okay=False), help="The template, from a file.")
@click.option("--label-column", help="Column holding the label.")
@click.option("--positive-label", help="The favourable label; required unless the labels are 0/1 or false/true.")
@click.option("--protected", multiple=True, metavar="NAME=COLUMN[:EDGE,...]",
              help="A protected attribute, optionally binned: age=age_in_years:25")
@click.option("--id-column", help="Column with row ids (default: row numbers).")
@click.option("--name", help="Model name (default: the folder name).")
@click.option("--base-model", type=click.Path(path_type=Path, file_okay=False),
              help="Base model folder (default: the packaged all-MiniLM-L6-v2).")
@click.option("--epochs", default=3, show_default=True, type=EPOCHS, help="Passes over the training rows.")
@click.option("--batch-size", default=16, show_default=True, type=BATCH, help="Training rows per optimizer step.")
@click.option("--lr", "learning_rate", type=Finite(0, 1, min_open=True),
              help="Learning rate [default: 5e-5; 5e-4 with --peft lora].")
@click.option("--max-length", default=128, show_default=True, type=MAX_LENGTH,
              help="Tokens per text (longer ones are truncated).")
@click.option("--eval-fraction", default=0.3, show_default=True, type=Finite(0, 1, min_open=True, max_open=True),
              help="Held-out share, stratified by label.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the split, the initialisation and the data order.")
@click.option("--peft", type=click.Choice(["lora"]), help="Train LoRA adapters on the frozen base (needs peft).")
@click.option("--lora-r", type=int, help="With --peft lora: the adapters' rank [default: 8].")
@click.option("--lora-alpha", type=float, help="With --peft lora: the scaling alpha [default: 16].")
@click.option("--lora-dropout", type=float, help="With --peft lora: dropout on the adapters' input [default: 0.1].")
@click.option("--target-modules", help="With --peft lora: modules to adapt, comma-separated [default: peft's for "
                                       "the architecture; BERT: query,value].")
@click.option("--dp-epsilon", type=float, help="Train with DP-SGD (opacus) to this privacy budget ε over the "
                                               "planned epochs (needs opacus).")
@click.option("--dp-delta", type=float, help="With --dp-epsilon: δ, below 1/training rows [default: 1e-5].")
@click.option("--max-grad-norm", type=float, help="Gradient clipping norm; per-sample under DP [default: 1.0].")
@click.option("--dp-accountant", type=click.Choice(["rdp", "prv"]),
              help="With --dp-epsilon: opacus' privacy accountant [default: rdp].")
@click.option("--no-progress", is_flag=True, help="No progress lines (they show only in a terminal anyway, never in a CI log or a pipe).")
@click.option("--mlflow", "mlflow_uri", is_flag=False, flag_value="", default=None, metavar="[URI]",
              help="Log the training (hyperparameters, per-epoch train and held-out loss) to MLflow at this tracking "
                   "URI (sqlite:///mlflow.db, file:./mlruns, a server; without a URI: $MLFLOW_TRACKING_URI). "
                   "Needs pip install 'audit[mlflow]'.")
def train_cmd(data_path, out_dir, recipe_path, text_column, template, template_file, label_column, positive_label,
              protected, id_column, name, base_model, epochs, batch_size, learning_rate, max_length, eval_fraction,
              seed, peft, lora_r, lora_alpha, lora_dropout, target_modules, dp_epsilon, dp_delta, max_grad_norm,
              dp_accountant, no_progress, mlflow_uri=None):
    """Fine-tune a sequence classifier on DATA_PATH and write a model folder with audit-model.yaml.

    \b
    Full fine-tuning by default; --peft lora trains adapters on the frozen base; --dp-epsilon trains with
    DP-SGD (per-sample clipping, Poisson sampling, noise calibrated to the budget); both combine.
    """
    _quiet_env()
    from audit.errors import UsageError
    from audit.train import TrainConfig, train

    cfg = build_train_config(recipe_path, text_column, template, template_file, label_column, positive_label,
                             protected, id_column, name)
    cfg.base_model = str(base_model) if base_model else None
    cfg.epochs, cfg.batch_size, cfg.learning_rate = epochs, batch_size, learning_rate
    cfg.max_length, cfg.eval_fraction, cfg.seed = max_length, eval_fraction, seed
    lora = {"--lora-r": lora_r, "--lora-alpha": lora_alpha, "--lora-dropout": lora_dropout,
            "--target-modules": target_modules}
    given = [flag for flag, v in lora.items() if v is not None]
    if given and not peft:
        raise UsageError(f"{given[0]} applies to LoRA adapters: add --peft lora")
    dp = {"--dp-delta": dp_delta, "--dp-accountant": dp_accountant}
    given = [flag for flag, v in dp.items() if v is not None]
    if given and dp_epsilon is None:
        raise UsageError(f"{given[0]} applies to DP-SGD: add --dp-epsilon")
    cfg.peft = peft
    for attr, value in (("lora_r", lora_r), ("lora_alpha", lora_alpha), ("lora_dropout", lora_dropout),
                        ("dp_delta", dp_delta), ("max_grad_norm", max_grad_norm), ("dp_accountant", dp_accountant)):
        if value is not None:
            setattr(cfg, attr, value)
    if target_modules is not None:
        cfg.target_modules = [m.strip() for m in target_modules.split(",") if m.strip()]
    cfg.dp_epsilon = dp_epsilon
    assert isinstance(cfg, TrainConfig)
    tracker = None
    if mlflow_uri is not None:
        from audit.tracking import MlflowTracker

        tracker = MlflowTracker.open(mlflow_uri)  # no mlflow or a bad store: exit 2 before training starts
    manifest = train(data_path, out_dir, cfg, progress=not no_progress)
    curve = manifest.training["loss_curve"][-1]
    click.echo(f"model: {out_dir} ({manifest.data.split.train_rows} train / {manifest.data.split.eval_rows} held-out "
               f"rows, {manifest.training['seconds']:.0f} s, held-out loss {curve['eval_loss']:.4f})")
    peft_info, dp_info = manifest.training.get("peft"), manifest.training.get("dp")
    if peft_info:
        click.echo(f"LoRA: rank {peft_info['r']} on {', '.join(peft_info['target_modules'])}, "
                   f"{peft_info['trainable_parameters']:,} of {peft_info['total_parameters']:,} parameters trained; "
                   f"base {manifest.base_model.path} (sha256 {manifest.base_model.sha256[:12]}…)")
    if dp_info:
        frozen = dp_info["frozen_for_dp"]
        click.echo(f"DP-SGD: ε = {dp_info['epsilon']:.3f} spent (target {dp_info['target_epsilon']:g}) at "
                   f"δ = {dp_info['delta']:g} ({dp_info['accountant']} accountant), noise multiplier "
                   f"{dp_info['noise_multiplier']:.3f}, clipping {dp_info['max_grad_norm']:g}, sampling rate "
                   f"{dp_info['sample_rate']:.4f}" + (f"; frozen for DP: {', '.join(frozen)}" if frozen else ""))
    if tracker is not None:
        click.echo(f"mlflow: run {tracker.log_training(manifest, out_dir)}")


def _interactive() -> bool:
    """Whether `audit init` may ask (stdin is a terminal); tests replace it."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@cli.command("init")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="A data file with the model's text and true labels (columns are guessed from it and checked).")
@click.option("--text-column", help="The text column [guessed: the column of free text].")
@click.option("--template", help="A jinja2 template over columns, instead of --text-column.")
@click.option("--label-column", help="The true-label column [guessed: the column whose values are the labels].")
@click.option("--labels", help="The labels in the model's output order, comma-separated [default: config.json's "
                               "id2label].")
@click.option("--positive-label", help="The favourable label. Never guessed.")
@click.option("--protected", multiple=True, metavar="NAME=COLUMN[:EDGES|:VALUE=GROUP,…]",
              help="A protected attribute (repeatable): sex=gender, age=age_years:25,65, sex=code:1=male,2=female.")
@click.option("--eval-split", metavar="whole|FILE|none",
              help="whole: every row of --data is eval data (the model never saw it); FILE: that file is; none: "
                   "'audit run' will need --data.")
@click.option("--id-column", help="A column of row ids.")
@click.option("--name", help="The model's name [default: the folder's].")
@click.option("--max-length", default=128, show_default=True, type=MAX_LENGTH, help="Tokens per text.")
@click.option("--force", is_flag=True, help="Overwrite an existing audit-model.yaml.")
def init_cmd(model_dir, data_path, text_column, template, label_column, labels, positive_label, protected,
             eval_split, id_column, name, max_length, force):
    """Write MODEL_DIR/audit-model.yaml for a model that `audit train` did not make.

    \b
    Labels come from config.json's id2label; the text and label columns are guessed from --data and confirmed
    on a terminal. Without a terminal every answer is a flag, and the one line of exit 2 lists those missing.
    The favourable label is never guessed.
    """
    import shlex

    from audit import init as byom
    from audit.errors import UsageError
    from audit.manifest import MANIFEST_NAME
    from audit.manifest import parse_protected as parse_attribute

    target = Path(model_dir) / MANIFEST_NAME
    if os.path.lexists(target) and not force:
        raise UsageError(f"{target}: already exists; give --force to overwrite it")
    label_list = [x.strip() for x in labels.split(",")] if labels else None
    s = byom.survey(model_dir, data_path, label_list)
    ask, missing = _interactive(), []
    label_list = label_list or s.config_labels
    if not label_list:
        if ask:
            label_list = [x.strip() for x in click.prompt("Labels in the model's output order (comma-separated; "
                                                          "config.json's id2label names none)").split(",")]
        else:
            missing.append("--labels L0,L1,… (in the model's output order: config.json's id2label names none)")
    choice = click.Choice(s.columns)
    if text_column is None and template is None:
        if ask:
            text_column = click.prompt(f"Text column{f' ({s.text_why})' if s.text_column else ''}",
                                       default=s.text_column, type=choice, show_choices=False)
        else:
            missing.append(f"--text-column {shlex.quote(s.text_column)} (guessed: {s.text_why})" if s.text_column
                           else "--text-column or --template (no column of free text found)")
    if label_column is None:
        if ask:
            label_column = click.prompt(f"Label column{f' ({s.label_why})' if s.label_column else ''}",
                                        default=s.label_column, type=choice, show_choices=False)
        else:
            missing.append(f"--label-column {shlex.quote(s.label_column)} (guessed: {s.label_why})"
                           if s.label_column else "--label-column")
    if positive_label is None:
        if ask and label_list:
            positive_label = click.prompt("Favourable (positive) label", type=click.Choice(label_list))
        else:
            missing.append(f"--positive-label (one of: {', '.join(label_list or s.label_values) or 'the labels'}; "
                           "which label is favourable is never guessed)")
    attrs = {}
    items = list(protected)
    if not items and ask:
        items = click.prompt("Protected attributes, space-separated NAME=COLUMN[:EDGES|:VALUE=GROUP,…] "
                             "(empty: none)", default="", show_default=False).split()
    for item in items:
        try:
            attr_name, attr = parse_attribute(item)
        except ValueError as exc:
            raise UsageError(f"--protected {item!r}: {exc}") from None
        attrs[attr_name] = attr
    if eval_split is None:
        if ask:
            eval_split = click.prompt(f"Eval data: 'whole' if the model never saw {data_path}, an eval file's path, "
                                      "or 'none'")
        else:
            missing.append("--eval-split whole|FILE|none")
    if missing:
        raise UsageError(f"stdin is not a terminal, so nothing can be asked or confirmed: give {'; '.join(missing)}")
    manifest = byom.build_manifest(model_dir, data_path, labels=label_list, positive_label=positive_label,
                                   label_column=label_column, text_column=text_column, template=template,
                                   protected=attrs, eval_split=eval_split, id_column=id_column, name=name,
                                   max_length=max_length)
    written = byom.write_manifest(model_dir, manifest, force=force)
    ev = manifest.eval_data
    click.echo(f"wrote {written}: labels {', '.join(manifest.labels)} (favourable: {manifest.positive_label}), "
               f"text from {manifest.text.describe()}, labels from column '{manifest.label_column}', protected "
               f"attributes: {', '.join(manifest.protected_attributes) or 'none'}; eval data: "
               + (f"{ev.source.path} ({ev.source.rows} rows)" if ev else "none recorded (give --data to 'audit run')"))
    click.echo(f"next: audit run {shlex.quote(str(model_dir))} --policy fin")


@cli.command()
@click.option("--out", "out_root", type=click.Path(path_type=Path), default=Path("demo"), show_default=True,
              help="Folder for the demo model and its report.")
@click.option("--epochs", default=3, show_default=True, type=EPOCHS, help="Passes over the demo's training rows.")
@click.option("--policy", "policy_path", default="fin", show_default=True, help="Policy YAML file, or a bundled pack name.")
@click.option("--no-progress", is_flag=True, help="No progress lines (they show only in a terminal anyway, never in a CI log or a pipe).")
def demo(out_root, epochs, policy_path, no_progress):
    """Fine-tune the packaged MiniLM on German credit (bundled), audit it with policies/fin.yaml."""
    _quiet_env()
    from audit.demo import run_demo

    outcome = run_demo(out_root, epochs=epochs, policy=policy_path, progress=not no_progress)
    _print_outcome(outcome)
    click.echo(f"(the demo exits 0 once it has run; `audit run` would exit {outcome.exit_code} for this verdict)")


@cli.group()
def policy() -> None:
    """Policy files."""


@policy.command("validate")
@click.argument("policy_file")
def policy_validate(policy_file):
    """Check a policy without running anything (no model is loaded)."""
    from audit.policy import load_policy

    p = load_policy(policy_file)
    click.echo(f"{p.source}: valid policy '{p.policy}' version {p.version}, {len(p.checks)} checks")


@policy.command("list")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text, json (every pack's clauses, cited and not covered) or md (a Markdown table).")
def policy_list(fmt):
    """List the bundled policy packs (give a pack's name to --policy): what each is for and the clauses it cites."""
    from audit.policy import bundled_policies, load_policy

    packs = []
    for name, path in bundled_policies().items():
        p = load_policy(path)
        cited = list(dict.fromkeys(c.clause for rule in p.checks.values() for c in rule.cites))
        packs.append({"name": name, "policy": p.policy, "version": p.version, "path": str(path),
                      "description": " ".join(p.description.split()), "rules": len(p.checks), "clauses": cited,
                      "not_covered": list(dict.fromkeys(n.clause for n in p.not_covered_items))})
    if fmt == "json":
        _echo_json(packs)
        return
    if fmt == "md":
        from audit.render.markdown import md, md_code

        click.echo("| Pack | Policy | Rules | What it is for | Clauses cited | Not covered |\n|---|---|---:|---|---|---|")
        for k in packs:
            click.echo(f"| `{md_code(k['name'])}` | {md(k['policy'])} {md(k['version'])} | {k['rules']} | "
                       f"{md(k['description'])} | {md('; '.join(k['clauses']))} | {md('; '.join(k['not_covered']))} |")
        return
    for i, k in enumerate(packs):
        click.echo(("\n" if i else "") + f"{k['name']}: {k['policy']} {k['version']}, {k['rules']} rules")
        click.echo(f"  {k['description']}")
        click.echo(f"  clauses: {'; '.join(k['clauses']) or 'none'}")
        if k["not_covered"]:
            click.echo(f"  not covered: {'; '.join(k['not_covered'])}")


@cli.command("checks")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text (one line per check), json (every field) or md (a Markdown table).")
def checks_cmd(fmt):
    """List the registered checks."""
    from audit.checks import all_checks

    specs = all_checks()
    if fmt == "json":
        _echo_json([{"id": cid, "family": spec.family, "title": spec.title, "summary": spec.summary,
                     "unit": spec.unit, "direction": spec.direction, "evidence": spec.evidence,
                     "threshold_required": spec.threshold_required, "cost": spec.cost, "params": spec.params,
                     "classes": spec.classes}
                    for cid, spec in specs.items()])
        return
    if fmt == "md":
        from audit.render.markdown import md, md_code

        click.echo("| Check | Family | What it measures | Parameters |\n|---|---|---|---|")
        for cid, spec in specs.items():
            params = ", ".join(f"{k}={v!r}" for k, v in spec.params.items())
            click.echo(f"| `{md_code(cid)}` | {md(spec.family)} | {md(spec.summary)} | "
                       f"{f'`{md_code(params)}`' if params else ''} |")
        return
    for cid, spec in specs.items():
        params = ", ".join(f"{k}={v!r}" for k, v in spec.params.items())
        click.echo(f"{cid:<34} {spec.summary}" + (f" [params: {params}]" if params else "")
                   + (" [binary models only]" if spec.classes == "binary" else ""))


@cli.command("report")
@click.argument("result_json", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the re-rendered files (default: beside result.json).")
@click.option("--templates", "template_dir", type=click.Path(path_type=Path, file_okay=False),
              help="A folder of report templates that override the shipped ones by name.")
@click.option("--pdf", is_flag=True, help="Also print the report with headless Chromium (vector charts), to "
              "RUN_DIR.pdf beside the run folder.")
@click.option("--report-url", "report_url", metavar="URL",
              help="The http(s) address where the run folder is published: summary.md's links point there.")
def report_cmd(result_json, out_dir, template_dir, pdf, report_url):
    """Re-render report.html (and junit.xml, summary.md) from a result.json (or a run folder) alone."""
    from audit.render.outputs import rerender_run

    if report_url is not None:
        from audit.render.markdown import report_url as check_url

        report_url = check_url(report_url)
    result_json = Path(result_json)
    if result_json.is_dir():
        result_json = result_json / "result.json"
    written, report, decided = rerender_run(result_json, out_dir, template_dirs=[template_dir] if template_dir else None,
                                            report_url=report_url)
    if decided and report.parent != Path(os.path.abspath(written)):
        click.echo(f"report: {report} (with the {decided} decision(s) the ledger records; the sealed "
                   f"{Path(written) / 'report.html'} is left as it was written)")
    else:
        click.echo(f"report: {report}" + (f" (with the {decided} decision(s) the ledger records)" if decided else ""))
    if pdf:
        from audit.render.pdf import html_to_pdf

        folder = Path(os.path.abspath(written))  # beside the sealed folder: a file inside it would not verify
        target = html_to_pdf(report, folder.parent / f"{folder.name}.pdf")
        click.echo(f"pdf: {target} (printed from report.html; not covered by the run's seal)")


@cli.command("keygen")
@click.option("--out", "key_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Private key file to write (the public key goes to FILE.pub).")
def keygen_cmd(key_path):
    """Make an Ed25519 key pair for signing runs."""
    from audit.ledger import keygen

    private, public = keygen(key_path)
    click.echo(f"private key: {private} (keep it secret)\npublic key: {public}")


@cli.command("verify")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path, dir_okay=False), help="The trusted public key.")
@click.option("--outputs-only", is_flag=True, help="Check the run folder alone; the inputs (model, data, policy) "
              "are not checked.")
def verify_cmd(run_dir, pubkey, outputs_only):
    """Re-hash every file of a run folder and every input, check its signature and ledger entry; exit 1 naming
    what changed, any file the evidence does not cover, and any input that could not be found."""
    from audit.ledger import verify_run

    v = verify_run(run_dir, pubkey, outputs_only=outputs_only)
    _will_exit(0 if v.passed else 1)
    for line in v.changed:
        click.echo(f"CHANGED  {line}")
    for line in v.unchecked:
        click.echo(f"{'skipped' if outputs_only else 'NOT CHECKED'}  {line}")
    for line in v.notes:
        click.echo(f"note     {line}")
    for d in v.decisions:
        click.echo(f"decision {_decision_line(d)}")
    if not v.decisions and os.path.lexists(Path(run_dir).resolve().parent / "ledger.jsonl"):
        click.echo(f"decision none recorded yet (record one with: audit approve {run_dir} --reviewer NAME "
                   "--decision approve|approve-with-conditions|reject --comment TEXT)")
    if not v.passed:
        why = [f"{len(v.changed)} problem(s)"] if v.changed else []
        if v.unchecked:
            why.append(f"{len(v.unchecked)} input(s) not found, so not checked (give --outputs-only to check the "
                       "run folder alone)")
        click.echo(f"verify failed: {', '.join(why)}")
    elif outputs_only:
        click.echo(f"verified the run folder only: {len(v.ok)} unchanged; the inputs were NOT checked")
    else:
        click.echo(f"verified: {len(v.ok)} unchanged, every input checked")
    sys.exit(0 if v.passed else 1)


@cli.command("approve")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--reviewer", required=True, help="Who decides (a name or role); recorded as given.")
@click.option("--decision", required=True, type=click.Choice(["approve", "approve-with-conditions", "reject"]),
              help="approve, approve-with-conditions (state the conditions in --comment) or reject.")
@click.option("--comment", default="", help="Why, and the conditions of an approval with conditions (required "
              "for reject and approve-with-conditions).")
@click.option("--sign", "sign_key", type=click.Path(path_type=Path, dir_okay=False),
              help="Sign the decision with this Ed25519 key (make one with 'audit keygen').")
def approve_cmd(run_dir, reviewer, decision, comment, sign_key):
    """Record a reviewer's sign-off decision on RUN_DIR in the ledger beside it, bound to the run's evidence
    digest. The run folder is not changed and neither is the verdict: a decision is a person's record."""
    from audit.ledger import DECISION_WORDS, record_decision

    entry = record_decision(run_dir, reviewer, decision, comment, sign_key)
    signed = f", signed by key {entry['signature']['key_id']}" if "signature" in entry else ""
    click.echo(f"recorded: {entry['reviewer']} {DECISION_WORDS[decision]} run {entry['run_id']} (verdict "
               f"{entry['verdict']}), ledger entry {entry['seq']}, evidence digest {entry['evidence_digest'][:12]}…"
               f"{signed}")
    click.echo(f"see it: audit verify {run_dir}; a report that shows it: audit report {run_dir}")


def _decision_line(d: dict) -> str:
    from audit.ledger import DECISION_WORDS

    comment = " ".join(str(d.get("comment") or "").split())
    signed = f" [signed, key {d['signature'].get('key_id', '?')}]" if isinstance(d.get("signature"), dict) else ""
    return (f"{d.get('reviewer')} {DECISION_WORDS.get(str(d.get('decision')), d.get('decision'))} at {d.get('time')} "
            f"(ledger entry {d.get('seq')}){signed}" + (f": {comment}" if comment else ""))


@cli.command("history")
@click.argument("root", type=click.Path(path_type=Path, file_okay=False), default=Path("reports"))
@click.option("--pubkey", type=click.Path(path_type=Path, dir_okay=False),
              help="The trusted public key: ledger.head must be signed with it.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text (one line per run), json (the ledger's entries and problems) or md (a Markdown table).")
def history_cmd(root, pubkey, fmt):
    """List the runs recorded in ROOT/ledger.jsonl with their verdicts; exit 1 if the chain is broken or entries
    were removed from its end (ledger.head)."""
    from audit.ledger import HEAD, LEDGER, check_ledger, named

    ledger = Path(root) / LEDGER
    if not os.path.lexists(ledger) and not os.path.lexists(Path(root) / HEAD):
        raise AuditError(f"{ledger}: no ledger (no run has written to {root})")
    entries, problems, notes = check_ledger(Path(root), pubkey=pubkey)
    code = 1 if problems else 0
    _will_exit(code)
    from audit.ledger import DECISION_WORDS, decisions_on, is_decision

    if fmt == "json":
        runs = [{**e, "decisions": [d.get("seq") for d in decisions_on(entries, e.get("run_id"))]}
                for e in entries if not is_decision(e)]
        _echo_json({"ledger": str(ledger), "intact": not problems, "entries": entries, "runs": runs,
                    "decisions": [e for e in entries if is_decision(e)], "problems": problems, "notes": notes})
    elif fmt == "md":
        from audit.render.markdown import md

        click.echo("| # | Time | Verdict | Model | Run folder |\n|---|---|---|---|---|")
        for e in entries:
            if is_decision(e):
                comment = " ".join(str(e.get("comment") or "").split())
                click.echo(f"| {md(e.get('seq', '?'))} | {md(e.get('time') or '')} | "
                           f"decision: {md(DECISION_WORDS.get(str(e.get('decision')), e.get('decision')))} | "
                           f"by {md(e.get('reviewer') or '')} on entry {md(e.get('run_seq', '?'))}"
                           f"{': ' + md(comment) if comment else ''} | {md(e.get('run_dir') or '')} |")
                continue
            click.echo(f"| {md(e.get('seq', '?'))} | {md(e.get('time') or '')} | {md(e.get('verdict') or '')} | "
                       f"{md(e.get('model') or '')} | {md(e.get('run_dir') or '')} |")
        for n in notes:
            click.echo(f"\nNote: {md(n)}")
        for p in problems:
            click.echo(f"\n**Broken ledger:** {md(named(p))}")
    else:
        for n in notes:
            click.echo(f"note {n}")
        for e in entries:
            if is_decision(e):
                click.echo(f"{e.get('seq', '?'):>4}  {e.get('time', '')}  {'decision':<12} on entry "
                           f"{e.get('run_seq', '?')} ({e.get('run_dir', '')}): {_decision_line(e)}")
                continue
            click.echo(f"{e.get('seq', '?'):>4}  {e.get('time', '')}  {str(e.get('verdict', '')):<12} "
                       f"{e.get('model', '')}  {e.get('run_dir', '')}")
        for p in problems:
            click.echo(f"BROKEN {named(p)}")
    sys.exit(code)


@cli.command("diff")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text, json (the whole comparison) or md (Markdown tables, e.g. for a pull-request comment).")
def diff_cmd(run_a, run_b, fmt):
    """Compare two runs: changed inputs, every measurement's delta, status and verdict changes."""
    from audit.ledger import diff_runs
    from audit.render.outputs import load_result

    def load(p):
        p = Path(p)
        return load_result(p / "result.json" if p.is_dir() else p)

    d = diff_runs(load(run_a), load(run_b))
    v = d["verdict"]

    def num(x, fmt_spec=".4f"):
        return "n/a" if x is None else format(x, fmt_spec)

    if fmt == "json":
        _echo_json({"a": str(run_a), "b": str(run_b), **d})
        return
    if fmt == "md":
        from audit.render.markdown import md, md_code

        lines = [f"**Verdict:** {md(v['a'])} → {md(v['b'])}" + ("" if v["a"] != v["b"] else " (unchanged)"), ""]
        if d["inputs"]:
            lines += ["| Changed input | File | Before | After |", "|---|---|---|---|"]
            lines += [f"| {md(i['role'])} | {md(i['file'])} | `{md_code((i['a'] or 'absent')[:12])}` | "
                      f"`{md_code((i['b'] or 'absent')[:12])}` |" for i in d["inputs"]]
        else:
            lines.append("No input changed.")
        lines.append("")
        if d["statuses"]:
            lines += ["| Check | Status before | Status after |", "|---|---|---|"]
            lines += [f"| `{md_code(st['check_id'])}` | {md(st['a'] or 'absent')} | {md(st['b'] or 'absent')} |"
                      for st in d["statuses"]]
        else:
            lines.append("No status changed.")
        lines += ["", "| Measurement | Before | After | Change |", "|---|---:|---:|---:|"]
        lines += [f"| `{md_code(m['check_id'])}` | {num(m['a'])} | {num(m['b'])} | "
                  f"{'' if m['delta'] is None else num(m['delta'], '+.4f')} |" for m in d["measurements"]]
        click.echo("\n".join(lines))
        return
    click.echo(f"verdict: {v['a']} -> {v['b']}" + ("" if v["a"] != v["b"] else " (unchanged)"))
    click.echo(f"changed inputs: {len(d['inputs'])}")
    for i in d["inputs"]:
        click.echo(f"  {i['role']:<10} {i['file']}: {(i['a'] or 'absent')[:12]} -> {(i['b'] or 'absent')[:12]}")
    click.echo(f"status changes: {len(d['statuses'])}")
    for st in d["statuses"]:
        click.echo(f"  {st['check_id']}: {st['a']} -> {st['b']}")
    click.echo("measurements:")
    for m in d["measurements"]:
        delta = "" if m["delta"] is None else f"{m['delta']:+.4f}"
        click.echo(f"  {m['check_id']:<40} {num(m['a']):>8} -> {num(m['b']):>8}  {delta}")


@cli.command("stats")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="The silo's rows (text, label, protected attributes, id column).")
@click.option("--out", "out_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="The stats file to write (JSON; no rows, no texts).")
@click.option("--epsilon", type=POSITIVE, help="Add Laplace noise to every count: the file is epsilon-DP.")
@click.option("--score-bins", type=click.IntRange(2, 100000), help="Fine score grid (default 1000; 20 with --epsilon).")
@click.option("--threshold-bins", type=click.IntRange(2, 100000), help="Group tables' threshold grid (default 100; 20 with --epsilon).")
@click.option("--replicates", default=1000, show_default=True, type=click.IntRange(0, 10000), help="Poisson bootstrap replicates (not released "
              "with --epsilon).")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Bootstrap seed: every silo of one audit uses the same.")
@click.option("--batch-size", default=64, show_default=True, type=BATCH, help="Scoring batch size.")
@click.option("--intersections", "intersections", default=None, metavar="A×B,…|none",
              help="Intersections of protected attributes to carry (e.g. 'sex×age,sex×age×job'); default every "
                   "pair of the manifest's attributes. Each adds 1 to the noise's L1 sensitivity.")
@click.option("--policy", "policy_path", default=None,
              help="Also compute, inside the silo, the statistics of every check this policy rules that has a "
                   "silo form (PII counts, counterfactual flips, SHAP token importance, loss histograms).")
@click.option("--no-progress", is_flag=True, help="No progress lines (they show only in a terminal anyway, never in a CI log or a pipe).")
def stats_cmd(model_dir, data_path, out_path, epsilon, score_bins, threshold_bins, replicates, seed, batch_size,
              intersections, policy_path, no_progress):
    """Score a silo's rows inside the silo and write only mergeable statistics (see README, Federated audit)."""
    _quiet_env()
    from audit.errors import UsageError
    from audit.mergeable import Grid
    from audit.silo import compute_silo_stats

    default = 20 if epsilon is not None else None
    score_bins = score_bins or default or 1000
    threshold_bins = threshold_bins or default or 100
    for name, v in (("--score-bins", score_bins), ("--threshold-bins", threshold_bins)):
        if not 2 <= v <= 100000:
            raise UsageError(f"{name} must be between 2 and 100000, got {v}")
    if not 0 <= replicates <= 10000:
        raise UsageError(f"--replicates must be between 0 and 10000, got {replicates}")
    grid = Grid(score_bins=score_bins, threshold_bins=threshold_bins, replicates=replicates, seed=seed)
    crossed = None
    if intersections is not None:
        from audit.checks.fairness import _parse_intersection

        items = [] if intersections.strip().lower() in ("", "none") else intersections.split(",")
        try:
            crossed = [_parse_intersection(i.strip()) for i in items]
        except ValueError as exc:
            raise UsageError(f"--intersections: {exc}") from None
    policy = None
    if policy_path is not None:
        from audit.policy import load_policy

        policy = load_policy(policy_path)
    doc = compute_silo_stats(model_dir, data_path, out_path, grid=grid, epsilon=epsilon, batch_size=batch_size,
                             progress=not no_progress, intersections=crossed, policy=policy)
    noise = f", Laplace noise at epsilon {epsilon:g} (scale {doc['privacy']['scale']:g})" if epsilon else ""
    click.echo(f"stats: {out_path} ({doc['data']['rows'] if doc['data']['rows'] is not None else 'noised'} rows"
               f"{noise})")


@cli.command("merge")
@click.argument("stats_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", required=True, help="Policy YAML file, or a bundled pack name (fin).")
@click.option("--reference", "reference_files", multiple=True, type=click.Path(path_type=Path),
              help="Stats file(s) of a reference period (e.g. the training split) for the score-drift checks.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), help="Output folder (default: reports/<model>-<time>/).")
@click.option("--strict", is_flag=True, help="Warnings fail the gate (exit 1).")
@click.option("--report-url", "report_url", metavar="URL",
              help="The http(s) address where the run folder will be published (CI artifacts, Pages): summary.md's "
                   "links to report.html, result.json and junit.xml point there, for a pull-request comment.")
def merge_cmd(stats_files, policy_path, reference_files, out_dir, strict, report_url=None):
    """Judge the union of silos' stats files against a policy and write the report, without a row."""
    from audit.merge import run_merge

    if report_url is not None:  # a bad address is exit 2 before any stats file is read
        from audit.render.markdown import report_url as check_url

        report_url = check_url(report_url)
    outcome = run_merge(list(stats_files), policy_path, reference_paths=list(reference_files) or None,
                        out_dir=out_dir, strict=strict, command=["audit", *sys.argv[1:]], report_url=report_url)
    _print_outcome(outcome)
    sys.exit(outcome.exit_code)


def _terminate(signum, frame):
    raise KeyboardInterrupt  # run the same clean-up as Ctrl-C: temp folders go, nothing half-written stays


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="audit")
        code = 0
    except SystemExit as exc:  # click always ends this way; keep its code
        code = exc.code
    try:  # what is still buffered goes out now, so a reader that left early is met here and not at shutdown
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
    except (OSError, ValueError):
        pass
    sys.exit(code)


if __name__ == "__main__":
    main()
