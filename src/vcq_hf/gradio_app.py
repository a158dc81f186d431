"""Launch a Gradio web demo of a VCQPipeline: pick a class, set the sampling knobs, see the images and the VCQ view.

`vcq demo` serves the demo checkpoint bundled with the package; `vcq demo --model PATH_OR_HUB_ID` serves any saved
VCQPipeline folder or Hub repo id (also from the offline cache). The page has a "Generate" tab (class, number of
images, guidance scale and schedule, temperature, top-k, top-p, seed; image i is drawn with its own generator seeded
with seed + i, as `vcq generate` does, so a fixed seed gives the same images) and a "VCQ view" tab: the checkpoint's
codebook-size schedule K_t and, for a generated image, its decodes from the first k of its T tokens (k = 1, 2, 4,
..., T), the other tokens filled greedily by the prior under the VCQ mask: the coarse-to-fine picture of VCQ.
`app.py` at the repository root runs the same app (the Hugging Face Spaces convention).

Gradio is an optional extra: `pip install "vcq_hf[demo]"` (from a checkout: `pip install -e ".[demo]"`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL import Image

    from .pipeline_vcq import VCQPipeline


INSTALL_HINT = 'pip install "vcq_hf[demo]" (from a source checkout: pip install -e ".[demo]")'
# The page refuses more images per click than this (a CPU samples ~16 small images in well under a second).
MAX_IMAGES = 16
MAX_SEED = 2**32 - 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# Images are shown at their true size in pixels, scaled up in the page without smoothing.
CSS = ".vcq-pixelated img { image-rendering: pixelated; }"

# Progress callback: progress(fraction in [0, 1], description).
ProgressFn = Callable[[float, str], Any]


def require_gradio() -> Any:
    """Import Gradio, or raise an `ImportError` that says which extra to install."""
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"The vcq_hf web demo needs Gradio, an optional extra: {INSTALL_HINT}.") from err
    return gradio


def prefix_lengths(num_tokens: int) -> list[int]:
    """The prefix lengths k of the coarse-to-fine view: 1, 2, 4, ... up to and including `num_tokens`.

    >>> prefix_lengths(32)
    [1, 2, 4, 8, 16, 32]
    >>> prefix_lengths(12)
    [1, 2, 4, 8, 12]
    """
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise ValueError(f"num_tokens = {num_tokens!r} is out of range: it must be an integer >= 1.")
    lengths = []
    k = 1
    while k < num_tokens:
        lengths.append(k)
        k *= 2
    return lengths + [num_tokens]


@dataclass(frozen=True)
class Generation:
    """What the VCQ view needs from one click of "Generate": the class, the guidance, and the `(B, T)` codes."""

    class_id: int
    guidance_scale: float
    guidance_schedule: str
    codes: list[list[int]]


class VCQDemo:
    r"""
    The web demo's logic, independent of Gradio: sampling, the coarse-to-fine decodes and the schedule plot.

    Sampling and class labels go through the pipeline (`VCQPipeline.__call__` validates every knob and
    `VCQPipeline.resolve_class_labels` the class), so the page refuses exactly what the pipeline refuses.

    Args:
        pipe ([`VCQPipeline`]): the pipeline to serve; its progress bar is turned off (the page shows progress).
    """

    def __init__(self, pipe: VCQPipeline):
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)

    @classmethod
    def from_pretrained(cls, model: str | None = None, device: str = "cpu", dtype: str = "float32") -> VCQDemo:
        """Load a saved pipeline folder or Hub repo id (`None`: the bundled demo checkpoint) onto `device`."""
        import torch

        from .cli_generate import resolve_model
        from .pipeline_vcq import VCQPipeline

        path = resolve_model(model)
        try:
            pipe = VCQPipeline.from_pretrained(path, dtype=getattr(torch, dtype))
        except OSError as err:
            raise OSError(f"Could not load --model {path!r}: {err}") from err
        return cls(pipe.to(device))

    # ------------------------------------------------------------------------------------------------- what it shows

    @property
    def num_tokens(self) -> int:
        """Number T of image tokens per image."""
        return self.pipe.num_image_tokens

    @property
    def image_size(self) -> int:
        """Side in pixels of a generated image."""
        return int(self.pipe.vq_model.config.image_size)

    @property
    def codebook_sizes(self) -> list[int]:
        """The K_t schedule of the checkpoint."""
        return [int(size) for size in self.pipe.transformer.config.codebook_sizes]

    def class_choices(self) -> list[tuple[str, int]]:
        """Dropdown choices `("id: name", id)` from the pipeline's `id2label` (`("id", id)` for unnamed classes)."""
        names = self.pipe.id2label
        return [(f"{i}: {names[i]}" if i in names else str(i), i) for i in range(self.pipe.num_classes)]

    def sampling_defaults(self) -> dict[str, Any]:
        """The settings the page starts from: what the pipeline samples with when a call gives none (the checkpoint's
        `generation_config`, else the pipeline's documented defaults; `VCQPipeline.resolve_sampling_settings`)."""
        settings = self.pipe.resolve_sampling_settings()
        return {
            name: settings[name] for name in ("guidance_scale", "guidance_schedule", "temperature", "top_k", "top_p")
        }

    def schedule_figure(self) -> Figure:
        """A plot of K_t against the image position t (log scale), with the cumulative capacity sum_t log2 K_t."""
        from matplotlib.figure import Figure

        from .schedules import cumulative_capacity_bits

        sizes = self.codebook_sizes
        positions = list(range(len(sizes)))
        figure = Figure(figsize=(8.0, 2.8), layout="constrained")
        axes = figure.add_subplot(1, 2, 1)
        axes.step(positions, sizes, where="mid", color="tab:blue")
        axes.plot(positions, sizes, "o", markersize=3, color="tab:blue")
        axes.set_yscale("log", base=2)
        axes.set_xlabel("image position t")
        axes.set_ylabel("codebook size K_t")
        axes.set_title(f"K_t: {sizes[0]} -> {sizes[-1]} over T = {len(sizes)} tokens", fontsize=10)
        axes.grid(alpha=0.3)
        bits = cumulative_capacity_bits(sizes)
        axes = figure.add_subplot(1, 2, 2)
        axes.plot([t + 1 for t in positions], bits, color="tab:orange")
        axes.set_xlabel("tokens k")
        axes.set_ylabel("bits in the first k tokens")
        axes.set_title(f"capacity: {bits[-1]:.1f} bits in all T tokens", fontsize=10)
        axes.grid(alpha=0.3)
        return figure

    # ----------------------------------------------------------------------------------------------------- sampling

    def _progress_callback(self, progress: ProgressFn | None, description: str) -> Callable | None:
        if progress is None:
            return None
        total = self.num_tokens

        def callback(pipe: Any, step: int, position: int, callback_kwargs: dict) -> dict:
            progress((position + 1) / total, f"{description}: token {position + 1} of {total}")
            return {}

        return callback

    def generate(
        self,
        class_label: int | str,
        num_images: int,
        guidance_scale: float,
        guidance_schedule: str,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        seed: int,
        progress: ProgressFn | None = None,
    ) -> tuple[list[Image.Image], Generation]:
        """Sample `num_images` images of one class; image i uses a generator seeded with `seed + i`.

        Args:
            class_label (`int` or `str`): a class id or name, resolved by `VCQPipeline.resolve_class_labels`.
            num_images (`int`): images to draw, in `[1, MAX_IMAGES]`.
            guidance_scale (`float`): classifier-free guidance scale (1 = none), checked by the pipeline.
            guidance_schedule (`str`): one of the pipeline's `GUIDANCE_SCHEDULES`.
            temperature (`float`): sampling temperature, > 0.
            top_k (`int`, *optional*): keep the k most likely codes; `None` = off.
            top_p (`float`, *optional*): nucleus threshold in (0, 1]; `None` or 1 = off.
            seed (`int`): in `[0, MAX_SEED]`.
            progress (`Callable[[float, str], Any]`, *optional*): called after every token with the fraction done
                and a description.

        Returns:
            `tuple[list[PIL.Image.Image], Generation]`: the images, and what the VCQ view needs to redo them.

        Raises:
            `ValueError`: for a value the pipeline refuses (the message names it and its range), an unknown class,
                a number of images outside `[1, MAX_IMAGES]` or a seed outside `[0, MAX_SEED]`.
        """
        import torch

        if isinstance(num_images, bool) or not isinstance(num_images, int) or not 1 <= num_images <= MAX_IMAGES:
            raise ValueError(
                f"number of images = {num_images!r} is out of range: it must be an integer in [1, {MAX_IMAGES}]."
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed = {seed!r} is out of range: it must be an integer in [0, {MAX_SEED}].")
        (class_id,) = self.pipe.resolve_class_labels([class_label])
        device_type = self.pipe._execution_device.type
        generators = [torch.Generator(device=device_type).manual_seed(seed + i) for i in range(num_images)]
        output = self.pipe(
            class_labels=[class_id],
            num_images_per_class=num_images,
            guidance_scale=guidance_scale,
            guidance_schedule=guidance_schedule,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generators,
            output_type="pil",
            callback_on_step_end=self._progress_callback(progress, "sampling"),
        )
        record = Generation(class_id, float(guidance_scale), guidance_schedule, output.codes.cpu().tolist())
        return output.images, record

    def coarse_to_fine(
        self, generation: Generation, index: int, progress: ProgressFn | None = None
    ) -> list[tuple[Image.Image, str]]:
        """Decodes of image `index` of `generation` from its first k tokens, k in `prefix_lengths(T)`.

        Tokens k .. T-1 are filled greedily by the prior (argmax of the guided logits, with the guidance of the
        generation, under the VCQ mask), so the image with k tokens shows what the first k tokens fix. All prefix
        lengths run as one batch of the pipeline; a callback forces each row's first k tokens.

        Args:
            generation (`Generation`): what `generate` returned next to the images.
            index (`int`): which of its images, 0-based.
            progress (`Callable[[float, str], Any]`, *optional*): called after every token.

        Returns:
            `list[tuple[PIL.Image.Image, str]]`: one `(image, caption)` per k; the last one is the image itself.
        """
        import torch

        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(generation.codes):
            raise ValueError(
                f"image {index!r} is out of range: the last generation made {len(generation.codes)} images, "
                f"indices in [0, {len(generation.codes)})."
            )
        lengths = prefix_lengths(self.num_tokens)
        target = torch.tensor(generation.codes[index], dtype=torch.long)  # (T,)
        keep = torch.tensor(lengths)  # (R,): row r keeps the first lengths[r] tokens
        report = self._progress_callback(progress, "coarse-to-fine")

        def force_prefix(pipe: Any, step: int, position: int, callback_kwargs: dict) -> dict:
            if report is not None:
                report(pipe, step, position, callback_kwargs)
            codes = callback_kwargs["codes"]  # (R, position + 1)
            rows = keep > position
            if not bool(rows.any()):
                return {}
            codes = codes.clone()
            codes[rows.to(codes.device), -1] = target[position].to(codes.device)
            return {"codes": codes}

        output = self.pipe(
            class_labels=[generation.class_id] * len(lengths),
            guidance_scale=generation.guidance_scale,
            guidance_schedule=generation.guidance_schedule,
            do_sample=False,
            output_type="pil",
            callback_on_step_end=force_prefix,
        )
        total = self.num_tokens
        captions = [f"all {k} tokens" if k == total else f"first {k} token" + "s" * (k > 1) for k in lengths]
        return list(zip(output.images, captions))


# ------------------------------------------------------------------------------------------------------------ the page


def build_app(demo: VCQDemo, title: str | None = None) -> Any:
    """The Gradio `Blocks` page of `demo` (call `.launch()` on it, with `css=CSS`)."""
    gr = require_gradio()
    from .pipeline_vcq import GUIDANCE_SCHEDULES

    defaults = demo.sampling_defaults()
    choices = demo.class_choices()
    max_top_k = int(demo.codebook_sizes[-1])
    size = demo.image_size

    def generate(
        class_id, num_images, guidance_scale, schedule, temperature, top_k, top_p, seed, progress=gr.Progress()
    ):
        for name, value in (
            ("number of images", num_images),
            ("guidance scale", guidance_scale),
            ("temperature", temperature),
            ("top-k", top_k),
            ("top-p", top_p),
            ("seed", seed),
        ):
            if value is None:
                raise gr.Error(f"The {name} field is empty: enter a number.")
        try:
            images, record = demo.generate(
                class_label=class_id,
                num_images=int(num_images),
                guidance_scale=float(guidance_scale),
                guidance_schedule=schedule,
                temperature=float(temperature),
                top_k=int(top_k) or None,  # the page's 0 is the pipeline's None (off)
                top_p=float(top_p),  # 1 = off, as the pipeline reads it
                seed=int(seed),
                progress=lambda fraction, text: progress(fraction, desc=text),
            )
        except ValueError as err:
            raise gr.Error(str(err)) from err
        name = {value: label for label, value in choices}[record.class_id]
        gallery = [(image, f"{name}, seed {int(seed) + i}") for i, image in enumerate(images)]
        status = (
            f"{len(images)} image(s) of class {name}, {size}x{size} px, guidance {record.guidance_scale:g} "
            f"({record.guidance_schedule}), seeds {int(seed)}..{int(seed) + len(images) - 1}."
        )
        index_update = gr.update(maximum=len(images), value=1)
        return gallery, status, record, index_update

    def select_image(event):
        return event.index + 1

    # Gradio passes the clicked image only to a parameter annotated with the SelectData class itself (this module's
    # postponed annotations would be the string "gr.SelectData").
    select_image.__annotations__["event"] = gr.SelectData

    def coarse_to_fine(record, index, progress=gr.Progress()):
        if record is None:
            raise gr.Error("Generate images first (Generate tab); the VCQ view then decodes one of them.")
        if index is None:
            raise gr.Error("The image field is empty: enter the number of a generated image.")
        try:
            decodes = demo.coarse_to_fine(
                record, int(index) - 1, progress=lambda fraction, text: progress(fraction, desc=text)
            )
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return decodes

    schedule_text = (
        f"T = {demo.num_tokens} tokens per {size}x{size} image; position t may use only the first K_t codes of "
        f"one shared codebook of {max_top_k}."
    )
    # Generated images are files in Gradio's cache: every hour, delete those older than two hours (a long-running
    # Space would otherwise fill its disk).
    with gr.Blocks(title=title or "VCQ demo", delete_cache=(3600, 7200)) as app:
        gr.Markdown(
            f"# {title or 'VCQ: class-conditional image generation'}\n"
            "Variable Codebook Size Quantization: token t of an image is one of the first K_t codes of a shared "
            "codebook, K_t growing with t, and an autoregressive prior samples the tokens one by one."
        )
        record = gr.State(None)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1):
                    class_id = gr.Dropdown(choices, value=choices[0][1], label="Class", elem_id="vcq-class")
                    num_images = gr.Slider(
                        1, MAX_IMAGES, value=4, step=1, label="Number of images", elem_id="vcq-num-images"
                    )
                    guidance_scale = gr.Slider(
                        0.0,
                        10.0,
                        value=defaults["guidance_scale"],
                        step=0.1,
                        label="Guidance scale (1 = none)",
                        elem_id="vcq-guidance-scale",
                    )
                    schedule = gr.Radio(
                        list(GUIDANCE_SCHEDULES),
                        value=defaults["guidance_schedule"],
                        label="Guidance schedule",
                        info="constant, or a linear ramp from ~1 at the first token to the scale at the last",
                        elem_id="vcq-guidance-schedule",
                    )
                    temperature = gr.Slider(
                        0.05,
                        3.0,
                        value=defaults["temperature"],
                        step=0.05,
                        label="Temperature",
                        elem_id="vcq-temperature",
                    )
                    top_k = gr.Number(
                        value=defaults["top_k"] or 0,
                        minimum=0,
                        maximum=max_top_k,
                        precision=0,
                        label=f"Top-k (0 = off, at most {max_top_k})",
                        elem_id="vcq-top-k",
                    )
                    top_p = gr.Slider(
                        0.05,
                        1.0,
                        value=defaults["top_p"] or 1.0,
                        step=0.05,
                        label="Top-p (1 = off)",
                        elem_id="vcq-top-p",
                    )
                    seed = gr.Number(
                        value=0, minimum=0, maximum=MAX_SEED, precision=0, label="Seed", elem_id="vcq-seed"
                    )
                    run = gr.Button("Generate", variant="primary", elem_id="vcq-generate")
                with gr.Column(scale=2):
                    gallery = gr.Gallery(
                        label="Samples",
                        columns=4,
                        format="png",
                        object_fit="contain",
                        height="auto",
                        elem_id="vcq-gallery",
                        elem_classes="vcq-pixelated",
                    )
                    status = gr.Markdown(elem_id="vcq-status")
        with gr.Tab("VCQ view"):
            gr.Markdown(schedule_text)
            gr.Plot(demo.schedule_figure(), label="Codebook-size schedule", elem_id="vcq-schedule")
            gr.Markdown(
                "Coarse to fine: an image decoded from only its first k tokens, the rest filled greedily by the prior "
                "(with the guidance it was sampled with) under the VCQ mask."
            )
            with gr.Row():
                index = gr.Number(
                    value=1,
                    minimum=1,
                    maximum=MAX_IMAGES,
                    precision=0,
                    label="Image (1 = first)",
                    elem_id="vcq-image-index",
                )
                show = gr.Button("Show coarse to fine", elem_id="vcq-coarse-to-fine")
            decodes = gr.Gallery(
                label="Decodes from the first k tokens",
                columns=len(prefix_lengths(demo.num_tokens)),
                format="png",
                object_fit="contain",
                height="auto",
                elem_id="vcq-decodes",
                elem_classes="vcq-pixelated",
            )
        run.click(
            generate,
            inputs=[class_id, num_images, guidance_scale, schedule, temperature, top_k, top_p, seed],
            outputs=[gallery, status, record, index],
        )
        gallery.select(select_image, outputs=index)
        show.click(coarse_to_fine, inputs=[record, index], outputs=decodes)
    return app


def serve(
    app: Any, host: str = DEFAULT_HOST, port: int | None = DEFAULT_PORT, share: bool = False, **kwargs: Any
) -> Any:
    """Serve the page `app` of `build_app` on `host:port` (`None`: Gradio picks a free port from 7860); returns it.

    Sampling requests run one at a time (the pipeline is shared). `kwargs` go to `gradio.Blocks.launch`, e.g.
    `prevent_thread_lock=True` to return while the server runs in the background (`app.close()` stops it).
    """
    app.queue(default_concurrency_limit=1)
    app.launch(server_name=host, server_port=port, share=share, css=CSS, ssr_mode=False, show_error=True, **kwargs)
    return app


def launch(
    model: str | None = None,
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    share: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
    **kwargs: Any,
) -> Any:
    """Load `model` (`None`: the bundled demo checkpoint), build its page and `serve` it; returns the page."""
    require_gradio()  # before the slow model load
    demo = VCQDemo.from_pretrained(model, device=device, dtype=dtype)
    app = build_app(demo, title=None if model is None else f"VCQ: {model}")
    return serve(app, host=host, port=port, share=share, **kwargs)


# ------------------------------------------------------------------------------------------------------------- the CLI


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vcq demo`."""
    parser.add_argument(
        "--model",
        default=None,
        help="A saved VCQPipeline folder or a Hub repo id (org/name; the local cache is used offline). Default: the "
        "demo checkpoint bundled with the package.",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", DEFAULT_HOST),
        help=f"Address to serve on; 0.0.0.0 makes the page reachable from other machines (default: "
        f"$GRADIO_SERVER_NAME or {DEFAULT_HOST}).",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
        help=f"Port to serve on (default: $GRADIO_SERVER_PORT or {DEFAULT_PORT}).",
    )
    parser.add_argument("--share", action="store_true", help="Also open a public Gradio share link.")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu).")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="Model dtype (default: float32).",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run `vcq demo`."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port} is out of range: it must be in [0, 65535] (0: any free port).")
    try:
        require_gradio()
    except ImportError as err:
        print(f"vcq demo: error: {err}", file=sys.stderr)
        return 2
    launch(args.model, host=args.host, port=args.port or None, share=args.share, device=args.device, dtype=args.dtype)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python app.py [--model ...]`: the same as `vcq demo`."""
    parser = argparse.ArgumentParser(prog="app.py", description=__doc__.strip().splitlines()[0])
    add_cli_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_cli(args)
    except (ValueError, FileNotFoundError, PermissionError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


__all__ = ["Generation", "VCQDemo", "build_app", "launch", "prefix_lengths", "require_gradio", "serve"]
