"""``nnunet-robust card``: a robustness card per model from an eval output folder.

Reads the folder's summary.json and per_case.parquet (and the model folders that the prediction
folders' run.json record) and writes per model <model>.card.md, <model>.card.html and
<model>.card.json, the last valid against the JSON Schema shipped in the package
(nnunet_robustness/schemas/robustness_card.schema.json): model and plans, training schedule and sanity
gate, clean scores with intervals, the operating envelope per family (the largest severity whose upper
95% bound of Dice degradation stays below --tolerance), the worst families, subgroups, the ROOD-MRI
summary, versions and commands. Every card has the same sections and keys in the same order, so two
cards diff line by line (see docs/card.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "card", help="a robustness card per model (Markdown, HTML, JSON) from an eval output folder",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    parser.add_argument("evaluation", type=Path, metavar="EVAL_FOLDER", help="an output folder of nnunet-robust eval")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="folder for the cards (default: EVAL_FOLDER/cards)")
    parser.add_argument("--model", action="append", default=None, metavar="NAME",
                        help="card of this model only (repeatable; default: every model of the evaluation)")
    parser.add_argument("--tolerance", type=float, default=None, metavar="DICE",
                        help="Dice degradation the operating envelope tolerates (default 0.05)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nnunet_robustness.analysis.card import DEFAULT_TOLERANCE, build_cards, card_files
    from nnunet_robustness.cli.eval import command_line
    from nnunet_robustness.io import atomic_write_json, atomic_write_text
    from nnunet_robustness.reports.card import html_card, markdown

    cards = build_cards(args.evaluation, DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
                        args.model, command_line(args))
    output = args.output or args.evaluation / "cards"
    output.mkdir(parents=True, exist_ok=True)
    for model, card in cards.items():
        files = card_files(output, model)
        atomic_write_json(files["json"], card)
        atomic_write_text(files["md"], markdown(card))
        atomic_write_text(files["html"], html_card(card))
    print(f"card: {len(cards)} card(s) -> {output}")
    return 0
