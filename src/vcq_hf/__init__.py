"""vcq_hf: Variable Codebook Size Quantization (VCQ) for autoregressive image generation, Hugging Face-native.

The package face is lazy, as in transformers and diffusers: `import vcq_hf` (or `import vcq_hf.schedules`) imports no
torch, transformers or diffusers; each public name below is imported from its module on first access (PEP 562 module
`__getattr__`). Static type checkers and IDEs see the eager imports under `TYPE_CHECKING`.

The model modules register themselves with the transformers Auto classes when they are imported (`"vcq"` for the
prior, `"vcq_vq"` for the tokenizer); accessing any model, config or processor class here imports them.
"""

import importlib
from typing import TYPE_CHECKING, Any


__version__ = "0.1.0"

# module (relative to this package) -> the public names it exports. One place lists the package's public API.
_import_structure: dict[str, list[str]] = {
    "configuration_vcq": ["VCQConfig"],
    "configuration_vcq_vq": ["VCQVQConfig"],
    "data": ["BUILTIN_DATASETS", "build_imagefolder", "load_builtin_dataset", "load_image_dataset"],
    "generation": ["VCQMask"],
    "image_processing_vcq": ["VCQImageProcessor"],
    "modeling_vcq": ["VCQForCausalLM"],
    "modeling_vcq_vq": ["VCQVQDecoderOutput", "VCQVQEncoderOutput", "VCQVQModel", "VCQVQModelOutput"],
    "pipeline_vcq": ["VCQPipeline", "VCQPipelineOutput"],
    "quantizer": ["QuantizerOutput", "VariableCodebookQuantizer"],
    "schedules": [
        "DEFAULT_SCHEDULE",
        "SCHEDULE_KINDS",
        "CodebookSchedule",
        "capacity_bits",
        "cliff_position",
        "codebook_sizes",
    ],
}
_name_to_module: dict[str, str] = {name: module for module, names in _import_structure.items() for name in names}

__all__ = ["__version__", *sorted(_name_to_module)]


if TYPE_CHECKING:
    from .configuration_vcq import VCQConfig
    from .configuration_vcq_vq import VCQVQConfig
    from .data import BUILTIN_DATASETS, build_imagefolder, load_builtin_dataset, load_image_dataset
    from .generation import VCQMask
    from .image_processing_vcq import VCQImageProcessor
    from .modeling_vcq import VCQForCausalLM
    from .modeling_vcq_vq import VCQVQDecoderOutput, VCQVQEncoderOutput, VCQVQModel, VCQVQModelOutput
    from .pipeline_vcq import VCQPipeline, VCQPipelineOutput
    from .quantizer import QuantizerOutput, VariableCodebookQuantizer
    from .schedules import (
        DEFAULT_SCHEDULE,
        SCHEDULE_KINDS,
        CodebookSchedule,
        capacity_bits,
        cliff_position,
        codebook_sizes,
    )


def __getattr__(name: str) -> Any:
    module_name = _name_to_module.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_name_to_module))
