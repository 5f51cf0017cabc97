"""The source notes' claims about the classic CNNs, reproduced at small scale with tlkit's own
builders, recipes and evaluation methods (docs/paper-claims.md).

Every arm is ``tlkit pretrain`` from scratch on Fashion-MNIST (Debian's
``dataset-fashion-mnist``): ``--per-class`` images per class drawn by the seed (a fifth held
out for validation), the same draw for every arm of a seed, then scored on the same
class-balanced ``--test-images`` of the official test split (never on the validation split).
Each claim is a controlled comparison of arms that differ in the one thing the paper varies:

* ``resnet``: CIFAR plain-20/56 against ResNet-20/56 (He et al. 2016, section 4.2, Fig. 6),
  the paper's recipe (``recipes/paper-resnet-cifar.yaml``) at 32 px;
* ``vgg``: configurations A, A-LRN, B and D at single-scale S, and D with scale jitter
  (Simonyan & Zisserman 2015, Table 3), at a quarter of the width (``recipes/paper-vgg-32``);
* ``alexnet``: overlapping 3x3/2 pooling against 2x2/2, PCA colour on and off, and the ensemble
  of the seeds' networks (Krizhevsky et al. 2012, sections 3.4, 4.1, 6; ``paper-alexnet-67``);
* ``evaluation``: single crop, dense (multi-scale), multi-crop and multi-crop & dense on the
  ``vgg`` claim's jittered D (VGG Table 5's form).

Runs and scores are kept in ``WORKDIR`` (``cells.json``, one run directory per arm and seed), so
an interrupted study continues, and ``--claim`` runs it in parts; the results file holds every
claim measured on this commit. ``--render`` writes the tables, figures and docs/paper-claims.md
again from WORKDIR without measuring.

    python benchmarks/paper_claims.py [--claim resnet] [--seeds 1,2,3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

NAME = "paper_claims"
FMNIST = "/usr/share/datasets/fashion-mnist"
DOC = harness.ROOT / "docs" / "paper-claims.md"
FIGURES = harness.ROOT / "docs" / "img"
QUICK = {"seeds": "1,2", "per_class": 12, "epochs_scale": 0.125, "test_images": 100,
         "eval_images": 20}  # fmt: skip


@dataclass(frozen=True)
class Arm:
    name: str
    backbone: str
    recipe: str
    epochs: int
    sets: tuple[str, ...] = ()
    label: str = ""


@dataclass(frozen=True)
class Comparison:
    """The paper says arm ``better`` has a lower test error than ``worse`` (or, with ``null``,
    that ``better`` is not lower than ``worse``: "LRN does not improve")."""

    claim: str
    key: str
    better: str
    worse: str
    paper: str
    null: bool = False
    metric: str = "test_err"


JITTER = ("augment.scale_jitter.s_max=512",)
ARMS = {
    "resnet": [
        Arm(f"{kind}{depth}", f"{kind}{depth}", "paper-resnet-cifar", 12,
            ("train.schedule.step_epochs=6",), f"{'ResNet' if kind == 'resnet' else 'plain'}-{depth}")
        for kind in ("plain", "resnet") for depth in (20, 56)
    ],
    "vgg": [
        Arm("A", "vgg11", "paper-vgg-32", 8, (), "A (S=256)"),
        Arm("A-LRN", "vgg11_lrn", "paper-vgg-32", 8, (), "A-LRN (S=256)"),
        Arm("B", "vgg13", "paper-vgg-32", 8, (), "B (S=256)"),
        Arm("D", "vgg16", "paper-vgg-32", 8, (), "D (S=256)"),
        Arm("D-jitter", "vgg16", "paper-vgg-32", 8, JITTER, "D (S in [256, 512])"),
    ],
    "alexnet": [
        Arm("overlap", "alexnet", "paper-alexnet-67", 6, (), "3x3/2 pooling, PCA colour"),
        Arm("no-overlap", "alexnet", "paper-alexnet-67", 6,
            ("model.backbone_args.overlapping_pooling=false",), "2x2/2 pooling, PCA colour"),
        Arm("no-PCA", "alexnet", "paper-alexnet-67", 6,
            ("augment.pca_colour.enabled=false",), "3x3/2 pooling, no PCA colour"),
    ],
}
COMPARISONS = [
    Comparison("resnet", "plain: 56 layers worse than 20 (test)", "plain20", "plain56",
               "plain-56 above plain-20 (Fig. 6 left)"),
    Comparison("resnet", "plain: 56 layers worse than 20 (training error)", "plain20", "plain56",
               "higher training error too: not over-fitting", metric="train_err"),
    Comparison("resnet", "residual: 56 layers better than 20", "resnet56", "resnet20",
               "6.97 % against 8.75 % (Table 6)"),
    Comparison("resnet", "56 layers: shortcuts help", "resnet56", "plain56",
               "ResNet-56 far below plain-56 (Fig. 6)"),
    Comparison("vgg", "LRN does not improve A", "A-LRN", "A",
               "A-LRN 29.7 % against A 29.6 % top-1 (Table 3)", null=True),
    Comparison("vgg", "depth: B better than A", "B", "A", "28.7 % against 29.6 %"),
    Comparison("vgg", "depth: D better than B", "D", "B", "27.0 % against 28.7 %"),
    Comparison("vgg", "scale jitter better than fixed S (D)", "D-jitter", "D",
               "25.6 % against 26.8-27.0 %"),
    Comparison("alexnet", "overlapping pooling better", "overlap", "no-overlap",
               "-0.4 points top-1 (section 3.4)"),
    Comparison("alexnet", "PCA colour better", "overlap", "no-PCA",
               "-1 point top-1 (section 4.1)"),
    Comparison("alexnet", "an ensemble beats one network", "ensemble", "single",
               "5 CNNs 16.4 % against 18.2 % top-1 (section 6)"),
    Comparison("evaluation", "dense better than single crop", "dense", "single",
               "VGG Table 5: dense 24.8 %"),
    Comparison("evaluation", "multi-crop better than single crop", "multicrop", "single",
               "multi-crop 24.6 %"),
    Comparison("evaluation", "multi-crop & dense better than multi-crop", "multicrop & dense",
               "multicrop", "24.4 % against 24.6 %"),
    Comparison("evaluation", "multi-crop & dense better than dense", "multicrop & dense",
               "dense", "24.4 % against 24.8 %"),
]
EVAL_METHODS = ("single", "multiscale", "multicrop")
EVAL_LABEL = {"multiscale": "dense"}


# --------------------------------------------------------------------------- measuring


def test_data(data: str) -> str:
    return f"idx:{data}/t10k-images-idx3-ubyte.gz,{data}/t10k-labels-idx1-ubyte.gz"


def train(arm: Arm, seed: int, args, rundir: Path) -> dict:
    """One ``tlkit pretrain`` of ``arm``: wall seconds and the per-epoch history."""
    epochs = max(1, round(arm.epochs * args.epochs_scale))
    command = [sys.executable, "-m", "tlkit.cli.main", "pretrain", "--recipe", arm.recipe,
               "--backbone", arm.backbone, "--data", f"idx:{args.data}", "--seed", str(seed),
               "--set", f"data.max_per_class={args.per_class}", "--epochs", str(epochs),
               "--set", "train.verbose=2", "--output", str(rundir)]
    for item in arm.sets:
        key, _, value = item.partition("=")
        if key == "train.schedule.step_epochs":  # the drop at the same fraction of the run
            item = f"{key}={max(1, round(int(value) * args.epochs_scale))}"
        command += ["--set", item]
    started = time.perf_counter()
    with open(rundir.with_suffix(".log"), "a") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{arm.name} seed {seed} failed ({done.returncode}): see "
                         f"{rundir.with_suffix('.log')}")
    metrics = json.loads((rundir / "metrics.json").read_text())
    return {"wall_s": wall, "epochs": epochs, "history": [
        {k: h[k] for k in ("epoch", "accuracy", "loss", "val_accuracy", "val_loss")}
        for h in metrics["history"]]}


def score(paths: list[Path], args, methods, images: int, probs_dir: Path, tag: str) -> dict:
    """Test error of each method on ``paths`` (one model); its probabilities kept for ensembles."""
    import numpy as np

    from tlkit.evaluation import evaluate_runs

    results, _ = evaluate_runs(paths, test_data(args.data), list(methods), max_images=images)
    out = {}
    for r in results:
        np.save(probs_dir / f"{tag}-{r.method}.npy", r.probabilities.astype("float32"))
        np.save(probs_dir / "labels.npy" if images == args.test_images else
                probs_dir / "labels-eval.npy", r.labels)
        out[r.method] = {"err": 1 - r.top1, "ms_per_image": r.ms_per_image, "count": r.count,
                         "scales": r.scales}
    import keras

    keras.backend.clear_session()
    return out


def measure(state: dict, save, args, workdir: Path) -> None:
    cells = state["cells"]
    seeds = [int(s) for s in args.seeds.split(",")]
    probs = workdir / "probs"
    probs.mkdir(exist_ok=True)
    for claim in args.claim:
        arms = ARMS["vgg"][-1:] if claim == "evaluation" else ARMS[claim]
        for seed in seeds:
            for arm in arms:
                group = "vgg" if claim == "evaluation" else claim
                key = f"{group}/{arm.name}/{seed}"
                rundir = workdir / "runs" / f"{group}-{arm.name}-s{seed}"
                if key not in cells:
                    print(f"# {key}: training", flush=True)
                    cell = train(arm, seed, args, rundir)
                    cell |= {"test": score([rundir], args, ["single"], args.test_images, probs,
                                           key.replace("/", "-"))}
                    cells[key] = cell
                    save()
                    print(f"# {key}: {cell['wall_s']:.0f} s, test error "
                          f"{cell['test']['single']['err']:.4f}", flush=True)
                if claim == "evaluation" and f"evaluation/{seed}" not in cells:
                    print(f"# evaluation/{seed}: scoring", flush=True)
                    cells[f"evaluation/{seed}"] = score(
                        [rundir], args, EVAL_METHODS, args.eval_images, probs, f"eval-s{seed}")
                    save()


# --------------------------------------------------------------------------- summarising


def _values(cells: dict, claim: str, arm: str, metric: str, seeds: list[int], workdir: Path):
    """``{seed: value}`` of ``metric`` for one arm (ensembles and eval methods included)."""
    import numpy as np

    out = {}
    for seed in seeds:
        if claim == "evaluation":
            cell = cells.get(f"evaluation/{seed}")
            if cell is None:
                continue
            if arm == "multicrop & dense":
                p = workdir / "probs"
                labels = np.load(p / "labels-eval.npy")
                both = sum(np.load(p / f"eval-s{seed}-{m}.npy") for m in ("multiscale", "multicrop"))
                out[seed] = float(np.mean(both.argmax(1) != labels))
            else:
                out[seed] = cell[{"dense": "multiscale"}.get(arm, arm)]["err"]
            continue
        cell = cells.get(f"{claim}/{arm}/{seed}")
        if cell is None:
            continue
        if metric == "test_err":
            out[seed] = cell["test"]["single"]["err"]
        elif metric == "train_err":
            out[seed] = 1 - cell["history"][-1]["accuracy"]
    return out


def ensemble(cells: dict, claim: str, seeds: list[int], workdir: Path):
    """The ``overlap`` arm's networks of every seed and their ensemble (probabilities averaged):
    ``(members' mean error, ensemble error, verdict, rule)``, or None below two networks.

    There is one ensemble, so its standard error is over the test images: 1,000 paired
    bootstrap resamples of the images, of the members' mean error minus the ensemble's.
    """
    import numpy as np

    have = [s for s in seeds if f"{claim}/overlap/{s}" in cells]
    if len(have) < 2:
        return None
    p = workdir / "probs"
    labels = np.load(p / "labels.npy")
    members = [np.load(p / f"{claim}-overlap-{s}-single.npy") for s in have]
    wrong_each = np.mean([m.argmax(1) != labels for m in members], axis=0)  # per image
    wrong_all = (sum(members).argmax(1) != labels).astype(float)
    gain = wrong_each - wrong_all
    rng = np.random.default_rng(0)
    boot = [gain[rng.integers(0, len(gain), len(gain))].mean() for _ in range(1000)]
    mean, se = float(gain.mean()), float(np.std(boot))
    word = ("reproduced" if mean > 2 * se else "contradicted" if mean < -2 * se
            else "not measurable at this scale")
    rule = (f"{100 * mean:+.2f} ± {100 * se:.2f} points (one ensemble of {len(have)}; s.e. from "
            f"1,000 bootstrap resamples of the {len(labels)} test images)")
    return float(wrong_each.mean()), float(wrong_all.mean()), len(have), word, rule


def verdict(diffs: list[float], null: bool) -> tuple[str, str]:
    """(verdict, rule) from the paired differences worse - better (positive: the paper's way).

    Reproduced: the mean difference is in the paper's direction by more than two standard
    errors; contradicted: by more than two the other way; otherwise not measurable at this
    scale (within the seeds' noise). A null claim ("does not improve") is reproduced unless
    ``better`` is lower by more than two standard errors.
    """
    n = len(diffs)
    if n < 3:
        return "not measured", f"{n} seeds: fewer than three"
    mean = statistics.fmean(diffs)
    se = statistics.stdev(diffs) / n**0.5
    rule = f"{100 * mean:+.2f} ± {100 * se:.2f} points (mean ± s.e., {n} seeds)"
    if null:
        return ("contradicted" if mean > 2 * se else "reproduced"), rule
    if mean > 2 * se:
        return "reproduced", rule
    if mean < -2 * se:
        return "contradicted", rule
    return "not measurable at this scale", rule


def summary(cells: dict, seeds: list[int], workdir: Path, claims: list[str]):
    tables, verdicts = [], []
    for claim in claims:
        arms = ARMS.get(claim, [])
        rows = []
        for arm in arms:
            test = _values(cells, claim, arm.name, "test_err", seeds, workdir)
            if not test:
                continue
            trained = [cells[f"{claim}/{arm.name}/{s}"] for s in test]
            train_err = [1 - c["history"][-1]["accuracy"] for c in trained]
            rows.append([arm.label or arm.name, arm.backbone, _pct(list(test.values())),
                         _pct(train_err), _sec([c["wall_s"] for c in trained]),
                         trained[0]["epochs"], len(test)])
        if claim == "alexnet":
            got = ensemble(cells, claim, seeds, workdir)
            if got:
                rows.append([f"ensemble of the {got[2]} networks above it (3x3/2, PCA)",
                             "alexnet", _pct([got[1]]), "", "", "", "one ensemble"])
        if claim == "evaluation":
            for method in ("single", "dense", "multicrop", "multicrop & dense"):
                got = _values(cells, claim, method, "test_err", seeds, workdir)
                if got:
                    ms = [cells[f"evaluation/{s}"].get({"dense": "multiscale"}.get(method, method),
                                                       {}).get("ms_per_image") for s in got]
                    ms = [m for m in ms if m is not None]
                    rows.append([method, "vgg16 (D, jittered)", _pct(list(got.values())), "",
                                 f"{statistics.fmean(ms):.1f} ms/img" if ms else "", "",
                                 len(got)])
        if rows:
            tables.append({"title": f"{claim}: test error % (mean ± sd over seeds)",
                           "columns": ["arm", "backbone", "test error %", "final train error %",
                                       "wall s per run", "epochs", "seeds"], "rows": rows})
        for comp in (c for c in COMPARISONS if c.claim == claim):
            if comp.better == "ensemble":
                got = ensemble(cells, claim, seeds, workdir)
                if got:
                    verdicts.append([claim, comp.key, comp.paper, got[4], got[3]])
                continue
            worse = _values(cells, claim, comp.worse, comp.metric, seeds, workdir)
            better = _values(cells, claim, comp.better, comp.metric, seeds, workdir)
            paired = sorted(set(worse) & set(better))
            diffs = [worse[s] - better[s] for s in paired]
            word, rule = verdict(diffs, comp.null)
            verdicts.append([claim, comp.key, comp.paper, rule, word])
    if verdicts:
        tables.append({"title": "verdicts: paired differences (the paper's worse arm minus its "
                                "better arm; positive is the paper's direction)",
                       "columns": ["claim", "comparison", "paper", "measured", "verdict"],
                       "rows": verdicts})
    return tables


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    sd = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.2f}{sd}"


def _sec(values: list[float]) -> str:
    return f"{statistics.fmean(values):.0f}" if values else "-"


def figures(cells: dict, seeds: list[int], outdir: Path) -> list[Path]:
    """Training and validation error per epoch, mean over seeds (ResNet Fig. 4/6's form)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for claim, arms in ARMS.items():
        have = [a for a in arms if any(f"{claim}/{a.name}/{s}" in cells for s in seeds)]
        if not have:
            continue
        panels = ({"plain": [a for a in have if a.name.startswith("plain")],
                   "residual": [a for a in have if a.name.startswith("resnet")]}
                  if claim == "resnet" else {claim: have})
        fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
        for ax, (title, group) in zip(axes[0], panels.items(), strict=True):
            for i, arm in enumerate(group):
                runs = [cells[f"{claim}/{arm.name}/{s}"] for s in seeds
                        if f"{claim}/{arm.name}/{s}" in cells]
                epochs = [h["epoch"] for h in runs[0]["history"]]
                for key, style, what in (("accuracy", "--", "train"), ("val_accuracy", "-", "val")):
                    curve = [100 * (1 - statistics.fmean(r["history"][e - 1][key] for r in runs))
                             for e in epochs]
                    ax.plot(epochs, curve, style, color=f"C{i}", marker=".",
                            label=f"{arm.label or arm.name} {what}")
            ax.set_title(f"{title} (dashed: training error, solid: validation error)",
                         fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel("error %")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = outdir / f"paper-claims-{claim}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- the page


def write_doc(doc: dict, figures_written: list[Path]) -> None:
    """docs/paper-claims.md: benchmarks/templates/paper_claims.md's prose with the tables."""
    template = (Path(HERE) / "templates" / "paper_claims.md").read_text()
    machine = harness.machine_line(doc["machine"])
    tables = {t["title"].split(":")[0]: harness.markdown_table(t) for t in doc["tables"]}
    verdicts = next((t for t in doc["tables"] if t["title"].startswith("verdicts")), None)
    by_claim = {}
    for row in (verdicts or {}).get("rows", []):
        by_claim.setdefault(row[0], []).append(row[1:])
    given = doc["settings"]
    parts = {"machine": machine, "command": doc["command"], "per_class": given["per_class"],
             "train_per_class": given["per_class"] - round(given["per_class"] / 5),
             "seeds": given["seeds"].replace(",", ", "), "test_images": f"{given['test_images']:,}",
             "eval_images": f"{given['eval_images']:,}"}
    parts["summary"] = harness.markdown_table({
        "columns": ["claim", "comparison", "measured", "verdict"],
        "rows": [[row[0], row[1], row[3], f"**{row[4]}**"] for row in (verdicts or {}).get(
            "rows", [])]}) if verdicts else "*Nothing measured yet.*"
    for claim in (*ARMS, "evaluation"):
        rows = by_claim.get(claim, [])
        verdict_table = harness.markdown_table({"columns": ["comparison", "paper", "measured",
                                                            "verdict"], "rows": rows})
        parts[f"{claim}_table"] = tables.get(claim, "*Not measured on this commit.*")
        parts[f"{claim}_verdicts"] = verdict_table if rows else ""
    DOC.write_text(template.format(**parts))
    print(f"wrote {DOC} and {', '.join(str(p) for p in figures_written)}")


def settings(args) -> dict:
    """What a cell's numbers depend on besides the commit (the seeds only add cells)."""
    return {k: getattr(args, k) for k in ("data", "per_class", "epochs_scale", "test_images",
                                          "eval_images")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claim", action="append", choices=[*ARMS, "evaluation"],
                        help="A claim to measure (repeatable); default every claim.")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--data", default=FMNIST)
    parser.add_argument("--per-class", type=int, default=300,
                        help="Images per class drawn per seed (a fifth for validation).")
    parser.add_argument("--epochs-scale", type=float, default=1.0,
                        help="Multiply every arm's epochs (a smoke test uses 0.25).")
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--eval-images", type=int, default=1000,
                        help="Test images for the evaluation claim's 144-crop method.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tlkit-paper-claims"))
    parser.add_argument("--render", action="store_true",
                        help="Measure nothing: the tables, figures and page from WORKDIR.")
    args = harness.parse_args(parser, argv, QUICK)
    args.claim = args.claim or [*ARMS, "evaluation"]
    run = harness.Run(NAME, args, argv)
    workdir = args.workdir / ("quick" if args.quick else "full")
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    state_file = workdir / "cells.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    commit = (run.machine.get("git") or {}).get("commit")
    if args.render:
        if not state.get("cells"):
            raise SystemExit(f"--render: no cells in {state_file}")
    elif state.get("commit") != commit or state.get("settings") != settings(args):
        # Another commit or other settings: nothing measured before counts, runs included
        # (a finished run directory would otherwise be reused, its training not redone).
        for stale in ("runs", "probs"):
            shutil.rmtree(workdir / stale, ignore_errors=True)
        (workdir / "runs").mkdir()
        state = {"commit": commit, "settings": settings(args), "machine": run.machine,
                 "cells": {}}  # fmt: skip
    if not args.render:
        state["machine"] = run.machine
        started = time.perf_counter()
        measure(state, lambda: harness.write_json(state, state_file), args, workdir)
        print(f"# measured in {time.perf_counter() - started:.0f} s", flush=True)
    run.machine = state["machine"]
    run.command = "python benchmarks/paper_claims.py"
    seeds = [int(s) for s in args.seeds.split(",")]
    claims = [c for c in (*ARMS, "evaluation")
              if any(k.startswith(f"{'vgg' if c == 'evaluation' else c}/") for k in state["cells"])
              and (c != "evaluation" or any(k.startswith("evaluation/") for k in state["cells"]))]
    tables = summary(state["cells"], seeds, workdir, claims)
    notes = [f"Fashion-MNIST, {args.per_class} images per class drawn per seed (a fifth held out "
             f"for validation), test error on {args.test_images} class-balanced official test "
             f"images ({args.eval_images} for the evaluation methods); seeds {args.seeds}; "
             f"claims measured: {', '.join(claims)}"]
    doc = run.finish(tables, (), notes)
    if harness.will_save(args) or args.render:
        FIGURES.mkdir(parents=True, exist_ok=True)
        write_doc(doc, figures(state["cells"], seeds, FIGURES))
    return doc


if __name__ == "__main__":
    main()
