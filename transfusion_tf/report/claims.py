"""The claims table: one row per claim of the paper, this run's paired evidence and a verdict.

Each row holds the paper's statement, what this run measured (a difference, `other - base`,
with its 95 % percentile bootstrap CI over seed pairs or run pairs) and the verdict word of
`stats.verdict` (`higher` / `lower` / `no evidence`), whatever the data say. The rows are
computed from the paired comparisons of `compare` and from `transfusion-analyze compare`'s
JSON (per-unit similarity of run pairs), never written by hand:
  - final AUC: transfer - random, test mean AUC (Tables 1-2: about equal);
  - Mean Var speed: meanvar - random, steps to the threshold (Fig. 6: faster, i.e. `lower`);
  - transfusion: the fraction of transfer's speed-up (random - transfer steps) recovered by
    transfusing only the lowest unit, bootstrap over seeds; the verdict tests it against 50 %
    ("most"). Without a clear speed-up of transfer (its CI reaches 0) the fraction is
    undefined and the row compares the transfusion's steps with transfer's instead;
  - Gabor: gabor - random, steps to the threshold (faster: `lower`);
  - representations: per unit, how much less alike random-vs-transfer pairs are than
    random-vs-random pairs; the top unit's gap minus the lowest unit's (Fig. 2: `higher`),
    its CI over the runs resampled (pairs share runs);
  - model size: relative change of a larger model minus a smaller one's, mean over units and
    runs (Fig. 3: `lower`), or "not tested" when the run holds one model size.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from transfusion_tf.report import compare, stats, tables

NOT_TESTED = "not tested in this mode"
RANDOM_INIT = "random"  # the init name of random-init runs in the analysis JSON
MOST = 0.5  # "most" of transfer's speed-up: more than half


@dataclasses.dataclass(frozen=True)
class ClaimRow:
    """One claim: the paper's words, this run's measure, difference, CI, n and verdict."""

    claim: str
    paper: str
    measure: str
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    n: str
    verdict: str
    unit: str = ""  # "steps", "AUC", "fraction", "similarity", "relative change"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "steps":
        return f"{value:+.0f}"
    if unit == "fraction":
        return f"{100 * value:.0f} %"
    return f"{value:+.3f}"


def fmt_difference(row: ClaimRow) -> str:
    if row.verdict == NOT_TESTED:
        return "–"
    text = _fmt(row.difference, row.unit)
    return f"{text} steps" if row.unit == "steps" else text


def fmt_ci(row: ClaimRow) -> str:
    if row.ci_low is None or row.ci_high is None:
        return "–" if row.verdict == NOT_TESTED else "no CI"
    unit = row.unit
    lo, hi = _fmt(row.ci_low, unit), _fmt(row.ci_high, unit)
    if unit == "fraction":
        return f"[{lo}, {hi}]"
    return f"[{lo.lstrip('+')}, {hi.lstrip('+')}]"


def markdown(rows: Sequence[ClaimRow]) -> str:
    """The claims table in Markdown."""
    body = [
        [r.claim, r.paper, r.measure, fmt_difference(r), fmt_ci(r), r.verdict, r.n] for r in rows
    ]
    return tables.markdown_table(
        ["claim", "the paper", "this run measures", "difference", "95 % CI", "verdict", "n"],
        body,
    )


def _from_comparison(
    comparisons: Sequence[Mapping[str, Any]], *, init: str, metric: str
) -> Mapping[str, Any] | None:
    for row in comparisons:
        if row["init"] == init and row["metric"] == metric:
            return row
    return None


def _comparison_claim(
    comparisons: Sequence[Mapping[str, Any]],
    *,
    claim: str,
    paper: str,
    init: str,
    metric: str,
) -> ClaimRow:
    row = _from_comparison(comparisons, init=init, metric=metric)
    unit = "steps" if metric.startswith("steps@") else "AUC"
    measure = f"{init.split(' ')[0]} − random, {compare.metric_label(metric)}"
    if row is None:
        return ClaimRow(claim, paper, measure, None, None, None, "0", "no evidence", unit)
    if row.get("weights"):
        measure += f" ({row['weights']} weights)"
    if row.get("censored_pairs"):
        n_c = row["censored_pairs"]
        measure += f"; {n_c} pair{'s' if n_c != 1 else ''} censored at the run's end"
    return ClaimRow(
        claim=claim,
        paper=paper,
        measure=measure,
        difference=row["mean_diff"],
        ci_low=row["ci_low"],
        ci_high=row["ci_high"],
        n=compare.pairing_words(row),
        verdict=row["verdict"],
        unit=unit,
    )


def recovered_fraction(
    *,
    random_steps: Sequence[float],
    transfer_steps: Sequence[float],
    partial_steps: Sequence[float],
    num_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[float | None, float | None, float | None]:
    """Mean speed-up of `partial` over the mean speed-up of `transfer` (both vs random), paired
    by seed: (fraction, CI low, CI high); a resample whose transfer speed-up is not positive is
    left out (the fraction is undefined there)."""
    r, t, p = (np.asarray(v, np.float64) for v in (random_steps, transfer_steps, partial_steps))
    if not (r.size == t.size == p.size) or r.size == 0:
        raise ValueError("recovered_fraction needs one value per seed on every side")
    full, part = r - t, r - p
    if full.mean() <= 0:
        return None, None, None
    value = float(part.mean() / full.mean())
    if r.size < 2:
        return value, None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, r.size, size=(num_resamples, r.size))
    den, num = full[idx].mean(axis=1), part[idx].mean(axis=1)
    ok = den > 0
    if ok.sum() < num_resamples // 2:
        return value, None, None
    low, high = np.percentile(num[ok] / den[ok], [2.5, 97.5])
    return value, float(low), float(high)


def _steps_by_seed(runs: Sequence[tables.RunRecord], threshold: str) -> dict[int, float]:
    out = {}
    for run in runs:
        found = tables.crossing(run, threshold)
        if found is not None:
            out[run.seed] = found[0]
    return out


def transfusion_claim(
    groups: Mapping[tuple[str, str, str], Sequence[tables.RunRecord]],
    *,
    threshold: str,
    transfusion_init: str,
    transfer_init: str,
    num_resamples: int = stats.DEFAULT_RESAMPLES,
) -> ClaimRow:
    """Transfusion of the lowest unit recovers most of transfer's speed-up (Fig. 7)."""
    by_init = {init: runs for (_, _, init), runs in groups.items()}
    sides = [
        _steps_by_seed(by_init.get(i, ()), threshold)
        for i in ("random", transfer_init, transfusion_init)
    ]
    seeds = sorted(set(sides[0]) & set(sides[1]) & set(sides[2]))
    upto = transfusion_init.split("upto=")[-1].rstrip(")")
    claim = "Transfusion of the lowest unit recovers most of transfer's speed-up"
    paper = (
        "Reusing pretrained weights up to the lowest unit (random above) gives most of full "
        "transfer's convergence speed-up; gains level off after two blocks (Fig. 7)."
    )
    measure = (
        f"(random − transfusion upto={upto}) / (random − transfer) steps to AUC {threshold}; "
        f"verdict against {100 * MOST:.0f} %"
    )
    if not seeds:
        return ClaimRow(claim, paper, measure, None, None, None, "0", "no evidence", "fraction")
    random_steps, transfer_steps, partial_steps = ([side[s] for s in seeds] for side in sides)
    n = f"paired, {len(seeds)} seeds"
    speed_up = stats.paired_difference(
        base=transfer_steps, other=random_steps, num_resamples=num_resamples
    )
    if speed_up.ci_low is None or speed_up.ci_low <= 0:
        # No clear speed-up to recover: the fraction's denominator straddles 0, so test the
        # transfusion against transfer itself instead.
        vs_transfer = stats.paired_difference(
            base=transfer_steps, other=partial_steps, num_resamples=num_resamples
        )
        measure = (
            f"transfer's own speed-up over random is not above 0 here (random − transfer "
            f"{_signed_steps(speed_up.mean_diff)} steps, 95 % CI {_ci_steps(speed_up)}), so the "
            f"recovered fraction is undefined; instead transfusion upto={upto} − transfer, "
            f"steps to AUC {threshold} (`lower`: the transfusion is faster than full transfer)"
        )
        return ClaimRow(
            claim,
            paper,
            measure,
            vs_transfer.mean_diff,
            vs_transfer.ci_low,
            vs_transfer.ci_high,
            n,
            vs_transfer.verdict,
            "steps",
        )
    value, low, high = recovered_fraction(
        random_steps=random_steps,
        transfer_steps=transfer_steps,
        partial_steps=partial_steps,
        num_resamples=num_resamples,
    )
    verdict = stats.verdict(
        ci_low=None if low is None else low - MOST, ci_high=None if high is None else high - MOST
    )
    return ClaimRow(claim, paper, measure, value, low, high, n, verdict, "fraction")


def _signed_steps(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.0f}"


def _ci_steps(diff: stats.Difference) -> str:
    if diff.ci_low is None or diff.ci_high is None:
        return "undefined"
    return f"[{diff.ci_low:.0f}, {diff.ci_high:.0f}]"


def _pair_values(payload: Mapping[str, Any], kind: str, unit: str, measure: str) -> list[float]:
    out = []
    for pair in payload.get("pairs", []):
        if pair["kind"] != kind:
            continue
        value = (pair["units"].get(unit) or {}).get(measure)
        if value is not None:
            out.append(float(value))
    return out


def representation_claim(
    compare_payload: Mapping[str, Any] | None,
    *,
    num_resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
) -> ClaimRow:
    """Transfer and random representations differ more in higher layers (Fig. 2).

    gap(unit) = mean over random-vs-random pairs - mean over random-vs-transfer pairs of the
    primary similarity; the difference is gap(top unit) - gap(lowest unit). Pairs share runs,
    so the CI resamples *runs*, not pairs: each bootstrap draw takes the random runs and the
    transfer runs with replacement and averages the pairs among the drawn runs (a draw whose
    random runs are all one run has no random-vs-random pair and is skipped). Payloads without
    run names fall back to resampling pairs, and the row says the CI is optimistic.
    """
    claim = "Transfer and random representations differ more in higher layers"
    paper = (
        "Random-init and pretrained models end with similar low-layer representations; the "
        "gap between random-vs-random and random-vs-pretrained similarity is in the top layers "
        "(Fig. 2; small for CBRs)."
    )
    if not compare_payload or not compare_payload.get("pairs"):
        return ClaimRow(claim, paper, "no pairs analysed", None, None, None, "0", "no evidence")
    measure_name = compare_payload["primary_measure"]
    units = list(compare_payload["pairs"][0]["units"])
    low_unit, top_unit = units[0], units[-1]
    groups = {
        (kind, unit): np.asarray(_pair_values(compare_payload, kind, unit, measure_name))
        for kind in ("random_vs_random", "random_vs_transfer")
        for unit in (low_unit, top_unit)
    }
    n_rr = len(groups["random_vs_random", low_unit])
    n_rt = len(groups["random_vs_transfer", low_unit])
    measure = (
        f"{measure_name}: [rr − rt]({top_unit}) − [rr − rt]({low_unit}), rr = random-vs-random, "
        "rt = random-vs-transfer pairs"
    )
    n = f"{n_rr} rr, {n_rt} rt pairs"
    if any(v.size == 0 for v in groups.values()):
        return ClaimRow(claim, paper, measure, None, None, None, n, "no evidence", "similarity")

    def gap(values: Mapping[tuple[str, str], np.ndarray]) -> np.ndarray:
        by_unit = {
            u: values["random_vs_random", u] - values["random_vs_transfer", u]
            for u in (low_unit, top_unit)
        }
        return by_unit[top_unit] - by_unit[low_unit]

    value = float(gap({k: v.mean() for k, v in groups.items()}))
    rng = np.random.default_rng(seed)
    matrices = _run_matrices(compare_payload, (low_unit, top_unit), measure_name)
    if matrices is not None:
        draws = _run_bootstrap(matrices, num_resamples=num_resamples, rng=rng)
        n = f"{n}; CI over runs"
    else:
        draws = _pair_bootstrap(groups, num_resamples=num_resamples, rng=rng)
        measure += " (pairs share runs: CI optimistic)"
    low = high = None
    if draws is not None:
        low, high = (float(v) for v in np.percentile(gap(draws), [2.5, 97.5]))
    return ClaimRow(
        claim,
        paper,
        measure,
        value,
        low,
        high,
        n,
        stats.verdict(ci_low=low, ci_high=high),
        "similarity",
    )


def _run_matrices(
    payload: Mapping[str, Any], units: Sequence[str], measure: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, int] | None:
    """Similarity of every analysed pair of runs as matrices, by unit: random x random
    [R, R] (NaN where a pair is missing, the diagonal included) and random x transfer [R, T];
    None when pairs carry no run names or fewer than 2 random or 2 transfer runs."""
    pairs = [
        p
        for p in payload.get("pairs", [])
        if p["kind"] in ("random_vs_random", "random_vs_transfer")
    ]
    if not all("run_a" in p and "run_b" in p and "init_a" in p for p in pairs):
        return None
    randoms, transfers = [], []
    for p in pairs:
        for run, init in ((p["run_a"], p["init_a"]), (p["run_b"], p["init_b"])):
            side = randoms if init == RANDOM_INIT else transfers
            if run not in side:
                side.append(run)
    if len(randoms) < 2 or len(transfers) < 2:
        return None
    rr = {u: np.full((len(randoms), len(randoms)), np.nan) for u in units}
    rt = {u: np.full((len(randoms), len(transfers)), np.nan) for u in units}
    for p in pairs:
        for u in units:
            v = (p["units"].get(u) or {}).get(measure)
            if v is None:
                continue
            if p["kind"] == "random_vs_random":
                i, j = randoms.index(p["run_a"]), randoms.index(p["run_b"])
                rr[u][i, j] = rr[u][j, i] = float(v)
            else:
                a_random = p["init_a"] == RANDOM_INIT
                r, t = (p["run_a"], p["run_b"]) if a_random else (p["run_b"], p["run_a"])
                rt[u][randoms.index(r), transfers.index(t)] = float(v)
    return rr, rt, len(randoms), len(transfers)


def _run_bootstrap(
    matrices: tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, int],
    *,
    num_resamples: int,
    rng: np.random.Generator,
) -> dict[tuple[str, str], np.ndarray] | None:
    """Per-draw mean similarity of rr and rt pairs among runs drawn with replacement:
    {(kind, unit): [draws]}; draws without a random-vs-random pair are dropped."""
    rr, rt, n_random, n_transfer = matrices
    r = rng.integers(0, n_random, (num_resamples, n_random))
    t = rng.integers(0, n_transfer, (num_resamples, n_transfer))
    upper = np.triu(np.ones((n_random, n_random), bool), k=1)  # positions i < j of one draw
    out: dict[tuple[str, str], np.ndarray] = {}
    keep = None
    for u in rr:
        within = np.where(upper, rr[u][r[:, :, None], r[:, None, :]], np.nan)  # [B, R, R]
        across = rt[u][r[:, :, None], t[:, None, :]]  # [B, R, T]
        with warnings.catch_warnings():  # a draw's all-NaN row: "mean of empty slice"
            warnings.simplefilter("ignore", RuntimeWarning)
            rr_mean = np.nanmean(within.reshape(num_resamples, -1), axis=1)
            rt_mean = np.nanmean(across.reshape(num_resamples, -1), axis=1)
        ok = np.isfinite(rr_mean) & np.isfinite(rt_mean)
        keep = ok if keep is None else keep & ok
        out["random_vs_random", u], out["random_vs_transfer", u] = rr_mean, rt_mean
    if keep is None or keep.sum() < 0.5 * num_resamples:
        return None
    return {k: v[keep] for k, v in out.items()}


def _pair_bootstrap(
    groups: Mapping[tuple[str, str], np.ndarray],
    *,
    num_resamples: int,
    rng: np.random.Generator,
) -> dict[tuple[str, str], np.ndarray] | None:
    """Per-draw mean similarity of pairs resampled within each kind (the same pairs for both
    units); None with fewer than 2 pairs of a kind."""
    counts = {kind: len(v) for (kind, _), v in groups.items()}
    if min(counts.values()) < 2:
        return None
    idx = {kind: rng.integers(0, c, (num_resamples, c)) for kind, c in counts.items()}
    return {(k, u): v[idx[k]].mean(axis=-1) for (k, u), v in groups.items()}


def model_size_claim(
    weight_change_by_model: Mapping[str, Sequence[float]] | None,
    *,
    smaller: str = "",
    larger: str = "",
    num_resamples: int = stats.DEFAULT_RESAMPLES,
) -> ClaimRow:
    """Larger models change less during training (Fig. 3): larger − smaller relative change."""
    claim = "Larger models change less during training"
    paper = (
        "Large overparametrised models move less from their init than small ones, "
        "pretrained or not (Fig. 3)."
    )
    if not weight_change_by_model or not smaller or not larger:
        return ClaimRow(claim, paper, "needs two model sizes", None, None, None, "–", NOT_TESTED)
    base = list(weight_change_by_model[smaller])
    other = list(weight_change_by_model[larger])
    diff = stats.unpaired_difference(base=base, other=other, num_resamples=num_resamples)
    return ClaimRow(
        claim,
        paper,
        f"relative weight change ‖W−W₀‖/‖W₀‖, {larger} − {smaller} (mean over runs)",
        diff.mean_diff,
        diff.ci_low,
        diff.ci_high,
        f"{len(other)} vs {len(base)} runs",
        diff.verdict,
        "relative change",
    )


def claims_rows(
    *,
    groups: Mapping[tuple[str, str, str], Sequence[tables.RunRecord]],
    comparisons: Sequence[Mapping[str, Any]],
    threshold: str,
    compare_payload: Mapping[str, Any] | None,
    lowest_transfusion: str,
    model_size: ClaimRow | None = None,
    num_resamples: int = stats.DEFAULT_RESAMPLES,
) -> list[ClaimRow]:
    """The six rows of the claims table, in the paper's order."""
    inits = {init.split(" ")[0]: init for _, _, init in groups}
    transfer = inits.get("transfer", "transfer")
    meanvar = inits.get("meanvar", "meanvar")
    transfusion = next(
        (i for _, _, i in groups if i.startswith(f"transfusion (upto={lowest_transfusion}")),
        f"transfusion (upto={lowest_transfusion})",
    )
    steps = compare.steps_metric(threshold)
    test_rows = [r for r in comparisons if r["metric"] == compare.TEST_AUC]
    final_metric = compare.TEST_AUC if test_rows else compare.VALID_AUC
    return [
        _comparison_claim(
            comparisons,
            claim="Final AUC with and without transfer",
            paper=(
                "Transfer offers little benefit to final performance: pretrained and random "
                "init reach about the same AUC (Tables 1–2)."
            ),
            init=transfer,
            metric=final_metric,
        ),
        _comparison_claim(
            comparisons,
            claim="Mean Var converges faster than random",
            paper=(
                "Random weights with the pretrained weights' per-tensor mean and variance "
                "converge faster than random init (Fig. 6)."
            ),
            init=meanvar,
            metric=steps,
        ),
        transfusion_claim(
            groups,
            threshold=threshold,
            transfusion_init=transfusion,
            transfer_init=transfer,
            num_resamples=num_resamples,
        ),
        _comparison_claim(
            comparisons,
            claim="Gabor conv1 helps",
            paper=(
                "A synthetic Gabor conv1 with random layers above speeds up convergence like "
                "a pretrained conv1."
            ),
            init="gabor",
            metric=steps,
        ),
        representation_claim(compare_payload, num_resamples=num_resamples),
        model_size or model_size_claim(None),
    ]
