"""The bundled German credit data is the documented file, and the demo recipe fits it."""

from audit.data import group_series, make_texts, read_table, sha256_file
from audit.demo import german_credit
from audit.manifest import load_recipe

SHA256 = "37cb1e24f36fd75d7a399e84d32cc85641d733ec98c3be40a0e5a39c11a3c158"


def test_bundled_csv_is_the_documented_copy():
    csv, _ = german_credit()
    assert sha256_file(csv) == SHA256
    assert SHA256 in (csv.parent / "SOURCE.md").read_text()
    df = read_table(csv)
    assert len(df) == 1000
    assert df["creditability"].value_counts().to_dict() == {"good": 700, "bad": 300}


def test_recipe_renders_text_and_groups():
    csv, recipe_path = german_credit()
    recipe = load_recipe(recipe_path)
    df = read_table(csv)
    texts = make_texts(df, recipe.text, csv)
    assert texts[0].startswith("Checking account: ... < 0 DM. Savings: unknown/ no savings account.")
    assert "age 67" in texts[0] and "{{" not in texts[0]
    sex = group_series(df, "sex", recipe.protected_attributes["sex"], csv)
    assert sex.value_counts().to_dict() == {"male": 690, "female": 310}  # hand count of the UCI codes A91-A94
    age = group_series(df, "age", recipe.protected_attributes["age"], csv)
    assert age.value_counts().to_dict() == {"25 and over": 851, "under 25": 149}  # csv module count: age < 25 in 149 rows
    assert recipe.protected_attributes["sex"].note.startswith("The UCI coding")
