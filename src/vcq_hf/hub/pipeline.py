"""Hub plumbing of `VCQPipeline`: save a folder that loads with and without vcq_hf, download it, card it, push it.

`VCQPipeline` inherits these methods from `VCQPipelineHubMixin` (listed before `DiffusionPipeline` in its bases, so
they override diffusers' own). They need the installed vcq_hf; a copy of `pipeline_vcq.py` loaded as remote code
without vcq_hf falls back to diffusers' `download` / `save_pretrained` / `push_to_hub`.

A saved folder follows diffusers' custom-pipeline convention, so that `DiffusionPipeline.from_pretrained(folder,
trust_remote_code=True)` (what the Hub's "use this model" snippet runs) works in a Python without vcq_hf:

    model_index.json       "_class_name": ["pipeline_vcq", "VCQPipeline"],
                           "transformer": ["modeling_vcq", "VCQForCausalLM"], "vq_model": ["modeling_vcq_vq", "VCQVQModel"]
    pipeline_vcq.py ...    the pipeline's code and the model code it imports
    transformer/           config.json (auto_map), generation_config.json, weights, modeling_vcq.py ...
    vq_model/              config.json (auto_map), weights, preprocessor_config.json (auto_map), modeling_vcq_vq.py,
                           image_processing_vcq.py ...

`VCQPipeline.from_pretrained` reads the same folder with the installed library and runs no code from it: its
`load_config` maps those names back to `vcq_hf.pipeline_vcq` / `vcq_hf.modeling_vcq` / `vcq_hf.modeling_vcq_vq`.
Folders saved before this layout (`"_class_name": "VCQPipeline"`, components `["vcq_hf.modeling_vcq", ...]`, no code)
load with `VCQPipeline.from_pretrained` as before; saving them again writes the new layout.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, create_repo, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

from ..utils import logging


logger = logging.get_logger(__name__)


# Files a saved VCQPipeline consists of; everything else in a Hub repo (pickles included) is never downloaded.
HUB_ALLOW_PATTERNS: tuple[str, ...] = (
    "model_index.json",
    "README.md",
    "*/config.json",
    "*/generation_config.json",
    "*/preprocessor_config.json",
    "*/*.safetensors",
    "*/*.safetensors.index.json",
)

MODEL_CARD_TAGS: tuple[str, ...] = (
    "vcq",
    "vcq_hf",
    "class-conditional-image-generation",
    "autoregressive-image-generation",
)


# diffusers' custom-pipeline names in a saved model_index.json, and the library modules they stand for.
REMOTE_CODE_PIPELINE: tuple[str, str] = ("pipeline_vcq", "VCQPipeline")
REMOTE_CODE_COMPONENTS: dict[str, tuple[str, str]] = {
    "transformer": ("modeling_vcq", "VCQForCausalLM"),
    "vq_model": ("modeling_vcq_vq", "VCQVQModel"),
}
LIBRARY_MODULES: dict[str, str] = {"modeling_vcq": "vcq_hf.modeling_vcq", "modeling_vcq_vq": "vcq_hf.modeling_vcq_vq"}
# The code each part of a saved folder carries: these modules and every module they import relatively.
REMOTE_CODE_FILES: dict[str, tuple[str, ...]] = {
    ".": ("pipeline_vcq.py",),
    "transformer": ("modeling_vcq.py",),
    "vq_model": ("modeling_vcq_vq.py", "image_processing_vcq.py"),
}
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def copy_model_code(module_files: tuple[str, ...], folder: str | os.PathLike) -> list[str]:
    """Copy vcq_hf modules and the same-folder modules they import (recursively) into `folder`; return the names."""
    from transformers.dynamic_module_utils import get_relative_import_files

    names: set[str] = set()
    for module_file in module_files:
        source = PACKAGE_DIR / module_file
        names.add(source.name)
        names.update(Path(path).name for path in get_relative_import_files(str(source)))
    for name in sorted(names):
        shutil.copyfile(PACKAGE_DIR / name, Path(folder) / name)
    return sorted(names)


def to_remote_code_layout(model_index: dict[str, Any]) -> dict[str, Any]:
    """`model_index.json` content with diffusers' custom-pipeline names (the code files ship in the folder)."""
    model_index = dict(model_index)
    model_index["_class_name"] = list(REMOTE_CODE_PIPELINE)
    for component, (module, class_name) in REMOTE_CODE_COMPONENTS.items():
        if model_index.get(component) is not None:
            model_index[component] = [module, class_name]
    return model_index


def to_library_layout(model_index: dict[str, Any]) -> dict[str, Any]:
    """`model_index.json` content naming the installed library's classes (what `VCQPipeline.from_pretrained` loads)."""
    model_index = dict(model_index)
    if list(model_index.get("_class_name") or []) == list(REMOTE_CODE_PIPELINE):
        model_index["_class_name"] = REMOTE_CODE_PIPELINE[1]
    for component in REMOTE_CODE_COMPONENTS:
        entry = model_index.get(component)
        if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[0] in LIBRARY_MODULES:
            model_index[component] = [LIBRARY_MODULES[entry[0]], entry[1]]
    return model_index


class VCQPipelineHubMixin:
    """Download, model card, save and push for `VCQPipeline` (a `DiffusionPipeline` with `transformer`, `vq_model`)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """`DiffusionPipeline.from_pretrained`; a truncated or corrupt weights file of a local folder is reported as
        `CorruptWeightsError` naming the file (safetensors' own error does not say which file), and a tokenizer whose
        weights differ from the one the prior was trained with (`transformer.config.vq_model_fingerprint`, written
        by examples/train_ar.py) is refused: with the same schedule it would decode the codes into noise silently."""
        from vcq_hf.training_utils.checkpointing import weights_fingerprint
        from vcq_hf.training_utils.files import explain_unreadable_weights

        with explain_unreadable_weights(pretrained_model_name_or_path):
            pipeline = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        expected = getattr(pipeline.transformer.config, "vq_model_fingerprint", None)
        # The fingerprint is of float32 weights; a pipeline loaded in another dtype cannot be compared.
        if expected and all(str(p.dtype) == "torch.float32" for p in pipeline.vq_model.parameters()):
            if weights_fingerprint(pipeline.vq_model) != expected:
                raise ValueError(
                    f"The vq_model of {pretrained_model_name_or_path} is not the tokenizer its transformer was trained "
                    f"with (weights fingerprint differs from {expected}); put the original vq_model back or train "
                    "the prior again on codes from this tokenizer."
                )
        return pipeline

    @classmethod
    def download(cls, pretrained_model_name: str, **kwargs: Any) -> str:
        r"""
        Download (or find in the local cache) the files of a saved `VCQPipeline` on the Hub and return their folder.

        diffusers' own `DiffusionPipeline.download` refuses components declared as `["vcq_hf.<module>", "<Class>"]`
        whenever it knows the repository's file list (online, or offline after a real download, which caches the
        file listing), because it expects such components to ship their code as `<component>/<module>.py`. Here the
        component classes come from the installed `vcq_hf` package, so this override fetches exactly the files of a
        saved pipeline (`HUB_ALLOW_PATTERNS`: JSON configs, safetensors weights and the model card, never pickles)
        with `huggingface_hub.snapshot_download`, which also resolves `refs/<revision>` in the cache offline
        (`HF_HUB_OFFLINE=1` or `local_files_only=True`).

        Args:
            pretrained_model_name (`str`): a Hub repository id, `"org/name"`.
            kwargs: `cache_dir`, `force_download`, `proxies`, `local_files_only`, `token`, `revision` are used; the
                other `DiffusionPipeline.download` options do not apply to this pipeline and are ignored.

        Returns:
            `str`: the local snapshot folder.
        """
        logger.info("Fetching the VCQPipeline files of %s (%s)", pretrained_model_name, ", ".join(HUB_ALLOW_PATTERNS))
        try:
            return snapshot_download(
                pretrained_model_name,
                cache_dir=kwargs.get("cache_dir"),
                force_download=bool(kwargs.get("force_download", False)),
                local_files_only=bool(kwargs.get("local_files_only") or False),
                token=kwargs.get("token"),
                revision=kwargs.get("revision"),
                allow_patterns=list(HUB_ALLOW_PATTERNS),
            )
        except LocalEntryNotFoundError as err:
            raise LocalEntryNotFoundError(
                f"Cannot load VCQPipeline {pretrained_model_name!r}: it is not a local folder and no complete copy is "
                f"in the Hugging Face cache, and the Hub cannot be reached ({err})"
            ) from err

    def create_model_card(
        self,
        repo_id_or_path: str | os.PathLike | None = None,
        token: str | None = None,
        model_description: str | None = None,
        license: str | None = "apache-2.0",
    ) -> ModelCard:
        r"""
        Load the model card at `repo_id_or_path`, or create one that describes this pipeline; then tag it.

        A local `README.md` (or a folder holding one) is loaded as is, and so is the card of a Hub repository id
        when it can be fetched. Otherwise (`None`, a local folder without `README.md`, a repository without a card,
        or offline) a new card comes from vcq_hf's one card builder ([`~vcq_hf.hub.model_card.build_model_card`]):
        components, schedule, parameter counts, classes, install line, usage with vcq_hf and with
        `DiffusionPipeline(..., trust_remote_code=True)`, and the paper's citation. Every card then gets the
        `MODEL_CARD_TAGS` it lacks, and the builder's `library_name` / `pipeline_tag` when it has none.

        Args:
            repo_id_or_path (`str` or `os.PathLike`, *optional*): Hub repo id, local README.md, or local folder.
            token (`str`, *optional*): Hub token, when `repo_id_or_path` is a repo id.
            model_description (`str`, *optional*): Markdown replacing the generated summary of a new card.
            license (`str`, *optional*, defaults to `"apache-2.0"`): license of a new card.

        Returns:
            `huggingface_hub.ModelCard`: the card, with `library_name` set and tagged.
        """
        from .model_card import LIBRARY_NAMES, PIPELINE_TAGS, build_model_card

        path = None if repo_id_or_path is None else os.fspath(repo_id_or_path)
        card = None
        if path is not None and os.path.isdir(path):
            readme = os.path.join(path, "README.md")
            card = ModelCard.load(readme) if os.path.isfile(readme) else None
        elif path is not None and os.path.isfile(path):
            card = ModelCard.load(path)
        elif path is not None:
            try:
                card = ModelCard.load(path, token=token)
            except (EntryNotFoundError, RepositoryNotFoundError, LocalEntryNotFoundError) as err:
                logger.info("No model card in %s (%s); writing a new one", path, type(err).__name__)
        if card is None:
            card = build_model_card(
                "pipeline",
                vq_config=self.vq_model.config,
                ar_config=self.transformer.config,
                num_parameters={
                    "transformer (`VCQForCausalLM`)": self.transformer.num_parameters(),
                    "vq_model (`VCQVQModel`)": self.vq_model.num_parameters(),
                },
                id2label=self.id2label,
                repo_id=path if path is not None and not os.path.exists(path) else None,
                license=license,
                summary=model_description,
            )
        existing = list(card.data.tags or [])
        card.data.tags = existing + [tag for tag in MODEL_CARD_TAGS if tag not in existing]
        if card.data.get("library_name") is None:
            card.data.library_name = LIBRARY_NAMES["pipeline"]
        if card.data.get("pipeline_tag") is None:
            card.data.pipeline_tag = PIPELINE_TAGS["pipeline"]
        return card

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        r"""
        Save the pipeline like [`~diffusers.DiffusionPipeline.save_pretrained`] (one folder per component,
        safetensors), in the layout of this module's docstring: the code of the pipeline and of each component
        travels with it, `vq_model/` gets the image processor's `preprocessor_config.json` (a `VCQImageProcessor` at
        the tokenizer's image size, unless the folder has one), and `model_index.json` names the pipeline and
        components as diffusers' custom-pipeline mechanism expects. A model card `README.md`
        ([`~VCQPipeline.create_model_card`]) is written unless the folder already has one.

        Args:
            save_directory (`str` or `os.PathLike`): the folder to write.
            safe_serialization (`bool`, *optional*, defaults to `True`): safetensors weights.
            variant (`str`, *optional*): weights variant suffix.
            max_shard_size (`int` or `str`, *optional*): shard size limit.
            push_to_hub (`bool`, *optional*, defaults to `False`): also upload the folder (card included) to
                `kwargs["repo_id"]` (defaults to the folder name), with `token`, `private`, `commit_message`,
                `create_pr` taken from `kwargs`.
        """
        save_directory = os.fspath(save_directory)
        super().save_pretrained(
            save_directory, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size
        )
        self._write_remote_code(save_directory)
        readme = os.path.join(save_directory, "README.md")
        if not os.path.isfile(readme):
            self.create_model_card().save(readme)
        if push_to_hub:
            token = kwargs.pop("token", None)
            repo_id = kwargs.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            repo_id = create_repo(repo_id, exist_ok=True, private=kwargs.pop("private", None), token=token).repo_id
            logger.info("Uploading %s to the Hub repository %s", save_directory, repo_id)
            self._upload_folder(
                save_directory,
                repo_id,
                token=token,
                commit_message=kwargs.pop("commit_message", None),
                create_pr=kwargs.pop("create_pr", False),
            )

    def _write_remote_code(self, save_directory: str) -> None:
        """Code files, the image processor config and the custom-pipeline `model_index.json` of a saved folder."""
        from ..image_processing_vcq import VCQImageProcessor
        from ..training_utils.files import atomic_write_json

        for part, module_files in REMOTE_CODE_FILES.items():
            folder = os.path.join(save_directory, part)
            if part == "." or os.path.isdir(folder):
                copy_model_code(module_files, folder)
        vq_folder = os.path.join(save_directory, "vq_model")
        if os.path.isdir(vq_folder) and not os.path.isfile(os.path.join(vq_folder, "preprocessor_config.json")):
            VCQImageProcessor(image_size=int(self.vq_model.config.image_size)).save_pretrained(vq_folder)
        index_path = os.path.join(save_directory, "model_index.json")
        with open(index_path, encoding="utf-8") as handle:
            model_index = json.load(handle)
        atomic_write_json(index_path, to_remote_code_layout(model_index))

    @classmethod
    def load_config(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        r"""
        [`~diffusers.ConfigMixin.load_config`], with a saved folder's custom-pipeline names mapped back to the
        installed library (`["pipeline_vcq", "VCQPipeline"]` -> `VCQPipeline`, `["modeling_vcq", ...]` ->
        `["vcq_hf.modeling_vcq", ...]`), so that `VCQPipeline.from_pretrained` runs no code from the folder.
        """
        loaded = super().load_config(pretrained_model_name_or_path, *args, **kwargs)
        if isinstance(loaded, tuple):
            return (to_library_layout(loaded[0]), *loaded[1:])
        return to_library_layout(loaded)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
        safe_serialization: bool = True,
        variant: str | None = None,
        **kwargs: Any,
    ) -> str:
        r"""
        Upload the pipeline to the Hub, with a model card: the repo's existing card if it has one, otherwise a new
        one from [`~VCQPipeline.create_model_card`] (diffusers' own `push_to_hub` would replace it by an empty card).

        Args:
            repo_id (`str`): the repository, `"org/name"`; created if missing.
            commit_message (`str`, *optional*): commit message.
            private (`bool`, *optional*): visibility of a new repository.
            token (`str`, *optional*): Hub token.
            create_pr (`bool`, *optional*, defaults to `False`): open a pull request instead of committing.
            safe_serialization (`bool`, *optional*, defaults to `True`): safetensors weights.
            variant (`str`, *optional*): weights variant suffix.

        Returns:
            `str`: what `huggingface_hub.upload_folder` returns (the commit URL).
        """
        repo_id = create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        card = self.create_model_card(repo_id, token=token)
        with tempfile.TemporaryDirectory() as tmpdir:
            self.save_pretrained(tmpdir, safe_serialization=safe_serialization, variant=variant)
            card.save(os.path.join(tmpdir, "README.md"))
            logger.info("Uploading the pipeline to the Hub repository %s", repo_id)
            return self._upload_folder(
                tmpdir, repo_id, token=token, commit_message=commit_message, create_pr=create_pr
            )


__all__ = ["HUB_ALLOW_PATTERNS", "MODEL_CARD_TAGS", "VCQPipelineHubMixin"]
