"""Sampling speed side by side with LlamaGen's own upstream `generate`, in one process, interleaved.

LlamaGen (FoundationVision/LlamaGen, `autoregressive/models/{gpt,generate}.py`) is not vendored: point `LLAMAGEN_SRC`
(or `--llamagen-src`) at a checkout. Both models are built at GPT-B dims with random weights in fp32: LlamaGen's
`GPT_B` (768 wide, 12 layers, 12 heads, vocab 16384, 256 image tokens, 1 class token) and `VCQForCausalLM` from the
`vcq-b` preset (the same dims; vocabulary 16384 codes + 1001 class tokens; log schedule K_t from 2 to 16384).
VCQ runs `VCQPipeline(..., output_type="latent")` (no image decoding), eager and with `compile=True`; LlamaGen runs
its `generate` with the model eager and `torch.compile(model, fullgraph=True)` (its sampling script uses
`mode="reduce-overhead"`, which only adds CUDA graphs; on CPU the default mode is the same compiler).

Protocol: one warm-up round (its times are the "first call" figures: compilation included for the compiled
variants), then `--rounds` timed rounds; inside a round every (batch, guidance) cell runs all variants one after the
other, so each ratio compares runs a few seconds apart under the same load. The 1/5/15-minute load averages are
recorded before and after every round. Also measured:

- the per-step times of both loops (VCQ from `callback_on_step_end` time stamps, LlamaGen from a proxy that stamps
  each forward call), at steps 2 and 250 (flatness);
- the matrix-product floor of a decode step: a pure `F.linear` loop over the model's weight shapes at the same number
  of rows (2B with guidance, else B), with the head sliced to K_t (averaged over the T positions) or full;
- the attention read of a decode step: pure `scaled_dot_product_attention` over the filled prefix of a KV cache
  (averaged over the steps, and at steps 2 and 250) and over a full 264-position buffer (LlamaGen's every step);
- memory and first call vs warm call in a fresh process per variant (`--probe`, one cell), after the first timed
  round (later rounds only add repetitions).

Results go to `--output` (default `benchmarks/results/vs_llamagen.md`) and a JSON file beside it, rewritten after
every measurement, so an interrupted run keeps what it measured. Not run in CI (LlamaGen is not a dependency):

    LLAMAGEN_SRC=/tmp/llamagen OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_vs_llamagen.py \
        --batch-sizes 4 16 --guidance-scales 1 4 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel  # noqa: E402
from vcq_hf.pipeline_vcq import VCQPipeline  # noqa: E402
from vcq_hf.utils.onednn import onednn_available  # noqa: E402


def onednn_linear_kernel(input: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(input, weight, None, "none", [], "")


VARIANTS = ("llamagen-eager", "llamagen-compiled", "vcq-eager", "vcq-compiled")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--llamagen-src", default=os.environ.get("LLAMAGEN_SRC"), help="LlamaGen checkout.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--guidance-scales", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--rounds", type=int, default=1, help="Timed rounds after the warm-up round.")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor-reps", type=int, default=5, help="Repetitions of each floor matmul (median).")
    parser.add_argument("--probe", default=None, help="Fresh-process cell for memory / first call, e.g. 4,4.")
    parser.add_argument("--probe-variants", nargs="+", choices=VARIANTS, default=None, help="Default: --variants.")
    parser.add_argument("--warmup-variants", nargs="+", choices=VARIANTS, default=None, help="Default: --variants.")
    parser.add_argument("--note", action="append", default=[], help="A line added to the report (repeatable).")
    parser.add_argument("--output", default="benchmarks/results/vs_llamagen.md")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)  # internal: one fresh-process probe
    args = parser.parse_args(argv)
    if not args.llamagen_src or not (Path(args.llamagen_src) / "autoregressive" / "models" / "gpt.py").is_file():
        parser.error(
            f"LlamaGen source not found at {args.llamagen_src!r}: set LLAMAGEN_SRC to a checkout of "
            "FoundationVision/LlamaGen (with autoregressive/ and utils/)."
        )
    if args.rounds < 0 or args.threads < 1:
        parser.error("--rounds must be >= 0 and --threads >= 1.")
    return args


# ---------------------------------------------------------------------------------------------------- models


def build_llamagen(src: str):
    sys.path.insert(0, str(Path(src).resolve()))
    from autoregressive.models.generate import generate  # noqa: PLC0415
    from autoregressive.models.gpt import GPT_B  # noqa: PLC0415

    torch.manual_seed(0)
    model = GPT_B(
        vocab_size=16384,
        block_size=256,
        num_classes=1000,
        cls_token_num=1,
        model_type="c2i",
        resid_dropout_p=0.0,
        ffn_dropout_p=0.0,
        token_dropout_p=0.0,
    ).eval()
    return model, generate


def build_vcq() -> VCQPipeline:
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("imagenet-256")
    transformer = VCQForCausalLM(VCQConfig.from_preset("vcq-b")).eval()
    pipe = VCQPipeline(VCQVQModel(vq_config).eval(), transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class StepStamps:
    """LlamaGen's `generate` takes the model as an argument: this proxy forwards every attribute to it and records
    the CPU time at the end of each forward call (one per position: the prefill, then one per decode step), so
    LlamaGen's per-step times are measured the same way as the VCQ loop's."""

    def __init__(self, model):
        self._model = model
        self.stamps: list[float] = []

    def __call__(self, *args, **kwargs):
        out = self._model(*args, **kwargs)
        self.stamps.append(time.process_time())
        return out

    def __getattr__(self, name):
        return getattr(self._model, name)


def step_times(stamps: list[float], cpu_start: float) -> list[float]:
    """CPU seconds per position from time stamps taken at the end of each position."""
    return [stamps[0] - cpu_start] + [b - a for a, b in zip(stamps, stamps[1:])]


class Runner:
    """Runs one sampling call of a variant at (batch, guidance) and returns (wall seconds, CPU seconds of this
    process, per-step CPU seconds or None). With one thread, CPU seconds are what the wall time would be on an idle
    machine; on a shared machine they are the figure to compare."""

    def __init__(self, llamagen_src: str, variants: list[str]):
        self.variants = variants
        self.llamagen = self.llamagen_generate = self.llamagen_compiled = self.pipe = None
        if any(v.startswith("llamagen") for v in variants):
            self.llamagen, self.llamagen_generate = build_llamagen(llamagen_src)
            if "llamagen-compiled" in variants:
                self.llamagen_compiled = torch.compile(self.llamagen, fullgraph=True)
        if any(v.startswith("vcq") for v in variants):
            self.pipe = build_vcq()

    def __call__(self, variant: str, batch_size: int, guidance: float) -> tuple[float, float, list[float] | None]:
        labels = [i % 1000 for i in range(batch_size)]
        if variant.startswith("llamagen"):
            model = self.llamagen_compiled if variant == "llamagen-compiled" else self.llamagen
            cond = torch.tensor(labels)
            model = StepStamps(model)
            torch.manual_seed(0)
            start, cpu_start = time.perf_counter(), time.process_time()
            with torch.no_grad():
                codes = self.llamagen_generate(
                    model, cond, 256, cfg_scale=guidance, temperature=1.0, top_k=0, top_p=1.0, sample_logits=True
                )
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            if tuple(codes.shape) != (batch_size, 256) or len(model.stamps) != 256:
                raise RuntimeError(f"LlamaGen returned {tuple(codes.shape)} after {len(model.stamps)} forward calls")
            return elapsed, cpu, step_times(model.stamps, cpu_start)
        stamps = []

        def stamp(pipeline, step, position, callback_kwargs):
            stamps.append(time.process_time())
            return {}

        start, cpu_start = time.perf_counter(), time.process_time()
        codes = self.pipe(
            class_labels=labels,
            guidance_scale=guidance,
            generator=torch.manual_seed(0),
            output_type="latent",
            compile=variant == "vcq-compiled",
            callback_on_step_end=stamp,
        ).codes
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        limits = torch.tensor(self.pipe.transformer.config.codebook_sizes)
        if tuple(codes.shape) != (batch_size, 256) or not bool((codes < limits).all()):
            raise RuntimeError("VCQ returned invalid codes")
        return elapsed, cpu, step_times(stamps, cpu_start)


# ---------------------------------------------------------------------------------------------------- floor


def median_time(fn, reps: int) -> float:
    """Median CPU seconds of `reps` calls of `fn`, after one untimed call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def matmul_floor(rows: int, codebook_sizes: list[int], reps: int) -> dict[str, float]:
    """CPU seconds per decode step of the pure matrix products of a GPT-B step at `rows` rows, as `F.linear` over
    distinct weight tensors laid out as in the models (12 layers of qkv 768 -> 2304, out 768 -> 768, w1 and w3
    768 -> 2048, w2 2048 -> 768: 85M weights streamed from memory as a real step does, not one cache-hot matrix
    repeated), then the head, full (768 -> 16384, LlamaGen's) or sliced to K_t rows (averaged over the positions)."""
    torch.manual_seed(0)
    linear = torch.nn.functional.linear  # rebound below: the passes look it up when they run
    x768, x2048 = torch.randn(rows, 768), torch.randn(rows, 2048)
    layers = [
        [(x768, torch.randn(2304, 768)), (x768, torch.randn(768, 768)), (x768, torch.randn(2048, 768))]
        + [(x768, torch.randn(2048, 768)), (x2048, torch.randn(768, 2048))]
        for _ in range(12)
    ]
    head = torch.randn(17385, 768)

    def layer_pass():
        for layer in layers:
            for a, w in layer:
                linear(a, w)

    def sliced_pass():
        for limit in codebook_sizes:
            linear(x768, head[:limit])

    floor = {
        "layers": median_time(layer_pass, reps),
        "full_head": median_time(lambda: linear(x768, head[:16384]), reps),
        "sliced_head": median_time(sliced_pass, reps) / len(codebook_sizes),
    }
    if onednn_available():  # the same products on oneDNN, the kernel the VCQ loop uses on CPU (vcq_hf.utils.onednn)
        linear = onednn_linear_kernel
        floor["layers_onednn"] = median_time(layer_pass, reps)
        floor["sliced_head_onednn"] = median_time(sliced_pass, reps) / len(codebook_sizes)
    return floor


def attention_floor(rows: int, num_positions: int, reps: int) -> dict:
    """CPU seconds of the attention of one decode step, which the matrix-product floor leaves out: 12 layers of
    `F.scaled_dot_product_attention` of one query per row and head over the cached keys/values (12 heads x 64), from
    distinct buffers of 264 positions as in a KV cache. `attention_prefix` averages it over the T steps reading only
    the filled prefix (position t reads t + 1 positions, as the VCQ loop does; sampled every 15 positions),
    `attention_at` gives it at steps 2 and 250, `attention_full` reads all 264 positions (LlamaGen attends over its
    whole masked buffer at every step). With one query per row this is a read of `rows x length x 2 x 768 x 4` bytes
    per layer: it measures memory bandwidth, not arithmetic."""
    torch.manual_seed(0)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    query, caches = torch.randn(rows, 12, 1, 64), torch.randn(12, 2, rows, 12, 264, 64)  # (layer, k/v, R, nh, L, hd)

    def attention(length: int) -> float:
        return median_time(lambda: [sdpa(query, kv[0, :, :, :length], kv[1, :, :, :length]) for kv in caches], reps)

    lengths = range(1, num_positions + 1, 15)
    return {
        "attention_prefix": statistics.fmean(attention(length) for length in lengths),
        "attention_at": {"2": attention(3), "250": attention(251)},
        "attention_full": attention(264),
        "kv_read_mb_at_250": rows * 251 * 2 * 768 * 4 * 12 / 1e6,
    }


# ---------------------------------------------------------------------------------------------------- probe


def current_rss_mb() -> float:
    """Resident memory of this process now, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_during(fn) -> tuple[object, float, float]:
    """Run `fn()` while a thread samples the resident memory every 5 ms; return its result, the peak and the memory
    after the call (MB, absolute; `ru_maxrss` cannot tell: building the models peaks higher than sampling)."""
    import threading

    peak, done = [current_rss_mb()], threading.Event()

    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mb())
            time.sleep(0.005)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        result = fn()
    finally:
        done.set()
        thread.join()
    after = current_rss_mb()
    return result, max(peak[0], after), after


def kv_cache_mb(variant: str, rows: int) -> float:
    """Bytes of the KV cache a call allocates: 12 layers x keys and values x rows x 12 heads x positions x 64 x fp32;
    VCQ holds the T = 256 fed tokens, LlamaGen 1 + 256 rounded up to a multiple of 8 (264)."""
    positions = 256 if variant.startswith("vcq") else 264
    return 12 * 2 * rows * 12 * positions * 64 * 4 / 2**20


def child_probe(args: argparse.Namespace) -> None:
    """In a fresh process: build one variant, time its first and second call at one cell, and the resident memory
    during each call over the memory after building the model (what sampling needs on top of the weights, whether it
    is allocated during the call or kept from an earlier one: LlamaGen's `setup_caches` leaves its KV cache on the
    model between calls)."""
    variant, batch_size, guidance = args._child.split(",")
    batch_size, guidance = int(batch_size), float(guidance)
    torch.set_num_threads(args.threads)
    runner = Runner(args.llamagen_src, [variant])
    baseline = current_rss_mb()
    report = {
        "variant": variant,
        "built_rss_mb": baseline,
        "kv_cache_mb": kv_cache_mb(variant, batch_size * (2 if guidance != 1 else 1)),
    }
    for call in ("first", "warm"):
        before, times = current_rss_mb(), os.times()
        (wall, cpu, _), peak, after = peak_rss_during(lambda: runner(variant, batch_size, guidance))
        end = os.times()
        report.update(
            {
                f"{call}_s": wall,
                f"{call}_cpu_s": cpu,
                f"{call}_user_s": end.user - times.user,
                f"{call}_sys_s": end.system - times.system,
                f"{call}_peak_over_built_mb": peak - baseline,
                f"{call}_growth_mb": peak - before,
                f"{call}_after_over_built_mb": after - baseline,
            }
        )
    print("PROBE " + json.dumps(report), flush=True)


def run_probe(args: argparse.Namespace, variant: str, cell: str) -> dict:
    command = [sys.executable, __file__, "--_child", f"{variant},{cell}", "--threads", str(args.threads)]
    command += ["--llamagen-src", args.llamagen_src]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("PROBE "))[6:])


# ---------------------------------------------------------------------------------------------------- report


def load_now() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def write_report(results: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Sampling speed: VCQPipeline vs LlamaGen `generate` (GPT-B dims, fp32, CPU)",
        "",
        "Written by `benchmarks/bench_vs_llamagen.py` (raw numbers in `vs_llamagen.json`).",
        "",
        f"- machine: {results['machine']}; torch {results['torch']}, {results['threads']} thread(s)",
        f"- parameters: LlamaGen GPT-B {results.get('params', {}).get('llamagen', 0) / 1e6:.1f}M, VCQ vcq-b "
        f"{results.get('params', {}).get('vcq', 0) / 1e6:.1f}M; T = 256; random weights",
        f"- rounds: 1 warm-up + {sum(r['label'] != 'warm-up' for r in results['round_log'])} timed (of "
        f"{results['rounds']} planned), interleaved; load averages (1/5/15 min) per round: "
        + "; ".join(f"{r['label']} {r['load_before']} -> {r['load_after']}" for r in results["round_log"])
        + "".join(
            f"; probe {p['variant']} {p['load_before']} -> {p['load_after']}"
            for p in results.get("probes", [])
            if "load_before" in p
        ),
        "",
        "## Throughput (image tokens/s from the CPU seconds of the 1-thread process; median over timed rounds)",
        "",
        "Ratios pair the runs of the same round; in brackets the same ratio from wall-clock times (affected by the "
        "machine's load).",
        "",
        "| batch, guidance | LlamaGen eager | LlamaGen compiled | VCQ eager | VCQ compiled | VCQ eager / LlamaGen eager "
        "(target >= 1.3) | VCQ compiled / LlamaGen compiled (target >= 1.1) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell, data in results["cells"].items():
        cpu, wall = data.get("timed_cpu", {}), data.get("timed", {})

        def tps(variant, data=data, cpu=cpu):
            runs = cpu.get(variant)
            return "-" if not runs else f"{data['tokens'] / statistics.median(runs):.1f}"

        def ratio(a, b, cpu=cpu, wall=wall):
            pairs = [y / x for x, y in zip(cpu.get(a, []), cpu.get(b, []))]  # time(b) / time(a), same round
            pairs_wall = [y / x for x, y in zip(wall.get(a, []), wall.get(b, []))]
            if not pairs:
                return "-"
            return f"{statistics.median(pairs):.2f}x ({statistics.median(pairs_wall):.2f}x)"

        lines.append(
            f"| B {cell.replace(',', ', g ')} | {tps('llamagen-eager')} | {tps('llamagen-compiled')} | "
            f"{tps('vcq-eager')} | {tps('vcq-compiled')} | {ratio('vcq-eager', 'llamagen-eager')} | "
            f"{ratio('vcq-compiled', 'llamagen-compiled')} |"
        )
    lines += [
        "",
        "## First call (warm-up round, same process, wall clock: compilation runs partly in worker processes; in "
        "brackets first minus the median timed call, i.e. about the compile time of the compiled variants)",
        "",
        "| batch, guidance | " + " | ".join(VARIANTS) + " |",
        "| --- |" + " --- |" * len(VARIANTS),
    ]
    for cell, data in results["cells"].items():
        first, timed = data.get("first", {}), data.get("timed", {})

        def first_cell(v, first=first, timed=timed):
            if v not in first:
                return "-"
            extra = f" ({first[v] - statistics.median(timed[v]):+.1f} s)" if timed.get(v) else ""
            return f"{first[v]:.1f} s{extra}"

        lines.append(f"| B {cell.replace(',', ', g ')} | " + " | ".join(first_cell(v) for v in VARIANTS) + " |")
    lines += [
        "",
        "## Per decode step vs the matrix-product floor and the attention read (CPU seconds, median of timed rounds)",
        "",
        "Steps are timed at the end of each position (LlamaGen: at the end of each forward call). The floor is a pure "
        "`F.linear` loop over the model's weights at the same rows (MKL's sgemm, what both models' `nn.Linear` call), "
        "with VCQ's head sliced to K_t and LlamaGen's full; for VCQ, whose loop runs its linears on oneDNN, the floor "
        "is the faster of that loop and the same loop on oneDNN; "
        "the attention is a pure `scaled_dot_product_attention` over the cached keys/values, over the filled prefix "
        "(VCQ, mean over the steps) or over the whole 264-position buffer (LlamaGen, every step).",
        "",
        "| batch, guidance, variant | rows | step 2 | step 250 | 250 / 2 (target <= 1.10) | attention at step 2 -> 250 "
        "| median step | matmul floor | step / floor (target <= 1.25) | attention (mean) | step / (floor + attention) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell, data in results["cells"].items():
        floor = data.get("floor")
        for variant in VARIANTS:
            steps = data.get("steps", {}).get(variant)
            if not steps or floor is None:
                continue
            s2 = statistics.median(run[2] for run in steps)
            s250 = statistics.median(run[250] for run in steps)
            median_step = statistics.median(statistics.median(run[1:]) for run in steps)
            vcq = variant.startswith("vcq")
            floor_s = floor["layers"] + (floor["sliced_head"] if vcq else floor["full_head"])
            if vcq and "layers_onednn" in floor:  # the loop's own kernel, when it is the faster one
                floor_s = min(floor_s, floor["layers_onednn"] + floor["sliced_head_onednn"])
            if "attention_prefix" in floor:
                attention = floor["attention_prefix"] if vcq else floor["attention_full"]
                at2, at250 = (
                    (floor["attention_at"]["2"], floor["attention_at"]["250"])
                    if vcq
                    else (floor["attention_full"], floor["attention_full"])
                )
                attention_cells = (
                    f"{at2 * 1e3:.1f} -> {at250 * 1e3:.1f} ms",
                    f"{attention * 1e3:.1f} ms",
                    f"{median_step / (floor_s + attention):.2f}",
                )
            else:
                attention_cells = ("-", "-", "-")
            lines.append(
                f"| B {cell.replace(',', ', g ')}, {variant} | {data['rows']} | {s2 * 1e3:.1f} ms | {s250 * 1e3:.1f} ms "
                f"| {s250 / s2:.2f} | {attention_cells[0]} | {median_step * 1e3:.1f} ms | {floor_s * 1e3:.1f} ms "
                f"({'sliced head, fastest of MKL / oneDNN' if vcq else 'full head, MKL'}) | {median_step / floor_s:.2f} | {attention_cells[1]} | "
                f"{attention_cells[2]} |"
            )
    if results.get("probes"):
        lines += [
            "",
            f"## Fresh process, cell B {results['probe_cell'].replace(',', ', g ')}: first vs warm call, memory",
            "",
            "Memory is the resident memory sampled every 5 ms, over the resident memory right after building the model "
            '(before any call): what sampling holds on top of the weights. "growth" is the peak over the memory just '
            "before that call, which misses what an earlier call left allocated (LlamaGen keeps its KV cache on the "
            "model between calls).",
            "",
            "| variant | first call, CPU (user + sys) | warm call, CPU (user + sys) | first / warm, CPU (target <= 1.10) | "
            "first / warm, wall | KV cache | peak over built, first / warm call (target: VCQ <= LlamaGen) | held "
            "after the warm call | growth during the warm call |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for probe in results["probes"]:
            if "first_peak_over_built_mb" not in probe:
                continue
            lines.append(
                f"| {probe['variant']} | {probe['first_cpu_s']:.1f} s ({probe['first_user_s']:.1f} + "
                f"{probe['first_sys_s']:.1f}) | {probe['warm_cpu_s']:.1f} s ({probe['warm_user_s']:.1f} + "
                f"{probe['warm_sys_s']:.1f}) | {probe['first_cpu_s'] / probe['warm_cpu_s']:.2f} | "
                f"{probe['first_s'] / probe['warm_s']:.2f} | {probe['kv_cache_mb']:.0f} MB | "
                f"{probe['first_peak_over_built_mb']:.0f} MB / {probe['warm_peak_over_built_mb']:.0f} MB | "
                f"{probe['warm_after_over_built_mb']:.0f} MB | {probe['warm_growth_mb']:.0f} MB |"
            )
    lines += ["", *results.get("notes", [])]
    output.write_text("\n".join(lines) + "\n")


def run_probes(args: argparse.Namespace, results: dict, output: Path) -> None:
    results["probe_cell"] = args.probe
    results["probes"] = []
    for variant in args.probe_variants or args.variants:
        print(f"[probe] {variant} at {args.probe}", flush=True)
        load_before = load_now()
        probe = run_probe(args, variant, args.probe)
        probe.update(load_before=load_before, load_after=load_now())
        results["probes"].append(probe)
        write_report(results, output)


def main(args: argparse.Namespace) -> dict:
    if args._child:
        child_probe(args)
        return {}
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    runner = Runner(args.llamagen_src, args.variants)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or 'cpu'})",
        "torch": torch.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "params": {
            "llamagen": num_params(runner.llamagen) if runner.llamagen is not None else 0,
            "vcq": num_params(runner.pipe.transformer) if runner.pipe is not None else 0,
        },
        "round_log": [],
        "cells": {},
        "notes": list(args.note),
    }
    sizes = list(VCQConfig.from_preset("vcq-b").codebook_sizes)
    cells = [(b, g) for b in args.batch_sizes for g in args.guidance_scales]
    for b, g in cells:
        rows = 2 * b if g != 1 else b
        key = f"{b},{g:g}"
        print(f"[floor] B {b} g {g:g}: {rows} rows", flush=True)
        results["cells"][key] = {"rows": rows, "tokens": b * 256, "first": {}, "timed": {}, "steps": {}}
        results["cells"][key]["floor"] = matmul_floor(rows, sizes, args.floor_reps)
        results["cells"][key]["floor"].update(attention_floor(rows, len(sizes), args.floor_reps))
        write_report(results, output)
    for round_index in range(args.rounds + 1):
        label = "warm-up" if round_index == 0 else f"round {round_index}"
        entry = {"label": label, "load_before": load_now()}
        start = time.perf_counter()
        for b, g in cells:
            key = f"{b},{g:g}"
            for variant in args.variants:
                if round_index == 0 and variant not in (args.warmup_variants or args.variants):
                    continue
                seconds, cpu, steps = runner(variant, b, g)
                print(
                    f"[{label}] B {b} g {g:g} {variant}: {seconds:.2f} s wall, {cpu:.2f} s CPU "
                    f"({b * 256 / cpu:.1f} tok/s CPU)",
                    flush=True,
                )
                cell = results["cells"][key]
                if round_index == 0:
                    cell["first"][variant] = seconds
                    cell.setdefault("first_cpu", {})[variant] = cpu
                else:
                    cell["timed"].setdefault(variant, []).append(seconds)
                    cell.setdefault("timed_cpu", {}).setdefault(variant, []).append(cpu)
                    if steps is not None:
                        cell["steps"].setdefault(variant, []).append(steps)
                write_report(results, output)
        entry.update(load_after=load_now(), seconds=round(time.perf_counter() - start, 1))
        results["round_log"].append(entry)
        write_report(results, output)
        if args.probe and round_index == min(1, args.rounds):  # after the first timed round: later rounds are extra
            run_probes(args, results, output)
    return results


if __name__ == "__main__":
    main(parse_args())
