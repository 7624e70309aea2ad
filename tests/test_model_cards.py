"""Every shipped model card states the model's whole lineage: each training run its weights went
through (steps, precision, start), their total, and the last one's figures as the card's own."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edsr_tf.pretrained import load_manifest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = load_manifest()
#: The card's ``precision`` (train.py's --mixed_precision of the last run) for a leg's wording.
PRECISION_OF_LEG = {"bf16": "bf16", "fp16": "fp16", "none": "none", "fp32 (QAT int8 simulation)": "none"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_card_states_the_whole_lineage(name):
    card = SHIPPED[name].card
    lineage = card.get("lineage")
    assert lineage, f"{name}: no lineage"
    assert card["total_steps"] == sum(leg["steps"] for leg in lineage)
    first, last = lineage[0], lineage[-1]
    assert first["init_from"] is None, f"{name}: the lineage must start from scratch"
    assert all(leg["init_from"] for leg in lineage[1:]), f"{name}: a later leg with no start"
    assert (last["steps"], last["init_from"], last["command"]) == (card["steps"], card["init_from"], card["command"])
    assert PRECISION_OF_LEG[last["precision"]] == card["precision"]
    assert all(leg["precision"] in PRECISION_OF_LEG for leg in lineage)
    if card.get("init_from"):
        assert len(lineage) > 1, f"{name} continues {card['init_from']}: its earlier runs belong on the card"


def test_the_cards_table_shows_total_steps_and_precisions(capsys):
    from edsr_tf.pretrained.__main__ import cards

    table = cards(list(SHIPPED.values()))
    for name, model in SHIPPED.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| `{name}` |"))
        card = model.card
        legs = " + ".join(f"{leg['steps']:,} {leg['precision']}" for leg in card["lineage"])
        expected = f"{card['total_steps']:,} ({legs})" if len(card["lineage"]) > 1 else f"{card['steps']:,}"
        assert f"| {expected} |" in row, row


def _ship_pretrained():
    spec = importlib.util.spec_from_file_location("ship_pretrained", REPO / "benchmarks" / "ship_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, **options) -> Path:
    folder.mkdir(parents=True)
    base = {"steps": 100, "mixed_precision": "bf16", "qat": False, "init_from": None, "degradation": {}}
    (folder / "run_config.json").write_text(json.dumps({"model": {}, "options": base | options}))
    weights = folder / "final.weights.h5"
    weights.touch()
    return weights


def test_ship_pretrained_follows_runs_back_to_a_shipped_card(tmp_path):
    """A run started from another run's weights, itself from a shipped model: every leg, in order."""
    ship = _ship_pretrained()
    first = _run(tmp_path / "a", steps=4200, init_from="edsr_baseline_x2")
    second = _run(tmp_path / "b", steps=300, mixed_precision="none", qat=True, init_from=str(first))
    legs = ship.prior_lineage(str(second), None)
    x2 = SHIPPED["edsr_baseline_x2"].card["lineage"]
    assert legs[:len(x2)] == x2
    assert [(leg["steps"], leg["precision"], leg["init_from"]) for leg in legs[len(x2):]] == [
        (4200, "bf16", "edsr_baseline_x2"), (300, "fp32 (QAT int8 simulation)", str(first))]
    assert ship.prior_lineage(None, None) == [] and ship.prior_lineage("x", '[{"steps": 1}]') == [{"steps": 1}]
