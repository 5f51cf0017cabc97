"""The data's own mistakes on ``report.html``: near-duplicate groups and likely label errors
(``data_report.json``'s ``near_duplicates`` and ``label_issues``), with thumbnails embedded as
data URIs like the page's other images, file names, splits and labels. Nothing here changes
the data; the sections say so."""

from __future__ import annotations

from typing import Any

import numpy as np

from tlkit.data.images import read_image, to_rgb
from tlkit.evaluation.embed import e, png_uri

#: Near-duplicate groups and label issues shown with thumbnails (all are in data_report.json).
MISTAKE_GROUPS = 20
MISTAKE_ITEMS = 24
THUMB = 112


def _short_path(path: Any, root: str | None) -> str:
    """``path`` relative to the data folder when it lies inside it."""
    text = str(path)
    if root and text.startswith(root.rstrip("/") + "/"):
        return text[len(root.rstrip("/")) + 1:]
    return text


class _Thumbnails:
    """Small PNG data URIs of the data's images by origin (what ``data_report.json`` names):
    read from the bundle (a converted copy or in-memory pixels) or from the file itself."""

    def __init__(self, bundle):
        self.where = {}
        for split in (bundle.splits().values() if bundle is not None else ()):
            for i, origin in enumerate(split.origins):
                self.where.setdefault(origin, (split, i))

    def __call__(self, origin: str) -> str | None:
        from PIL import Image

        try:
            split, i = self.where.get(origin, (None, None))
            if split is not None and split.in_memory:
                image = Image.fromarray(np.asarray(split.images[i], np.uint8).squeeze())
            else:
                image = read_image(split.paths[i] if split is not None else origin)
            image = to_rgb(image)
            image.thumbnail((THUMB, THUMB))
            return png_uri(np.asarray(image))
        except Exception:  # noqa: BLE001 - a file gone since the run: no thumbnail
            return None


def _thumb_tile(thumb: _Thumbnails, item: dict, root: str | None, lines: list[str]) -> str:
    src = thumb(str(item.get("path")))
    name = _short_path(item.get("path"), root)
    image = (f'<img alt="{e(name)}" src="{src}">' if src
             else '<p class="muted">(not readable now)</p>')
    return (f'<div class="tile">{image}<br>{e(name)}<br>' + "<br>".join(lines) + "</div>")


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


KIND_WORDS = {"cross_split": "across splits (train with val/test is a leak: held-out scores "
                             "are inflated)",
              "conflicting_labels": "with different labels",
              "within_split": "within one split"}


def _near_duplicates(found: dict, thumb: _Thumbnails, root: str | None) -> list[str]:
    """Groups of near-copies: one sentence of counts, then each group's thumbnails."""
    s, groups = found.get("summary") or {}, found.get("groups") or []
    if not groups:
        note = f" ({s['note']})" if s.get("note") else ""
        return [f"<h2>Near-duplicate images</h2><p>None found among {e(s.get('images', 0))} "
                f"images{e(note)} (pHash within {e(s.get('max_distance', '-'))} bits).</p>"]
    by_kind = s.get("by_kind") or {}
    counted = "; ".join(f"{n} {KIND_WORDS[k]}" for k, n in by_kind.items() if n)
    leaked = "; ".join(f"{_n(n, f'{split} image')} {'has' if n == 1 else 'have'} a near-copy "
                       "in train"
                       for split, n in sorted((s.get("held_out_with_train_copy") or {}).items()))
    out = ["<h2>Near-duplicate images</h2>",
           f"<p>{e(_n(s.get('groups', 0), 'group'))} of near-copies "
           f"({e(s.get('images_in_groups'))} of {e(s.get('images'))} images): {e(counted)}."
           + (f" {e(leaked)}." if leaked else "")
           + f" Found by {e(s.get('method'))} within {e(s.get('max_distance'))} bits. Nothing "
           "was removed: decide which copy to keep.</p>"]
    if s.get("note"):
        out.append(f"<p class=muted>Note: {e(s['note'])}.</p>")
    for group in groups[:MISTAKE_GROUPS]:
        distances = {}
        for a, b, d in group.get("pairs", []):
            distances[a] = min(distances.get(a, 99), d)
            distances[b] = min(distances.get(b, 99), d)
        tiles = "".join(_thumb_tile(thumb, item, root, [
            f"{e(item.get('split'))}, <b>{e(item.get('label'))}</b>",
            f"{distances.get(k, 0)} bits from its nearest copy"])
            for k, item in enumerate(group["items"][:8]))
        more = len(group["items"]) - 8
        kinds = " and ".join(KIND_WORDS.get(k, k) for k in group.get("kinds", [group["kind"]]))
        out.append(f'<div class="group"><p>Near-copies {e(kinds)}'
                   + (f" ({more} more images)" if more > 0 else "")
                   + f'</p><div class="grid">{tiles}</div></div>')
    if len(groups) > MISTAKE_GROUPS:
        out.append(f"<p class=muted>The first {MISTAKE_GROUPS} of {len(groups)} groups; all "
                   "in data_report.json.</p>")
    return out


def _label_issues(found: dict, thumb: _Thumbnails, root: str | None) -> list[str]:
    """Likely label errors, most doubtful first, with thumbnails."""
    s, items = found.get("summary") or {}, found.get("items") or []
    if not items:
        note = f" ({s['note']})" if s.get("note") else ""
        return [f"<h2>Possible label errors</h2><p>None found among {e(s.get('images', 0))} "
                f"labelled images{e(note)}.</p>"]
    out = ["<h2>Possible label errors</h2>",
           f"<p>{e(s.get('flagged'))} of {e(s.get('images'))} labelled images may carry "
           f"{'a' if s.get('flagged') == 1 else 'the'} wrong label, most doubtful first: {e(s.get('method'))}; probabilities from "
           f"{e(s.get('probabilities', 'out-of-fold predictions'))}. Nothing was relabelled: "
           "look at each.</p>"]
    tiles = "".join(_thumb_tile(thumb, item, root, [
        f"#{e(item.get('rank'))} {e(item.get('split'))}",
        f"labelled <b>{e(item.get('label'))}</b>",
        f'looks like <span class="bad">{e(item.get("suggested"))}</span>',
        f"p(label) {float(item.get('p_given', 0)):.3f}"]) for item in items[:MISTAKE_ITEMS])
    out.append(f'<div class="grid issues">{tiles}</div>')
    if len(items) > MISTAKE_ITEMS:
        out.append(f"<p class=muted>The first {MISTAKE_ITEMS} of {s.get('flagged')}; all in "
                   "data_report.json.</p>")
    return out


def mistake_sections(data: dict, bundle) -> list[str]:
    """The near-duplicate and label-issue sections (each only when the run checked for it)."""
    if not (data.get("near_duplicates") or data.get("label_issues")):
        return []
    thumb, root = _Thumbnails(bundle), data.get("source")
    out = []
    if data.get("near_duplicates"):
        out += _near_duplicates(data["near_duplicates"], thumb, root)
    if data.get("label_issues"):
        out += _label_issues(data["label_issues"], thumb, root)
    return out
