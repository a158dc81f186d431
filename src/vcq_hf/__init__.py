"""vcq_hf: Variable Codebook Size Quantization (VCQ) for autoregressive image generation, Hugging Face-native."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_vcq import VCQConfig
from .configuration_vcq_vq import VCQVQConfig
from .data import BUILTIN_DATASETS, build_imagefolder, load_builtin_dataset, load_image_dataset
from .generation import VCQMask
from .image_processing_vcq import VCQImageProcessor
from .modeling_vcq import VCQForCausalLM
from .modeling_vcq_vq import VCQVQDecoderOutput, VCQVQEncoderOutput, VCQVQModel, VCQVQModelOutput
from .pipeline_vcq import VCQPipeline, VCQPipelineOutput
from .quantizer import QuantizerOutput, VariableCodebookQuantizer
from .schedules import SCHEDULE_KINDS, capacity_bits, cliff_position, codebook_sizes


# The VCQ image tokenizer resolves through the Auto classes (model_type "vcq_vq") while vcq_hf is imported; the
# saved auto_map lets `trust_remote_code=True` load it without vcq_hf.
AutoConfig.register(VCQVQConfig.model_type, VCQVQConfig, exist_ok=True)
AutoModel.register(VCQVQConfig, VCQVQModel, exist_ok=True)
AutoImageProcessor.register(VCQVQConfig, image_processor_classes={"pil": VCQImageProcessor}, exist_ok=True)
