"""vcq_hf: Variable Codebook Size Quantization (VCQ) for autoregressive image generation, Hugging Face-native."""

__version__ = "0.1.0"

from .quantizer import QuantizerOutput, VariableCodebookQuantizer
from .schedules import SCHEDULE_KINDS, capacity_bits, cliff_position, codebook_sizes
