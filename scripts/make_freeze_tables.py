"""Regenerate the freeze tables of keras.applications' families in docs/freezing.md (one member
of each family, 3 classes, at 96 px or the family's smallest input, after ``--freeze 10``).

Run: python scripts/make_freeze_tables.py  (builds nine models; about a minute).
"""

from __future__ import annotations

from pathlib import Path

import keras

from tlkit.freeze import apply_freeze, freeze_table
from tlkit.models import build_transfer_model, get_model_info
from tlkit.models.applications_data import FAMILIES

BEGIN = "<!-- freeze-tables:begin (scripts/make_freeze_tables.py) -->"
END = "<!-- freeze-tables:end -->"


def tables() -> list[str]:
    out = [BEGIN, ""]
    for family in FAMILIES:
        info = get_model_info(family.members[0].id)
        size = max(96, info.min_size)
        model = build_transfer_model(info, 3, image_size=size)
        decision = apply_freeze(model, info, 10)
        out += [
            f"**`{info.id}`** ({size} px, `--freeze 10`): {decision.message}",
            "",
            "```",
            freeze_table(model, info).format().split("\n", 1)[1],
            "```",
            "",
        ]
        keras.backend.clear_session()
    return [*out, END]


def main() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "freezing.md"
    text = path.read_text()
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + "\n".join(tables()) + tail)


if __name__ == "__main__":
    main()
