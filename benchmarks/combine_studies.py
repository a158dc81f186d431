"""Combine the `results.json` of several study folders (`benchmarks/reproduce_small.py --report`) into one report.

A study folder runs one seed list; adding seeds or arms to an earlier slice is a second folder with the same recipe
(`--tokenizer_steps`, `--probe_max_train` match it). This script puts their cells side by side: per (domain, arm, N,
prior, steps) every seed's numbers and, with two seeds or more, mean ± spread (sample standard deviation); per
tokenizer its reconstruction, cliff and probe; and the gFID ratio VCQ / uniform per regime, over the mean of each
arm's seeds and per seed where both arms have it. It refuses folders whose recipes differ (naming the field), so a
table never mixes two recipes.

    python benchmarks/combine_studies.py docs/reproduction/v2-slice2/results.json \
        docs/reproduction/v2-slice3/results.json --output docs/reproduction/v2-combined
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np


# Settings that change what a cell or a tokenizer measures: they must agree between combined folders.
SHARED_SETTINGS = (
    "resolution",
    "num_tokens",
    "k_max",
    "baseline_arm",
    "prior_batch_size",
    "prior_learning_rate",
    "nll_max_sequences",
    "guidance_scales",
    "guidance_step",
    "guidance_max",
    "sweep_samples",
    "num_samples",
)
SHARED_TOKENIZER_RECIPE = ("vq_preset", "vq_overrides", "batch_size", "extra_args")
PROBE_KS = (1, 4, 10, 32)


def check_compatible(studies: dict[str, dict]) -> None:
    """Raise ValueError naming the first setting on which two studies differ."""
    (first_name, first), *rest = studies.items()
    prior_specs: dict[str, tuple[str, dict]] = {}
    for name, results in studies.items():  # a prior size of one name must be the same model in every study
        for spec in results["settings"]["priors"]:
            seen = prior_specs.setdefault(spec["name"], (name, spec))
            if seen[1] != spec:
                raise ValueError(f"Prior '{spec['name']}' is {spec} in {name} but {seen[1]} in {seen[0]}.")
    plateau = [
        (n, r["settings"]["prior_plateau_tolerance"])
        for n, r in studies.items()
        if r["settings"].get("prior_plateau_chunk")
    ]
    if len({t for _, t in plateau}) > 1:
        raise ValueError(f"The studies stop their plateau priors at different tolerances: {plateau}.")
    for name, results in rest:
        for key in SHARED_SETTINGS:
            if results["settings"].get(key) != first["settings"].get(key):
                raise ValueError(
                    f"{name} and {first_name} differ in settings.{key} ({results['settings'].get(key)!r} vs "
                    f"{first['settings'].get(key)!r}): their cells do not measure the same thing."
                )
        for key in SHARED_TOKENIZER_RECIPE:
            ours, theirs = results["settings"]["tokenizer"].get(key), first["settings"]["tokenizer"].get(key)
            if ours != theirs:
                raise ValueError(
                    f"{name} and {first_name} differ in the tokenizer recipe's {key} ({ours!r} vs {theirs!r})."
                )


def mean_spread(values: list[float], digits: int = 2) -> str:
    """`m ± s` over the seeds (s = sample standard deviation, ddof 1) or the single value."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def cell_row(result: dict, space: str) -> dict:
    """The numbers of one cell that the combined tables show."""
    nll = result.get("nll", {})
    none, best = result.get("no_guidance", {}), result.get("best_guidance", {})
    return {
        "train_nll": nll.get("train", {}).get("mean_bits_per_image"),
        "test_nll": nll.get("test", {}).get("mean_bits_per_image"),
        "gap": nll.get("gap_bits_per_image"),
        "copy_rate": none.get("copies", {}).get("copy_rate"),
        "shared_prefix": none.get("copies", {}).get("mean_shared_prefix"),
        "gfid_none": none.get(f"FID-{space}"),
        "gfid_best": best.get(f"FID-{space}"),
        "best_scale": result.get("best_guidance_scale"),
        "precision": none.get(f"precision-{space}"),
        "recall": none.get(f"recall-{space}"),
        "accuracy": none.get(f"accuracy-{space}"),
    }


def training_fingerprint(summary: dict) -> str:
    """What tells two tokenizers apart in their training summaries: steps, wall time and final logged losses (a study
    that adopts a tokenizer keeps the summary of the run that trained it)."""
    logs = json.dumps(summary.get("final_logs"), sort_keys=True)
    return f"{summary.get('global_step')} steps, {summary.get('wall_time_s')} s, final logs {logs}"


def collect(studies: dict[str, dict]) -> tuple[dict, dict]:
    """(cells, tokenizers): cells[(domain, arm, N, prior, length)][seed] and tokenizers[(domain, arm)][seed].

    `length` is the prior's step count, or its cap and chunk for a prior trained until its train NLL stopped falling.
    """
    cells: dict = defaultdict(dict)
    tokenizers: dict = defaultdict(dict)
    for name, results in studies.items():
        for cell_name, result in results.get("cells", {}).items():
            c = result["cell"]
            space = results["settings"]["domains"][c["domain"]]["feature_spaces"][0]
            chunk = results["settings"].get("prior_plateau_chunk")
            length = f"up to {c['steps']} (plateau, chunks of {chunk})" if c.get("plateau") else str(c["steps"])
            key = (c["domain"], c["arm"], c["num_train"], c["prior"], length)
            if c["seed"] in cells[key]:
                raise ValueError(
                    f"Cell {cell_name} (seed {c['seed']}) is in {name} and in {cells[key][c['seed']]['source']}."
                )
            cells[key][c["seed"]] = {"source": name, "space": space, **cell_row(result, space)}
        for tag, evaluation in results.get("tokenizer_eval", {}).items():
            domain, arm, seed = tag.rsplit("-", 2)
            summary = results.get("tokenizers", {}).get(tag, {})
            probe = evaluation.get("probe", {})
            adopted = (
                results["settings"].get("adopted_tokenizers", {}).get(arm)
                if int(seed) == results["settings"]["seeds"][0]
                else None
            )
            if adopted:
                summary = adopted["training_summary"]
            identity = training_fingerprint(summary)
            seen = tokenizers[(domain, arm)].get(int(seed))
            if seen is not None:
                if seen["identity"] != identity:
                    raise ValueError(
                        f"Tokenizer {tag} of {name} ({identity}) is not the one of {seen['source']} ({seen['identity']}): two "
                        "tokenizers of one seed."
                    )
                continue  # the same tokenizer, trained by one study and adopted by another: the first evaluation counts
            tokenizers[(domain, arm)][int(seed)] = {
                "source": name,
                "identity": identity,
                "steps": summary.get("global_step"),
                "psnr": evaluation["psnr"],
                "rfid": next(iter(evaluation["rFID"].values()), None),
                "capacity_bits": evaluation["capacity_bits"],
                "cliffs": {
                    n: (e["predicted_cliff"], e["observed_cliff"]) for n, e in evaluation.get("entropy", {}).items()
                },
                "probe": {kind: dict(zip(p["ks"], p["test_accuracy"], strict=True)) for kind, p in probe.items()},
            }
    return cells, tokenizers


def format_report(studies: dict[str, dict]) -> str:
    check_compatible(studies)
    cells, tokenizers = collect(studies)
    baseline = next(iter(studies.values()))["settings"]["baseline_arm"]
    lines = [
        "# Study v2, combined (generated by benchmarks/combine_studies.py)",
        "",
        "Sources: " + ", ".join(f"`{name}`" for name in studies) + ". Mean ± spread over seeds (sample standard "
        "deviation); a single seed shows its value. Every seed of a row has its own tokenizer and prior.",
        "",
        "## Tokenizers (test split)",
        "",
        "| domain, arm | seeds | steps | PSNR (dB) | rFID | capacity (bits) | cliff N=1000 pred / obs | "
        + " | ".join(f"probe k={k} one-hot / emb" for k in PROBE_KS)
        + " |",
        "| --- | --- | --- | ---: | ---: | ---: | --- | " + " | ".join("---:" for _ in PROBE_KS) + " |",
    ]
    for (domain, arm), seeds in sorted(tokenizers.items()):
        rows = [seeds[s] for s in sorted(seeds)]
        cliffs = ", ".join(
            f"{r['cliffs']['1000'][0]} / {r['cliffs']['1000'][1]}" if "1000" in r["cliffs"] else "—" for r in rows
        )
        probes = []
        for k in PROBE_KS:
            kinds = [
                mean_spread(
                    [100 * r["probe"][kind][k] for r in rows if kind in r["probe"] and k in r["probe"][kind]], 1
                )
                for kind in ("onehot", "embedding")
            ]
            probes.append(" / ".join(kinds))
        lines.append(
            f"| {domain}, {arm} | {', '.join(map(str, sorted(seeds)))} | {', '.join(str(r['steps']) for r in rows)} | "
            f"{mean_spread([r['psnr'] for r in rows])} | {mean_spread([r['rfid'] for r in rows])} | "
            f"{rows[0]['capacity_bits']:.0f} | {cliffs} | " + " | ".join(probes) + " |"
        )
    lines += [
        "",
        "## Cells",
        "",
        "Train / held-out prior NLL in bits/image and their gap; copy rate and mean shared prefix of samples without "
        "guidance; gFID in the domain's first feature space without guidance and at each seed's best guidance scale.",
        "",
        "| domain, arm, N, prior, steps | seeds | train NLL | held-out NLL | gap | copy rate | shared prefix | "
        "gFID none | gFID best (scales) | precision / recall | accuracy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for key, seeds in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][3], kv[0][4], kv[0][1])):
        rows = [seeds[s] for s in sorted(seeds)]

        def ms(field: str, digits: int = 2, rows=rows) -> str:
            return mean_spread([r[field] for r in rows], digits)

        per_seed = ", ".join(f"{r['gfid_none']:.2f}" for r in rows if r["gfid_none"] is not None)
        scales = ", ".join(str(r["best_scale"]) for r in rows)
        lines.append(
            f"| {', '.join(map(str, key))} | {', '.join(map(str, sorted(seeds)))} | {ms('train_nll')} | "
            f"{ms('test_nll')} | {ms('gap')} | {ms('copy_rate', 3)} | {ms('shared_prefix')} | "
            f"{ms('gfid_none')} ({per_seed}) | {ms('gfid_best')} ({scales}) | {ms('precision', 3)} / "
            f"{ms('recall', 3)} | {ms('accuracy', 3)} |"
        )
    lines += [
        "",
        f"## gFID ratio VCQ / {baseline} (no guidance)",
        "",
        "Ratio of the seed means, and per seed where both arms have that seed (paper: 14.80 / 27.98 = 0.53).",
        "",
        f"| domain, N, prior, steps | VCQ arm | {baseline} gFID | VCQ gFID | ratio of means | per-seed ratios |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for (domain, arm, n, prior, steps), seeds in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1])):
        base = cells.get((domain, baseline, n, prior, steps))
        if arm == baseline or not base:
            continue
        base_values = [r["gfid_none"] for r in base.values()]
        values = [r["gfid_none"] for r in seeds.values()]
        paired = [f"s{s}: {seeds[s]['gfid_none'] / base[s]['gfid_none']:.2f}" for s in sorted(seeds) if s in base]
        lines.append(
            f"| {domain}, {n}, {prior}, {steps} | {arm} | {mean_spread(base_values)} | {mean_spread(values)} | "
            f"{np.mean(values) / np.mean(base_values):.2f} | {', '.join(paired) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="results.json files (or report folders holding one).")
    parser.add_argument("--output", type=Path, required=True, help="Folder for results.md.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    studies = {}
    for path in args.results:
        file = path / "results.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"{path}: no results.json there (a --report folder of reproduce_small.py or the file)."
            )
        studies[str(path)] = json.loads(file.read_text())
    report = format_report(studies)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.md").write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main()
