"""`VCQPipeline`: class-conditional image generation with a VCQ prior and tokenizer, as a diffusers pipeline.

The pipeline owns a short prefill/decode loop over a KV cache instead of calling `transformer.generate`, for two
reasons (see `HOUSE_STYLE.md`, rule 9): transformers' `generate` samples with `torch.multinomial` without a
`generator`, and its classifier-free guidance runs a second, unbatched forward pass per step. Here the conditional and
the null-class rows share one batch of `2 * batch_size`, the guided logits are masked by `VCQMask` and warped by
transformers' temperature / top-k / top-p processors, and one token per image is drawn with the caller's generator(s)
and fed to both halves.

Reference: LlamaGen, `autoregressive/models/generate.py` (batched cond/uncond CFG, same token fed to both halves);
diffusers `DiTPipeline` (the `__call__` shape, `id2label` / `get_label_ids`).
"""

from __future__ import annotations

import contextlib
import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils import replace_example_docstring
from transformers import (
    LogitsProcessorList,
    PreTrainedModel,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# Remote code (`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` without vcq_hf): for a local folder
# diffusers copies into its module cache the modules this file imports as `from .x import y`, not those they import in
# turn, so every module of the model code is named here.
from .configuration_vcq import VCQConfig  # noqa: F401
from .configuration_vcq_vq import VCQVQConfig  # noqa: F401
from .generation import VCQStaticCache, classifier_free_guidance
from .modeling_vcq import VCQForCausalLM  # noqa: F401
from .modeling_vcq_vq import VCQVQModel  # noqa: F401
from .presets import PresetMixin  # noqa: F401
from .quantizer import VariableCodebookQuantizer  # noqa: F401
from .sampling import (
    DEFAULT_GUIDANCE_SCALE,
    GUIDANCE_SCHEDULES,
    SAMPLING_DEFAULTS,
    check_sampling_settings,
    guidance_scales,
)
from .schedules import CodebookSchedule  # noqa: F401
from .validation import check_number  # noqa: F401


try:  # download, model card and push live in the library; a copy of this file loaded as remote code needs no vcq_hf
    from vcq_hf.hub.pipeline import VCQPipelineHubMixin
except ImportError:

    class VCQPipelineHubMixin:
        """Without vcq_hf, a pipeline loaded as remote code downloads, saves and pushes as any DiffusionPipeline."""


try:  # the oneDNN linears of the decode loop (CPU speed only); without vcq_hf the loop runs on F.linear
    from vcq_hf.utils.onednn import onednn_linears
except ImportError:
    onednn_linears = contextlib.nullcontext


OUTPUT_TYPES: tuple[str, ...] = ("pil", "np", "pt", "latent")

EXAMPLE_DOC_STRING = """
    Examples:

    ```py
    >>> import torch
    >>> from vcq_hf import VCQConfig, VCQForCausalLM, VCQPipeline, VCQVQConfig, VCQVQModel

    >>> vq_config = VCQVQConfig.from_preset("tiny")
    >>> transformer = VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny"))
    >>> pipe = VCQPipeline(VCQVQModel(vq_config), transformer, id2label={0: "cat", 1: "dog", 2: "fish"})

    >>> # with a trained checkpoint: pipe = VCQPipeline.from_pretrained("org/vcq-684m")
    >>> output = pipe(class_labels=["cat", "fish"], guidance_scale=4.0, generator=torch.manual_seed(0))
    >>> len(output.images), output.codes.shape  # PIL images, and the (batch, T) codes they decode
    (2, torch.Size([2, 5]))

    ```
"""


@dataclass
class VCQPipelineOutput(ImagePipelineOutput):
    """Output of [`VCQPipeline`].

    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`):
            The generated images: a list of PIL images (`output_type="pil"`), an array of shape `(batch_size, height,
            width, num_channels)` in [0, 1] (`"np"`), a tensor of shape `(batch_size, num_channels, height, width)`
            in [0, 1] (`"pt"`), or the `(batch_size, num_image_tokens)` codes (`"latent"`).
        codes (`torch.LongTensor` of shape `(batch_size, num_image_tokens)`):
            The sampled image codes, `codes[:, t] < codebook_sizes[t]`, whatever the `output_type`.
    """

    codes: torch.LongTensor | None = None


class VCQPipeline(VCQPipelineHubMixin, DiffusionPipeline):
    r"""
    Class-conditional image generation with a VCQ autoregressive prior and a VCQ image tokenizer.

    This model inherits from [`~diffusers.DiffusionPipeline`]. Check the superclass documentation for the generic
    methods implemented for all pipelines (downloading, saving, running on a particular device, etc.).

    Parameters:
        vq_model ([`VCQVQModel`]):
            The VCQ tokenizer; its `decode` turns `(batch_size, T)` codes into images.
        transformer ([`VCQForCausalLM`]):
            The autoregressive prior over `[class token, x_0, ..., x_{T-1}]`. Its `config.codebook_sizes` must equal
            the tokenizer's.
        id2label (`dict[int, str]`, *optional*):
            Class names, from class id to name. A name may list comma-separated synonyms (`"tench, Tinca tinca"`),
            each of which [`~VCQPipeline.get_label_ids`] accepts. Stored in `model_index.json`.
    """

    model_cpu_offload_seq = "transformer->vq_model"
    _callback_tensor_inputs = ["codes", "logits"]

    def __init__(
        self,
        # Annotated with the base class: diffusers checks components against these types, resolved before it loads
        # them, and as remote code it executes each component's module again, so the classes imported here would
        # be stale copies of the loaded ones. The docstring names the real classes.
        vq_model: PreTrainedModel,
        transformer: PreTrainedModel,
        id2label: dict[int, str] | dict[str, str] | None = None,
    ):
        super().__init__()
        vq_model.config.codebook_schedule.require_equal(
            transformer.config.codebook_schedule,
            "vq_model.config.codebook_sizes",
            "transformer.config.codebook_sizes",
            hint="The tokenizer and the prior disagree: train the prior on codes of this tokenizer "
            "(VCQConfig.from_vq_config builds a matching config).",
        )
        id2label = self._check_id2label(id2label, transformer.config.num_classes)
        self.register_modules(vq_model=vq_model, transformer=transformer)
        # Registered so that the names are written to model_index.json and come back with from_pretrained.
        self.register_to_config(id2label=id2label)
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_resize=False, do_normalize=True)

        self.labels: dict[str, int] = {}
        if id2label is not None:
            for class_id, name in sorted(id2label.items(), key=lambda item: int(item[0])):
                self.labels.setdefault(name.strip(), int(class_id))
            for class_id, name in sorted(id2label.items(), key=lambda item: int(item[0])):
                for synonym in name.split(","):
                    if synonym.strip():
                        self.labels.setdefault(synonym.strip(), int(class_id))
            self.labels = dict(sorted(self.labels.items()))

    @staticmethod
    def _check_id2label(id2label: dict[int | str, str] | None, num_classes: int) -> dict[str, str] | None:
        # JSON turns int keys into strings: store them as strings so a saved and a fresh pipeline have equal configs.
        if id2label is None:
            return None
        if not isinstance(id2label, dict):
            raise ValueError(f"id2label must be a dict from class id to name, got {type(id2label).__name__}.")
        checked = {}
        for key, name in id2label.items():
            try:
                class_id = int(key)
            except (TypeError, ValueError) as err:
                raise ValueError(f"id2label key {key!r} is not a class id (an integer).") from err
            if not 0 <= class_id < num_classes:
                raise ValueError(
                    f"id2label key {class_id} is outside the prior's class range [0, num_classes = {num_classes})."
                )
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"id2label[{class_id}] = {name!r} must be a non-empty string.")
            checked[str(class_id)] = name
        return dict(sorted(checked.items(), key=lambda item: int(item[0])))

    @property
    def id2label(self) -> dict[int, str]:
        """Class names by class id (empty when the pipeline has none)."""
        stored = self.config.get("id2label") or {}
        return {int(key): name for key, name in stored.items()}

    @property
    def components(self) -> dict[str, Any]:
        """The arguments that rebuild this pipeline: `VCQPipeline(**pipe.components)` keeps the class names too
        (diffusers' `components` lists only the modules)."""
        components = super().components
        components["id2label"] = self.id2label or None
        return components

    @property
    def num_classes(self) -> int:
        """Number of classes of the prior (class labels are in `[0, num_classes)`)."""
        return self.transformer.config.num_classes

    @property
    def num_image_tokens(self) -> int:
        """Number T of image tokens per image."""
        return self.transformer.config.num_image_tokens

    # Read by diffusers-style callbacks during a call (`pipe.num_timesteps`, `pipe.guidance_scale`, `pipe.interrupt`).
    @property
    def num_timesteps(self) -> int:
        """Number of sampling steps of the current (or last) call: one per image position, T."""
        return getattr(self, "_num_timesteps", self.num_image_tokens)

    @property
    def guidance_scale(self) -> float:
        """Guidance scale of the current (or last) call; before any call, the default of this checkpoint."""
        return getattr(self, "_guidance_scale", self.sampling_defaults["guidance_scale"])

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current (or last) call runs the null-class rows (some position's scale differs from 1)."""
        return getattr(self, "_do_classifier_free_guidance", self.guidance_scale != 1)

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` (e.g. in `callback_on_step_end`) to stop sampling after the current step."""
        return getattr(self, "_interrupt", False)

    @property
    def sampling_defaults(self) -> dict[str, Any]:
        """The sampling settings a call uses when it does not give them: the prior's `generation_config` (what this
        checkpoint was evaluated with), else [`~vcq_hf.sampling.SAMPLING_DEFAULTS`] (guidance
        `DEFAULT_GUIDANCE_SCALE` = 2.0, constant schedule, temperature 1, no top-k / top-p, sampling on)."""
        generation_config = self.transformer.generation_config
        defaults = {}
        for name, fallback in SAMPLING_DEFAULTS.items():
            value = getattr(generation_config, name, None)
            defaults[name] = fallback if value is None else value
        return defaults

    def resolve_sampling_settings(
        self,
        guidance_scale: float | None = None,
        guidance_schedule: str | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        do_sample: bool | None = None,
    ) -> dict[str, Any]:
        r"""
        The settings a call samples with: each given value, else [`~VCQPipeline.sampling_defaults`]; all checked.
        Scripts record this dict next to their results.

        Args:
            guidance_scale (`float`, *optional*): finite, >= 0 (1 = no guidance).
            guidance_schedule (`str`, *optional*): one of `GUIDANCE_SCHEDULES`.
            temperature (`float`, *optional*): finite, > 0.
            top_k (`int`, *optional*): >= 1.
            top_p (`float`, *optional*): in (0, 1], 1 = off.
            do_sample (`bool`, *optional*): `False` = greedy.

        Returns:
            `dict[str, Any]`: the six settings.

        Raises:
            `ValueError`: naming a bad value (NaN and infinities included) and its allowed range.
        """
        given = {
            "guidance_scale": guidance_scale,
            "guidance_schedule": guidance_schedule,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "do_sample": do_sample,
        }
        check_sampling_settings(**given)
        defaults = self.sampling_defaults
        settings = {name: defaults[name] if value is None else value for name, value in given.items()}
        check_sampling_settings(**settings)  # a checkpoint's generation_config is checked too
        return settings

    def get_label_ids(self, label: str | Sequence[str]) -> list[int]:
        r"""
        Map class names to class ids.

        Args:
            label (`str` or `list[str]`):
                One class name, or a list of them. Names are matched exactly first, then case-insensitively.

        Returns:
            `list[int]`: one class id per name.

        Raises:
            `ValueError`: for a name that is not a class of this pipeline; the message suggests close matches.
        """
        labels = [label] if isinstance(label, str) else list(label)
        lowered = {}
        for name, class_id in self.labels.items():
            lowered.setdefault(name.lower(), class_id)
        ids = []
        for name in labels:
            if not isinstance(name, str):
                raise ValueError(f"class name {name!r} is not a string.")
            key = name.strip()
            if key in self.labels:
                ids.append(self.labels[key])
            elif key.lower() in lowered:
                ids.append(lowered[key.lower()])
            elif not self.labels:
                raise ValueError(
                    f"Unknown class name {name!r}: this pipeline has no class names (id2label is empty); pass class "
                    f"ids in [0, {self.num_classes}) instead."
                )
            else:
                close = difflib.get_close_matches(key, list(self.labels), n=5, cutoff=0.5)
                close += [c for c in difflib.get_close_matches(key.lower(), list(lowered), n=5) if c not in close]
                hint = f" Did you mean: {', '.join(repr(c) for c in close[:5])}?" if close else ""
                shown = ", ".join(repr(n) for n in list(self.labels)[:20])
                more = f", ... ({len(self.labels)} names)" if len(self.labels) > 20 else ""
                raise ValueError(f"Unknown class name {name!r}.{hint} Known names: {shown}{more}.")
        return ids

    def resolve_class_labels(self, class_labels: int | str | Sequence[int | str] | torch.Tensor) -> list[int]:
        r"""
        Class ids of `class_labels`, the one place labels are parsed and range-checked (`__call__`, `vcq generate`
        and the example scripts all ask it): ids, names (via [`~VCQPipeline.get_label_ids`]) or a mix; a string is
        one name, or an id when it is all digits and not a name (as typed on a command line).

        Args:
            class_labels (`int`, `str`, `list[int | str]` or `torch.Tensor`): the classes.

        Returns:
            `list[int]`: class ids in `[0, num_classes)`.

        Raises:
            `ValueError`: for an unknown name, an id outside `[0, num_classes)`, a value of another type, or no label.
        """
        if isinstance(class_labels, torch.Tensor):
            class_labels = class_labels.reshape(-1).tolist()
        if isinstance(class_labels, (int, str)):
            class_labels = [class_labels]
        class_labels = list(class_labels)
        if not class_labels:
            raise ValueError("class_labels is empty: give at least one class id or name.")
        resolved = []
        for index, label in enumerate(class_labels):
            if isinstance(label, str):
                text = label.strip()
                if text not in self.labels and re.fullmatch(r"[+-]?\d+", text):
                    resolved.append(int(text))
                else:
                    resolved.extend(self.get_label_ids(label))
                continue
            if hasattr(label, "item") and not isinstance(label, (bool, int)):
                label = label.item()
            if isinstance(label, bool) or not isinstance(label, int):
                raise ValueError(f"class_labels[{index}] = {label!r} is neither a class id (int) nor a name (str).")
            resolved.append(label)
        for index, label in enumerate(resolved):
            if not 0 <= label < self.num_classes:
                raise ValueError(
                    f"class label {label} (class_labels[{index}]) is out of range: this model has "
                    f"{self.num_classes} classes, ids in [0, {self.num_classes})."
                )
        return resolved

    def check_inputs(
        self,
        num_images_per_class: int,
        num_images_per_prompt: int | None,
        output_type: str,
        callback_on_step_end_tensor_inputs: list[str] | None,
        compile: bool,
    ) -> int:
        """Validate the non-sampling arguments of `__call__` (the sampling ones go through
        [`~VCQPipeline.resolve_sampling_settings`]); every error names the bad value and the allowed range. Returns
        the number of images per class (`num_images_per_prompt` is diffusers' name for it)."""
        for name, value in (
            ("num_images_per_class", num_images_per_class),
            ("num_images_per_prompt", num_images_per_prompt),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} = {value!r} is out of range: it must be an int >= 1.")
        if num_images_per_prompt is not None:
            if num_images_per_class not in (1, num_images_per_prompt):
                raise ValueError(
                    f"num_images_per_class = {num_images_per_class} and num_images_per_prompt = "
                    f"{num_images_per_prompt} disagree; they are the same setting, give one of them."
                )
            num_images_per_class = num_images_per_prompt
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type = {output_type!r} is not supported; expected one of {OUTPUT_TYPES}.")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"callback_on_step_end_tensor_inputs {unknown} are not available; choose from "
                    f"{self._callback_tensor_inputs}."
                )
        if not isinstance(compile, bool):
            raise ValueError(f"compile = {compile!r} must be True or False.")
        return num_images_per_class

    @staticmethod
    def _logits_processors(
        do_sample: bool, temperature: float, top_k: int | None, top_p: float | None
    ) -> LogitsProcessorList:
        # No VCQMask: the schedule-aware head computes only the logits of the codes [0, K_t) allowed at position t,
        # so the warpers see exactly the allowed codes, as after VCQMask on the full vocabulary.
        processors = LogitsProcessorList()
        if do_sample:
            if temperature != 1.0:
                processors.append(TemperatureLogitsWarper(float(temperature)))
            if top_k:
                processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
            if top_p is not None and top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=float(top_p), min_tokens_to_keep=1))
        return processors

    @staticmethod
    def _sample(
        scores: torch.Tensor,
        do_sample: bool,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.LongTensor:
        """One token per row of `scores` (B, V): argmax, or a draw from softmax(scores) with the generator(s).

        A draw happens on its generator's device (a CPU generator on a CUDA pipeline samples on the CPU), so a seed
        gives the same draws whatever the device the model runs on.
        """
        if not do_sample:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores.float(), dim=-1)  # (B, V)

        def draw(rows: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
            if gen is not None and gen.device != rows.device:
                return torch.multinomial(rows.to(gen.device), 1, generator=gen).to(rows.device)
            return torch.multinomial(rows, 1, generator=gen)

        if isinstance(generator, list):
            # Row i draws only from generator i: image i does not depend on what else is in the batch.
            return torch.cat([draw(probs[i : i + 1], gen) for i, gen in enumerate(generator)]).view(-1)
        return draw(probs, generator).view(-1)

    @staticmethod
    def _check_generator(
        generator: torch.Generator | list[torch.Generator] | None, batch_size: int
    ) -> torch.Generator | list[torch.Generator] | None:
        gens = generator if isinstance(generator, list) else [generator]
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"You passed a list of {len(generator)} generators but {batch_size} images are generated "
                "(len(class_labels) * num_images_per_class); pass one generator per image, or a single generator."
            )
        for gen in gens:
            if gen is not None and not isinstance(gen, torch.Generator):
                raise ValueError(f"generator must be a torch.Generator or a list of them, got {type(gen).__name__}.")
        return generator

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        class_labels: int | str | Sequence[int | str] | torch.Tensor,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        do_sample: bool | None = None,
        guidance_schedule: str | None = None,
        num_images_per_class: int = 1,
        num_images_per_prompt: int | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, int, dict], dict]
        | PipelineCallback
        | MultiPipelineCallbacks
        | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        compile: bool = False,
    ) -> VCQPipelineOutput | tuple:
        r"""
        Generate images of the given classes.

        Every sampling setting left at `None` comes from [`~VCQPipeline.sampling_defaults`]: the prior's
        `generation_config` (what the checkpoint was evaluated with), else the documented default named below.

        Args:
            class_labels (`int`, `str`, `list[int | str]` or `torch.Tensor`):
                The classes to generate: class ids in `[0, num_classes)` and/or class names from `id2label` (a string
                is one name, never a list of characters).
            guidance_scale (`float`, *optional*, defaults to `None`):
                Classifier-free guidance scale `s` in logit space, `uncond + s * (cond - uncond)`, with the null
                class as the unconditional input; finite, >= 0. 1 disables guidance (only the conditional rows run).
                `None`: the checkpoint's, else `DEFAULT_GUIDANCE_SCALE` = 2.0.
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*, defaults to `None`):
                Source of randomness for sampling. With one generator per image, image i depends only on its own
                generator, whatever else is in the batch.
            temperature (`float`, *optional*, defaults to `None`):
                Softmax temperature, finite and > 0. `None`: the checkpoint's, else 1.0.
            top_k (`int`, *optional*, defaults to `None`):
                Keep only the k most likely codes at each step (among those allowed at the position), >= 1.
                `None`: the checkpoint's, else off.
            top_p (`float`, *optional*, defaults to `None`):
                Nucleus sampling: keep the smallest set of codes whose probability reaches `top_p`, in (0, 1]; 1 =
                off. `None`: the checkpoint's, else off.
            do_sample (`bool`, *optional*, defaults to `None`):
                Sample; `False` takes the argmax at each step (greedy) and ignores temperature / top-k / top-p.
                `None`: the checkpoint's, else `True`.
            guidance_schedule (`str`, *optional*, defaults to `None`):
                `"constant"`, or `"linear"`: the scale ramps from about 1 at the first position to `guidance_scale`
                at the last one (see [`~vcq_hf.sampling.guidance_scales`]). `None`: the checkpoint's, else
                `"constant"`.
            num_images_per_class (`int`, *optional*, defaults to 1):
                Images per entry of `class_labels`; image `i * num_images_per_class + j` is the j-th of class i.
            num_images_per_prompt (`int`, *optional*, defaults to `None`):
                diffusers' name of `num_images_per_class` (a class label is this pipeline's prompt); give one of the
                two.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"` (list of `PIL.Image.Image`), `"np"` (array `(B, H, W, C)` in [0, 1]), `"pt"` (tensor
                `(B, C, H, W)` in [0, 1]) or `"latent"` (the `(B, T)` codes, not decoded).
            return_dict (`bool`, *optional*, defaults to `True`):
                Return a [`VCQPipelineOutput`] instead of a tuple `(images, codes)`.
            callback_on_step_end (`Callable`, `PipelineCallback` or `MultiPipelineCallbacks`, *optional*, defaults to `None`):
                Called after each sampled position as `callback_on_step_end(pipe, step, position, callback_kwargs)`
                with the tensors named in `callback_on_step_end_tensor_inputs`: `codes` (`(B, position + 1)`, the
                codes so far) and `logits` (`(B, vocab_size)`, the guided, masked and warped scores of this step,
                `-inf` outside `[0, K_t)`). It returns a dict; a returned `codes` replaces the codes (only its last
                column may differ: the earlier ones are already in the KV cache). It may read `pipe.num_timesteps`
                and `pipe.guidance_scale`, and set `pipe._interrupt = True` to stop after this step.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*, defaults to `None`):
                The tensors passed to the callback, a subset of `["codes", "logits"]`; `None` means `["codes"]`.
            compile (`bool`, *optional*, defaults to `False`):
                Run the decode step through `torch.compile` (compiled once per pipeline on first use; the first call
                pays the compilation). Sampling is the same as eager up to floating-point rounding.

        Examples:

        Returns:
            [`VCQPipelineOutput`] or `tuple`: the images (see `output_type`) and the `(B, T)` codes; a tuple
            `(images, codes)` when `return_dict=False`. After an interrupt, `codes` holds the positions sampled so
            far and `images` is `None` (codes are decoded only when complete) unless `output_type="latent"`.
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["codes"]
        num_images_per_class = self.check_inputs(
            num_images_per_class, num_images_per_prompt, output_type, callback_on_step_end_tensor_inputs, compile
        )
        settings = self.resolve_sampling_settings(
            guidance_scale=guidance_scale,
            guidance_schedule=guidance_schedule,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            do_sample=do_sample,
        )
        labels = self.resolve_class_labels(class_labels)
        labels = [label for label in labels for _ in range(num_images_per_class)]
        batch_size = len(labels)
        device = self._execution_device
        generator = self._check_generator(generator, batch_size)

        config = self.transformer.config
        num_positions = config.num_image_tokens
        limits = config.codebook_schedule.sizes  # K_t: the head computes the logits of [0, K_t) only
        scales = guidance_scales(settings["guidance_scale"], num_positions, settings["guidance_schedule"])
        do_cfg = any(scale != 1.0 for scale in scales)
        self._guidance_scale = settings["guidance_scale"]
        self._do_classifier_free_guidance = do_cfg
        self._num_timesteps = num_positions
        self._interrupt = False
        do_sample = settings["do_sample"]
        processors = self._logits_processors(do_sample, settings["temperature"], settings["top_k"], settings["top_p"])
        prefill, decode = self._decode_step(False), self._decode_step(compile)

        cond_ids = torch.tensor(config.class_token_ids(labels), dtype=torch.long, device=device)  # (B,)
        if do_cfg:
            null_ids = torch.full_like(cond_ids, config.null_class_token_id)
            model_input = torch.cat([cond_ids, null_ids])[:, None]  # (2B, 1): conditional rows, then null rows
        else:
            model_input = cond_ids[:, None]  # (B, 1)
        # Preallocated for the whole call: the KV cache of the 2B (or B) rows x T fed tokens (class token, x_0 ..
        # x_{T-2}; the last code is never fed), and the (B, 1 + T) tokens.
        cache = VCQStaticCache(config.num_hidden_layers, num_positions)
        sequence = torch.empty(batch_size, 1 + num_positions, dtype=torch.long, device=device)
        sequence[:, 0] = cond_ids
        num_sampled = 0

        # On CPU the decode step's matrix products run on oneDNN, faster than MKL at these few rows (see
        # vcq_hf.utils.onednn); the transformer's linears are restored after the loop.
        with onednn_linears(self.transformer), self.progress_bar(total=num_positions) as progress_bar:
            for position in range(num_positions):
                if self.interrupt:
                    break
                step = prefill if position == 0 else decode  # the prefill allocates the cache, always eager
                logits = step(model_input, cache, limits[position]).float()  # (2B or B, K_t)
                if do_cfg:
                    cond_logits, uncond_logits = logits.chunk(2)
                    logits = classifier_free_guidance(cond_logits, uncond_logits, scales[position])
                logits = processors(sequence[:, : 1 + position], logits)  # (B, K_t)
                next_codes = self._sample(logits, do_sample, generator)  # (B,), codes in [0, K_t)
                sequence[:, 1 + position] = next_codes
                num_sampled = position + 1

                if callback_on_step_end is not None:
                    codes = sequence[:, 1 : 1 + num_sampled]
                    callback_kwargs = {"codes": codes}
                    if "logits" in callback_on_step_end_tensor_inputs:  # on the whole vocabulary, -inf outside K_t
                        full = logits.new_full((batch_size, config.vocab_size), -float("inf"))
                        full[:, : logits.shape[-1]] = logits
                        callback_kwargs["logits"] = full
                    callback_kwargs = {k: callback_kwargs[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, position, position, callback_kwargs) or {}
                    new_codes = callback_outputs.pop("codes", codes)
                    if new_codes is not codes:
                        sequence[:, 1 + position] = self._check_callback_codes(codes, new_codes, position)
                        next_codes = sequence[:, 1 + position]

                model_input = torch.cat([next_codes, next_codes]) if do_cfg else next_codes  # same token, both halves
                model_input = model_input[:, None]
                progress_bar.update()

        codes = sequence[:, 1 : 1 + num_sampled]  # (B, T), fewer columns after an interrupt
        if output_type == "latent":
            images = codes
        elif num_sampled < num_positions:
            images = None
        else:
            sample = self.vq_model.decode(codes).sample  # (B, C, H, W) in [-1, 1]
            images = self.image_processor.postprocess(sample.float(), output_type=output_type)

        self.maybe_free_model_hooks()

        if not return_dict:
            return (images, codes)
        return VCQPipelineOutput(images=images, codes=codes)

    def _decode_step(self, compile: bool) -> Callable[[torch.Tensor, VCQStaticCache, int], torch.Tensor]:
        """The decode step `(input_ids (R, n), cache, K_t) -> logits (R, K_t)` of the last position: the prior with
        the schedule-aware head. With `compile`, `torch.compile(..., dynamic=True, fullgraph=True)` of it, built once
        per pipeline: one graph for every position and K_t (the input checks are skipped while compiling, so they
        cause no graph break; `fullgraph=True` makes any break an error)."""

        def step(input_ids: torch.Tensor, cache: VCQStaticCache, vocab_limit: int) -> torch.Tensor:
            outputs = self.transformer(
                input_ids=input_ids, cache=cache, use_cache=True, logits_to_keep=1, vocab_limit=vocab_limit
            )
            return outputs.logits[:, -1]

        if not compile:
            return step
        compiled = getattr(self, "_compiled_decode_step", None)
        if compiled is None or compiled[0] is not self.transformer:
            compiled = (self.transformer, torch.compile(step, dynamic=True, fullgraph=True))
            self._compiled_decode_step = compiled
        return compiled[1]

    def _check_callback_codes(self, codes: torch.Tensor, new_codes: Any, position: int) -> torch.Tensor:
        """The newest column of the `codes` a callback returned, checked: same shape, history unchanged, in K_t."""
        if not isinstance(new_codes, torch.Tensor) or new_codes.shape != codes.shape:
            shape = tuple(new_codes.shape) if isinstance(new_codes, torch.Tensor) else type(new_codes).__name__
            raise ValueError(
                f"callback_on_step_end returned codes of shape {shape}; expected a tensor of shape "
                f"{tuple(codes.shape)}."
            )
        new_codes = new_codes.to(device=codes.device, dtype=codes.dtype)
        if not torch.equal(new_codes[:, :-1], codes[:, :-1]):
            raise ValueError(
                "callback_on_step_end may only change the newest column of `codes`: the earlier codes are already in "
                "the KV cache."
            )
        limit = self.transformer.config.codebook_schedule[position]
        last = new_codes[:, -1]
        if bool(((last < 0) | (last >= limit)).any()):
            raise ValueError(
                f"callback_on_step_end returned codes {last.tolist()} at position {position}, outside [0, K_t = {limit})."
            )
        return last


__all__ = [
    "DEFAULT_GUIDANCE_SCALE",
    "GUIDANCE_SCHEDULES",
    "OUTPUT_TYPES",
    "VCQPipeline",
    "VCQPipelineOutput",
    "guidance_scales",
]
