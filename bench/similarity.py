"""Benchmark P3: our SVCCA/PWCCA/CCA against google/svcca, and streaming CCA memory.

1. On the same synthetic activations (examples x features, two related "layers"), times our
   `cca`, `svcca`, `pwcca` and google/svcca's `cca_core.get_cca_similarity` (SVCCA the way its
   tutorial does it: SVD-reduce each side, then CCA) and `pwcca.compute_pwcca`, and reports the
   largest absolute difference of the canonical correlations and of the means. google/svcca's
   PWCCA weights by activations rotated by u without whitening by Sigma_xx^(-1/2); ours uses the
   canonical variates (Morcos et al.'s definition), so the two PWCCA numbers are compared twice:
   as given (they differ by design) and with the first argument whitened (the definitions agree).
   Needs a checkout of google/svcca (--svcca_dir); skipped with a message otherwise.
2. Streams 10^6 datapoints x (512 + 512) features in batches through `CovarianceAccumulator`
   and reports time and peak traced memory (the data is generated batch by batch, never held).

Targets: differences <= 1e-6, ours >= 2x faster, streaming peak < 1 GB. The comparison runs
with --blas_threads BLAS threads (threadpoolctl, a scikit-learn dependency) for both sides.
The last line printed is one JSON object with every figure; `ratio` is our throughput over
google/svcca's on SVCCA + PWCCA together.

  python bench/similarity.py --svcca_dir=PATH_TO_SVCCA_CHECKOUT
"""

from __future__ import annotations

import os
import sys
import tracemalloc

import _common
import numpy as np
import threadpoolctl
from absl import flags

from transfusion_tf.analysis import cca
from transfusion_tf.analysis.streaming import CovarianceAccumulator

FLAGS = flags.FLAGS
flags.DEFINE_string("svcca_dir", None, "A checkout of google/svcca (holds cca_core.py, pwcca.py).")
flags.DEFINE_integer("examples", 10000, "Datapoints of the comparison activations.")
flags.DEFINE_integer("features", 128, "Neurons per side of the comparison activations.")
flags.DEFINE_integer("svcca_dims", 32, "SVCCA directions kept per side.")
flags.DEFINE_integer("repeats", 3, "Timing repeats (the best is reported).")
flags.DEFINE_integer("stream_rows", 1_000_000, "Datapoints streamed through the accumulator.")
flags.DEFINE_integer("stream_features", 512, "Features per side in the streaming test.")
flags.DEFINE_integer("stream_batch", 8192, "Rows per streamed batch.")
flags.DEFINE_integer("seed", 0, "Seed of the synthetic activations.")
flags.DEFINE_integer(
    "blas_threads",
    1,
    "BLAS threads while timing ours against google/svcca (both alike); on a shared machine "
    "spinning BLAS threads make timings noisy. 0 = the library default.",
)


def related_activations(rng, n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Two [n, p] layers sharing a p/2-dimensional signal, with unequal neuron scales."""
    latent = rng.standard_normal((n, p // 2))
    x = latent @ rng.standard_normal((p // 2, p)) + 0.5 * rng.standard_normal((n, p))
    y = np.tanh(latent @ rng.standard_normal((p // 2, p))) + 0.5 * rng.standard_normal((n, p))
    return x * rng.uniform(0.1, 10.0, p) + 3.0, y


def compare_with_svcca(svcca_dir: str, x: np.ndarray, y: np.ndarray, k: int, repeats: int):
    sys.path.insert(0, os.path.abspath(svcca_dir))
    import cca_core  # noqa: PLC0415 (google/svcca, from the given checkout)
    import pwcca as svcca_pwcca  # noqa: PLC0415

    def svd_reduce(acts: np.ndarray) -> np.ndarray:  # the svcca tutorial's reduction
        centred = acts - np.mean(acts, axis=1, keepdims=True)
        _, s, v = np.linalg.svd(centred, full_matrices=False)
        return np.dot(s[:k] * np.eye(k), v[:k])

    def their_svcca():
        return cca_core.get_cca_similarity(
            svd_reduce(x.T), svd_reduce(y.T), epsilon=1e-10, verbose=False
        )["cca_coef1"]

    def their_cca():
        return cca_core.get_cca_similarity(x.T, y.T, epsilon=0.0, verbose=False)["cca_coef1"]

    t_their_svcca, their_sv = _common.best_time(their_svcca, repeats)

    # Ours uncached (the decomposition caches serve permutation nulls, not repeated calls), and
    # PWCCA weighted by x as google/svcca does when both sides have as many neurons.
    def fresh(fn):
        def call():
            cca.clear_caches()
            return fn()

        return call

    t_our_svcca, our_sv = _common.best_time(fresh(lambda: cca.svcca(x, y, dims=k)), repeats)
    t_their_pw, their_pw = _common.best_time(
        lambda: svcca_pwcca.compute_pwcca(x.T, y.T)[0], repeats
    )
    t_our_pw, our_pw = _common.best_time(
        fresh(lambda: cca.pwcca(x, y, weighting="x").value), repeats
    )
    t_their_cca, their_rho = _common.best_time(their_cca, repeats)
    t_our_cca, our_rho = _common.best_time(fresh(lambda: cca.cca(x, y)), repeats)

    xc = x - x.mean(0)
    eigvals, eigvecs = np.linalg.eigh(xc.T @ xc / (len(x) - 1))
    white = xc @ eigvecs / np.sqrt(eigvals)
    white_diff = abs(
        svcca_pwcca.compute_pwcca(white.T, y.T)[0] - cca.pwcca(white, y, weighting="x").value
    )
    return {
        "svcca_max_abs_diff": float(np.max(np.abs(their_sv - our_sv.correlations))),
        "svcca_mean_diff": float(abs(np.mean(their_sv) - our_sv.mean)),
        "cca_max_abs_diff": float(np.max(np.abs(their_rho - our_rho.correlations))),
        "pwcca_diff_whitened_input": float(white_diff),
        "pwcca_diff_by_definition": float(abs(their_pw - our_pw)),
        "pwcca_ours": float(our_pw),
        "pwcca_svcca": float(their_pw),
        "seconds": {
            "svcca_ours": t_our_svcca,
            "svcca_google": t_their_svcca,
            "pwcca_ours": t_our_pw,
            "pwcca_google": t_their_pw,
            "cca_ours": t_our_cca,
            "cca_google": t_their_cca,
        },
        "svcca_speedup": t_their_svcca / t_our_svcca,
        "pwcca_speedup": t_their_pw / t_our_pw,
        "cca_speedup": t_their_cca / t_our_cca,
        "ratio": (t_their_svcca + t_their_pw) / (t_our_svcca + t_our_pw),
    }


def stream(rows: int, features: int, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    mix_x = rng.standard_normal((64, features)).astype(np.float32)
    mix_y = rng.standard_normal((64, features)).astype(np.float32)
    acc = CovarianceAccumulator(features, features)
    tracemalloc.start()
    done = 0
    with _common.Clock() as clock:
        while done < rows:
            b = min(batch, rows - done)
            latent = rng.standard_normal((b, 64), dtype=np.float32)
            x = latent @ mix_x + rng.standard_normal((b, features), dtype=np.float32)
            y = latent @ mix_y + rng.standard_normal((b, features), dtype=np.float32)
            acc.update(x, y)
            done += b
        result = acc.cca()
    seconds = clock.wall
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "stream_rows": acc.n,
        "stream_features_per_side": features,
        "stream_seconds": seconds,
        "stream_rows_per_second": acc.n / seconds,
        "stream_peak_mb": peak / 2**20,
        "stream_cca_mean": result.mean,
        "stream_top_correlation": float(result.correlations[0]),
    }


def main() -> None:
    rng = np.random.default_rng(FLAGS.seed)
    x, y = related_activations(rng, FLAGS.examples, FLAGS.features)
    figures: dict = {
        "examples": FLAGS.examples,
        "features": FLAGS.features,
        "svcca_dims": FLAGS.svcca_dims,
    }
    if FLAGS.svcca_dir and os.path.isfile(os.path.join(FLAGS.svcca_dir, "cca_core.py")):
        with threadpoolctl.threadpool_limits(limits=FLAGS.blas_threads or None, user_api="blas"):
            figures.update(
                compare_with_svcca(FLAGS.svcca_dir, x, y, FLAGS.svcca_dims, FLAGS.repeats)
            )
        figures["blas_threads"] = FLAGS.blas_threads
        s = figures["seconds"]
        print(
            f"SVCCA: ours {s['svcca_ours']:.3f}s, google/svcca {s['svcca_google']:.3f}s "
            f"({figures['svcca_speedup']:.1f}x), max |diff| {figures['svcca_max_abs_diff']:.2e}"
        )
        print(
            f"PWCCA: ours {s['pwcca_ours']:.3f}s, google/svcca {s['pwcca_google']:.3f}s "
            f"({figures['pwcca_speedup']:.1f}x), |diff| whitened input "
            f"{figures['pwcca_diff_whitened_input']:.2e}, as defined "
            f"{figures['pwcca_diff_by_definition']:.3f} (ours {figures['pwcca_ours']:.4f}, "
            f"theirs {figures['pwcca_svcca']:.4f})"
        )
        print(
            f"CCA:   ours {s['cca_ours']:.3f}s, google/svcca {s['cca_google']:.3f}s "
            f"({figures['cca_speedup']:.1f}x), max |diff| {figures['cca_max_abs_diff']:.2e}"
        )
    else:
        print("google/svcca comparison skipped: pass --svcca_dir=<checkout of google/svcca>")
        figures["ratio"] = None
    figures.update(stream(FLAGS.stream_rows, FLAGS.stream_features, FLAGS.stream_batch, FLAGS.seed))
    print(
        f"streaming CCA: {figures['stream_rows']} rows x {2 * FLAGS.stream_features} features in "
        f"{figures['stream_seconds']:.1f}s, peak traced memory {figures['stream_peak_mb']:.1f} MB"
    )
    _common.print_result(figures, sort_keys=True)


if __name__ == "__main__":
    _common.run(main)
