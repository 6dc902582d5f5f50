"""The training setup of `audit train` and `audit demo`: a TrainConfig from a recipe and the command's flags.

Library code (it raises audit.errors.UsageError, never click): the CLI maps its flags onto these arguments, and
the demo calls it with the bundled recipe alone.
"""

from __future__ import annotations


def parse_protected(items) -> dict:
    from audit.errors import UsageError
    from audit.manifest import ProtectedAttribute

    out = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"--protected {item!r}: expected NAME=COLUMN or NAME=COLUMN:EDGE,EDGE")
        column, _, edges = rest.partition(":")
        try:
            bins = [float(e) for e in edges.split(",")] if edges else None
            out[name] = ProtectedAttribute(column=column, bins=bins)
        except ValueError as exc:
            raise UsageError(f"--protected {item!r}: {exc}") from None
    return out


def build_train_config(recipe_path, text_column, template, template_file, label_column, positive_label,
                       protected, id_column, name):
    from audit.errors import UsageError
    from audit.manifest import Recipe, TextRecipe, load_recipe
    from audit.train import TrainConfig

    recipe = load_recipe(recipe_path) if recipe_path else None
    if template_file:
        from audit.safeio import read_regular

        try:
            template = read_regular(template_file, 1_000_000, "template file", UsageError).decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{template_file}: the template file is not UTF-8 text") from None
    if sum(x is not None for x in (text_column, template)) > 1:
        raise UsageError("give one of --text-column, --template or --template-file")
    if text_column or template:
        text = TextRecipe(column=text_column, template=template)
    elif recipe:
        text = recipe.text
    else:
        raise UsageError("say where the text comes from: --text-column, --template, --template-file or --recipe")
    label = label_column or (recipe.label_column if recipe else None)
    if not label:
        raise UsageError("give --label-column (or a --recipe)")
    r = recipe or Recipe(label_column=label, text=text)
    attrs = dict(r.protected_attributes)
    attrs.update(parse_protected(protected))
    return TrainConfig(text=text, label_column=label, positive_label=positive_label or r.positive_label,
                       protected_attributes=attrs, id_column=id_column or r.id_column, name=name or r.name,
                       description=r.description, card=r.card)
